"""Policy files: loading, refusing bad ones with file, field and reason,
round-tripping, hot reload and the ``python -m medsettle.policy`` checker."""

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal

import pytest
import yaml

from medsettle.policy import (
    SEALS,
    Policy,
    PolicyBook,
    PolicyError,
    dump_policy,
    fingerprint,
    load_policy,
    main,
    read_seals,
)
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


def touch_later(path):
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a visibly newer file


def test_a_revision_changed_in_place_is_refused_and_the_first_content_stays_in_force(tmp_path):
    data = raw(REFERENCE)
    path = write(tmp_path, "340421-2024", data)
    errors = []
    book = PolicyBook(tmp_path, recheck_seconds=0, on_error=errors.append)
    data["serious_illness"]["threshold"] = 16000
    write(tmp_path, "340421-2024", data)
    touch_later(path)
    assert book.get("340421", 2024).serious_illness.threshold == Decimal(15000)
    assert book.by_id("340421-2024").serious_illness.threshold == Decimal(15000)
    assert len(errors) == 1
    assert str(path) in errors[0] and "changed in place" in errors[0] and "new revision" in errors[0]
    book.reload()
    assert len(errors) == 1  # reported once, not at every look


def test_a_revision_touched_but_not_changed_is_not_refused(tmp_path):
    path = write(tmp_path, "340421-2024", raw(REFERENCE))
    errors = []
    book = PolicyBook(tmp_path, recheck_seconds=0, on_error=errors.append)
    touch_later(path)
    assert book.get("340421", 2024).policy == "340421-2024"
    assert errors == []


def test_the_policy_book_refuses_a_bad_new_file_and_keeps_the_others(tmp_path):
    write(tmp_path, "340421-2024", raw(REFERENCE))
    errors = []
    book = PolicyBook(tmp_path, recheck_seconds=0, on_error=errors.append)
    data = raw(SECOND)
    data["basic"]["inpatient"]["levels"]["county"]["ratio"] = 175
    write(tmp_path, "150900-2024", data)
    assert book.get("150900", 2024) is None
    assert book.get("340421", 2024) is not None
    assert len(errors) == 1 and "basic.inpatient.levels.county.ratio" in errors[0]


def test_the_policy_book_keeps_the_old_version_when_a_changed_file_is_bad(tmp_path):
    data = raw(REFERENCE)
    path = write(tmp_path, "340421-2024", data)
    errors = []
    book = PolicyBook(tmp_path, recheck_seconds=0, on_error=errors.append)
    data["basic"]["inpatient"]["levels"]["county"]["ratio"] = 175
    write(tmp_path, "340421-2024", data)
    touch_later(path)
    assert book.get("340421", 2024).basic.inpatient.levels["county"].ratio == Decimal(75)
    assert len(errors) == 1 and "changed in place" in errors[0]


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


# ------------------------------------------------------------------- revisions


def revision(base, policy_id, effective_from, **changes):
    data = raw(base)
    data["policy"] = policy_id
    if effective_from is not None:
        data["effective_from"] = effective_from
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    return data


def test_a_later_revision_is_in_force_from_its_effective_date_and_each_has_its_own_id(tmp_path):
    write(tmp_path, "340421-2024", raw(REFERENCE))
    write(tmp_path, "340421-2024-r2", revision(REFERENCE, "340421-2024-r2", "2024-07-01",
                                               serious_illness__threshold=12000))
    book = PolicyBook(tmp_path, recheck_seconds=0)
    assert book.get("340421", dt.date(2024, 1, 1)).policy == "340421-2024"
    assert book.get("340421", dt.date(2024, 6, 30)).policy == "340421-2024"
    assert book.get("340421", dt.date(2024, 7, 1)).policy == "340421-2024-r2"
    assert book.get("340421", dt.date(2024, 12, 31)).policy == "340421-2024-r2"
    assert book.get("340421", dt.date(2025, 1, 1)) is None
    assert book.by_id("340421-2024").serious_illness.threshold == Decimal(15000)
    assert book.by_id("340421-2024-r2").serious_illness.threshold == Decimal(12000)
    assert [p.policy for p in book.revisions("340421", 2024)] == ["340421-2024", "340421-2024-r2"]
    assert book.get("340421", 2024).policy == "340421-2024"  # a year alone: its earliest revision
    assert book.by_id("340421-2024-r2").revision == 2 and book.by_id("340421-2024").revision == 1


def test_of_two_revisions_from_the_same_day_the_higher_number_is_in_force(tmp_path):
    write(tmp_path, "340421-2024", raw(REFERENCE))
    write(tmp_path, "340421-2024-r2", revision(REFERENCE, "340421-2024-r2", "2024-07-01"))
    write(tmp_path, "340421-2024-r3", revision(REFERENCE, "340421-2024-r3", "2024-07-01",
                                               serious_illness__threshold=11000))
    book = PolicyBook(tmp_path, recheck_seconds=0)
    assert book.get("340421", dt.date(2024, 7, 1)).policy == "340421-2024-r3"
    assert book.by_id("340421-2024-r2") is not None  # what was settled under it is still looked up


