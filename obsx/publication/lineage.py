"""What makes a published value: the records behind an indicator value, each with the file, the
spreadsheet row, the submission and the revision it came from, and the population figures of its
denominator with the load they belong to (``obsx explain``).

The records are selected by the same conditions the engine uses (the catalogue's, compiled by
``obsx.indicators.catalogue``), so the rows listed add up to the value's numerator — a test holds it to that.
"""

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from obsx.indicators.catalogue import condition_sql, fact_column, load_catalogue, side_where
from obsx.indicators.engine import PERIOD_COLUMNS, QUARTER_SQL
from obsx.indicators.reconcile import build_exclusions, exclusion_sql
from obsx.indicators.sources import (
    coverage_sql,
    records_sql,
    shadow_sql,
    units_within,
    valid_in,
)
from obsx.intake.contract import load_contract
from obsx.warehouse.tables import indicator_value


@dataclass
class Explanation:
    value: dict  # the indicator_value row
    records: pd.DataFrame  # one row per record, with side (numerator/denominator) and origin
    population: pd.DataFrame  # rates: the figures of the denominator, with their load


def _lineage_sql(dataset: str, period_type: str, condition: str) -> str:
    cat = load_catalogue()
    spec = cat.datasets[dataset]
    contract = load_contract(dataset)
    own = {*contract.record_fields, "unit_code"}  # a record's own columns are there already
    derived = ", ".join(
        f"{fact_column(spec, c)} AS {c}" for c in cat.columns(dataset) if c not in own
    )
    key = [k for k in contract.primary_key if k != "observatory_code"]
    manifest = " AND ".join(f"m.{k} = i.{k}" for k in key)
    measure_cols = ", ".join(
        dict.fromkeys(
            f"i.{m.sum}"
            for m in spec.measures.values()
            if m.sum and m.sum != contract.geography_field
        )
    )
    shown = ", ".join(f"i.{k}" for k in key)
    return f"""
        SELECT i.observatory_code, {shown}, i.unit_code, i.period_month{", " + measure_cols if measure_cols else ""},
               t.revision, t.submission_id, s.file_name, m.source_row, s.received_at, s.merged_at
        FROM (SELECT r.*, {QUARTER_SQL.format(a="r.")} AS period_quarter{", " + derived if derived else ""}
              FROM ({records_sql(dataset, False)}) r) i
        JOIN {dataset} t ON t.observatory_code = i.observatory_code
         AND {" AND ".join(f"t.{k} = i.{k}" for k in key)}
        LEFT JOIN submission s ON s.submission_id = t.submission_id
        LEFT JOIN {dataset}_submitted m ON m.submission_id = t.submission_id
         AND m.observatory_code = i.observatory_code AND {manifest}
        JOIN geography_rollup g ON g.unit_code = i.unit_code AND g.geo_level = :geo_level
         AND (g.from_month IS NULL OR g.from_month <= i.period_month)
         AND (g.to_month IS NULL OR g.to_month > i.period_month)
        WHERE g.geo_code = :geo_code AND i.{PERIOD_COLUMNS[period_type]} = :period
          AND {condition}
        ORDER BY i.observatory_code, {shown}"""


def _shadowed(conn, dataset: str, found: pd.DataFrame, geo_level: str) -> pd.Series:
    """Which of ``found`` (unit_code, period_month) a value at ``geo_level`` does not count,
    as the engine decides it (``sources.shadow_sql``): inside an area that another source
    reported for as a whole that month, at that area's level and above."""
    reports = (
        f"(SELECT unit_code, period_month FROM ({records_sql(dataset, False)}) x"
        f" UNION SELECT unit_code, period_month FROM ({coverage_sql(False)}) y)"
    )
    shadowed = pd.read_sql(
        sa.text(
            f"SELECT unit_code, period_month FROM ({shadow_sql(reports)}) s"
            " WHERE geo_level = :geo_level"
        ),
        conn,
        params={"dataset": dataset, "geo_level": geo_level},
    )
    key = ["unit_code", "period_month"]
    return pd.Series(
        pd.MultiIndex.from_frame(found[key]).isin(pd.MultiIndex.from_frame(shadowed[key])),
        index=found.index,
    )


def _covered_sql(period_type: str) -> str:
    """The units of the area that a file declared covered in the period (a unit it does not
    list had no event: it counts, with its population, as one that sent a record)."""
    return f"""
        SELECT DISTINCT c.unit_code
        FROM (SELECT c0.*, {QUARTER_SQL.format(a="c0.")} AS period_quarter
              FROM ({coverage_sql(False)}) c0) c
        JOIN geography_rollup g ON g.unit_code = c.unit_code AND g.geo_level = :geo_level
         {valid_in("g", "c.period_month")}
        WHERE g.geo_code = :geo_code AND c.{PERIOD_COLUMNS[period_type]} = :period"""


def explain(
    engine: sa.Engine, code: str, geo_code: str, period: str, disaggregation: str = ""
) -> Explanation:
    """The records (and population figures) behind one indicator value."""
    cat = load_catalogue()
    ind = cat.indicator(code)
    v = indicator_value.c
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(indicator_value).where(
                    v.indicator_code == code,
                    v.geo_code == geo_code,
                    v.period == period,
                    v.disaggregation == disaggregation,
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise LookupError(
                f"{code} has no value for {geo_code}, {period}"
                + (f", {disaggregation}" if disaggregation else "")
            )
        extra = {}
        if disaggregation:
            name, value = disaggregation.split("=", 1)
            extra = {name: [value]}
        params = {"geo_level": row["geo_level"], "geo_code": geo_code, "period": period}
        frames = []
        reconciled = build_exclusions(conn)
        sides = [("numerator", ind.numerator), ("denominator", ind.denominator)]
        for label, side in sides:
            if side is None or ind.kind == "coverage":
                continue
            condition = condition_sql({**side_where(cat, side), **extra}, alias="i")
            # what the figure counts: of sources counting the same victims, the chosen one
            condition += exclusion_sql(side.dataset, reconciled, alias="i")
            sql = _lineage_sql(side.dataset, row["period_type"], condition)
            found = pd.read_sql(sa.text(sql), conn, params=params)
            found = found[~_shadowed(conn, side.dataset, found, row["geo_level"])]
            frames.append(found.assign(side=label))
        records = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        population = pd.DataFrame()
        if ind.kind == "rate":
            # Every unit that reported in the area and period (with or without an event): a
            # record of it, or a file declaring it covered.
            reporting = pd.read_sql(
                sa.text(_lineage_sql(ind.dataset, row["period_type"], "1 = 1")), conn, params=params
            )
            covered = pd.read_sql(
                sa.text(_covered_sql(row["period_type"])),
                conn,
                params=params | {"dataset": ind.dataset},
            )
            reporting = reporting[~_shadowed(conn, ind.dataset, reporting, row["geo_level"])]
            reported = set(reporting["unit_code"]) | set(covered["unit_code"])
            units = sorted(set(units_within(conn, reported)["unit_code"]))
            year = int(period[:4])
            population = pd.read_sql(
                sa.text(
                    "SELECT geo_code, year, sex, age_group, population, source, loaded_at"
                    " FROM population_revision WHERE replaced_at IS NULL"
                    " AND year <= :year ORDER BY geo_code, year DESC, sex, age_group"
                ),
                conn,
                params={"year": year},
            )
            population = population[population["geo_code"].isin(units)]
            latest = population.groupby("geo_code")["year"].transform("max")
            population = population[population["year"] == latest]
    return Explanation(dict(row), records, population)
