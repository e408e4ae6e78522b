"""A second source for the same homicides: forensic medicine beside the observatories (issue 12).

Panama: IMELCF's demo file (deployments/pa/demo/seed.py, seed_forensic) is derived from the
victims of the observatories' demo files, with differences planted and listed by
forensic_differences; it goes through the real pipeline (drop folder, profile, validation,
merge) into a SQLite warehouse. Guatemala: Mixco's January 2024 homicide register
(tests/fixtures/gt/mixco_homicidios_2024_01.csv, written by make_forensic_fixture.py) counts two
victims fewer than INACIF's national file for Mixco (0108).
"""

import importlib.util
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.submission import check_file, process_submission
from obsx.warehouse import reference
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import record_tables
from tests.conftest import TODAY, process_inboxes, sqlite_warehouse

GT_FIXTURES = Path(__file__).parent / "fixtures" / "gt"


def _homicides(engine, codes) -> dict[tuple[str, str], int]:
    """Victims of ICCS 0101 merged for these contributors, by (district, month)."""
    t = record_tables("incidents").current.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.district_code, t.period_month, sa.func.sum(t.victim_count))
            .where(t.observatory_code.in_(codes), t.crime_code == "0101")
            .group_by(t.district_code, t.period_month)
        ).all()
    return {(d, m): n for d, m, n in rows}


@pytest.fixture(scope="module")
def demo():
    return current_deployment().demo()


@pytest.fixture(scope="module")
def manifest(demo):
    return demo.forensic_differences(2025)


@pytest.fixture(scope="module")
def imelcf(tmp_path_factory, demo):
    root = tmp_path_factory.mktemp("imelcf")
    engine = sqlite_warehouse(root)
    path = demo.seed_forensic(root, 2025)
    return engine, path, process_inboxes(root, engine, ["pa_imelcf"])


def test_the_necropsy_file_is_accepted_whole_through_its_profile(imelcf, manifest):
    engine, path, outcomes = imelcf
    assert path.name == "necropsias_homicidio_2025.csv" == manifest["file"]
    assert path.parent.parts[-3:] == ("dropzone", "pa_imelcf", "inbox")
    (outcome,) = outcomes
    assert (outcome.dataset, outcome.status) == ("incidents", "accepted")
    assert outcome.counts["rows_inserted"] == manifest["victims"]["imelcf"] == 415
    assert outcome.counts.get("rows_rejected", 0) == 0
    t = record_tables("incidents").current.c
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(t.crime_code, t.count_unit, t.victim_sex, t.weapon).where(
                t.observatory_code == "pa_imelcf"
            )
        ).all()
    assert {row.crime_code for row in stored} == {"0101"}
    assert {row.count_unit for row in stored} == {"VICTIMS"}
    assert {row.victim_sex for row in stored} <= {"M", "F"}
    assert {row.weapon for row in stored} <= {"FIREARM", "SHARP", "BLUNT", "OTHER"}


def test_victims_per_district_and_month_are_what_the_manifest_plants(imelcf, manifest):
    engine, _, _ = imelcf
    merged = _homicides(engine, ["pa_imelcf"])
    counts = manifest["counts"]
    assert merged == {
        (d, m): n["imelcf"]
        for d, months in counts.items()
        for m, n in months.items()
        if n["imelcf"]
    }
    # IMELCF = observatory + only IMELCF - only observatory, and the recoded victim moved
    expected = Counter(
        {(d, m): n["observatory"] for d, months in counts.items() for m, n in months.items()}
    )
    kinds = Counter(x["kind"] for x in manifest["differences"])
    assert [kinds[k] for k in ("only_imelcf", "only_observatory", "recoded", "ambiguous")] == [
        3,
        2,
        1,
        1,
    ]
    for x in manifest["differences"]:
        here = (x["district"], x["month"])
        if x["kind"] == "only_imelcf":
            expected[here] += 1
        elif x["kind"] == "only_observatory":
            expected[here] -= 1
        elif x["kind"] == "recoded":
            expected[here] -= 1
            expected[(x["imelcf_district"], x["month"])] += 1
    assert merged == {cell: n for cell, n in expected.items() if n}
    assert sum(merged.values()) == manifest["victims"]["observatories"] + 3 - 2 == 415


def test_the_planted_differences_are_where_the_manifest_says(imelcf, manifest):
    engine, _, _ = imelcf
    t = record_tables("incidents").current.c
    with engine.connect() as conn:
        imelcf = {
            r.incident_id: r
            for r in conn.execute(
                sa.select(
                    t.incident_id, t.district_code, t.occurred_on, t.victim_sex, t.victim_age
                ).where(t.observatory_code == "pa_imelcf")
            )
        }
    by_kind: dict[str, list] = {}
    for x in manifest["differences"]:
        by_kind.setdefault(x["kind"], []).append(x)
    (recoded,) = by_kind["recoded"]
    assert (recoded["district"], recoded["imelcf_district"]) == ("0805", "0804")
    assert imelcf[recoded["imelcf_id"]].district_code == "0804"
    only = by_kind["only_imelcf"]
    assert len({x["district"] for x in only}) == len({x["month"] for x in only}) == 3
    for x in only:
        assert imelcf[x["imelcf_id"]].district_code == x["district"]
    (pair,) = by_kind["ambiguous"]
    a, b = (imelcf[i] for i in pair["imelcf_ids"])
    assert a.occurred_on == b.occurred_on and str(a.occurred_on)[:10] == pair["date"]
    assert a.district_code == b.district_code == pair["district"]
    assert a.victim_sex == b.victim_sex == pair["sex"]
    assert abs(pair["observatory_ages"][0] - pair["observatory_ages"][1]) <= 2
    assert a.victim_age == b.victim_age == pair["imelcf_ages"][0]  # as near to one as the other
    for x in by_kind["date_shift"]:
        assert str(imelcf[x["imelcf_id"]].occurred_on)[:10] == x["imelcf_date"]
        assert x["imelcf_date"][:7] == x["date"][:7]  # a day later, never another month
    for x in by_kind["age"]:
        assert (
            imelcf[x["imelcf_id"]].victim_age
            == x["imelcf_age"]
            == x["age"] + (1 if x["imelcf_age"] > x["age"] else -1)
        )
    both = manifest["victims"]["observatories"] - 2
    assert 0.13 <= len(by_kind["date_shift"]) / both <= 0.16  # about 15%
    assert 0.09 <= len(by_kind["age"]) / both <= 0.11  # about 10%


