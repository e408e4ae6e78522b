"""Limits from the world, not from the demo: a state of 17 million, state-months of thousands of
victims, ages given only as bands.

The state-level figures run through a deployment of Mexico by entidad (tests/fixtures/mx: INEGI's
codes, the 2020 census) and a file in the shape of SESNSP's victims file (figures invented at
real magnitudes); the bands through a Panamanian observatory's file of age ranges.
"""

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from obsx.indicators.catalogue import NOT_AVAILABLE
from obsx.indicators.engine import compute_indicators
from obsx.intake.contract import INTEGER_MAX, load_contract
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.profiles import ProfileError, parse_profile
from obsx.intake.reading import read_submission
from obsx.intake.submission import process_submission
from obsx.intake.validation import validate, validate_reference
from obsx.sourceyaml import ReferenceDataError
from obsx.warehouse import reference
from obsx.warehouse.migrations import upgrade
from obsx.warehouse.tables import (
    get_engine,
    indicator_value,
    merge_records,
    population,
    record_tables,
    row_hashes,
)
from tests.conftest import PANAMA

MX = Path(__file__).parent / "fixtures" / "mx"
SESNSP = MX / "sesnsp_victimas_2024_extracto.csv"
TODAY = dt.date(2026, 11, 25)
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
ESTADO_DE_MEXICO_2020 = 16_992_418  # INEGI, Censo de Población y Vivienda 2020
MEXICO_2020 = 126_014_024


# --- The contract's limits ----------------------------------------------------------------


def test_population_figures_are_sized_for_national_totals_not_districts():
    contract = load_contract("population")
    frame = pd.DataFrame(
        {
            "geo_code": ["15", "MX", "XX"],
            "year": ["2020", "2020", "2020"],
            "sex": ["T", "T", "T"],
            "age_group": ["T", "T", "T"],
            "population": [str(ESTADO_DE_MEXICO_2020), str(MEXICO_2020), "340110988"],
            "source": ["INEGI Censo 2020"] * 3,
        }
    )
    typed = validate_reference(frame, contract, "population.csv")
    assert typed["population"].tolist() == [ESTADO_DE_MEXICO_2020, MEXICO_2020, 340_110_988]

    frame.loc[2, "population"] = "12600000000"  # a figure with two zeros too many
    with pytest.raises(ReferenceDataError, match="population '12600000000' fails max"):
        validate_reference(frame, contract, "population.csv")


def test_a_victim_count_has_no_cap_of_its_own_only_what_the_warehouse_can_hold():
    header = "id,fecha,distrito,delito,víctimas"
    lines = [header, "A1,2025-01-31,0804,02011,2554", f"A2,2025-01-31,0804,02011,{INTEGER_MAX + 1}"]
    table = read_submission("\n".join(lines).encode(), "agregado.csv")
    result = validate(table, load_contract("incidents"), PANAMA, TODAY)

    assert result.accepted["victim_count"].tolist() == [2554]
    [refused] = [p for p in result.problems if p.row == 3]
    assert refused.code == "max"
    assert "mayor que el máximo permitido (2147483647)" in refused.message("es")


def test_a_record_without_age_band_keeps_the_hash_it_had_before_the_field_existed():
    contract = load_contract("incidents")
    table = read_submission(b"id,fecha,distrito,delito,edad\nA1,2025-01-05,0804,0101,30\n", "a.csv")
    accepted = validate(table, contract, PANAMA, TODAY).accepted
    fields = list(contract.record_fields)
    before = [f for f in fields if f != "age_band"]  # the contract of version 1

    now = row_hashes(accepted, fields, contract.hash_defaults)
    assert now.tolist() == row_hashes(accepted, before, contract.defaults).tolist()
    banded = accepted.assign(age_band="18-24")
    assert row_hashes(banded, fields, contract.hash_defaults).iloc[0] != now.iloc[0]


# --- A state-level deployment: Mexico by entidad ------------------------------------------


