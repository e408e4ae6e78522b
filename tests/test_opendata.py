"""Open data: the published table as CSV and Parquet, the SDG series as SDMX-CSV read back by pysdmx.

One small warehouse for the module, delivered through the drop folders like any file: the
homicides, other crimes and the year before of tests/test_catalogue.py (Panamá, district 0804;
Colón, 0301) and Panamá's victimization survey (SDG 16.1.4). Its 2025 homicides by sex and age
are cells of 1 or 2 victims: withheld.
"""

import contextlib
import csv
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from pysdmx.io import get_datasets, read_sdmx
from pysdmx.model import Codelist, Schema

from obsx.indicators.catalogue import SdmxSeries, load_catalogue
from obsx.indicators.engine import compute_indicators
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.submission import process_submission
from obsx.publication.opendata import (
    ATTRIBUTES,
    DIMENSIONS,
    NUMERIC,
    published_table,
    write_open_data,
)
from obsx.sourceyaml import SourceError
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import get_engine
from tests.conftest import TODAY, load_reference, postgres_database
from tests.test_catalogue import COLON_ROWS, NOW, PANAMA_ROWS, deliver

SURVEY = Path(__file__).parent / "fixtures" / "survey_responses" / "panama_encuesta.sav"
# The SDG structure's SEX and AGE for each published split (stated here, not derived).
SEX_AGE = {
    "": ("_T", "_T"),
    "sex=F": ("F", "_T"),
    "sex=M": ("M", "_T"),
    "age_group=0-14": ("_T", "Y0T14"),
    "age_group=15-29": ("_T", "Y15T29"),
    "age_group=30-44": ("_T", "Y30T44"),
    "age_group=45-59": ("_T", "Y45T59"),
    "age_group=60+": ("_T", "Y_GE60"),
}
NUMBERS = [
    "numerator", "denominator", "value", "standard_error", "ci_low", "ci_high", "cv",
    "change_previous", "change_year_ago", "coverage",
]  # fmt: skip
INTEGERS = ["population_year"]
NATIONAL = "PA_REPORTING"  # the national values of the fixture cover some districts only


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def warehouse(request, tmp_path_factory):
    from obsx.warehouse.migrations import upgrade

    root = tmp_path_factory.mktemp("opendata")
    sqlite = contextlib.nullcontext(f"sqlite:///{root / 'warehouse.db'}")
    with postgres_database() if request.param == "postgresql" else sqlite as url:
        engine = get_engine(url)
        upgrade(engine)
        load_reference(engine)
        zone = Dropzone(root, observatories())
        zone.ensure_folders()
        deliver(zone, engine, "pa_panama", "incidentes_panama.csv", PANAMA_ROWS)
        deliver(zone, engine, "pa_colon", "incidentes_colon.csv", COLON_ROWS)
        shutil.copy(SURVEY, zone.inbox("pa_panama") / SURVEY.name)
        key = partition_key("pa_panama", file_sha256(zone.inbox("pa_panama") / SURVEY.name))
        process_submission(key, zone, engine, observatories(), TODAY)
        compute_indicators(engine, NOW)
        yield engine


def _view(engine, name):
    return f"analytics.{name}" if engine.dialect.name == "postgresql" else f"analytics_{name}"


