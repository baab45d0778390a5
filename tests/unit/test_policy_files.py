"""Policy files: loading, refusing bad ones with file, field and reason,
round-tripping, hot reload and the ``python -m medsettle.policy`` checker."""

import os
import subprocess
import sys
from decimal import Decimal

import pytest
import yaml

from medsettle.policy import Policy, PolicyBook, PolicyError, dump_policy, load_policy, main
from medsettle.settings import ROOT

POLICIES = ROOT / "policies"
REFERENCE = POLICIES / "340421-2024.yaml"
SECOND = POLICIES / "150900-2024.yaml"


def raw(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write(folder, name, data):
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def refused(path):
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return str(caught.value)


# ------------------------------------------------------------------- shipped files


def test_the_reference_policy_file_loads_with_the_contracts_figures():
    policy = load_policy(REFERENCE)
    assert (policy.policy, policy.region, policy.year) == ("340421-2024", "340421", 2024)
    county = policy.basic.inpatient.levels["county"]
    assert (county.deductible, county.ratio) == (Decimal(600), Decimal(75))
    assert policy.serious_illness.threshold == Decimal(15000)
    assert policy.backstop.enabled


def test_the_second_region_policy_file_loads_with_its_figures():
    policy = load_policy(SECOND)
    assert (policy.policy, policy.region, policy.year) == ("150900-2024", "150900", 2024)
    assert policy.fund_share_cap == Decimal(90)
    assert [b.above for b in policy.basic.inpatient.ratio_bands] == [Decimal(30000), Decimal(70000), Decimal(200000)]
    assert not policy.backstop.enabled


# ------------------------------------------------------------------- refusals


def test_an_unknown_field_is_refused_naming_the_file_the_field_and_the_reason(tmp_path):
    data = raw(REFERENCE)
    data["basic"]["inpatient"]["levels"]["county"]["deductable"] = data["basic"]["inpatient"]["levels"]["county"].pop(
        "deductible")
    path = write(tmp_path, "340421-2024", data)
    message = refused(path)
    assert str(path) in message
    assert "basic.inpatient.levels.county.deductable: Extra inputs are not permitted" in message
    assert "basic.inpatient.levels.county.deductible: Field required" in message


def test_a_field_of_the_wrong_type_is_refused(tmp_path):
    data = raw(REFERENCE)
    data["serious_illness"]["threshold"] = "fifteen thousand"
    path = write(tmp_path, "340421-2024", data)
    message = refused(path)
    assert str(path) in message
    assert "serious_illness.threshold:" in message
    assert "decimal" in message


def test_overlapping_serious_illness_bands_are_refused(tmp_path):
    data = raw(REFERENCE)
    data["serious_illness"]["bands"] = [{"upto": 50000, "ratio": 60}, {"upto": 40000, "ratio": 70},
                                        {"upto": None, "ratio": 80}]
    path = write(tmp_path, "340421-2024", data)
    message = refused(path)
    assert str(path) in message
    assert "serious_illness.bands: bands overlap" in message


def test_an_open_band_before_the_last_is_refused(tmp_path):
    data = raw(REFERENCE)
    data["serious_illness"]["bands"] = [{"upto": None, "ratio": 60}, {"upto": 100000, "ratio": 70}]
    message = refused(write(tmp_path, "340421-2024", data))
    assert "serious_illness.bands: only the last band may be open-ended" in message


def test_overlapping_inpatient_ratio_bands_are_refused(tmp_path):
    data = raw(SECOND)
    data["basic"]["inpatient"]["ratio_bands"] = [{"above": 70000, "extra_points": 10},
                                                 {"above": 30000, "extra_points": 5}]
    path = write(tmp_path, "150900-2024", data)
    message = refused(path)
    assert str(path) in message
    assert "basic.inpatient.ratio_bands: bands overlap" in message


@pytest.mark.parametrize(("ratio", "reason"), [(175, "less than or equal to 100"), (-5, "greater than or equal to 0")])
def test_a_ratio_outside_0_to_100_is_refused(tmp_path, ratio, reason):
    data = raw(REFERENCE)
    data["basic"]["inpatient"]["levels"]["county"]["ratio"] = ratio
    path = write(tmp_path, "340421-2024", data)
    message = refused(path)
    assert str(path) in message
    assert "basic.inpatient.levels.county.ratio:" in message
    assert reason in message


def test_an_assistance_ratio_above_100_is_refused(tmp_path):
    data = raw(SECOND)
    data["assistance"]["categories"]["subsistence"]["large_claim_ratio"] = 180
    message = refused(write(tmp_path, "150900-2024", data))
    assert "assistance.categories.subsistence.large_claim_ratio:" in message


def test_a_missing_level_is_refused(tmp_path):
    data = raw(REFERENCE)
    del data["backstop"]["annual_cap_by_level"]["city"]
    message = refused(write(tmp_path, "340421-2024", data))
    assert "backstop:" in message and "city" in message


def test_a_file_named_after_another_policy_is_refused(tmp_path):
    path = write(tmp_path, "340421-2025", raw(REFERENCE))
    message = refused(path)
    assert str(path) in message
    assert "file is named 340421-2025 but holds 340421-2024" in message


def test_a_file_that_is_not_yaml_is_refused(tmp_path):
    path = tmp_path / "340421-2024.yaml"
    path.write_text("policy: [unclosed\n", encoding="utf-8")
    message = refused(path)
    assert str(path) in message and "cannot be read as YAML" in message


# ------------------------------------------------------------------- round trip


@pytest.mark.parametrize("path", [REFERENCE, SECOND])
def test_a_policy_round_trips_through_dump_yaml_and_its_model(path):
    policy = load_policy(path)
    again = Policy.model_validate(yaml.safe_load(dump_policy(policy)))
    assert again == policy


@pytest.mark.parametrize("path", [REFERENCE, SECOND])
def test_a_dumped_policy_loads_from_its_own_file(tmp_path, path):
    policy = load_policy(path)
    copy = tmp_path / path.name
    copy.write_text(dump_policy(policy), encoding="utf-8")
    assert load_policy(copy) == policy


# ------------------------------------------------------------------- PolicyBook


def test_the_policy_book_picks_up_a_new_file_without_restart(tmp_path):
    (tmp_path / REFERENCE.name).write_text(REFERENCE.read_text(encoding="utf-8"), encoding="utf-8")
    book = PolicyBook(tmp_path, recheck_seconds=0)
    assert book.get("340421", 2024).policy == "340421-2024"
    assert book.get("150900", 2024) is None
    (tmp_path / SECOND.name).write_text(SECOND.read_text(encoding="utf-8"), encoding="utf-8")
    assert book.get("150900", 2024).policy == "150900-2024"
    assert book.by_id("150900-2024") == load_policy(SECOND)
    assert [p.policy for p in book.all()] == ["150900-2024", "340421-2024"]


def test_the_policy_book_picks_up_a_changed_file(tmp_path):
    data = raw(REFERENCE)
    path = write(tmp_path, "340421-2024", data)
    book = PolicyBook(tmp_path, recheck_seconds=0)
    data["serious_illness"]["threshold"] = 16000
    write(tmp_path, "340421-2024", data)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a visibly newer file
    assert book.get("340421", 2024).serious_illness.threshold == Decimal(16000)


def test_the_policy_book_keeps_the_old_version_when_a_changed_file_is_bad(tmp_path):
    data = raw(REFERENCE)
    path = write(tmp_path, "340421-2024", data)
    errors = []
    book = PolicyBook(tmp_path, recheck_seconds=0, on_error=errors.append)
    data["basic"]["inpatient"]["levels"]["county"]["ratio"] = 175
    write(tmp_path, "340421-2024", data)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert book.get("340421", 2024).basic.inpatient.levels["county"].ratio == Decimal(75)
    assert len(errors) == 1 and "basic.inpatient.levels.county.ratio" in errors[0]


def test_the_policy_book_forgets_a_removed_file(tmp_path):
    path = write(tmp_path, "340421-2024", raw(REFERENCE))
    book = PolicyBook(tmp_path, recheck_seconds=0)
    assert book.get("340421", 2024) is not None
    path.unlink()
    assert book.get("340421", 2024) is None


def test_the_policy_book_does_not_look_again_before_the_recheck_time(tmp_path):
    book = PolicyBook(tmp_path, recheck_seconds=3600)
    (tmp_path / SECOND.name).write_text(SECOND.read_text(encoding="utf-8"), encoding="utf-8")
    assert book.get("150900", 2024) is None
    book.reload()
    assert book.get("150900", 2024) is not None


# ------------------------------------------------------------------- the checker


def test_policy_check_exits_0_for_good_files(capsys):
    assert main([str(REFERENCE), str(SECOND)]) == 0
    out = capsys.readouterr().out
    assert "340421-2024" in out and "150900-2024" in out


def test_policy_check_exits_1_when_a_file_is_bad(tmp_path, capsys):
    data = raw(REFERENCE)
    data["basic"]["b_pre_self_pay"] = 110
    bad = write(tmp_path, "340421-2024", data)
    assert main([str(SECOND), str(bad)]) == 1
    assert "basic.b_pre_self_pay" in capsys.readouterr().err


def test_policy_check_exits_2_without_files(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_policy_check_runs_as_a_module(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'libs'}{os.pathsep}{ROOT}"}
    good = subprocess.run([sys.executable, "-m", "medsettle.policy", str(REFERENCE), str(SECOND)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert good.returncode == 0, good.stderr
    (tmp_path / "150900-2024.yaml").write_text("policy: 150900-2024\n", encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "medsettle.policy", str(tmp_path / "150900-2024.yaml")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert bad.returncode == 1
    assert "150900-2024.yaml" in bad.stderr and "Field required" in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "medsettle.policy"], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=60)
    assert usage.returncode == 2
