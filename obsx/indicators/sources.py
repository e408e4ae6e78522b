"""What indicators read of the warehouse: each dataset's records (current, or as they were at
a past moment), the population figures, the units files declared covered, and what records
placed above the units change in the roll-up. Shared by the engine (obsx/indicators/engine.py),
reconciliation, the origin of a figure and intake's population checks, so that none of them
imports another for it."""

import pandas as pd
import sqlalchemy as sa

from obsx.intake.contract import ACTION_FIELD, DELETE, load_contract
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.tables import geography_rollup


# What indicators read of each dataset: the current records, or the versions valid at a past
# moment (as_of). Withdrawn records (record_action DELETE) are history, counted nowhere. The
# contract's geography field is read as ``unit_code``.
def records_sql(dataset: str, as_of: bool, with_submission: bool = False) -> str:
    contract = load_contract(dataset)
    fields = [f for f in contract.record_fields if f != contract.geography_field]
    columns = ", ".join(
        [
            f"{contract.geography_field} AS unit_code",
            "observatory_code",
            *fields,
            "period_month",
            "period_year",
            *(["submission_id"] if with_submission else []),
        ]
    )
    live = f" AND {ACTION_FIELD} <> '{DELETE}'" if contract.has_deletions else ""
    if not as_of:
        return f"SELECT {columns} FROM {dataset} WHERE 1 = 1{live}"
    return (
        f"SELECT {columns} FROM {dataset}_revision WHERE valid_from <= :as_of"
        f" AND (valid_to IS NULL OR valid_to > :as_of){live}"
    )


def population_sql(as_of: bool) -> str:
    """The population figures: today's, or those loaded by a past moment (before the first
    load, the first ones: a rate is better reproduced with them than left without)."""
    if not as_of:
        return "SELECT geo_code, year, sex, age_group, population FROM population"
    columns = "geo_code, year, sex, age_group, population"
    return (
        f"SELECT {columns} FROM population_revision"
        " WHERE loaded_at <= :as_of AND (replaced_at IS NULL OR replaced_at > :as_of)"
        f" UNION ALL SELECT {columns} FROM population_revision"
        " WHERE loaded_at = (SELECT min(loaded_at) FROM population_revision)"
        " AND NOT EXISTS (SELECT 1 FROM population_revision WHERE loaded_at <= :as_of)"
    )


def coverage_sql(as_of: bool, with_observatory: bool = False) -> str:
    """Units declared covered by a file (their contributor's units, each month of the file); a
    file whose records are placed at a level above the units covers the areas of that level made
    only of its contributor's units, as units of their own (``geography_rollup``)."""
    merged = (
        " JOIN submission s ON s.submission_id = c.submission_id AND s.merged_at <= :as_of"
        if as_of
        else ""
    )
    columns = "c.period_month, substr(c.period_month, 1, 4) AS period_year, c.submission_id" + (
        ", c.observatory_code" if with_observatory else ""
    )
    units = current_deployment().units_level.code
    areas = (  # (contributor, level, area) for the levels some file declared: its whole areas
        "SELECT o.observatory_code, o.geo_level, a.geo_code AS area_code FROM (SELECT DISTINCT"
        " observatory_code, geo_level FROM declared_coverage WHERE geo_level IS NOT NULL"
        " AND dataset = :dataset) o JOIN geography_rollup a ON a.geo_level = o.geo_level"
        " JOIN geography_rollup lu ON lu.unit_code = a.unit_code"
        f" AND lu.geo_level = '{units}' AND lu.geo_code = a.unit_code"
        " LEFT JOIN observatory_unit u ON u.observatory_code = o.observatory_code"
        " AND u.geo_code = a.unit_code"
        " GROUP BY o.observatory_code, o.geo_level, a.geo_code HAVING count(u.geo_code) = count(*)"
    )
    return (
        f"SELECT u.geo_code AS unit_code, {columns} FROM declared_coverage c{merged}"
        " JOIN observatory_unit u ON u.observatory_code = c.observatory_code"
        " WHERE c.dataset = :dataset AND c.geo_level IS NULL"
        f" UNION ALL SELECT x.area_code AS unit_code, {columns} FROM declared_coverage c{merged}"
        f" JOIN ({areas}) x ON x.observatory_code = c.observatory_code"
        " AND x.geo_level = c.geo_level WHERE c.dataset = :dataset"
    )


def valid_in(alias: str, month: str) -> str:
    """A roll-up row ``alias`` holds in ``month`` (an SQL expression: YYYY-MM)."""
    return (
        f" AND ({alias}.from_month IS NULL OR {alias}.from_month <= {month})"
        f" AND ({alias}.to_month IS NULL OR {alias}.to_month > {month})"
    )


def shadow_sql(reports: str) -> str:
    """Where a source reported for an area above the units as a whole (its records placed at
    the area's level), the units and smaller areas inside it that other sources reported that
    month, with each level (the area's and those above) at which they are not counted again:
    there the area's own source is the figure; below it, each counts as usual. ``reports``: a
    relation of (unit_code, period_month), every record or declared coverage of one dataset.
    Rows: unit_code, period_month, geo_level."""
    units = current_deployment().units_level.code
    return (
        "SELECT DISTINCT r.unit_code, r.period_month, up.geo_level"
        f" FROM {reports} a"
        " JOIN geography_rollup own ON own.unit_code = a.unit_code"
        f" AND own.geo_code = a.unit_code AND own.geo_level <> '{units}'"
        f" JOIN {reports} r ON r.period_month = a.period_month AND r.unit_code <> a.unit_code"
        " JOIN geography_rollup inside ON inside.unit_code = r.unit_code"
        " AND inside.geo_level = own.geo_level AND inside.geo_code = a.unit_code"
        + valid_in("inside", "a.period_month")
        + " JOIN geography_rollup up ON up.unit_code = a.unit_code"
        + valid_in("up", "a.period_month")
    )


def lowest_units() -> sa.Select:
    """The roll-up's units of the lowest level (its other rows are areas above them, rolled up
    from their own level for records a source placed there)."""
    r = geography_rollup.c
    return sa.select(r.unit_code).where(r.geo_level == current_deployment().units_level.code)


def units_within(conn: sa.Connection, codes) -> pd.DataFrame:
    """(area_code, unit_code): the units of the lowest level each of ``codes`` holds as the
    geography stands now (a unit: itself, even one since abolished)."""
    r = geography_rollup.c
    return pd.DataFrame(
        conn.execute(
            sa.select(r.geo_code, r.unit_code)
            .where(
                r.geo_code.in_(sorted(codes)),
                r.unit_code.in_(lowest_units()),
                sa.or_(r.to_month.is_(None), r.unit_code == r.geo_code),
            )
            .distinct()
        ).all(),
        columns=["area_code", "unit_code"],
    )