@pytest.fixture
def mx_warehouse(warehouse_url, monkeypatch):
    monkeypatch.setenv("OBSX_DEPLOYMENT", str(MX))
    engine = get_engine(warehouse_url)
    upgrade(engine)
    reference.load_geography(engine, reference.read_geography())
    reference.load_population(engine, reference.read_population())
    reference.load_observatories(engine)
    return engine


def submit(engine, root: Path, path: Path, name: str | None = None):
    registry = reference.observatories()
    zone = Dropzone(root, registry)
    zone.ensure_folders()
    target = zone.inbox("mx_sesnsp") / (name or path.name)
    shutil.copy(path, target)
    key = partition_key("mx_sesnsp", file_sha256(target))
    return process_submission(key, zone, engine, registry, TODAY)


def problems_of(outcome) -> list[dict]:
    return json.loads(outcome.feedback[0].read_text(encoding="utf-8"))["problems"]


def value(engine, code, geo, period, disaggregation=""):
    v = indicator_value.c
    with engine.connect() as conn:
        return conn.execute(
            sa.select(v.numerator, v.denominator, v.value, v.quality_flag).where(
                v.indicator_code == code,
                v.geo_code == geo,
                v.period == period,
                v.disaggregation == disaggregation,
            )
        ).one_or_none()


def test_a_state_of_17_million_and_a_month_of_2554_victims_load(mx_warehouse, tmp_path):
    with mx_warehouse.connect() as conn:
        p = population.c
        assert conn.scalar(sa.select(p.population).where(p.geo_code == "15")) == 16_992_418
        assert conn.scalar(sa.select(sa.func.sum(p.population))) == MEXICO_2020

    outcome = submit(mx_warehouse, tmp_path, SESNSP)

    assert (outcome.status, outcome.counts["rows_rejected"]) == ("accepted", 0)
    assert outcome.counts["rows_inserted"] == 20 * 3  # 20 rows, January to March
    assert not [p for p in problems_of(outcome) if p["code"] == "implausible-count"]
    incidents = record_tables("incidents").current.c
    with mx_warehouse.connect() as conn:
        largest = conn.execute(
            sa.select(incidents.district_code, incidents.occurred_on, incidents.victim_count)
            .order_by(incidents.victim_count.desc())
            .limit(1)
        ).one()
    assert (largest.district_code, str(largest.occurred_on), largest.victim_count) == (
        "15",
        "2024-01-01",
        2554,
    )
    compute_indicators(mx_warehouse)
    # México, January 2024: 118 + 6 + 31 homicides and 8 femicides over its 16,992,418 people.
    rate = value(mx_warehouse, "SDG_16_1_1", "15", "2024-01")
    assert (rate.numerator, rate.denominator) == (163, ESTADO_DE_MEXICO_2020)
    assert rate.value == pytest.approx(163 * 100_000 / ESTADO_DE_MEXICO_2020)


def test_ranges_that_straddle_the_age_groups_give_no_age_group(mx_warehouse, tmp_path):
    submit(mx_warehouse, tmp_path, SESNSP)
    incidents = record_tables("incidents").current.c
    with mx_warehouse.connect() as conn:
        bands = set(conn.scalars(sa.select(incidents.age_band).distinct()))
    assert bands == {"0-17", "18+", None}  # "No especificado": no band

    compute_indicators(mx_warehouse)
    # Minors (0-17) straddle 0-14 and 15-29, adults (18+) 15-29 and the rest: Guanajuato's
    # 290 homicide victims of January count in its total and in no age group.
    assert value(mx_warehouse, "HOMICIDE_COUNT", "11", "2024-01").numerator == 231 + 9 + 24 + 12
    # Counted in no group, and no group is 0: a file whose bands all straddle the groups
    # supplies no age group, so each group's cell is not available (no value, flagged).
    for group in ("0-14", "15-29", "30-44", "45-59", "60+"):
        cell = value(mx_warehouse, "HOMICIDE_COUNT", "11", "2024", f"age_group={group}")
        assert (cell.numerator, cell.value, cell.quality_flag) == (None, None, NOT_AVAILABLE)
    youth = value(mx_warehouse, "HOMICIDE_YOUTH_SHARE", "11", "2024")
    assert youth is None or youth.value is None  # no victim of known age group: no share
    share = value(mx_warehouse, "HOMICIDE_YOUTH_SHARE", "11", "2024")
    assert share is None or (share.denominator == 0 and share.value is None)


