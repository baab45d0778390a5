import pytest

from medsettle.policy import load_policy
from medsettle.settings import ROOT


@pytest.fixture(scope="session")
def reference_policy():
    return load_policy(ROOT / "policies" / "340421-2024.yaml")


@pytest.fixture(scope="session")
def second_policy():
    return load_policy(ROOT / "policies" / "150900-2024.yaml")
