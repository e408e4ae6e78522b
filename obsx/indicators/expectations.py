"""Great Expectations suites derived from the contracts, run on what was merged.

Pandera guards the door (rows that fail never get in); these suites check what is inside, with
Data Docs an analyst can browse under ``<data root>/gx/uncommitted/data_docs/local_site/``.
"""

import importlib
import logging
import os
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from obsx.intake.contract import BAND_PATTERN, INTEGER_MAX, Contract
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.tables import record_tables, submission

log = logging.getLogger(__name__)

# A submission this many times larger or smaller than the observatory's usual is worth a look.
VOLUME_FACTOR = 3
VOLUME_HISTORY = 3  # earlier submissions needed before judging


def expectations_for(contract: Contract) -> list:
    """One expectation per contract rule that can be checked column by column."""
    import great_expectations as gx

    e = gx.expectations
    found = [
        e.ExpectCompoundColumnsToBeUnique(column_list=list(contract.primary_key)),
    ]
    for f in contract.fields:
        c = f.constraints
        if f.required:
            found.append(e.ExpectColumnValuesToNotBeNull(column=f.name))
        if f.codelist is not None:
            found.append(
                e.ExpectColumnValuesToBeInSet(column=f.name, value_set=list(f.codelist.labels))
            )
        highest = c.get("max", INTEGER_MAX if f.type == "integer" else None)
        if f.type in ("integer", "number") and ("min" in c or highest is not None):
            found.append(
                e.ExpectColumnValuesToBeBetween(
                    column=f.name, min_value=c.get("min"), max_value=highest
                )
            )
        pattern = c.get("pattern") or (BAND_PATTERN if f.band is not None else None)
        if f.name == contract.geography_field:  # a code of one of the deployment's levels
            patterns = [lv.pattern for lv in current_deployment().levels]
            pattern = None if None in patterns else "|".join(f"(?:{x})" for x in patterns)
        if pattern:
            found.append(e.ExpectColumnValuesToMatchRegex(column=f.name, regex=pattern))
        if "max_length" in c:
            found.append(
                e.ExpectColumnValueLengthsToBeBetween(column=f.name, max_value=c["max_length"])
            )
    return found


@dataclass
class SuiteOutcome:
    success: bool
    evaluated_rows: int
    failures: list[dict] = field(default_factory=list)
    data_docs: str | None = None


def import_in_background() -> threading.Thread:
    """Import Great Expectations (about 3 s) in a thread, for a run whose checks will need it:
    the import then overlaps with reading, merging and refreshing indicators, which spend much
    of their time outside the interpreter's lock (in the database, in the LP solver)."""

    def load() -> None:
        try:
            importlib.import_module("great_expectations")
        except Exception:  # the check that needs it imports it again and reports the failure
            log.debug("importing Great Expectations in the background failed", exc_info=True)

    thread = threading.Thread(target=load, name="import-great-expectations", daemon=True)
    thread.start()
    return thread


def _context(root: Path):
    import great_expectations as gx

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    context = gx.get_context(mode="file", project_root_dir=str(root))
    try:
        context.variables.progress_bars = {"globally": False}
    except Exception:  # older/newer config shapes: progress bars are cosmetic
        log.debug("could not turn GX progress bars off")
    return context


def run_suite(root: Path, contract: Contract, frame: pd.DataFrame) -> SuiteOutcome:
    """Validate ``frame`` (merged records) against the contract's suite; update Data Docs."""
    import great_expectations as gx

    context = _context(root)
    source = context.data_sources.add_or_update_pandas(name="warehouse")
    names = [a.name for a in source.assets]
    asset = (
        source.get_asset(contract.dataset)
        if contract.dataset in names
        else (source.add_dataframe_asset(name=contract.dataset))
    )
    batches = [b.name for b in asset.batch_definitions]
    batch = (
        asset.get_batch_definition("merged")
        if "merged" in batches
        else (asset.add_batch_definition_whole_dataframe("merged"))
    )
    suite = context.suites.add_or_update(
        gx.ExpectationSuite(
            name=f"{contract.dataset}_contract", expectations=expectations_for(contract)
        )
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{contract.dataset}_merged", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{contract.dataset}_after_merge",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format="SUMMARY",
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    failures = [
        {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column")
            or ",".join(r.expectation_config.kwargs.get("column_list", [])),
            "unexpected": r.result.get("unexpected_count"),
        }
        for run in result.run_results.values()
        for r in run.results
        if not r.success
    ]
    docs = root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return SuiteOutcome(not failures, len(frame), failures, str(docs) if docs.exists() else None)


# Pandera has already checked every row against the same contract; the suite is a second
# opinion, so a batch of a million records is judged on a sample (1M: 19 s and 2 GB before).
SUITE_SAMPLE = 100_000


def merged_rows(
    conn: sa.Connection, dataset: str, submission_ids: list[str], limit: int = SUITE_SAMPLE
) -> pd.DataFrame:
    """The current records that these submissions merged (their latest versions); at most
    ``limit`` of them, a sample spread over every submission (ordered by content hash)."""
    current = record_tables(dataset).current
    query = sa.select(current).where(current.c.submission_id.in_(submission_ids))
    return pd.read_sql(query.order_by(current.c.row_hash).limit(limit), conn)


def unusual_volumes(conn: sa.Connection, submission_ids: list[str]) -> list[dict]:
    """Submissions whose rows read depart sharply from their observatory's earlier ones."""
    s = submission.c
    flagged = []
    for sid in submission_ids:
        this = conn.execute(sa.select(submission).where(s.submission_id == sid)).mappings().one()
        earlier = conn.scalars(
            sa.select(s.rows_read).where(
                s.observatory_code == this["observatory_code"],
                s.dataset == this["dataset"],
                s.status != "rejected",
                s.submission_id != sid,
                s.merged_at < this["merged_at"],
            )
        ).all()
        if len(earlier) < VOLUME_HISTORY or this["status"] == "rejected":
            continue
        usual = statistics.median(earlier)
        rows = this["rows_read"]
        if rows > usual * VOLUME_FACTOR or rows * VOLUME_FACTOR < usual:
            flagged.append(
                {
                    "observatory": this["observatory_code"],
                    "dataset": this["dataset"],
                    "file": this["file_name"],
                    "rows_read": rows,
                    "usual_rows": usual,
                    "when": this["merged_at"].isoformat() if this["merged_at"] else None,
                }
            )
    return flagged
