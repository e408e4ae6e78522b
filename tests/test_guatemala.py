"""The Guatemala deployment on real INE/PNC files, read through profiles alone.

The figures asserted are those SOURCES.md gives for the unedited files (tests/fixtures/gt/pnc/);
the generated shapes (national file listing only municipios with events, 8-digit place codes,
date in parts, months as columns) are in tests/fixtures/gt/ with their expected figures.
"""

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from obsx.indicators.engine import compute_indicators
from obsx.intake.contract import load_contract
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.profiles import ProfileError, contributor_profiles, parse_profile
from obsx.intake.reading import read_submission
from obsx.intake.submission import check_file, process_submission
from obsx.intake.validation import apply_profile
from obsx.publication.lineage import explain
from obsx.warehouse import reference
from obsx.warehouse.deployment import DEPLOYMENTS_DIR, current_deployment
from obsx.warehouse.migrations import upgrade
from obsx.warehouse.tables import (
    declared_coverage,
    get_engine,
    indicator_value,
    population,
    record_tables,
)
from tests.attacker import withstands

FIXTURES = Path(__file__).parent / "fixtures" / "gt"
CATALOGUE = Path(__file__).parents[1] / "indicators" / "catalogue.yaml"
PNC = FIXTURES / "pnc"
TODAY = dt.date(2026, 11, 25)
NATIONAL_POPULATION_2018 = 14_901_286  # INE census 2018, the 340 municipios


@pytest.fixture(autouse=True)
def guatemala(monkeypatch):
    monkeypatch.setenv("OBSX_DEPLOYMENT", "gt")


@pytest.fixture(scope="module")
def contributors():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OBSX_DEPLOYMENT", "gt")
        return reference.observatories()


def check(name: str, contributor: str, contributors, folder: Path = FIXTURES):
    return check_file((folder / name).read_bytes(), name, contributors[contributor], None, TODAY)


def test_geography_is_read_from_ines_own_code_list():
    geography = reference.read_geography()
    levels = geography["geo_level"].value_counts().to_dict()
    assert levels == {"national": 1, "department": 22, "municipality": 340}
    by_code = geography.set_index("geo_code")
    assert by_code.loc["0108", ["name", "parent_code"]].tolist() == ["Mixco", "01"]
    assert by_code.loc["01", "parent_code"] == "GT"  # INE writes 1; its parent is the country
    assert by_code.loc["2217", "name"] == "Quesada"


def test_ines_workbook_is_loaded_once_then_skipped_while_unchanged(tmp_path, monkeypatch):
    from assets.reference import _geography, _population

    engine = get_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    upgrade(engine)
    first = _geography(engine)
    assert first["municipality units"] == 340 and first["rows"] == 363
    assert "rows" in _population(engine)
    reads = []
    monkeypatch.setattr(reference, "read_geography", lambda: reads.append(1))
    monkeypatch.setattr(reference, "read_population", lambda: reads.append(1))
    again = _geography(engine), _population(engine)  # the same files: neither is read
    assert reads == [] and again[0]["rows"] == 363 and "unchanged since" in again[1]
    with engine.connect() as conn:
        mixco = conn.scalar(sa.text("SELECT name FROM geography WHERE geo_code = '0108'"))
    assert mixco == "Mixco"


def test_population_is_the_2018_census_by_municipio():
    population = reference.read_population()
    assert len(population) == 340
    assert population["population"].sum() == NATIONAL_POPULATION_2018
    assert population.set_index("geo_code").loc["0108", "population"] == 465_773


def test_contributors_are_checked_against_the_geography_with_their_line(tmp_path, monkeypatch):
    deployment = current_deployment()
    registry = tmp_path / "contributors.yaml"
    registry.write_text(
        'contributors:\n  - code: gt_x\n    name: X\n    units: ["0108", "9999"]\n',
        encoding="utf-8",
    )
    broken = type(deployment)(**{**deployment.__dict__, "contributors_path": registry})
    with pytest.raises(ValueError, match=r"contributors.yaml:4: gt_x: units 9999 are not"):
        reference.observatories(broken)


