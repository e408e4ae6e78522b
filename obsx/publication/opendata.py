"""Open data: the published indicator table as CSV and Parquet, the SDG series as SDMX-CSV.

Everything here reads the analysts' view (``analytics.indicator_value``; ``analytics_indicator_value``
on SQLite), which already blanks the cells disclosure control withholds: an export can never
publish more than an analyst sees. Files are written under a temporary name and renamed into
place, so a reader never finds half a file. CSV text cells that a spreadsheet would run as a
formula are written as text (``defuse_formulas``); Parquet keeps the values and their types.

The SDMX-CSV (version 2.0, written and readable by pysdmx) follows the SDG data structure of the
IAEG-SDGs (``SDG_DSD``): its dimensions FREQ, REPORTING_TYPE, SERIES, REF_AREA, SEX, AGE, the
other breakdowns at ``_T``, TIME_PERIOD; the measure OBS_VALUE; the attributes OBS_STATUS,
UNIT_MULT, UNIT_MEASURE, NATURE, LOWER_BOUND, UPPER_BOUND, COMMENT_OBS, plus the SDMX
cross-domain CONF_STATUS, which the global SDG structure lacks. Since it adds CONF_STATUS and
sub-national areas, it is declared as a dataflow of ours (``OBSX:DF_SDG_<COUNTRY>(1.0)``), not
as the UN's, and shipped with its structure (``sdg_<country>_structure.json``, SDMX-JSON): the
area code list (the country's M49 code, ``PA_0804`` below it), the concepts, the data structure
and the dataflow. Which indicator is which SDG series is the catalogue's ``sdmx`` block; how
many decimals a value keeps, its ``decimals``. See docs/analytics.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from obsx.indicators.catalogue import Catalogue, Indicator, load_catalogue
from obsx.intake.feedback import defuse_formulas, defuse_text_columns
from obsx.warehouse.deployment import Deployment, current_deployment
from obsx.warehouse.tables import geography, indicator_value

TABLE_CSV = "indicator_value.csv"
TABLE_PARQUET = "indicator_value.parquet"
KEY = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
NUMBERS = [c.name for c in indicator_value.columns if isinstance(c.type, sa.Float)]
INTEGERS = [c.name for c in indicator_value.columns if isinstance(c.type, sa.Integer)]

# The SDG data structure, in its order; the breakdowns we never split by are _T (total).
DIMENSIONS = [
    "FREQ", "REPORTING_TYPE", "SERIES", "REF_AREA", "SEX", "AGE", "URBANISATION",
    "INCOME_WEALTH_QUANTILE", "EDUCATION_LEV", "OCCUPATION", "CUST_BREAKDOWN",
    "COMPOSITE_BREAKDOWN", "DISABILITY_STATUS", "ACTIVITY", "PRODUCT", "TIME_PERIOD",
]  # fmt: skip
ATTRIBUTES = [
    "OBS_STATUS", "UNIT_MULT", "UNIT_MEASURE", "NATURE", "LOWER_BOUND", "UPPER_BOUND",
    "COMMENT_OBS", "CONF_STATUS",
]  # fmt: skip
OPTIONAL = {"OBS_VALUE", "LOWER_BOUND", "UPPER_BOUND", "COMMENT_OBS"}  # empty when withheld
NUMERIC = {"OBS_VALUE", "LOWER_BOUND", "UPPER_BOUND"}


def write_open_data(engine: sa.Engine, folder: Path, period: str | None = None) -> dict[str, Path]:
    """Write the open-data files into ``folder`` and return them by kind:

    - ``csv``: ``indicator_value.csv``, the published table (the analysts' view with each
      indicator's Spanish and English name after its code), UTF-8 with BOM, formula-safe;
    - ``parquet``: ``indicator_value.parquet``, the same table with its types;
    - ``sdmx``: ``sdg_<country>.csv`` (e.g. ``sdg_pa.csv``), SDMX-CSV 2.0 of every SDG series
      the catalogue names, yearly values only (SDG reporting is annual), at every level;
    - ``sdmx_structure``: ``sdg_<country>_structure.json``, the SDMX-JSON structure message it
      refers to, with the code list of its areas (``sdmx_structure``).

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
    deployment = _sdmx_deployment()
    country = deployment.country_code
    written["sdmx"] = folder / f"sdg_{country.lower()}.csv"
    written["sdmx_structure"] = folder / f"sdg_{country.lower()}_structure.json"
    sdmx_text = sdmx_csv(sdg_observations(table), country)
    structure_text = sdmx_structure(area_codes(engine, deployment), deployment)
    _replace(written["sdmx"], lambda p: p.write_text(sdmx_text, encoding="utf-8"))
    _replace(written["sdmx_structure"], lambda p: p.write_text(structure_text, encoding="utf-8"))
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
        elif column in INTEGERS:  # the population year: 2018, never 2018.0
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
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
#
# Codes with the meaning the SDMX code lists give them, as the SDG data structure (SDG_DSD)
# ships them:
# - OBS_STATUS (SDMX:CL_OBS_STATUS(2.1)): A "Normal value"; Q "Missing value; suppressed —
#   used, for example, when data are suppressed due to statistical confidentiality
#   considerations". A withheld value is written as SDMX says a missing one is: its row stays
#   (a reader sees the cell exists and why it is empty), OBS_VALUE empty, OBS_STATUS Q, and
#   CONF_STATUS (SDMX:CL_CONF_STATUS) C "Confidential statistical information" (the published
#   view gives every withheld cell C: it does not tell a small count from a cell withheld to
#   protect one). Never A with no value.
# - NATURE (IAEG-SDGs:CL_NATURE(1.0)): C "Country Data" (CA country adjusted, E estimated,
#   G global monitoring, M modeled, N non-relevant, _X not available): every value here is
#   produced and published by the country.
OBS_STATUS_PUBLISHED = "A"
OBS_STATUS_WITHHELD = "Q"
NATURE_COUNTRY_DATA = "C"
SDMX_AGENCY = "OBSX"
# What each column is, for the concept scheme shipped with the data (SDMX-JSON structure).
CONCEPTS = {
    "FREQ": ("Frequency", "SDMX:CL_FREQ: A annual"),
    "REPORTING_TYPE": ("Reporting type", "IAEG-SDGs:CL_REPORTING_TYPE: N national"),
    "SERIES": ("SDG series", "IAEG-SDGs:CL_SERIES (VC_IHR_PSRC, ...)"),
    "REF_AREA": (
        "Reference area",
        "The country's UN M49 code for national values; below it <ISO alpha-2>_<national"
        " statistics office's unit code> (PA_0804), never a bare number: see the area code list",
    ),
    "SEX": ("Sex", "IAEG-SDGs:CL_SEX: _T, F, M"),
    "AGE": ("Age", "IAEG-SDGs:CL_AGE: _T, Y15T29, Y_GE60, ..."),
    "URBANISATION": ("Degree of urbanisation", "_T: no breakdown"),
    "INCOME_WEALTH_QUANTILE": ("Income or wealth quantile", "_T: no breakdown"),
    "EDUCATION_LEV": ("Education level", "_T: no breakdown"),
    "OCCUPATION": ("Occupation", "_T: no breakdown"),
    "CUST_BREAKDOWN": ("Custom breakdown", "_T: no breakdown"),
    "COMPOSITE_BREAKDOWN": ("Composite breakdown", "_T: no breakdown"),
    "DISABILITY_STATUS": ("Disability status", "_T: no breakdown"),
    "ACTIVITY": ("Economic activity", "_T: no breakdown"),
    "PRODUCT": ("Type of product", "_T: no breakdown"),
    "TIME_PERIOD": ("Time period", "The year"),
    "OBS_VALUE": ("Observation value", "Rounded to the indicator's decimals; empty when withheld"),
    "OBS_STATUS": ("Observation status", "SDMX:CL_OBS_STATUS: A normal value, Q suppressed"),
    "UNIT_MULT": ("Unit multiplier", "SDMX:CL_UNIT_MULT: 0 units"),
    "UNIT_MEASURE": ("Unit of measure", "IAEG-SDGs:CL_UNIT_MEASURE (NUMBER, PER_100000_POP, PT)"),
    "NATURE": ("Nature of data", "IAEG-SDGs:CL_NATURE: C country data"),
    "LOWER_BOUND": ("Lower bound", "Survey estimates: lower end of the 95% confidence interval"),
    "UPPER_BOUND": ("Upper bound", "Survey estimates: upper end of the 95% confidence interval"),
    "COMMENT_OBS": ("Comment", "The quality flag: unstable, caution, unreliable"),
    "CONF_STATUS": ("Confidentiality status", "SDMX:CL_CONF_STATUS: F free, C confidential"),
}


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


def _sdmx_deployment() -> Deployment:
    """The deployment, checked for the two codes the SDMX files name the country by."""
    deployment = current_deployment()
    if deployment.m49 is None:
        raise ValueError(
            f"deployment {deployment.name!r} has no m49 code (deployment.yaml, e.g. m49: 591):"
            " the SDG data structure names the country by it"
        )
    if deployment.iso_alpha2 is None:
        raise ValueError(
            f"deployment {deployment.name!r} has no ISO 3166-1 alpha-2 code (deployment.yaml,"
            " e.g. iso_alpha2: PA): it prefixes the codes of areas below the country"
        )
    return deployment


PART_OF_COUNTRY = "REPORTING"  # the area code suffix of the units that reported


def area_code(deployment: Deployment, geo_level: str, geo_code: str) -> str:
    """REF_AREA of a unit: the country's UN M49 code at the national level (as the SDG data),
    ``<ISO alpha-2>_<unit code>`` below it (``PA_0804``). A bare ``0804`` or ``08`` would be
    read as M49 804 (Ukraine) or 8 (Albania), ``13`` as Central America."""
    if geo_level == deployment.levels[0].code:
        return deployment.m49
    return f"{deployment.iso_alpha2}_{geo_code}"


def reporting_area_code(deployment: Deployment) -> str:
    """REF_AREA of a national value over part of the country (the units that reported):
    never the M49 code, which would say the whole country."""
    return f"{deployment.iso_alpha2}_{PART_OF_COUNTRY}"


def observation_area(row: pd.Series, deployment: Deployment) -> tuple[str, str, str]:
    """REF_AREA, NATURE and COMMENT_OBS of one published value (a row of the published table):
    the one place that says which area an observation stands for and how it was produced.

    The unit's ``area_code`` and NATURE C (country data); a value over part of its area's
    population-months (``coverage`` below 100: units that did not report, months not yet
    reported) says so in COMMENT_OBS, and a national one is not given the country's M49 code
    but ``reporting_area_code`` (the units that reported). COMMENT_OBS also carries the quality
    flag of a published value."""
    published = row["conf_status"] == "F"
    notes = [row.get("quality_flag") or ""] if published else []
    code = area_code(deployment, row["geo_level"], row["geo_code"])
    coverage = row.get("coverage")
    if coverage is not None and not pd.isna(coverage) and coverage < 99.95:
        notes.append(f"coverage {coverage:.1f}% of population-months")
        if row["geo_level"] == deployment.levels[0].code:
            code = reporting_area_code(deployment)
    return code, NATURE_COUNTRY_DATA, "; ".join(n for n in notes if n)


def number_text(value: float | None, decimals: int) -> str:
    """A value as SDMX-CSV writes it: rounded to ``decimals`` digits (a count: ``414``, never
    ``414.0``), empty when there is none."""
    if value is None or pd.isna(value):
        return ""
    text = f"{value:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text  # no "-0.00"


def _numbers(column: pd.Series, published: pd.Series, decimals: int) -> pd.Series:
    return column.where(published).map(lambda v: number_text(v, decimals))


def sdg_observations(table: pd.DataFrame, cat: Catalogue | None = None) -> pd.DataFrame:
    """The SDG series' yearly observations of a published table (``published_table``), one
    row per observation with the SDG structure's columns, every cell text as it is written:
    numbers rounded to the indicator's ``decimals`` (``number_text``), empty when not given.

    REF_AREA, NATURE and COMMENT_OBS come from ``observation_area``. A withheld value keeps its
    row with OBS_VALUE, the bounds and the comment empty, OBS_STATUS Q and CONF_STATUS C."""
    cat = cat or load_catalogue()
    deployment = _sdmx_deployment()
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
        area = values.apply(
            lambda row: observation_area(row, deployment), axis=1, result_type="expand"
        )
        rows.append(
            pd.DataFrame(
                {
                    "FREQ": "A",
                    "REPORTING_TYPE": "N",  # national data
                    "SERIES": ind.sdmx.series,
                    "REF_AREA": area[0],
                    "SEX": sex_age.str[0],
                    "AGE": sex_age.str[1],
                    **dict.fromkeys(DIMENSIONS[6:-1], "_T"),
                    "TIME_PERIOD": values["period"],
                    "OBS_VALUE": _numbers(values["value"], published, ind.decimals),
                    "OBS_STATUS": published.map(
                        {True: OBS_STATUS_PUBLISHED, False: OBS_STATUS_WITHHELD}
                    ),
                    "UNIT_MULT": "0",
                    "UNIT_MEASURE": ind.sdmx.unit_measure,
                    "NATURE": area[1],
                    "LOWER_BOUND": _numbers(values["ci_low"], published, ind.decimals),
                    "UPPER_BOUND": _numbers(values["ci_high"], published, ind.decimals),
                    "COMMENT_OBS": area[2],
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


def _area_codelist_urn(country: str) -> str:
    return f"urn:sdmx:org.sdmx.infomodel.codelist.Codelist={SDMX_AGENCY}:CL_AREA_{country.upper()}(1.0)"


def _components(country: str, typed: bool):
    """The SDG structure's components, with NATURE and CONF_STATUS. ``typed``: as the shipped
    structure declares them (numbers double, REF_AREA coded by the area code list); otherwise
    all text, for writing the observations exactly as ``sdg_observations`` formatted them."""
    from pysdmx.model import Component, Components, DataType, ItemReference, Role

    def component(name: str, role: Role) -> Component:
        dtype = DataType.STRING
        if typed and name in NUMERIC:
            dtype = DataType.DOUBLE
        elif typed and name == "TIME_PERIOD":
            dtype = DataType.PERIOD  # ObservationalTimePeriod: the year, as SDMX time
        coded = typed and name == "REF_AREA"
        return Component(
            id=name,
            required=name not in OPTIONAL,
            role=role,
            concept=ItemReference(
                sdmx_type="Concept", agency=SDMX_AGENCY, id="CS_SDG", version="1.0", item_id=name
            ),
            local_dtype=dtype,
            local_enum_ref=_area_codelist_urn(country) if coded else None,
            attachment_level="O" if role == Role.ATTRIBUTE else None,
        )

    return Components(
        [component(d, Role.DIMENSION) for d in DIMENSIONS]
        + [component("OBS_VALUE", Role.MEASURE)]
        + [component(a, Role.ATTRIBUTE) for a in ATTRIBUTES]
    )


def sdmx_schema(country: str, typed: bool = False):
    """The dataflow the SDMX-CSV declares, ``OBSX:DF_SDG_<COUNTRY>(1.0)``."""
    from pysdmx.model import Schema

    return Schema(
        context="dataflow",
        agency=SDMX_AGENCY,
        id=f"DF_SDG_{country.upper()}",
        version="1.0",
        name=f"SDG indicators, {country.upper()} (on the IAEG-SDGs SDG_DSD)",
        components=_components(country, typed),
    )


def area_codes(engine: sa.Engine, deployment: Deployment) -> pd.DataFrame:
    """Every unit of the deployment's geography (the name it has last), with its REF_AREA:
    ``code`` (``area_code``), ``name``, ``description`` (its level and national code)."""
    with engine.connect() as conn:
        units = pd.read_sql(
            sa.select(geography.c.geo_code, geography.c.geo_level, geography.c.name).order_by(
                geography.c.valid_from
            ),
            conn,
        )
    units = units.drop_duplicates(["geo_level", "geo_code"], keep="last")
    units = units[units["geo_level"].isin(deployment.level_codes)]
    rank = {code: i for i, code in enumerate(deployment.level_codes)}
    units = units.assign(_rank=units["geo_level"].map(rank)).sort_values(["_rank", "geo_code"])
    national = deployment.levels[0].code
    rows = []
    for level, code, name in units[["geo_level", "geo_code", "name"]].itertuples(index=False):
        kind = deployment.level(level).name["en"]
        rows.append(
            {
                "code": area_code(deployment, level, code),
                "name": name,
                "description": f"{kind}, UN M49 {deployment.m49}"
                if level == national
                else f"{kind} {code} of {deployment.country_name['en']}",
            }
        )
    rows.insert(
        1,
        {
            "code": reporting_area_code(deployment),
            "name": f"{deployment.country_name['en']}: reporting units",
            "description": "National values over the units that reported only (part of the"
            " country: COMMENT_OBS gives the share of population-months covered)",
        },
    )
    return pd.DataFrame(rows, columns=["code", "name", "description"])


def sdmx_structure(areas: pd.DataFrame, deployment: Deployment) -> str:
    """The structure the SDMX-CSV refers to, as an SDMX-JSON 2.0 structure message written by
    pysdmx: the area code list ``OBSX:CL_AREA_<COUNTRY>(1.0)`` (``area_codes``), the concepts,
    the data structure ``OBSX:DSD_SDG_<COUNTRY>(1.0)`` (REF_AREA coded by that list) and the
    dataflow ``OBSX:DF_SDG_<COUNTRY>(1.0)``. With it, a reader (``pysdmx.io.get_datasets(data,
    structure)``) knows every area code and reads them as codes, not numbers."""
    from pysdmx.io import write_sdmx
    from pysdmx.io.format import Format
    from pysdmx.model import (
        Code,
        Codelist,
        Concept,
        ConceptScheme,
        Dataflow,
        DataStructureDefinition,
        Organisation,
    )
    from pysdmx.model.message import Header

    country = deployment.country_code
    upper = country.upper()
    prefix = deployment.iso_alpha2
    codes = Codelist(
        id=f"CL_AREA_{upper}",
        agency=SDMX_AGENCY,
        version="1.0",
        name=f"Areas of {deployment.country_name['en']}: UN M49 {deployment.m49} for the"
        f" country, {prefix}_<unit code> below it",
        items=[
            Code(id=code, name=name, description=about)
            for code, name, about in areas[["code", "name", "description"]].itertuples(index=False)
        ],
    )
    concepts = ConceptScheme(
        id="CS_SDG",
        agency=SDMX_AGENCY,
        version="1.0",
        name="Concepts of the SDG data structure (IAEG-SDGs SDG_DSD), as Observatory Exchange writes them",
        items=[
            Concept(id=c, name=name, description=about) for c, (name, about) in CONCEPTS.items()
        ],
    )
    structure = DataStructureDefinition(
        id=f"DSD_SDG_{upper}",
        agency=SDMX_AGENCY,
        version="1.0",
        name=f"SDG indicators, {upper} (the SDG_DSD with NATURE, CONF_STATUS and sub-national areas)",
        components=_components(country, typed=True),
    )
    flow = Dataflow(
        id=f"DF_SDG_{upper}",
        agency=SDMX_AGENCY,
        version="1.0",
        name=f"SDG indicators, {upper}",
        structure=f"urn:sdmx:org.sdmx.infomodel.datastructure.{structure.short_urn}",
    )
    message = json.loads(
        write_sdmx(
            [concepts, codes, structure, flow],
            Format.STRUCTURE_SDMX_JSON_2_0_0,
            header=Header(sender=Organisation(id=SDMX_AGENCY)),
        )
    )
    # pysdmx 1.21 writes "groups": [] for a structure without groups, which the SDMX-JSON
    # schema forbids (a list of groups is non-empty or absent): leave it out.
    for dsd in message["data"]["dataStructures"]:
        if not dsd["dataStructureComponents"].get("groups", True):
            del dsd["dataStructureComponents"]["groups"]
    return json.dumps(message, ensure_ascii=False, indent=2) + "\n"


def sdmx_csv(observations: pd.DataFrame, country: str) -> str:
    """Observations (``sdg_observations``: text, numbers already rounded) as SDMX-CSV 2.0,
    written by pysdmx; a text cell a spreadsheet would run as a formula gets a leading '."""
    from pysdmx.io import write_sdmx
    from pysdmx.io.format import Format
    from pysdmx.io.pd import PandasDataset

    safe = observations.copy()
    text = [c for c in safe.columns if c not in NUMERIC]
    safe[text] = defuse_formulas(safe[text].fillna(""))
    dataset = PandasDataset(structure=sdmx_schema(country), data=safe)
    return write_sdmx(dataset, Format.DATA_SDMX_CSV_2_0_0)