def test_the_manifests_observatory_counts_are_what_the_pipeline_accepts(tmp_path, demo, manifest):
    """The observatories' own homicides, as the pipeline merges seed_demo's incident files (rows
    the demo spoils on purpose are rejected, and the manifest leaves them out too)."""
    engine = sqlite_warehouse(tmp_path)
    demo.seed_demo(tmp_path)
    zone = Dropzone(tmp_path, observatories())
    for code in demo.STYLES:
        for path in sorted(zone.inbox(code).glob("incidentes_*")):
            key = partition_key(code, file_sha256(path))
            process_submission(key, zone, engine, observatories(), TODAY)
    merged = _homicides(engine, list(demo.STYLES))
    assert merged == {
        (d, m): n["observatory"]
        for d, months in manifest["counts"].items()
        for m, n in months.items()
        if n["observatory"]
    }
    # seed_demo sends IMELCF's file too: the same bytes as seed_forensic's
    sent = tmp_path / "dropzone" / "pa_imelcf" / "inbox" / "necropsias_homicidio_2025.csv"
    assert sent.read_bytes() == demo.forensic_csv(2025)


def test_the_file_and_its_manifest_are_the_same_on_every_call(tmp_path, demo, manifest):
    first = demo.seed_forensic(tmp_path / "a", 2025).read_bytes()
    second = demo.seed_forensic(tmp_path / "b", 2025).read_bytes()
    assert first == second == demo.forensic_csv(2025)
    assert demo.forensic_differences(2025) == manifest
    assert first.startswith("N° necropsia;Fecha de defunción;".encode("latin-1"))


# --------------------------------------------------------------------------- Guatemala


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "make_forensic_fixture", GT_FIXTURES / "make_forensic_fixture.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mixco_counts_two_homicides_fewer_than_inacif_in_january_2024(monkeypatch, tmp_path):
    monkeypatch.setenv("OBSX_DEPLOYMENT", "gt")
    contributors = reference.observatories()
    generator = _load_generator()
    name = "mixco_homicidios_2024_01.csv"
    data = (GT_FIXTURES / name).read_bytes()
    figures = generator.write_mixco_homicidios(tmp_path / name)
    assert (tmp_path / name).read_bytes() == data  # the committed file is the generator's

    gt_today = TODAY.replace(year=2026)
    mixco, _ = check_file(data, name, contributors["gt_mixco"], None, gt_today)
    assert (mixco.status, len(mixco.accepted), mixco.rows_rejected) == ("accepted", 11, 0)
    assert set(mixco.accepted["district_code"]) == {"0108"}
    assert set(mixco.accepted["crime_code"]) == {"0101"}
    assert set(mixco.accepted["occurred_on"].dt.strftime("%Y-%m")) == {"2024-01"}

    national = "homicidios_nacional_2024_01.csv"
    inacif, _ = check_file(
        (GT_FIXTURES / national).read_bytes(), national, contributors["gt_inacif"], None, gt_today
    )
    by_place = inacif.accepted.groupby("district_code")["victim_count"].sum()
    by_sex = (
        inacif.accepted[inacif.accepted["district_code"] == "0108"]
        .groupby("victim_sex")["victim_count"]
        .sum()
        .to_dict()
    )
    assert by_place["0108"] == 13 and by_sex == {"M": 11, "F": 2}
    assert mixco.accepted["victim_sex"].value_counts().to_dict() == {"M": 9, "F": 2}
    assert by_place["0108"] - len(mixco.accepted) == figures["inacif_minus_mixco"] == 2

    # The five January homicides of Mixco's all-crimes sample are the same records (ids and
    # values): sent together, the two Mixco files do not count them twice.
    sample = "mixco_incidentes_2024.csv"
    crimes, _ = check_file(
        (GT_FIXTURES / sample).read_bytes(), sample, contributors["gt_mixco"], None, gt_today
    )
    january = crimes.accepted[
        (crimes.accepted["crime_code"] == "0101")
        & (crimes.accepted["occurred_on"].dt.strftime("%Y-%m") == "2024-01")
    ]
    columns = ["incident_id", "occurred_on", "victim_sex", "victim_age"]
    shared = mixco.accepted[mixco.accepted["incident_id"].isin(january["incident_id"])]
    assert len(january) == len(shared) == 5
    assert (
        shared[columns].sort_values("incident_id").reset_index(drop=True).to_dict()
        == january[columns].sort_values("incident_id").reset_index(drop=True).to_dict()
    )