def test_pnc_2023_workbook_reproduces_the_published_figures(contributors):
    result, info = check("Detenidos2023.xlsx", "gt_pnc", contributors, PNC)
    assert info["profile"].endswith("gt_pnc/detenidos_excel.yaml")
    assert (result.status, result.rows_read, len(result.accepted)) == ("accepted", 45_278, 45_278)
    accepted = result.accepted
    assert accepted["sex"].value_counts().to_dict() == {"M": 41_092, "F": 4_186}
    assert accepted["offence_group"].value_counts().to_dict() == {
        "OTHER": 42_544,
        "PROPERTY": 1_990,
        "INJURIES": 304,
        "EXTORTION": 262,
        "HOMICIDE": 163,
        "LIBERTY": 15,
    }
    assert accepted["unit_code"].nunique() == 340
    assert accepted["age"].isna().sum() == 750  # "Ignorada" is no age, not a rejected row
    # "Guatemala / Palencia" is 0105; PNC's "Barrillas" is INE's Barillas (1326)
    first = accepted.iloc[0]
    assert (first["arrest_id"], first["unit_code"]) == ("2023-1", "0101")
    assert str(first["arrested_on"].date()) == "2023-01-01"


def test_pnc_first_quarter_2024_reproduces_the_published_figures(contributors):
    result, _ = check("Detenidos1T2024.xlsx", "gt_pnc", contributors, PNC)
    accepted = result.accepted
    assert (result.status, len(accepted)) == ("accepted", 10_874)
    assert accepted["sex"].value_counts().to_dict() == {"M": 9_844, "F": 1_030}
    assert (accepted["offence_group"] == "HOMICIDE").sum() == 45
    assert accepted["unit_code"].nunique() == 327
    assert accepted["arrested_on"].dt.month.unique().tolist() == [1, 2, 3]


def test_pnc_2021_spss_is_read_through_its_codes(contributors):
    result, info = check("Detenidos2021.sav", "gt_pnc", contributors, PNC)
    assert info["profile"].endswith("gt_pnc/detenidos_spss.yaml")
    accepted = result.accepted
    assert (result.status, len(accepted)) == ("accepted", 62_203)
    assert accepted["sex"].value_counts().to_dict() == {"M": 56_827, "F": 5_376}
    assert (accepted["offence_group"] == "HOMICIDE").sum() == 201
    assert accepted["unit_code"].str.fullmatch(r"\d{4}").all()  # 101.0 -> 0101


def test_a_national_file_listing_only_municipios_with_victims(contributors):
    result, _ = check("homicidios_nacional_2024_01.csv", "gt_inacif", contributors)
    accepted = result.accepted
    assert (result.status, len(accepted)) == ("accepted", 142)
    assert accepted["victim_count"].sum() == 250
    by_sex = accepted.groupby("victim_sex")["victim_count"].sum().to_dict()
    assert by_sex == {"M": 215, "F": 32, "NE": 3}
    assert set(accepted["crime_code"]) == {"0101"}  # a constant: the file is all homicides
    assert accepted.groupby("district_code")["victim_count"].sum()["0108"] == 13


def test_eight_digit_place_codes_give_their_municipio(contributors):
    result, _ = check("homicidios_codigo_lugar_2024.xlsx", "gt_pnc", contributors)
    accepted = result.accepted
    assert (result.status, len(accepted)) == ("accepted", 400)
    departments = accepted["district_code"].str[:2].value_counts().to_dict()
    assert departments == {"01": 254, "05": 81, "16": 65}  # 1060129 is 01060129: in 0106
    assert accepted["crime_code"].value_counts()["0101"] == 141


def test_date_from_year_month_name_and_day_columns(contributors):
    result, _ = check("mixco_incidentes_2024.csv", "gt_mixco", contributors)
    accepted = result.accepted
    assert (result.status, len(accepted)) == ("accepted", 300)
    months = accepted["occurred_on"].dt.month.value_counts().sort_index().tolist()
    assert months == [30, 21, 30, 25, 30, 27, 17, 22, 20, 34, 18, 26]  # "Setiembre" is 9
    assert set(accepted["district_code"]) == {"0108"}


def test_wide_months_with_place_names_homonyms_and_bad_cells(contributors):
    result, _ = check("wide_meses_2024_small.csv", "gt_pnc", contributors)
    # 2,700 non-blank cells; 390 in rows naming no municipio, 462 invalid cells: 1,848 records
    assert (result.rows_read, len(result.accepted), result.rows_rejected) == (2_700, 1_848, 852)
    assert result.accepted["victim_count"].sum() == 977
    codes = {p.code for p in result.problems}
    assert {"unknown-place", "type-integer", "min"} <= codes
    # San José exists in Escuintla (0509) and Petén (1702): the departamento tells them apart
    assert {"0509", "1702", "0109", "1202"} <= set(result.accepted["district_code"])
    assert result.accepted.index.max() <= 241  # rows as the spreadsheet shows them
    assert result.accepted["incident_id"].str.len().max() <= 64  # long ids are hashed
    unknown = next(p for p in result.problems if p.code == "unknown-place")
    assert unknown.message("es").startswith("No se encontró el lugar «Municipio Desconocido»")


