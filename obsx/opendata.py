"""Open data: the published indicator table as CSV and Parquet, the SDG series as SDMX-CSV.

Everything here reads the analysts' view (``analytics.indicator_value``; ``analytics_indicator_value``
on SQLite), which already blanks the cells disclosure control withholds: an export can never
publish more than an analyst sees. Files are written under a temporary name and renamed into
place, so a reader never finds half a file. CSV text cells that a spreadsheet would run as a
formula are written as text (``defuse_formulas``); Parquet keeps the values and their types.

The SDMX-CSV (version 2.0, written and readable by pysdmx) follows the SDG data structure of the
IAEG-SDGs (``SDG_DSD``): its dimensions FREQ, REPORTING_TYPE, SERIES, REF_AREA, SEX, AGE, the
other breakdowns at ``_T``, TIME_PERIOD; the measure OBS_VALUE; the attributes OBS_STATUS,
UNIT_MULT, UNIT_MEASURE, LOWER_BOUND, UPPER_BOUND, COMMENT_OBS, plus the SDMX cross-domain
CONF_STATUS, which the global SDG structure lacks. Since it adds CONF_STATUS and sub-national
areas, it is declared as a dataflow of ours (``OBSX:DF_SDG_<COUNTRY>(1.0)``), not as the UN's.
Which indicator is which SDG series is the catalogue's ``sdmx`` block. See docs/analytics.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from obsx.catalogue import Catalogue, Indicator, load_catalogue
from obsx.deployment import current_deployment
from obsx.feedback import defuse_text_columns
from obsx.warehouse import indicator_value

TABLE_CSV = "indicator_value.csv"
TABLE_PARQUET = "indicator_value.parquet"
KEY = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
NUMBERS = [c.name for c in indicator_value.columns if isinstance(c.type, sa.Float)]

# The SDG data structure, in its order; the breakdowns we never split by are _T (total).
DIMENSIONS = [
    "FREQ", "REPORTING_TYPE", "SERIES", "REF_AREA", "SEX", "AGE", "URBANISATION",
    "INCOME_WEALTH_QUANTILE", "EDUCATION_LEV", "OCCUPATION", "CUST_BREAKDOWN",
    "COMPOSITE_BREAKDOWN", "DISABILITY_STATUS", "ACTIVITY", "PRODUCT", "TIME_PERIOD",
]  # fmt: skip
ATTRIBUTES = [
    "OBS_STATUS", "UNIT_MULT", "UNIT_MEASURE", "LOWER_BOUND", "UPPER_BOUND", "COMMENT_OBS",
    "CONF_STATUS",
]  # fmt: skip
OPTIONAL = {"OBS_VALUE", "LOWER_BOUND", "UPPER_BOUND", "COMMENT_OBS"}  # empty when withheld
NUMERIC = {"OBS_VALUE", "LOWER_BOUND", "UPPER_BOUND"}


def write_open_data(engine: sa.Engine, folder: Path, period: str | None = None) -> dict[str, Path]:
    """Write the open-data files into ``folder`` and return them by kind:

    - ``csv``: ``indicator_value.csv``, the published table (the analysts' view with each
      indicator's Spanish and English name after its code), UTF-8 with BOM, formula-safe;
    - ``parquet``: ``indicator_value.parquet``, the same table with its types;
    - ``sdmx``: ``sdg_<country>.csv`` (e.g. ``sdg_pa.csv``), SDMX-CSV 2.0 of every SDG series
      the catalogue names, yearly values only (SDG reporting is annual), at every level.

    ``period`` (``YYYY``, ``YYYY-Qn`` or ``YYYY-MM``, e.g. a bulletin's month) keeps the periods
    that had ended by the end of it: for ``2025-10`` the months up to October 2025, the quarters
    up to 2025-Q3 and the years up to 2024 (a year in progress is not an annual figure; ``2025-12``
    or ``2025`` includes 2025). None: every period published.
    """
    folder.mkdir(parents=True, exist_ok=True)
    table = published_table(engine, period)
    written = {"csv": folder / TABLE_CSV, "parquet": folder / TABLE_PARQUET}
    text = defuse_text_columns(table).to_csv(index=False)
    _replace(written["csv"], lambda p: p.write_text("\ufeff" + text, encoding="utf-8"))
    _replace(written["parquet"], lambda p: table.to_parquet(p, index=False))
    country = current_deployment().country_code
    written["sdmx"] = folder / f"sdg_{country.lower()}.csv"
    sdmx_text = sdmx_csv(sdg_observations(table), country)
    _replace(written["sdmx"], lambda p: p.write_text(sdmx_text, encoding="utf-8"))
    return written


def _view(engine: sa.Engine, name: str) -> str:
    return f"analytics.{name}" if engine.dialect.name == "postgresql" else f"analytics_{name}"


def published_table(engine: sa.Engine, period: str | None = None) -> pd.DataFrame:
    """The analysts' view of indicator values (withheld cells blank), with the indicator's
    names, in key order; numbers as float, ``computed_at`` as UTC timestamps, text as str."""
    sql = (
        f"SELECT v.*, i.name_es, i.name_en FROM {_view(engine, 'indicator_value')} v"
        f" JOIN {_view(engine, 'indicator')} i ON i.indicator_code = v.indicator_code"
    )
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(sql), conn)
    columns = list(frame.columns)
    for name in ("name_es", "name_en"):  # after the code they name
        columns.remove(name)
    columns[1:1] = ["name_es", "name_en"]
    frame = frame[columns]
    if period is not None:
        end = _period_end(period)
        ends = {p: _period_end(p) for p in frame["period"].unique()}
        frame = frame[frame["period"].map(ends) <= end]
    for column in frame.columns:
        if column in NUMBERS:
            frame[column] = frame[column].astype("float64")
        elif column == "computed_at":
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        else:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


def _period_end(period: str) -> str:
    """The last month (YYYY-MM) of a year, quarter or month."""
    found = re.fullmatch(r"(\d{4})(?:-(0[1-9]|1[0-2])|-Q([1-4]))?", str(period))
    if not found:
        raise ValueError(f"period {period!r}: give YYYY, YYYY-Qn or YYYY-MM")
    year, month, quarter = found.groups()
    if month:
        return f"{year}-{month}"
    return f"{year}-{int(quarter) * 3:02d}" if quarter else f"{year}-12"


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Write through ``write`` to a temporary name beside ``path``, then rename it into place."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


# --- SDMX-CSV --------------------------------------------------------------------------------


def _breakdowns(cat: Catalogue, ind: Indicator) -> dict[str, tuple[str, str]]:
    """disaggregation -> (SEX, AGE) for the splits the SDG structure has; the rest (weapon,
    offence group…) are not SDG breakdowns and stay out."""
    total_age = ind.sdmx.age
    codes = {"": ("_T", total_age)}
    for name in ind.disaggregations:
        dim = cat.dimension(ind.dataset, name)
        if name == "sex" or dim.population == "sex":
            for value in dim.values or ():
                if value in ("F", "M"):
                    codes[f"{name}={value}"] = (value, total_age)
        elif dim.bands:  # ages in years: SDMX's Y15T29, Y_GE60
            for band, (low, high) in dim.bands.items():
                age = f"Y{low}T{high}" if high is not None else f"Y_GE{low}"
                codes[f"{name}={band}"] = ("_T", age)
    return codes


def sdg_observations(table: pd.DataFrame, cat: Catalogue | None = None) -> pd.DataFrame:
    """The SDG series' yearly observations of a published table (``published_table``), one
    row per observation with the SDG structure's columns: codes as text, numbers as float
    (pysdmx writes them in their shortest exact form; NaN: not given).

    REF_AREA is the country's UN M49 code for the national level (the SDG structure's area
    codes) and the national statistics office's unit code below it. OBS_VALUE, the bounds and
    the comment are empty for withheld cells (CONF_STATUS C or D)."""
    cat = cat or load_catalogue()
    deployment = current_deployment()
    national = deployment.levels[0].code
    if deployment.m49 is None:
        raise ValueError(
            f"deployment {deployment.name!r} has no m49 code (deployment.yaml, e.g. m49: 591):"
            " the SDG data structure names the country by it"
        )
    rows = []
    for ind in cat.indicators:
        if ind.sdmx is None:
            continue
        codes = _breakdowns(cat, ind)
        values = table[
            (table["indicator_code"] == ind.code)
            & (table["period_type"] == "year")
            & table["disaggregation"].isin(codes)
            & ((table["conf_status"] != "F") | table["value"].notna())
        ]
        if values.empty:
            continue
        published = values["conf_status"] == "F"
        sex_age = values["disaggregation"].map(codes)
        rows.append(
            pd.DataFrame(
                {
                    "FREQ": "A",
                    "REPORTING_TYPE": "N",  # national data
                    "SERIES": ind.sdmx.series,
                    "REF_AREA": values["geo_code"].where(
                        values["geo_level"] != national, deployment.m49
                    ),
                    "SEX": sex_age.str[0],
                    "AGE": sex_age.str[1],
                    **dict.fromkeys(DIMENSIONS[6:-1], "_T"),
                    "TIME_PERIOD": values["period"],
                    "OBS_VALUE": values["value"].where(published),
                    "OBS_STATUS": "A",  # normal value
                    "UNIT_MULT": "0",
                    "UNIT_MEASURE": ind.sdmx.unit_measure,
                    "LOWER_BOUND": values["ci_low"].where(published),
                    "UPPER_BOUND": values["ci_high"].where(published),
                    "COMMENT_OBS": values["quality_flag"].fillna("").where(published, ""),
                    "CONF_STATUS": values["conf_status"],
                    "_level": values["geo_level"].map(
                        {code: i for i, code in enumerate(deployment.level_codes)}
                    ),
                }
            )
        )
    columns = [*DIMENSIONS, "OBS_VALUE", *ATTRIBUTES]
    if not rows:
        return pd.DataFrame(columns=columns, dtype=object)
    frame = pd.concat(rows, ignore_index=True)
    dims = [d for d in DIMENSIONS if d not in ("FREQ", "REPORTING_TYPE")]
    clash = frame[frame.duplicated(dims, keep=False)]
    if not clash.empty:  # a unit code used at two levels would make two observations one
        first = clash.iloc[0]
        raise ValueError(
            f"REF_AREA {first['REF_AREA']} names two areas ({first['SERIES']} {first['TIME_PERIOD']})"
        )
    order = ["SERIES", "_level", "REF_AREA", "TIME_PERIOD", "SEX", "AGE"]
    totals_first = lambda c: c if pd.api.types.is_numeric_dtype(c) else c.replace("_T", "")  # noqa: E731
    frame = frame.sort_values(order, key=totals_first)
    return frame[columns].reset_index(drop=True)


def sdmx_schema(country: str):
    """The dataflow the SDMX-CSV declares: the SDG structure's components, with CONF_STATUS."""
    from pysdmx.model import Component, Components, Concept, DataType, Role, Schema

    def component(name: str, role: Role) -> Component:
        dtype = DataType.DOUBLE if name in NUMERIC else DataType.STRING
        return Component(
            id=name,
            required=name not in OPTIONAL,
            role=role,
            concept=Concept(id=name, dtype=dtype),
            local_dtype=dtype,
            attachment_level="O" if role == Role.ATTRIBUTE else None,
        )

    return Schema(
        context="dataflow",
        agency="OBSX",
        id=f"DF_SDG_{country.upper()}",
        version="1.0",
        name=f"SDG indicators, {country.upper()} (on the IAEG-SDGs SDG_DSD)",
        components=Components(
            [component(d, Role.DIMENSION) for d in DIMENSIONS]
            + [component("OBS_VALUE", Role.MEASURE)]
            + [component(a, Role.ATTRIBUTE) for a in ATTRIBUTES]
        ),
    )


def sdmx_csv(observations: pd.DataFrame, country: str) -> str:
    """Observations (``sdg_observations``) as SDMX-CSV 2.0, written by pysdmx."""
    from pysdmx.io import write_sdmx
    from pysdmx.io.format import Format
    from pysdmx.io.pd import PandasDataset

    dataset = PandasDataset(structure=sdmx_schema(country), data=defuse_text_columns(observations))
    return write_sdmx(dataset, Format.DATA_SDMX_CSV_2_0_0)