def stored(engine, code, geo, period, disaggregation=""):
    """The warehouse's own row (not the view): value and disclosure status."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT value, conf_status FROM indicator_value WHERE indicator_code = :c"
                " AND geo_code = :g AND period = :p AND disaggregation = :d"
            ),
            {"c": code, "g": geo, "p": period, "d": disaggregation},
        ).one()


@pytest.fixture(scope="module")
def exported(warehouse, tmp_path_factory):
    folder = tmp_path_factory.mktemp("open")
    return write_open_data(warehouse, folder)


@pytest.fixture(scope="module")
def sdg(exported) -> pd.DataFrame:
    """The SDMX-CSV as pysdmx reads it with the structure shipped beside it (typed: codes as
    text, numbers as doubles, NA where empty)."""
    [dataset] = get_datasets(exported["sdmx"], exported["sdmx_structure"])
    assert dataset.short_urn == "Dataflow=OBSX:DF_SDG_PA(1.0)"
    assert isinstance(dataset.structure, Schema)  # the dataflow was found in the structure
    return pd.DataFrame(dataset.data)


@pytest.fixture(scope="module")
def written(exported) -> pd.DataFrame:
    """The SDMX-CSV as its bytes say, every cell text."""
    return pd.read_csv(exported["sdmx"], dtype=str, keep_default_na=False, encoding="utf-8")


@pytest.fixture(scope="module")
def areas(exported) -> dict[str, str]:
    """The area code list of the shipped structure: code -> name."""
    message = read_sdmx(exported["sdmx_structure"])
    [codelist] = [s for s in message.structures if isinstance(s, Codelist)]
    assert codelist.short_urn == "Codelist=OBSX:CL_AREA_PA(1.0)"
    return {code.id: code.name for code in codelist.items}


def obs(sdg, series, area, year, sex="_T", age="_T"):
    rows = sdg[
        (sdg["SERIES"] == series)
        & (sdg["REF_AREA"] == area)
        & (sdg["TIME_PERIOD"] == year)
        & (sdg["SEX"] == sex)
        & (sdg["AGE"] == age)
    ]
    assert len(rows) == 1, (series, area, year, sex, age, rows)
    return rows.iloc[0]


def test_the_catalogue_names_the_sdg_series_of_its_indicators():
    cat = load_catalogue()
    assert cat.indicator("SDG_16_1_1").sdmx == SdmxSeries("VC_IHR_PSRC", "PER_100000_POP")
    assert cat.indicator("HOMICIDE_COUNT").sdmx == SdmxSeries("VC_IHR_PSRCN", "NUMBER")
    assert cat.indicator("SDG_16_1_4").sdmx == SdmxSeries("VC_SNS_WALN", "PT", "Y_GE15")
    assert cat.indicator("ROBBERY_RATE").sdmx is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("unit_measure: NUMBER}", "unit: NUMBER}", r"HOMICIDE_COUNT: sdmx: unknown key"),
        ("unit_measure: NUMBER}", "}", r"HOMICIDE_COUNT: sdmx needs unit_measure"),
        ("series: VC_IHR_PSRCN", "series: VC_IHR_PSRC", r"VC_IHR_PSRC is SDG_16_1_1's"),
        ("series: VC_IHR_PSRCN", "series: 'VC IHR'", r"'VC IHR' is not an SDMX code"),
    ],
)
def test_a_bad_sdmx_block_names_its_line(tmp_path, old, new, message):
    text = Path(load_catalogue().path).read_text(encoding="utf-8")
    line = text[: text.index("sdmx: {series: VC_IHR_PSRCN")].count("\n") + 1
    broken = tmp_path / "catalogue.yaml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(SourceError, match=rf"catalogue.yaml:{line}: .*{message}"):
        load_catalogue(broken)


def test_the_files_are_written_whole_and_named(exported):
    folder = exported["csv"].parent
    assert {k: p.name for k, p in exported.items()} == {
        "csv": "indicator_value.csv",
        "parquet": "indicator_value.parquet",
        "sdmx": "sdg_pa.csv",
        "sdmx_structure": "sdg_pa_structure.json",
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in exported.values())


def test_sdg_16_1_1_reads_back_as_the_warehouse_holds_it(warehouse, sdg):
    value, status = stored(warehouse, "SDG_16_1_1", "PA", "2025")
    # The fixture's districts are part of Panama: not M49 591, the reporting units, with how much
    national = obs(sdg, "VC_IHR_PSRC", NATIONAL, "2025")
    assert "coverage " in national["COMMENT_OBS"]
    # the catalogue's 2 decimals (SDG_16_1_1 decimals: 2), exactly
    assert status == "F" and national["OBS_VALUE"] == round(value, 2) != value
    assert national[
        ["OBS_STATUS", "CONF_STATUS", "UNIT_MEASURE", "UNIT_MULT", "NATURE"]
    ].tolist() == ["A", "F", "PER_100000_POP", "0", "C"]
    assert national[["FREQ", "REPORTING_TYPE", "URBANISATION", "PRODUCT"]].tolist() == [
        "A",
        "N",
        "_T",
        "_T",
    ]
    count = obs(sdg, "VC_IHR_PSRCN", NATIONAL, "2025")
    assert (count["OBS_VALUE"], count["UNIT_MEASURE"]) == (19, "NUMBER")  # 4 + 15 victims
    assert obs(sdg, "VC_IHR_PSRCN", NATIONAL, "2024")["OBS_VALUE"] == 10
    # SDG reporting is annual; weapons are not an SDG breakdown
    assert set(sdg["TIME_PERIOD"]) == {"2024", "2025"}
    assert set(sdg["SERIES"]) == {"VC_IHR_PSRC", "VC_IHR_PSRCN", "VC_SNS_WALN"}


def test_feeling_safe_is_a_share_of_people_aged_15_and_over_with_its_bounds(warehouse, sdg):
    value, _ = stored(warehouse, "SDG_16_1_4", "PA", "2025")
    safe = obs(sdg, "VC_SNS_WALN", "591", "2025", age="Y_GE15")
    assert safe["OBS_VALUE"] == round(value, 1) and value == pytest.approx(50.0)  # decimals: 1
    assert safe["LOWER_BOUND"] < value < safe["UPPER_BOUND"]
    assert safe["UNIT_MEASURE"] == "PT"
    assert len(sdg[(sdg["SERIES"] == "VC_SNS_WALN") & (sdg["SEX"] == "F")]) > 0


def test_withheld_cells_have_no_value_and_say_why(warehouse, sdg, written):
    with warehouse.connect() as conn:
        truth = pd.read_sql(
            sa.text(
                "SELECT indicator_code, geo_level, geo_code, period, disaggregation, conf_status"
                " FROM indicator_value WHERE period_type = 'year'"
                " AND indicator_code IN ('SDG_16_1_1', 'HOMICIDE_COUNT')"
            ),
            conn,
        )
    truth = truth[truth["disaggregation"].isin(SEX_AGE)]
    withheld = truth[truth["conf_status"] != "F"]
    assert len(withheld) >= 4 and set(withheld["conf_status"]) <= {"C", "D"}
    series = {"SDG_16_1_1": "VC_IHR_PSRC", "HOMICIDE_COUNT": "VC_IHR_PSRCN"}
    for cell in withheld.itertuples():
        area = NATIONAL if cell.geo_level == "national" else f"PA_{cell.geo_code}"
        row = obs(
            sdg, series[cell.indicator_code], area, cell.period, *SEX_AGE[cell.disaggregation]
        )
        assert pd.isna(row["OBS_VALUE"]), cell
        # SDMX: missing value, suppressed (CL_OBS_STATUS Q), confidential (CL_CONF_STATUS C)
        assert (row["OBS_STATUS"], row["CONF_STATUS"]) == ("Q", "C"), cell
    # published and withheld cells alike: every one there, none more
    assert len(sdg[sdg["SERIES"] != "VC_SNS_WALN"]) == len(truth)
    withheld_rows = written[written["CONF_STATUS"] != "F"]
    assert set(withheld_rows["OBS_VALUE"]) == {""} and set(withheld_rows["OBS_STATUS"]) == {"Q"}
    assert set(written.loc[written["CONF_STATUS"] == "F", "OBS_STATUS"]) == {"A"}
    # the file names areas so that no reader takes them for UN M49 countries
    assert {NATIONAL, "PA_0804", "PA_08", "PA_0301", "PA_03"} <= set(written["REF_AREA"])


def _view_frame(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"SELECT * FROM {_view(engine, 'indicator_value')}"), conn)
    frame[NUMBERS] = frame[NUMBERS].astype("float64")
    frame[INTEGERS] = frame[INTEGERS].astype("Int64")
    frame["computed_at"] = pd.to_datetime(frame["computed_at"], utc=True, format="ISO8601")
    key = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
    return frame.sort_values(key).reset_index(drop=True)


def test_csv_and_parquet_hold_the_analysts_view(warehouse, exported):
    view = _view_frame(warehouse)
    parquet = pd.read_parquet(exported["parquet"])
    text = [c for c in view.columns if c not in NUMBERS + INTEGERS and c != "computed_at"]
    from_csv = pd.read_csv(
        exported["csv"],
        encoding="utf-8-sig",
        dtype=dict.fromkeys([*text, "name_es", "name_en"], str) | dict.fromkeys(INTEGERS, "Int64"),
        keep_default_na=False,
        na_values=dict.fromkeys(NUMBERS, [""]),
    )
    from_csv["computed_at"] = pd.to_datetime(from_csv["computed_at"], utc=True, format="ISO8601")
    assert list(parquet.columns[:3]) == ["indicator_code", "name_es", "name_en"]
    for frame in (parquet, from_csv):
        assert (frame["name_en"] == frame["indicator_code"].map(_names(warehouse))).all()
        got = frame.drop(columns=["name_es", "name_en"])[list(view.columns)]
        got[text] = got[text].astype(object)
        pd.testing.assert_frame_equal(
            got, view.astype({c: object for c in text}), check_dtype=False
        )
    # withheld cells are blank in the files too
    assert parquet.loc[parquet["conf_status"] != "F", "value"].isna().all()


def _names(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT indicator_code, name_en FROM indicator")).all())


def test_a_formula_in_a_text_cell_is_written_as_text(warehouse, tmp_path):
    formula = '=HYPERLINK("http://evil.example","click")'
    with warehouse.begin() as conn:
        conn.execute(
            sa.text("UPDATE indicator SET name_en = :n WHERE indicator_code = 'ROBBERY_RATE'"),
            {"n": formula},
        )
    try:
        files = write_open_data(warehouse, tmp_path)
    finally:
        with warehouse.begin() as conn:
            conn.execute(
                sa.text("UPDATE indicator SET name_en = :n WHERE indicator_code = 'ROBBERY_RATE'"),
                {"n": load_catalogue().indicator("ROBBERY_RATE").name_en},
            )
    with files["csv"].open(encoding="utf-8-sig") as f:
        names = {row["indicator_code"]: row["name_en"] for row in csv.DictReader(f)}
    assert names["ROBBERY_RATE"] == "'" + formula  # a spreadsheet shows it, never runs it
    assert names["SDG_16_1_1"] == "Victims of intentional homicide per 100,000 population"
    parquet = pd.read_parquet(files["parquet"])  # typed data, not opened by spreadsheets
    assert set(parquet.loc[parquet["indicator_code"] == "ROBBERY_RATE", "name_en"]) == {formula}


def test_a_period_keeps_what_had_ended_by_then(warehouse, tmp_path):
    october = write_open_data(warehouse, tmp_path / "oct", "2025-10")
    table = pd.read_parquet(october["parquet"])
    assert set(table.loc[table["period_type"] == "year", "period"]) == {"2024"}  # 2025 not over
    assert table.loc[table["period_type"] == "quarter", "period"].max() == "2025-Q3"
    assert table.loc[table["period_type"] == "month", "period"].max() <= "2025-10"
    [dataset] = get_datasets(october["sdmx"])
    assert set(dataset.data["TIME_PERIOD"].astype(str)) == {"2024"}
    december = write_open_data(warehouse, tmp_path / "dec", "2025-12")
    assert "2025" in set(pd.read_parquet(december["parquet"])["period"])
    assert len(published_table(warehouse, "2025")) == len(published_table(warehouse, "2025-Q4"))
    with pytest.raises(ValueError, match="YYYY-MM"):
        write_open_data(warehouse, tmp_path / "bad", "October")


def test_writing_again_replaces_the_files_with_the_same_content(warehouse, exported, tmp_path):
    again = write_open_data(warehouse, exported["csv"].parent)
    for kind in ("csv", "sdmx"):
        assert again[kind].read_bytes() == exported[kind].read_bytes()
    structure = json.loads(exported["sdmx_structure"].read_text(encoding="utf-8"))
    assert (
        json.loads(again["sdmx_structure"].read_text(encoding="utf-8"))["data"] == structure["data"]
    )
    assert not [p for p in again["csv"].parent.iterdir() if p.name.startswith(".")]


# --- SDMX you can load: codes and attributes read back as written ----------------------------


def test_every_code_and_attribute_reads_back_with_pysdmx_as_written(sdg, written, areas):
    """pysdmx, given the structure shipped beside the data, reads every cell as the file has it:
    codes as the same text (0804 stays PA_0804, never 804), numbers as the same number."""
    assert len(sdg) == len(written) > 0
    assert list(sdg.columns) == [*DIMENSIONS, "OBS_VALUE", *ATTRIBUTES]
    for column in sdg.columns:
        read, text = sdg[column], written[column]
        if column in NUMERIC:
            assert (read.isna() == (text == "")).all(), column
            assert (read[text != ""].astype(float) == text[text != ""].astype(float)).all(), column
        else:
            assert (read.astype(str) == text).all(), column
    # every area is a code of the shipped code list, with a name
    assert set(written["REF_AREA"]) <= set(areas)
    assert areas["591"] == "Panamá" and areas["PA_0804"] and areas["PA_08"]


def test_no_area_code_reads_as_an_m49_country_or_region(written, areas):
    """Only the country itself is an M49 code; every unit below it carries the country's ISO
    prefix, so no reader takes 08 for Albania (8), 0804 for Ukraine (804) or 13 for Central
    America."""
    for code in set(areas) | set(written["REF_AREA"]):
        assert code == "591" or re.fullmatch(r"PA_([0-9]+|REPORTING)", code), code
    with pytest.raises(ValueError):
        for code in set(areas) - {"591"}:
            int(code)  # none is a number


def test_numbers_keep_the_catalogues_decimals(written):
    """A count is written as a whole number (414, not 414.0), a rate with the catalogue's two
    decimals, a share with one; withheld: empty."""
    cat = load_catalogue()
    patterns = {
        "VC_IHR_PSRCN": r"[0-9]+",  # HOMICIDE_COUNT decimals 0
        "VC_IHR_PSRC": r"[0-9]+\.[0-9]{2}",  # SDG_16_1_1 decimals 2
        "VC_SNS_WALN": r"[0-9]+\.[0-9]",  # SDG_16_1_4 decimals 1
    }
    assert [cat.indicator(c).decimals for c in ("HOMICIDE_COUNT", "SDG_16_1_1", "SDG_16_1_4")] == [
        0,
        2,
        1,
    ]
    for series, pattern in patterns.items():
        rows = written[written["SERIES"] == series]
        assert len(rows) > 0
        for column in ("OBS_VALUE", "LOWER_BOUND", "UPPER_BOUND"):
            given = rows.loc[rows[column] != "", column]
            assert given.str.fullmatch(pattern).all(), (series, column, list(given))
    assert (written["NATURE"] == "C").all()  # IAEG-SDGs CL_NATURE: country data


def test_open_data_names_are_the_catalogues_text(exported):
    """Catalogue text read as written, into indicator_value.csv: both names of every indicator
    published, exactly (ROBBERY_RATE's 'per 100,000 population', not 'per 100')."""
    cat = load_catalogue()
    with exported["csv"].open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    names = {(r["indicator_code"], r["name_es"], r["name_en"]) for r in rows}
    assert len({code for code, _, _ in names}) == len(names)  # one pair of names per indicator
    for code, name_es, name_en in names:
        assert (name_es, name_en) == (cat.indicator(code).name_es, cat.indicator(code).name_en)
    published = {code for code, _, _ in names}
    assert {"ROBBERY_RATE", "THEFT_RATE", "EXTORTION_RATE", "KIDNAPPING_RATE"} <= published
    assert ("ROBBERY_RATE", "Víctimas de robo por 100.000 habitantes",
            "Victims of robbery per 100,000 population") in names  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("decimals: 1", r"HOMICIDE_COUNT: a count is a whole number: decimals 0"),
        ("decimals: 7", r"HOMICIDE_COUNT: decimals is a whole number from 0 to 6"),
        ("decimals: two", r"HOMICIDE_COUNT: decimals is a whole number from 0 to 6"),
    ],
)
def test_a_bad_decimals_names_its_line(tmp_path, bad, message):
    text = Path(load_catalogue().path).read_text(encoding="utf-8")
    count = "    sdmx: {series: VC_IHR_PSRCN, unit_measure: NUMBER}\n    decimals: 0\n"
    line = text[: text.index(count)].count("\n") + 2
    broken = tmp_path / "catalogue.yaml"
    broken.write_text(text.replace(count, count.replace("decimals: 0", bad), 1), encoding="utf-8")
    with pytest.raises(SourceError, match=rf"catalogue.yaml:{line}: {message}"):
        load_catalogue(broken)


