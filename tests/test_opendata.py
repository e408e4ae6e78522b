"""Open data: the published table as CSV and Parquet, the SDG series as SDMX-CSV read back by pysdmx.

One small warehouse for the module, delivered through the drop folders like any file: the
homicides, other crimes and the year before of tests/test_catalogue.py (Panamá, district 0804;
Colón, 0301) and Panamá's victimization survey (SDG 16.1.4). Its 2025 homicides by sex and age
are cells of 1 or 2 victims: withheld.
"""

import contextlib
import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from pysdmx.io import get_datasets

from obsx.catalogue import SdmxSeries, load_catalogue
from obsx.dropzone import Dropzone, file_sha256, partition_key
from obsx.indicators import compute_indicators
from obsx.opendata import published_table, write_open_data
from obsx.reference import observatories
from obsx.sourceyaml import SourceError
from obsx.submission import process_submission
from obsx.warehouse import get_engine
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
    "change_previous", "change_year_ago",
]  # fmt: skip


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def warehouse(request, tmp_path_factory):
    from obsx.migrations import upgrade

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
    [dataset] = get_datasets(exported["sdmx"])  # pysdmx reads what pysdmx wrote
    assert dataset.short_urn == "Dataflow=OBSX:DF_SDG_PA(1.0)"
    return pd.DataFrame(dataset.data).astype(str)


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
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in exported.values())


def test_sdg_16_1_1_reads_back_as_the_warehouse_holds_it(warehouse, sdg):
    value, status = stored(warehouse, "SDG_16_1_1", "PA", "2025")
    national = obs(sdg, "VC_IHR_PSRC", "591", "2025")  # Panama in UN M49, as the SDG data
    assert status == "F" and float(national["OBS_VALUE"]) == value  # exactly, not approximately
    assert national[["OBS_STATUS", "CONF_STATUS", "UNIT_MEASURE", "UNIT_MULT"]].tolist() == [
        "A",
        "F",
        "PER_100000_POP",
        "0",
    ]
    assert national[["FREQ", "REPORTING_TYPE", "URBANISATION", "PRODUCT"]].tolist() == [
        "A",
        "N",
        "_T",
        "_T",
    ]
    count = obs(sdg, "VC_IHR_PSRCN", "591", "2025")
    assert (float(count["OBS_VALUE"]), count["UNIT_MEASURE"]) == (19, "NUMBER")  # 4 + 15 victims
    assert float(obs(sdg, "VC_IHR_PSRCN", "591", "2024")["OBS_VALUE"]) == 10
    # SDG reporting is annual; weapons are not an SDG breakdown
    assert set(sdg["TIME_PERIOD"]) == {"2024", "2025"}
    assert set(sdg["SERIES"]) == {"VC_IHR_PSRC", "VC_IHR_PSRCN", "VC_SNS_WALN"}


def test_feeling_safe_is_a_share_of_people_aged_15_and_over_with_its_bounds(warehouse, sdg):
    value, _ = stored(warehouse, "SDG_16_1_4", "PA", "2025")
    safe = obs(sdg, "VC_SNS_WALN", "591", "2025", age="Y_GE15")
    assert float(safe["OBS_VALUE"]) == value == pytest.approx(50.0)
    assert float(safe["LOWER_BOUND"]) < value < float(safe["UPPER_BOUND"])
    assert safe["UNIT_MEASURE"] == "PT"
    assert len(sdg[(sdg["SERIES"] == "VC_SNS_WALN") & (sdg["SEX"] == "F")]) > 0


def test_withheld_cells_have_no_value_and_say_why(warehouse, sdg, exported):
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
        area = "591" if cell.geo_level == "national" else cell.geo_code
        area = area.lstrip("0")  # pysdmx 1.20 reads REF_AREA as a number: 0804 comes back 804
        row = obs(
            sdg, series[cell.indicator_code], area, cell.period, *SEX_AGE[cell.disaggregation]
        )
        assert row["OBS_VALUE"] in ("", "nan"), cell
        assert row["CONF_STATUS"] == cell.conf_status
    # published and withheld cells alike: every one there, none more
    assert len(sdg[sdg["SERIES"] != "VC_SNS_WALN"]) == len(truth)
    assert set(sdg.loc[sdg["CONF_STATUS"] != "F", "OBS_VALUE"]) <= {"", "nan"}
    # the file itself keeps the statistics office's codes
    with exported["sdmx"].open(encoding="utf-8") as f:
        areas = {row["REF_AREA"] for row in csv.DictReader(f)}
    assert {"591", "0804", "08", "0301", "03"} <= areas


def _view_frame(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"SELECT * FROM {_view(engine, 'indicator_value')}"), conn)
    frame[NUMBERS] = frame[NUMBERS].astype("float64")
    frame["computed_at"] = pd.to_datetime(frame["computed_at"], utc=True, format="ISO8601")
    key = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
    return frame.sort_values(key).reset_index(drop=True)


def test_csv_and_parquet_hold_the_analysts_view(warehouse, exported):
    view = _view_frame(warehouse)
    parquet = pd.read_parquet(exported["parquet"])
    text = [c for c in view.columns if c not in NUMBERS and c != "computed_at"]
    from_csv = pd.read_csv(
        exported["csv"],
        encoding="utf-8-sig",
        dtype=dict.fromkeys([*text, "name_es", "name_en"], str),
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
    assert not [p for p in again["csv"].parent.iterdir() if p.name.startswith(".")]