def test_a_count_above_one_percent_of_the_population_in_a_month_is_said_in_spanish(
    mx_warehouse, tmp_path
):
    text = SESNSP.read_text(encoding="utf-8")
    # Colima's January injuries with two zeros too many: 11,200 of 731,391 people in a month.
    wrong = text.replace(
        "Lesiones dolosas,Con otro elemento,Hombre,Adultos (18 y más),112,",
        "Lesiones dolosas,Con otro elemento,Hombre,Adultos (18 y más),11200,",
    )
    assert wrong != text
    path = tmp_path / "sesnsp_victimas_2024_corregido.csv"
    path.write_text(wrong, encoding="utf-8")

    outcome = submit(mx_warehouse, tmp_path, path)

    assert (outcome.status, outcome.counts["rows_rejected"]) == ("accepted", 0)
    [said] = [p for p in problems_of(outcome) if p["code"] == "implausible-count"]
    assert (said["severity"], said["row"]) == ("warning", 5)
    assert said["message_es"] == (
        "11,200 en «Número de víctimas» es el 1,5 % de la población de la unidad 06 (731,391"
        " habitantes en 2020) en un solo mes (2024-01). La fila se aceptó; revise la cifra:"
        " ¿un total anual, un cero de más, otra columna?"
    )
    assert outcome.counts["warnings"] >= 1


def test_without_population_nothing_is_said_about_plausibility(mx_warehouse, tmp_path):
    with mx_warehouse.begin() as conn:
        conn.execute(population.delete())
    text = SESNSP.read_text(encoding="utf-8").replace(",112,", ",11200,")
    path = tmp_path / "sesnsp_victimas_2024_corregido.csv"
    path.write_text(text, encoding="utf-8")

    outcome = submit(mx_warehouse, tmp_path, path)

    assert outcome.status == "accepted"
    assert not [p for p in problems_of(outcome) if p["code"] == "implausible-count"]


# --- Age bands: a Panamanian observatory's file of ranges ---------------------------------

BANDS_PROFILE = {
    "observatory": "pa_panama",
    "dataset": "incidents",
    "columns": {"Rango de edad": "age_band", "Víctimas": "victim_count"},
    "codes": {"age_band": {"MENORES": [0, 17], "ADOLESCENTES": "13-17", "ADULTOS": [18, None]}},
}
# Homicides of 2025 in Panamá (0804), ages only as ranges; one row gives the age as well.
BANDS_FILE = """Código,Fecha,Distrito,Delito,Sexo,Edad,Rango de edad,Víctimas
H-01,2025-01-12,0804,0101,M,,18-24 años,5
H-02,2025-02-03,0804,0101,M,,25-29 años,3
H-03,2025-03-21,0804,0101,M,,30 a 39 años,2
H-04,2025-04-02,0804,0101,F,,40-49 años,2
H-05,2025-05-17,0804,0101,M,,MENORES,1
H-06,2025-06-08,0804,0101,F,,0-11 años,1
H-07,2025-07-30,0804,0101,M,,60 y más,1
H-08,2025-08-14,0804,0101,M,16,MENORES,1
H-09,2025-09-09,0804,0101,M,,ADULTOS,4
"""


def band_rows(text: str = BANDS_FILE, profile: dict = BANDS_PROFILE):
    contract = load_contract("incidents")
    table = read_submission(text.encode(), "homicidios_por_rango.csv")
    return validate(table, contract, PANAMA, TODAY, parse_profile(profile, contract))