@pytest.fixture
def gt_warehouse(warehouse_url, monkeypatch):
    monkeypatch.setenv("OBSX_DEPLOYMENT", "gt")
    engine = get_engine(warehouse_url)
    upgrade(engine)
    reference.load_geography(engine, reference.read_geography())
    reference.load_population(engine, reference.read_population())
    reference.load_observatories(engine)
    return engine


def submit(engine, root: Path, contributor: str, path: Path):
    registry = reference.observatories()
    zone = Dropzone(root, registry)
    zone.ensure_folders()
    shutil.copy(path, zone.inbox(contributor) / path.name)
    key = partition_key(contributor, file_sha256(zone.inbox(contributor) / path.name))
    return process_submission(key, zone, engine, registry, TODAY)


def national(engine, code, period, disaggregation=""):
    v = indicator_value.c
    with engine.connect() as conn:
        return conn.execute(
            sa.select(v.numerator, v.denominator, v.value).where(
                v.indicator_code == code,
                v.geo_level == "national",
                v.geo_code == "GT",
                v.period == period,
                v.disaggregation == disaggregation,
            )
        ).one_or_none()


def test_a_declared_complete_file_makes_unlisted_municipios_true_zeros(gt_warehouse, tmp_path):
    outcome = submit(
        gt_warehouse, tmp_path, "gt_inacif", FIXTURES / "homicidios_nacional_2024_01.csv"
    )
    assert outcome.status == "accepted"
    compute_indicators(gt_warehouse)
    rate = national(gt_warehouse, "SDG_16_1_1", "2024-01")
    assert (rate.numerator, rate.denominator) == (250, NATIONAL_POPULATION_2018)
    assert rate.value == pytest.approx(250 * 100_000 / NATIONAL_POPULATION_2018)
    assert national(gt_warehouse, "REPORTING_COVERAGE", "2024-01").value == pytest.approx(100)

    # Without the declaration, the 220 municipios not listed are "not reported": the rate would
    # divide by the population of the 120 listed only, and come out higher.
    with gt_warehouse.begin() as conn:
        conn.execute(declared_coverage.delete())
    compute_indicators(gt_warehouse)
    partial = national(gt_warehouse, "SDG_16_1_1", "2024-01")
    assert partial.numerator == 250 and partial.denominator < NATIONAL_POPULATION_2018
    assert national(gt_warehouse, "REPORTING_COVERAGE", "2024-01").value < 100


def test_real_arrests_reach_the_warehouse_and_a_rate_per_offence_group(gt_warehouse, tmp_path):
    outcome = submit(gt_warehouse, tmp_path, "gt_pnc", PNC / "Detenidos1T2024.xlsx")
    assert (outcome.dataset, outcome.status, outcome.counts["rows_inserted"]) == (
        "arrests",
        "accepted",
        10_874,
    )
    compute_indicators(gt_warehouse)
    total = national(gt_warehouse, "ARRESTS_RATE", "2024")
    # the census (2018) is the latest population before 2024; PNC covers the whole country
    assert (total.numerator, total.denominator) == (10_874, NATIONAL_POPULATION_2018)
    assert national(gt_warehouse, "ARRESTS_RATE", "2024", "offence_group=HOMICIDE").numerator == 45
    v = indicator_value.c
    with gt_warehouse.connect() as conn:
        levels = dict(
            conn.execute(
                sa.select(v.geo_level, sa.func.count())
                .where(
                    v.indicator_code == "ARRESTS_RATE", v.period == "2024", v.disaggregation == ""
                )
                .group_by(v.geo_level)
            ).all()
        )
        held = conn.scalar(sa.select(sa.func.count()).select_from(record_tables("arrests").current))
    assert levels == {"national": 1, "department": 22, "municipality": 340}
    assert held == 10_874
    # on the real file: the homicide arrests trace to their rows of the PNC workbook, and the
    # quarter's small municipal cells are withheld with whatever would reveal them
    found = explain(gt_warehouse, "ARRESTS_RATE", "GT", "2024", "offence_group=HOMICIDE")
    assert len(found.records) == 45
    assert set(found.records["file_name"]) == {"Detenidos1T2024.xlsx"}
    assert found.records["source_row"].notna().all()
    with gt_warehouse.connect() as conn:
        status = dict(
            conn.execute(
                sa.select(v.conf_status, sa.func.count())
                .where(v.indicator_code == "ARRESTS_RATE", v.geo_level == "municipality")
                .group_by(v.conf_status)
            ).all()
        )
    assert status["C"] > 0 and status["D"] > 0 and status["F"] > 0
    # and an intruder with the published table and a linear program learns nothing more
    found = withstands(gt_warehouse, CATALOGUE)
    assert (found["pinned"], found["narrow"], found["published"]) == ([], [], [])
    assert found["small"] > 100