def test_before_the_first_revisions_effective_date_no_policy_is_in_force(tmp_path):
    write(tmp_path, "340421-2024", revision(REFERENCE, "340421-2024", "2024-03-01"))
    book = PolicyBook(tmp_path, recheck_seconds=0)
    assert book.get("340421", dt.date(2024, 2, 29)) is None
    assert book.get("340421", dt.date(2024, 3, 1)).policy == "340421-2024"


def test_a_new_revision_is_found_by_id_at_once_without_waiting_for_the_recheck(tmp_path):
    write(tmp_path, "340421-2024", raw(REFERENCE))
    book = PolicyBook(tmp_path, recheck_seconds=3600)
    write(tmp_path, "340421-2024-r2", revision(REFERENCE, "340421-2024-r2", "2024-07-01"))
    assert book.by_id("340421-2024-r2").policy == "340421-2024-r2"  # eligibility chose it: a stage must find it


@pytest.mark.parametrize(("policy_id", "effective_from", "reason"), [
    ("340421-2024-r2", None, "needs effective_from"),
    ("340421-2024-r1", "2024-07-01", "region-year-rN with N from 2"),
    ("340421-2025-r2", "2024-07-01", "must be named region-year"),
    ("340421-2024-r2", "2025-01-01", "effective_from 2025-01-01 is not in 2024"),
    ("340421-2024-v2", "2024-07-01", "String should match pattern"),
])
def test_a_badly_named_or_dated_revision_is_refused(tmp_path, policy_id, effective_from, reason):
    message = refused(write(tmp_path, policy_id, revision(REFERENCE, policy_id, effective_from)))
    assert reason in message


def test_a_revision_round_trips_with_its_effective_date(tmp_path):
    path = write(tmp_path, "340421-2024-r2", revision(REFERENCE, "340421-2024-r2", "2024-07-01"))
    policy = load_policy(path)
    assert policy.effective_from == dt.date(2024, 7, 1) == policy.in_force_from
    assert Policy.model_validate(yaml.safe_load(dump_policy(policy))) == policy


# ------------------------------------------------------------------- seals


def test_every_shipped_policy_file_is_sealed_and_matches_its_fingerprint():
    seals = read_seals(POLICIES)
    shipped = sorted(p.name for p in POLICIES.glob("*.yaml"))
    assert sorted(seals) == shipped, "a shipped revision without a seal: python -m medsettle.policy --seal FILE"
    for name in shipped:
        assert seals[name] == fingerprint((POLICIES / name).read_bytes()), (
            f"{name} was changed in place; publish the change as a new revision")


def test_a_sealed_file_changed_while_nothing_ran_is_refused_at_start(tmp_path):
    path = write(tmp_path, "340421-2024", raw(REFERENCE))
    assert main(["--seal", str(path)]) == 0
    assert read_seals(tmp_path) == {"340421-2024.yaml": fingerprint(path.read_bytes())}
    data = raw(REFERENCE)
    data["basic"]["inpatient"]["levels"]["county"]["ratio"] = 80
    write(tmp_path, "340421-2024", data)
    errors = []
    book = PolicyBook(tmp_path, recheck_seconds=0, on_error=errors.append)
    assert book.get("340421", dt.date(2024, 3, 10)) is None  # no claim is settled on the changed figures
    assert len(errors) == 1 and "changed in place" in errors[0] and SEALS in errors[0]
    assert main([str(path)]) == 1  # make policy-check says so too


def test_sealing_twice_records_one_fingerprint(tmp_path, capsys):
    path = write(tmp_path, "340421-2024", raw(REFERENCE))
    assert main(["--seal", str(path)]) == 0
    assert main(["--seal", str(path)]) == 0
    assert (tmp_path / SEALS).read_text(encoding="utf-8").count("340421-2024.yaml") == 1
    assert "sealed" in capsys.readouterr().out


def test_a_seal_file_that_is_not_sha256sum_format_is_reported(tmp_path):
    write(tmp_path, "340421-2024", raw(REFERENCE))
    (tmp_path / SEALS).write_text("not a fingerprint\n", encoding="utf-8")
    errors = []
    book = PolicyBook(tmp_path, recheck_seconds=0, on_error=errors.append)
    assert book.get("340421", 2024) is not None
    assert len(errors) == 1 and "line 1" in errors[0]


# ------------------------------------------------------------------- the checker


def test_policy_check_exits_0_for_good_files(capsys):
    assert main([str(REFERENCE), str(SECOND)]) == 0
    out = capsys.readouterr().out
    assert "340421-2024" in out and "150900-2024" in out


def test_policy_check_validates_a_revision_file_and_says_when_it_is_in_force(tmp_path, capsys):
    good = write(tmp_path, "340421-2024-r2", revision(REFERENCE, "340421-2024-r2", "2024-07-01"))
    undated = write(tmp_path, "340421-2024-r3", revision(REFERENCE, "340421-2024-r3", None))
    assert main([str(good)]) == 0
    out = capsys.readouterr().out
    assert "340421-2024-r2" in out and "in force from 2024-07-01" in out
    assert main([str(undated)]) == 1
    assert "needs effective_from" in capsys.readouterr().err


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
