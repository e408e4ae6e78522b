"""Closed periods and the corrections held against them.

A ministry analyst closes a month once its figures are published. Later submissions that would
change a record of a closed month are held in ``<dataset>_pending``; nothing changes until the
correction is approved (then it is merged like any submission, with its own revision) or rejected.
"""

import datetime as dt
import re
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from obsx.indicators.engine import insert_indicator_values, refresh_indicators
from obsx.intake.contract import load_contract
from obsx.warehouse.tables import (
    indicator_value,
    merge_records,
    period_lock,
    record_tables,
    typed_frame,
)

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
YEAR = re.compile(r"^\d{4}$")
INDICATOR_KEY = [
    "indicator_code",
    "geo_level",
    "geo_code",
    "period_type",
    "period",
    "disaggregation",
]


def months_of(period: str) -> list[str]:
    """``2025-10`` → that month; ``2025`` → its twelve months."""
    if MONTH.match(period):
        return [period]
    if YEAR.match(period):
        return [f"{period}-{m:02d}" for m in range(1, 13)]
    raise ValueError(f"period {period!r}: write YYYY-MM or YYYY")


def close_period(engine: sa.Engine, period: str, by: str, note: str | None = None) -> list[str]:
    """Close a month (or a year's months); closing a closed month changes nothing."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        closed = set(conn.scalars(sa.select(period_lock.c.period_month)))
        new = [m for m in months_of(period) if m not in closed]
        if new:
            conn.execute(
                period_lock.insert(),
                [{"period_month": m, "closed_at": now, "closed_by": by, "note": note} for m in new],
            )
    return new


def reopen_period(engine: sa.Engine, period: str) -> list[str]:
    with engine.begin() as conn:
        months = months_of(period)
        conn.execute(period_lock.delete().where(period_lock.c.period_month.in_(months)))
    return months


def closed_periods(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.select(period_lock).order_by(period_lock.c.period_month), conn)


@dataclass
class Correction:
    correction_id: int
    observatory_code: str
    record_id: str
    period_month: str
    submission_id: str
    source_row: int
    status: str
    changes: dict[str, tuple[object, object]]  # field -> (current value, proposed value)


def list_corrections(
    engine: sa.Engine, dataset: str = "incidents", status: str | None = "pending", ids=None
) -> list[Correction]:
    """Corrections with, for each, the fields it would change (a new record: every field)."""
    contract = load_contract(dataset)
    tables = record_tables(dataset)
    p, c = tables.pending.c, tables.current.c
    key = [k for k in contract.primary_key if k != "observatory_code"]
    fields = list(contract.record_fields)
    query = (
        sa.select(tables.pending, *[c[f].label(f"current_{f}") for f in fields])
        .select_from(
            tables.pending.outerjoin(
                tables.current, sa.and_(*[p[k] == c[k] for k in contract.primary_key])
            )
        )
        .order_by(p.correction_id)
    )
    if status:
        query = query.where(p.status == status)
    if ids:
        query = query.where(p.correction_id.in_(ids))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        Correction(
            correction_id=r["correction_id"],
            observatory_code=r["observatory_code"],
            record_id=" / ".join(str(r[k]) for k in key),
            period_month=r["period_month"],
            submission_id=r["submission_id"],
            source_row=r["source_row"],
            status=r["status"],
            changes={
                f: (r[f"current_{f}"], r[f]) for f in fields if str(r[f"current_{f}"]) != str(r[f])
            },
        )
        for r in rows
    ]


def _apply(conn: sa.Connection, dataset: str, ids: list[int], now: dt.datetime) -> int:
    contract = load_contract(dataset)
    pending = record_tables(dataset).pending
    rows = (
        conn.execute(
            sa.select(pending).where(
                pending.c.correction_id.in_(ids), pending.c.status == "pending"
            )
        )
        .mappings()
        .all()
    )
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["observatory_code"], row["submission_id"]), []).append(dict(row))
    for (observatory_code, submission_id), group in groups.items():
        merge_records(
            conn,
            dataset,
            observatory_code,
            submission_id,
            typed_frame(contract, group, [r["source_row"] for r in group]),
            now,
            respect_closed_periods=False,
        )
    return len(rows)


def indicator_changes(
    engine: sa.Engine, ids: list[int], dataset: str = "incidents"
) -> pd.DataFrame:
    """What approving ``ids`` would change in the published indicators (nothing is written:
    the corrections are applied and the indicators computed inside a transaction rolled back)."""
    columns = [
        sa.Column(c.name, c.type, primary_key=c.primary_key) for c in indicator_value.columns
    ]
    scratch = sa.Table("indicator_value_preview", sa.MetaData(), *columns, prefixes=["TEMPORARY"])
    now = dt.datetime.now(dt.UTC)
    with engine.connect() as conn, conn.begin() as transaction:
        published = pd.read_sql(sa.select(indicator_value), conn)
        _apply(conn, dataset, ids, now)
        scratch.create(conn)
        insert_indicator_values(conn, scratch.name, {"computed_at": now})
        proposed = pd.read_sql(sa.select(scratch), conn)
        transaction.rollback()
    both = published.merge(
        proposed, on=INDICATOR_KEY, how="outer", suffixes=("_published", "_proposed")
    )
    differs = ~(
        both["numerator_published"].eq(both["numerator_proposed"])
        & (
            both["value_published"].eq(both["value_proposed"])
            | (both["value_published"].isna() & both["value_proposed"].isna())
        )
    )
    keep = [
        *INDICATOR_KEY,
        "numerator_published",
        "numerator_proposed",
        "value_published",
        "value_proposed",
    ]
    return both.loc[differs, keep].sort_values(INDICATOR_KEY).reset_index(drop=True)


def approve(engine: sa.Engine, ids: list[int], by: str, dataset: str = "incidents") -> int:
    """Apply pending corrections (each becomes a revision) and recompute the indicators."""
    now = dt.datetime.now(dt.UTC)
    pending = record_tables(dataset).pending
    with engine.begin() as conn:
        applied = _apply(conn, dataset, ids, now)
        conn.execute(
            pending.update()
            .where(pending.c.correction_id.in_(ids), pending.c.status == "pending")
            .values(status="approved", decided_at=now, decided_by=by)
        )
    if applied:
        refresh_indicators(engine, now)
    return applied


def reject(
    engine: sa.Engine, ids: list[int], by: str, reason: str, dataset: str = "incidents"
) -> int:
    """Refuse pending corrections; the warehouse keeps what it had."""
    pending = record_tables(dataset).pending
    with engine.begin() as conn:
        result = conn.execute(
            pending.update()
            .where(pending.c.correction_id.in_(ids), pending.c.status == "pending")
            .values(
                status="rejected", decided_at=dt.datetime.now(dt.UTC), decided_by=by, reason=reason
            )
        )
    return result.rowcount