def test_bands_are_stored_as_written_or_as_the_profile_maps_them():
    result = band_rows()
    assert not result.problems, [p.message("en") for p in result.problems]
    assert result.accepted["age_band"].tolist() == [
        "18-24", "25-29", "30-39", "40-49", "0-17", "0-11", "60+", "0-17", "18+",
    ]  # fmt: skip


def test_a_band_only_file_yields_the_youth_share(loaded_engine):
    with loaded_engine.begin() as conn:
        merge_records(conn, "incidents", "pa_panama", "s-bands", band_rows().accepted, NOW)
    compute_indicators(loaded_engine, NOW)

    # 15-29: 5 (18-24) + 3 (25-29) + 1 (aged 16, whatever the band); of known age group, those
    # and 2 (30-39 in 30-44), 1 (0-11 in 0-14), 1 (60+). 40-49 (2), MENORES (1) and ADULTOS (4)
    # straddle two groups: counted in the total, in no group.
    share = value(loaded_engine, "HOMICIDE_YOUTH_SHARE", "0804", "2025")
    assert (share.numerator, share.denominator) == (9, 13)
    assert share.value == pytest.approx(100 * 9 / 13)
    groups = {
        group: value(loaded_engine, "HOMICIDE_COUNT", "0804", "2025", f"age_group={group}")
        for group in ("0-14", "15-29", "30-44", "45-59", "60+")
    }
    assert {g: v.numerator for g, v in groups.items()} == {
        "0-14": 1, "15-29": 9, "30-44": 2, "45-59": 0, "60+": 1,
    }  # fmt: skip
    assert value(loaded_engine, "HOMICIDE_COUNT", "0804", "2025").numerator == 20


def test_a_band_label_no_profile_maps_is_refused_naming_the_line_to_add():
    text = BANDS_FILE.replace("60 y más", "ADULTO MAYOR")
    result = band_rows(text)

    [refused] = [p for p in result.problems if p.row == 8]
    assert (refused.code, refused.column, refused.value) == (
        "age-band",
        "Rango de edad",
        "ADULTO MAYOR",
    )
    message = refused.message("es")
    assert "«ADULTO MAYOR» no es un rango de edades en «Rango de edad de la víctima»" in message
    assert "bajo codes.age_band, la línea «ADULTO MAYOR: [edad mínima, edad máxima]»" in message


@pytest.mark.parametrize(
    "band",
    [[17, 0], [0, 130], "MENORES", [18, "más"]],
    ids=["reversed", "past 120", "text", "word"],
)
def test_a_profile_band_must_be_a_band(band):
    profile = BANDS_PROFILE | {"codes": {"age_band": {"MENORES": band}}}
    with pytest.raises(ProfileError, match="codes.age_band.'MENORES'"):
        parse_profile(profile, load_contract("incidents"))


def test_the_merged_records_suite_checks_bands_and_the_integer_ceiling():
    from obsx.indicators.expectations import expectations_for

    found = {
        (type(e).__name__, e.column): e
        for e in expectations_for(load_contract("incidents"))
        if hasattr(e, "column")
    }
    band = found[("ExpectColumnValuesToMatchRegex", "age_band")]
    assert band.regex == r"^\d{1,3}(?:-\d{1,3}|\+)$"
    count = found[("ExpectColumnValuesToBeBetween", "victim_count")]
    assert (count.min_value, count.max_value) == (0, INTEGER_MAX)


# --- Cases: SESNSP's investigation files (carpetas), state by month -----------------------