def test_rollup_follows_the_hierarchy_valid_in_each_period():
    deployment = current_deployment()
    frame = pd.DataFrame(
        [
            ("GT", "national", None, dt.date(1900, 1, 1), None),
            ("01", "department", "GT", dt.date(1900, 1, 1), None),
            ("02", "department", "GT", dt.date(1900, 1, 1), None),
            ("0199", "municipality", "01", dt.date(1900, 1, 1), dt.date(2019, 1, 1)),
            ("0199", "municipality", "02", dt.date(2019, 1, 1), None),
        ],
        columns=["geo_code", "geo_level", "parent_code", "valid_from", "valid_to"],
    )
    rows = reference.rollup(frame, deployment)
    rows = rows.astype(object).where(rows.notna(), None)
    unit = rows[(rows["unit_code"] == "0199") & (rows["geo_level"] == "department")]
    assert unit[["geo_code", "from_month", "to_month"]].values.tolist() == [
        ["01", "1900-01", "2019-01"],
        ["02", "2019-01", None],
    ]
    # an area rolls up from its own level (records a source placed there), never below it
    area = rows[rows["unit_code"] == "02"]
    assert area[["geo_level", "geo_code", "from_month"]].values.tolist() == [
        ["national", "GT", "1900-01"],
        ["department", "02", "1900-01"],
    ]


def write_profile(tmp_path, text: str) -> Path:
    folder = tmp_path / "profiles" / "gt_mixco"
    folder.mkdir(parents=True)
    path = folder / "incidentes.yaml"
    path.write_text(text, encoding="utf-8")
    return tmp_path / "profiles"


MIXCO = DEPLOYMENTS_DIR / "gt" / "profiles" / "gt_mixco" / "incidentes.yaml"


@pytest.mark.parametrize(
    ("change", "line", "complaint"),
    [
        (("  occurred_on: {year: Año,", "  occurred_on: {yaer: Año,"), 8, "fit no kind"),
        (('district_code: {value: "0108"}', 'distrito: {value: "0108"}'), 9, "no field of"),
        (('Extorsión: "02051"', 'Extorsión: "0205x"'), 11, "is not a code"),
    ],
)
def test_a_profile_mistake_is_named_with_its_file_and_line_when_loaded(
    tmp_path, change, line, complaint
):
    text = MIXCO.read_text(encoding="utf-8")
    assert change[0] in text
    folder = write_profile(tmp_path, text.replace(*change))
    with pytest.raises(ProfileError, match=complaint) as refused:
        contributor_profiles("gt_mixco", {"incidents": load_contract("incidents")}, folder)
    assert f"incidentes.yaml:{line}:" in str(refused.value)


def test_a_misspelt_month_header_is_refused_when_the_profile_is_loaded():
    spec = {
        "unpivot": {
            "months": {"Enero": 1, "Febero": 2},
            "year": 2024,
            "date_field": "occurred_on",
            "value_field": "victim_count",
        }
    }
    with pytest.raises(ProfileError, match="'Febero' is not a month name"):
        parse_profile(spec, load_contract("incidents"))
    spec["unpivot"]["months"] = {"Enero": 1, "Marzo": 2}
    with pytest.raises(ProfileError, match="'Marzo' is month 3, not 2"):
        parse_profile(spec, load_contract("incidents"))


