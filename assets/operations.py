"""What operators ask first: which files arrived last night, and what was refused.

``last_night`` is rebuilt at the end of every batch (it depends on ``submissions``, so the
``process_submissions`` job selects it): a Markdown table of the files received in the last
24 hours, read from the warehouse (``submission``, ``quarantine``), plus what the warehouse does
not hold (a file refused because another contributor sent the same bytes, a file whose processing
failed), read from the submissions' own materializations in the Dagster event log.
"""

import datetime as dt
import re
import zoneinfo

import dagster as dg
import sqlalchemy as sa

from assets.submissions import submissions, top_problems
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.tables import submission
from pipelines.resources import WarehouseResource

WINDOW = dt.timedelta(hours=24)
MAX_LISTED = 200  # rows in the table; the counts above it cover every file
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def cell(value, limit: int = 80) -> str:
    """A value safe in a Markdown table cell: one line, markup escaped (file names come from
    outside), bounded length."""
    text = " ".join(str(value if value is not None else "").split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", text)


def received_since(conn: sa.Connection, since: dt.datetime) -> list[dict]:
    s = submission.c
    rows = [
        dict(r)
        for r in conn.execute(
            sa.select(
                s.submission_id,
                s.partition_key,
                s.observatory_code,
                s.file_name,
                s.dataset,
                s.status,
                s.rows_read,
                s.rows_accepted,
                s.rows_rejected,
                s.received_at,
            )
            .where(s.received_at >= since)
            .order_by(s.received_at.desc(), s.file_name)
        ).mappings()
    ]
    ids = [r["submission_id"] for r in rows]
    problems = {}
    for start in range(0, len(ids), 500):
        problems |= top_problems(conn, ids[start : start + 500])
    for r in rows:
        r["top_problem"] = problems.get(r["submission_id"], "")
        if r["received_at"].tzinfo is None:  # SQLite keeps UTC without its offset
            r["received_at"] = r["received_at"].replace(tzinfo=dt.UTC)
    return rows


def not_in_warehouse(instance: dg.DagsterInstance, since: dt.datetime, known: set[str]):
    """Partitions materialized in the window that the warehouse holds no row for: refused as
    another contributor's bytes, or failed. Their metadata says which file and why."""
    found, seen = [], set(known)
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=submissions.key, after_timestamp=since.timestamp()),
        limit=10_000,
    )
    for record in result.records:  # newest first: the latest word on each partition
        event = record.asset_materialization
        if event is None or event.partition is None or event.partition in seen:
            continue
        seen.add(event.partition)
        meta = {k: v.value for k, v in event.metadata.items()}
        if "status" not in meta:
            continue
        found.append(
            {
                "partition_key": event.partition,
                "observatory_code": str(meta.get("contributor", "")).split(" ")[0],
                "file_name": meta.get("file", ""),
                "dataset": meta.get("dataset", ""),
                "status": meta["status"],
                "rows_read": meta.get("rows read", 0),
                "rows_accepted": meta.get("rows accepted", 0),
                "rows_rejected": meta.get("rows rejected", 0),
                "received_at": dt.datetime.fromtimestamp(record.timestamp, dt.UTC),
                "top_problem": meta.get("top problem") or meta.get("error", ""),
            }
        )
    return found


def last_night_table(rows: list[dict], now: dt.datetime, zone: str) -> str:
    tz = zoneinfo.ZoneInfo(zone)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    to = f"{now.astimezone(tz):%Y-%m-%d %H:%M} ({zone})"
    if not rows:
        return f"**No file received in the 24 h to {to}**"
    counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(statuses.items()))
    lines = [f"**{len(rows)} files received in the 24 h to {to}**: {counts}", ""]
    lines += [
        "| received | contributor | file | dataset | status | read | accepted | rejected "
        "| top problem |",
        "|---|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows[:MAX_LISTED]:
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{r['received_at'].astimezone(tz):%Y-%m-%d %H:%M}",
                    cell(r["observatory_code"]),
                    cell(r["file_name"]),
                    cell(r["dataset"]),
                    cell(str(r["status"]).replace("_", " ")),
                    f"{int(r['rows_read'] or 0):,}",
                    f"{int(r['rows_accepted'] or 0):,}",
                    f"{int(r['rows_rejected'] or 0):,}",
                    cell(r["top_problem"], limit=120),
                ]
            )
            + " |"
        )
    if len(rows) > MAX_LISTED:
        lines.append(f"\n… and {len(rows) - MAX_LISTED} more (the `submission` table has them).")
    return "\n".join(lines)


@dg.asset(
    group_name="submissions",
    deps=[submissions],
    kinds={"sql"},
    description="The files received in the last 24 hours: contributor, file, status, rows read, "
    "accepted and rejected, and the most frequent problem. Rebuilt after every batch.",
)
def last_night(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    now = dt.datetime.now(dt.UTC)
    since = now - WINDOW
    engine = warehouse.engine()
    with engine.connect() as conn:
        rows = received_since(conn, since)
    rows += not_in_warehouse(context.instance, since, {r["partition_key"] for r in rows})
    rows.sort(key=lambda r: r["received_at"], reverse=True)

    def count(status: str) -> int:
        return sum(1 for r in rows if r["status"] == status)

    return dg.MaterializeResult(
        metadata={
            "files": len(rows),
            "accepted": count("accepted"),
            "partly accepted": count("partly_accepted"),
            "rejected": count("rejected"),
            "failed": count("failed"),
            "rows read": sum(int(r["rows_read"] or 0) for r in rows),
            "rows rejected": sum(int(r["rows_rejected"] or 0) for r in rows),
            "table": dg.MetadataValue.md(
                last_night_table(rows, now, current_deployment().time_zone)
            ),
        }
    )