CARPETAS = {  # (state, subtype, means) -> January .. March
    ("15", "Homicidio doloso", "Con arma de fuego"): (120, 131, 117),
    ("15", "Homicidio doloso", "Con arma blanca"): (22, 19, 25),
    ("15", "Feminicidio", "Con otro elemento"): (6, 4, 7),
    ("15", "Lesiones dolosas", "Con arma blanca"): (1904, 2011, 2143),
    ("15", "Robo a transeúnte en vía pública", "No especificado"): (3010, 2875, 3122),
    ("11", "Homicidio doloso", "Con arma de fuego"): (251, 240, 262),
    ("11", "Lesiones dolosas", "No especificado"): (610, 598, 640),
    ("06", "Homicidio doloso", "Con arma de fuego"): (61, 55, 70),
}
ENTIDAD = {"15": "México", "11": "Guanajuato", "06": "Colima"}


def carpetas_file(folder: Path) -> Path:
    """A file in the shape of SESNSP's incidence file: a row per state, subtype and means,
    a column per month (only January to March published)."""
    months = ["Enero", "Febrero", "Marzo", "Abril", "Mayo", "Junio", "Julio", "Agosto"]
    months += ["Septiembre", "Octubre", "Noviembre", "Diciembre"]
    lines = [
        "Año,Clave_Ent,Entidad,Bien jurídico afectado,Tipo de delito,Subtipo de delito,"
        "Modalidad," + ",".join(months)
    ]
    for (state, subtype, means), counts in CARPETAS.items():
        cells = [str(c) for c in counts] + [""] * 9
        lines.append(
            f"2024,{int(state)},{ENTIDAD[state]},La vida,{subtype.split()[0]},{subtype},{means},"
            + ",".join(cells)
        )
    path = folder / "sesnsp_carpetas_2024.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_cases_only_file_gives_case_rates_and_no_victim_figure(mx_warehouse, tmp_path):
    registry = reference.observatories()
    zone = Dropzone(tmp_path, registry)
    zone.ensure_folders()
    source = carpetas_file(tmp_path)
    target = zone.inbox("mx_carpetas") / source.name
    shutil.copy(source, target)
    outcome = process_submission(
        partition_key("mx_carpetas", file_sha256(target)), zone, mx_warehouse, registry, TODAY
    )
    assert (outcome.status, outcome.counts["rows_rejected"]) == ("accepted", 0)
    compute_indicators(mx_warehouse)

    def cases(state, months=(0, 1, 2), crimes=None):
        return sum(
            counts[m]
            for (s, subtype, _), counts in CARPETAS.items()
            if s == state and (crimes is None or subtype in crimes)
            for m in months
        )

    homicide = ("Homicidio doloso", "Feminicidio")
    # Estado de México, January: 120 + 22 + 6 homicide files of 16,992,418 residents.
    january = value(mx_warehouse, "HOMICIDE_CASE_RATE", "15", "2024-01")
    assert (january.numerator, january.denominator) == (148, ESTADO_DE_MEXICO_2020)
    assert january.value == pytest.approx(148 * 100_000 / ESTADO_DE_MEXICO_2020)
    quarter = value(mx_warehouse, "HOMICIDE_CASE_RATE", "15", "2024-Q1")
    assert quarter.numerator == cases("15", crimes=homicide) == 451
    every = value(mx_warehouse, "CASE_RATE", "11", "2024-01")
    assert every.numerator == cases("11", months=(0,)) == 861
    section = value(mx_warehouse, "CASE_RATE", "15", "2024-Q1", "iccs_section=04")
    assert section.numerator == 3010 + 2875 + 3122
    national = value(mx_warehouse, "HOMICIDE_CASE_RATE", "MX", "2024-02")
    assert national.numerator == 131 + 19 + 4 + 240 + 55
    # Cases are not victims: every victim figure is not available, never 0.
    for code in ("SDG_16_1_1", "HOMICIDE_COUNT", "ROBBERY_RATE", "FIREARM_HOMICIDE_SHARE"):
        for area in ("15", "MX"):
            cell = value(mx_warehouse, code, area, "2024-01")
            assert cell is None or (cell.value, cell.quality_flag) == (None, NOT_AVAILABLE), (
                code,
                area,
                cell,
            )
    assert value(mx_warehouse, "SDG_16_1_1", "15", "2024-01").quality_flag == NOT_AVAILABLE