def test_the_iso_prefix_is_the_deployments(tmp_path):
    from obsx.warehouse.deployment import load_deployment

    assert load_deployment("pa").iso_alpha2 == "PA"  # from country_code
    assert load_deployment("gt").iso_alpha2 == "GT"
    folder = tmp_path / "xx"
    shutil.copytree(Path(load_deployment("pa").root), folder)
    spec = (folder / "deployment.yaml").read_text(encoding="utf-8")
    (folder / "deployment.yaml").write_text(
        spec.replace("country_code: PA\n", "country_code: PANAMA\n", 1), encoding="utf-8"
    )
    assert load_deployment(str(folder)).iso_alpha2 is None  # no fallback: the export asks
    (folder / "deployment.yaml").write_text(
        spec.replace("country_code: PA\n", "country_code: PANAMA\niso_alpha2: Panama\n", 1),
        encoding="utf-8",
    )
    with pytest.raises(SourceError, match=r"deployment.yaml:3: iso_alpha2: 'Panama' is not"):
        load_deployment(str(folder / "..") + "/xx")


def test_one_function_says_what_area_a_value_stands_for():
    """observation_area: REF_AREA, NATURE and COMMENT_OBS of a published row, in one place (where
    coverage will decide whether a national value may be given the country's code)."""
    from obsx.publication.opendata import observation_area
    from obsx.warehouse.deployment import current_deployment

    pa = current_deployment()
    row = {
        "geo_level": "national",
        "geo_code": "PA",
        "conf_status": "F",
        "quality_flag": "unstable",
    }
    assert observation_area(pd.Series(row), pa) == ("591", "C", "unstable")
    # over part of the country (five districts, or months not reported): not the country
    partial = pd.Series(row | {"coverage": 53.0})
    assert observation_area(partial, pa) == (
        "PA_REPORTING",
        "C",
        "unstable; coverage 53.0% of population-months",
    )
    assert observation_area(pd.Series(row | {"coverage": 100.0}), pa)[0] == "591"
    row = {"geo_level": "district", "geo_code": "0804", "conf_status": "C", "quality_flag": ""}
    assert observation_area(pd.Series(row), pa) == ("PA_0804", "C", "")  # withheld: no comment
    row = {"geo_level": "province", "geo_code": "08", "conf_status": "F", "quality_flag": ""}
    assert observation_area(pd.Series(row), pa)[0] == "PA_08"
