"""How many partitions the topics get when a system creates them at start-up."""

from __future__ import annotations

import pytest

from medsettle.settings import Settings


def test_a_broker_started_here_gets_two_partitions_and_one_given_by_its_address_eight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOPIC_PARTITIONS", raising=False)
    settings = Settings()
    assert settings.partitions(local=True) == 2
    assert settings.partitions(local=False) == 8


def test_topic_partitions_set_by_the_operator_wins_on_every_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_PARTITIONS", "3")
    settings = Settings()
    assert settings.partitions(local=True) == 3
    assert settings.partitions(local=False) == 3


def test_zero_partitions_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_PARTITIONS", "0")
    with pytest.raises(ValueError, match="topic_partitions"):
        Settings()