def test_a_wrong_column_in_a_profile_stops_the_file_before_any_row(tmp_path, contributors):
    text = MIXCO.read_text(encoding="utf-8").replace("{year: Año,", "{year: Anio,")
    folder = write_profile(tmp_path, text + "columns: {Zona vieja: victim_age}\n")
    deployment = current_deployment()
    moved = type(deployment)(**{**deployment.__dict__, "profiles_dir": folder})
    mixco = contributors["gt_mixco"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("obsx.intake.submission.current_deployment", lambda name=None: moved)
        result, _ = check("mixco_incidentes_2024.csv", "gt_mixco", {"gt_mixco": mixco})
    assert result.status == "rejected" and len(result.accepted) == 0
    errors = [p for p in result.problems if p.severity == "error"]
    assert [p.code for p in errors] == ["profile-column-missing"]  # no row-level noise
    assert errors[0].value == "Anio" and "incidentes.yaml:8" in errors[0].message("en")
    unused = [p for p in result.problems if p.code == "profile-column-unused"]
    assert [p.value for p in unused] == ["Zona vieja"]


def test_a_file_that_counts_cases_is_not_added_to_victims(gt_warehouse, tmp_path, monkeypatch):
    folder = tmp_path / "profiles"
    shutil.copytree(DEPLOYMENTS_DIR / "gt" / "profiles", folder)
    profile = folder / "gt_inacif" / "homicidios.yaml"
    text = profile.read_text(encoding="utf-8")
    profile.write_text(text.replace("derive:\n", "derive:\n  count_unit: {value: CASES}\n"))
    deployment = current_deployment()
    moved = type(deployment)(**{**deployment.__dict__, "profiles_dir": folder})
    monkeypatch.setattr("obsx.intake.submission.current_deployment", lambda name=None: moved)
    outcome = submit(
        gt_warehouse, tmp_path, "gt_inacif", FIXTURES / "homicidios_nacional_2024_01.csv"
    )
    assert outcome.status == "accepted"
    compute_indicators(gt_warehouse)
    # cases, not victims: no victim figure at all, rather than a victim count of 0
    for code in ("SDG_16_1_1", "HOMICIDE_COUNT", "INCIDENT_COUNT"):
        assert flagged(gt_warehouse, code, "2024-01") == (None, None, "not_available"), code
    # the cases are published as cases, over the whole country (the file declares it complete)
    cases = national(gt_warehouse, "HOMICIDE_CASE_RATE", "2024-01")
    assert (cases.numerator, cases.denominator) == (250, NATIONAL_POPULATION_2018)
    # a homicide register says nothing of other crimes' cases: no total of all cases
    assert flagged(gt_warehouse, "CASE_RATE", "2024-01")[2] == "not_available"
    assert flagged(gt_warehouse, "CASE_RATE", "2024", "iccs_section=04")[2] == "not_available"


def flagged(engine, code, period, disaggregation=""):
    """A national value's numerator, value and quality flag."""
    v = indicator_value.c
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.select(v.numerator, v.value, v.quality_flag).where(
                    v.indicator_code == code,
                    v.geo_level == "national",
                    v.period == period,
                    v.disaggregation == disaggregation,
                )
            ).one()
        )


def test_a_homicide_register_gives_no_other_crime_and_no_field_it_lacks(gt_warehouse, tmp_path):
    """INACIF's national count has no weapon, age or relationship column and counts homicides
    only: robbery, theft and extortion are not reported (not 0), nor are the firearm share, the
    youth share or femicide; SDG 16.1.1 is published, marked as one month of the year, divided
    by the 2018 census."""
    outcome = submit(
        gt_warehouse, tmp_path, "gt_inacif", FIXTURES / "homicidios_nacional_2024_01.csv"
    )
    assert outcome.status == "accepted"
    compute_indicators(gt_warehouse)
    for code in (
        "ROBBERY_RATE", "THEFT_RATE", "EXTORTION_RATE", "FIREARM_HOMICIDE_SHARE",
        "FIREARM_HOMICIDE_RATE", "FEMICIDE_RATE", "INCIDENT_COUNT",
    ):  # fmt: skip
        for period in ("2024-01", "2024"):
            assert flagged(gt_warehouse, code, period) == (None, None, "not_available"), code
    v = indicator_value.c
    with gt_warehouse.connect() as conn:
        zeros = conn.execute(
            sa.select(sa.func.count()).where(
                v.indicator_code.in_(["ROBBERY_RATE", "FIREARM_HOMICIDE_SHARE", "FEMICIDE_RATE"]),
                v.value == 0,
            )
        ).scalar()
        sdg = {
            r.period: r
            for r in conn.execute(
                sa.select(v.period, v.value, v.coverage, v.population_year).where(
                    v.indicator_code == "SDG_16_1_1",
                    v.geo_level == "national",
                    v.disaggregation == "",
                )
            )
        }
    assert zeros == 0  # at no level
    # the youth share is over victims of known age: none here, so no share at all
    with gt_warehouse.connect() as conn:
        youth = conn.execute(
            sa.select(sa.func.count()).where(
                v.indicator_code == "HOMICIDE_YOUTH_SHARE", v.value.is_not(None)
            )
        ).scalar()
    assert youth == 0
    assert sdg["2024-01"].coverage == pytest.approx(100)
    assert sdg["2024"].coverage == pytest.approx(100 / 12)  # January only
    assert sdg["2024"].population_year == 2018  # the census, carried forward
    # sex is in the file: the count of women is a figure
    assert flagged(gt_warehouse, "HOMICIDE_COUNT", "2024", "sex=F")[2] != "not_available"


