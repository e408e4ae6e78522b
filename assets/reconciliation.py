"""Sources side by side after each run: what needs a decision of the reconciliation table."""

import dagster as dg
import pandas as pd

from assets.indicators import indicator_value
from obsx.indicators.reconcile import NEEDS_DECISION, STATUSES, concepts, item_rows
from pipelines.resources import WarehouseResource


@dg.asset(group_name="indicators", kinds={"sql"}, deps=[indicator_value])
def source_reconciliation(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per concept (homicide victims…), unit and month: each source's count, the status (agree,
    within tolerance, to reconcile, decided, reopened) and how the records matched; the items
    waiting for a decision (``obsx reconcile list``) are listed in the metadata. Reads what the
    indicator refresh just computed (it refreshes the reconciliation first: one pass per run)."""
    engine = warehouse.engine()
    metadata: dict = {}
    for concept in concepts():
        with engine.connect() as conn:
            frame, _ = item_rows(conn, concept)
        counts = frame["status"].value_counts()
        for status in STATUSES:
            metadata[f"{concept.code}: {status}"] = int(counts.get(status, 0))
        waiting = frame[frame["status"].isin(NEEDS_DECISION)]
        names = [s.name for s in concept.sources]
        table = [
            "| unit | month | " + " | ".join(names) + " | status |",
            "|---" * (3 + len(names)) + "|",
        ]
        for r in waiting.head(50).to_dict("records"):
            cells = ["—" if pd.isna(r.get(n)) else f"{r[n]:g}" for n in names]
            table.append(
                f"| {r['geo_code']} | {r['period']} | " + " | ".join(cells) + f" | {r['status']} |"
            )
        if len(waiting) > 50:
            table.append(f"| … {len(waiting) - 50} more (obsx reconcile list) | |")
        metadata[f"{concept.code}: needs a decision"] = dg.MetadataValue.md(
            "\n".join(table) if len(waiting) else "nothing"
        )
    return dg.MaterializeResult(metadata=metadata)