def test_a_file_replayed_from_the_archive_is_read_through_the_profile_its_name_chose(
    gt_warehouse, tmp_path, monkeypatch
):
    folder = tmp_path / "profiles"
    (folder / "gt_mixco").mkdir(parents=True)
    mixco = MIXCO.read_text(encoding="utf-8")
    # Two profiles alike but for their file names: only the name tells them apart.
    (folder / "gt_mixco" / "a_otro.yaml").write_text(mixco + 'files: ["otro_*"]\n')
    (folder / "gt_mixco" / "z_mixco.yaml").write_text(mixco + 'files: ["mixco_*"]\n')
    deployment = current_deployment()
    moved = type(deployment)(**{**deployment.__dict__, "profiles_dir": folder})
    monkeypatch.setattr("obsx.intake.submission.current_deployment", lambda name=None: moved)
    first = submit(gt_warehouse, tmp_path, "gt_mixco", FIXTURES / "mixco_incidentes_2024.csv")

    registry = reference.observatories()
    again = process_submission(
        first.key, Dropzone(tmp_path, registry), gt_warehouse, registry, TODAY
    )

    profiles = [
        json.loads(outcome.feedback[0].read_text())["file"]["profile"] for outcome in (first, again)
    ]
    assert [p.rsplit("/", 1)[-1] for p in profiles] == ["z_mixco.yaml", "z_mixco.yaml"]


def test_a_unit_without_population_is_named_in_the_feedback(gt_warehouse, tmp_path):
    with gt_warehouse.begin() as conn:
        conn.execute(population.delete().where(population.c.geo_code == "0108"))
    outcome = submit(gt_warehouse, tmp_path, "gt_mixco", FIXTURES / "mixco_incidentes_2024.csv")
    problems = json.loads(outcome.feedback[0].read_text())["problems"]
    said = [(p["code"], p["value"]) for p in problems if p["row"] is None]
    assert ("unit-without-population", "0108") in said
    assert outcome.status == "accepted"  # a warning: the rows are kept


def test_unhcrs_municipal_table_reads_through_a_profile_and_agrees_with_ines_codes():
    """A second real source: four metadata rows above the header, OCHA p-codes (GT + INE code)."""
    path = FIXTURES / "unhcr" / "A2SIT_data_input_template_GTM.xlsx"
    contract = load_contract("geography")
    profile = parse_profile(
        {
            "sheet": "Data",
            "header_row": 5,
            "columns": {"Name": "name"},
            "derive": {
                "geo_code": {"column": "admin2Pcode", "slice": [2, 6]},  # GT0108 -> 0108
                "geo_level": {"value": "municipality"},
                "valid_from": {"value": "1900-01-01"},
                "source": {"value": "UNHCR A2SIT"},
            },
        },
        contract,
    )
    table = read_submission(path.read_bytes(), path.name, profile.layout(contract))
    mapped = apply_profile(table, contract, profile, None)
    units = mapped.raw.set_index("geo_code")
    ine = reference.read_geography().query("geo_level == 'municipality'")
    assert len(units) == 340 and set(units.index) == set(ine["geo_code"])
    assert round(float(units.loc["0101", "Delitos"]), 3) == 697.645  # crimes per 100,000
    assert round(float(units.loc["0108", "Delitos"]), 3) == 357.256


def level_profiles(tmp_path, level: str | None) -> Path:
    """The deployment's profiles, PNC's arrests read by departamento only (``level``)."""
    folder = tmp_path / "profiles"
    shutil.copytree(DEPLOYMENTS_DIR / "gt" / "profiles", folder)
    path = folder / "gt_pnc" / "detenidos_excel.yaml"
    text = path.read_text(encoding="utf-8")
    start, end = text.index("  unit_code:"), text.index("blank_values:")
    text = text[:start] + "  unit_code: {place: depto_ocu}\n" + text[end:]
    text = text.replace("complete_coverage: true\n", "")
    path.write_text(text + (f"level: {level}\n" if level else ""), encoding="utf-8")
    return folder


def moved_profiles(monkeypatch, folder: Path) -> None:
    deployment = current_deployment()
    moved = type(deployment)(**{**deployment.__dict__, "profiles_dir": folder})
    monkeypatch.setattr("obsx.intake.submission.current_deployment", lambda name=None: moved)


def test_a_file_by_departamento_counts_for_departamentos_and_above_never_below(
    gt_warehouse, tmp_path, monkeypatch
):
    """Issue 21, item 5, on PNC's real 2024 workbook read by its departamento column only: the
    10,874 arrests count for the 22 departamentos and the country, as many in each as the workbook's
    departamento column says, and for no municipio. A municipio's own source that month counts for the
    municipio, and not a second time above it, where the departamento's source is the figure."""
    moved_profiles(monkeypatch, level_profiles(tmp_path, "departamento"))
    outcome = submit(gt_warehouse, tmp_path / "root", "gt_pnc", PNC / "Detenidos1T2024.xlsx")
    assert (outcome.status, outcome.counts["rows_inserted"]) == ("accepted", 10_874)
    mixco = tmp_path / "mixco_detenidos_2024_01.csv"
    mixco.write_text(
        "arrest_id,arrested_on,unit_code,sex,age,offence,offence_group\n"
        + "".join(f"M-{i},2024-01-1{i},0108,M,30,Robo,PROPERTY\n" for i in range(3)),
        encoding="utf-8",
    )
    assert submit(gt_warehouse, tmp_path / "root", "gt_mixco", mixco).status == "accepted"
    compute_indicators(gt_warehouse)

    workbook = pd.read_excel(PNC / "Detenidos1T2024.xlsx", sheet_name="Sheet1", engine="openpyxl")
    v = indicator_value.c
    with gt_warehouse.connect() as conn:
        values = pd.DataFrame(
            conn.execute(
                sa.select(
                    v.geo_level, v.geo_code, v.period, v.numerator, v.denominator, v.coverage
                ).where(v.indicator_code == "ARRESTS_RATE", v.disaggregation == "")
            ).all()
        )
        population_01 = conn.scalar(
            sa.text(
                "SELECT sum(population) FROM population WHERE geo_code LIKE '01__'"
                " AND sex = 'T' AND age_group = 'T'"
            )
        )
    year = values[values["period"] == "2024"].set_index("geo_code")
    assert year.loc["GT", "numerator"] == 10_874
    assert year.loc["GT", "denominator"] == NATIONAL_POPULATION_2018
    departments = year[year["geo_level"] == "department"]
    counts = workbook["depto_ocu"].value_counts()
    assert len(departments) == 22 and departments["numerator"].sum() == 10_874
    assert departments.loc["01", "numerator"] == counts["Guatemala"]  # not 3 more: Mixco's
    assert departments.loc["01", "denominator"] == population_01
    assert departments.loc["17", "numerator"] == counts["Petén"]
    # below: Mixco's own three arrests, and no municipio of PNC's departamento-level file
    municipal = values[values["geo_level"] == "municipality"]
    assert municipal["geo_code"].unique().tolist() == ["0108"]
    assert municipal.set_index("period").loc["2024-01", "numerator"] == 3
    # every departamento reported each month: the whole country, three months of the year's 12
    january = values[values["period"] == "2024-01"].set_index("geo_code")
    assert january.loc["GT", "coverage"] == pytest.approx(100)
    assert january.loc[departments.index, "coverage"].tolist() == pytest.approx([100] * 22)
    assert year.loc["GT", "coverage"] == pytest.approx(25)
    # and the origin of each figure lists exactly what it counts, and the population it divides by
    found = explain(gt_warehouse, "ARRESTS_RATE", "01", "2024-01")
    assert len(found.records) == january.loc["01", "numerator"]
    assert set(found.records["observatory_code"]) == {"gt_pnc"}
    assert found.population["population"].sum() == population_01
    found = explain(gt_warehouse, "ARRESTS_RATE", "0108", "2024-01")
    assert (len(found.records), set(found.records["observatory_code"])) == (3, {"gt_mixco"})


def test_a_file_of_departamentos_read_as_municipios_is_refused_naming_both(
    gt_warehouse, tmp_path, monkeypatch
):
    moved_profiles(monkeypatch, level_profiles(tmp_path, None))
    outcome = submit(gt_warehouse, tmp_path / "root", "gt_pnc", PNC / "Detenidos1T2024.xlsx")
    assert (outcome.status, outcome.counts["rows_inserted"]) == ("rejected", 0)
    path = next(p for p in outcome.feedback if p.suffix == ".json")
    feedback = json.loads(path.read_text(encoding="utf-8"))
    messages = {p["message_es"] for p in feedback["problems"]}
    assert "«Petén» es un departamento (17), no un municipio: los datos se registran por" in (
        " ".join(messages)
    )


def test_a_complete_file_by_departamento_makes_unlisted_departamentos_true_zeros(
    gt_warehouse, tmp_path, monkeypatch
):
    """INACIF's monthly count read by its departamento column, declared complete: the
    departamentos it does not list had no victim (0, over their population), the country's rate
    divides by the whole country, and no municipio gets a figure from it."""
    folder = tmp_path / "profiles"
    shutil.copytree(DEPLOYMENTS_DIR / "gt" / "profiles", folder)
    (folder / "gt_inacif" / "homicidios.yaml").write_text(
        "dataset: incidents\n"
        'files: ["homicidios_nacional_*"]\n'
        "complete_coverage: true\n"
        "level: departamento\n"
        "columns: {Víctimas: victim_count}\n"
        "derive:\n"
        "  incident_id: {join: [Año, Mes, $row]}\n"
        "  occurred_on: {year: Año, month: Mes, day: 1}\n"
        '  crime_code: {value: "0101"}\n'
        "  district_code: {place: Departamento}\n"
        "codes: {victim_sex: {Ignorado: NE}}\n"
        "ignore_columns: [Municipio, Código municipio]\n",
        encoding="utf-8",
    )
    moved_profiles(monkeypatch, folder)
    source = FIXTURES / "homicidios_nacional_2024_01.csv"
    outcome = submit(gt_warehouse, tmp_path / "root", "gt_inacif", source)
    assert outcome.status == "accepted"
    compute_indicators(gt_warehouse)
    rate = national(gt_warehouse, "SDG_16_1_1", "2024-01")
    assert (rate.numerator, rate.denominator) == (250, NATIONAL_POPULATION_2018)
    rows = pd.read_csv(source, encoding="utf-8-sig")
    listed = rows.groupby("Departamento")["Víctimas"].sum()
    v = indicator_value.c
    with gt_warehouse.connect() as conn:
        values = pd.DataFrame(
            conn.execute(
                sa.select(v.geo_level, v.geo_code, v.numerator, v.denominator).where(
                    v.indicator_code == "SDG_16_1_1",
                    v.period == "2024-01",
                    v.disaggregation == "",
                )
            ).all()
        )
        names = dict(conn.execute(sa.text("SELECT geo_code, name FROM geography")).all())
    departments = values[values["geo_level"] == "department"].set_index("geo_code")
    assert len(departments) == 22 and departments["denominator"].notna().all()
    counted = departments["numerator"].rename(index=names)
    assert counted[counted > 0].sort_index().to_dict() == listed.sort_index().to_dict()
    assert (counted == 0).sum() == 22 - len(listed) > 0  # unlisted: true zeros
    assert values[values["geo_level"] == "municipality"].empty


def test_an_analyst_reads_the_origin_of_a_real_figure_on_the_desk(tmp_path):
    """The desk's origin page (issue 22) on PNC's real 1T2024 workbook, through a real
    ``obsx web``: the national arrest rate names the workbook and the 2018 census population of
    the country's 340 municipios; a withheld municipal cell shows nothing to count it by."""
    import re

    import httpx

    from obsx.warehouse import accounts
    from tests.conftest import sqlite_warehouse
    from tests.webserver import PASSWORD, start_server, stop_server

    engine = sqlite_warehouse(tmp_path)
    assert submit(engine, tmp_path, "gt_pnc", PNC / "Detenidos1T2024.xlsx").status == "accepted"
    compute_indicators(engine)
    accounts.add_user(engine, "analista", "analyst", PASSWORD)
    v = indicator_value.c
    with engine.connect() as conn:
        withheld = conn.execute(
            sa.select(v.geo_code, v.period).where(
                v.indicator_code == "ARRESTS_RATE",
                v.geo_level == "municipality",
                v.disaggregation == "",
                v.conf_status == "C",
            )
        ).first()
    server, url = start_server(tmp_path)
    try:
        client = httpx.Client(base_url=url, timeout=300)
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"csrf": token, "username": "analista", "password": PASSWORD})
        query = {"indicator": "ARRESTS_RATE", "geo": "GT", "period": "2024"}
        page = client.get("/desk/figures/explain", params=query).text
        files = re.search(r'<table id="files">.*?</table>', page, re.S).group(0)
        assert files.count("Detenidos1T2024.xlsx") == 1  # a rate: the numerator's one file
        assert "Policía Nacional Civil" in files
        population = re.search(r'<table id="population">.*?</table>', page, re.S).group(0)
        cells = re.findall(r'<td class="num">([0-9,]+)</td>', population)
        assert len(cells) == 340
        assert sum(int(c.replace(",", "")) for c in cells) == NATIONAL_POPULATION_2018
        assert "10,874" in page  # the numerator, as published
        query = {"indicator": "ARRESTS_RATE", "geo": withheld.geo_code, "period": withheld.period}
        page = client.get("/desk/figures/explain", params=query).text
        assert 'id="explain-withheld"' in page and "Detenidos" not in page
    finally:
        stop_server(server)
