"""Per-submission asset: one dynamic partition per uploaded file, many files per run."""

import datetime as dt
import time
import warnings

import dagster as dg
import sqlalchemy as sa

from assets.reference import reference_observatories
from obsx.contract import load_contract
from obsx.expectations import SuiteOutcome, merged_rows, run_suite, unusual_volumes
from obsx.reference import observatories
from obsx.submission import STAGES, process_submission
from obsx.warehouse import record_tables, submission
from pipelines.resources import DropzoneResource, WarehouseResource

# single_run() is what turns a burst of files into one run (DESIGN.md, decision 4); its beta
# status is known and accepted, so the warning is not repeated on every command.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

submission_partitions = dg.DynamicPartitionsDefinition(name="submissions")
HELD_CHECK = "accepted_rows_held_in_warehouse"
SUITE_CHECK = "contract_expectations"
VOLUME_CHECK = "volume_in_line_with_history"


def missing_from_warehouse(conn: sa.Connection, submissions: dict[str, str]) -> dict[str, int]:
    """Per submission, how many accepted rows the warehouse does not account for.

    Every merged row (manifest) must have a revision with its content hash, and merged rows plus
    rows held for a closed period (not yet approved) must make up what the submission accepted.
    """
    gaps = {}
    for sid, dataset in submissions.items():
        _, revision, manifest, pending = record_tables(dataset)
        m, r, p = manifest.c, revision.c, pending.c
        (key,) = [c.name for c in manifest.primary_key.columns if c.name != "submission_id"]
        held = sa.select(sa.literal(1)).where(
            r.observatory_code == m.observatory_code, r[key] == m[key], r.row_hash == m.row_hash
        )
        expected = conn.scalar(
            sa.select(submission.c.rows_accepted).where(submission.c.submission_id == sid)
        )
        listed = conn.scalar(sa.select(sa.func.count()).where(m.submission_id == sid))
        listed += conn.scalar(
            sa.select(sa.func.count()).where(p.submission_id == sid, p.status != "approved")
        )
        listed += conn.scalar(
            sa.select(submission.c.rows_ignored).where(submission.c.submission_id == sid)
        )
        missing = conn.scalar(
            sa.select(sa.func.count()).where(m.submission_id == sid, ~held.exists())
        )
        if expected is None or listed != expected or missing:
            gaps[sid] = (expected or 0) - listed + missing
    return gaps


@dg.asset(
    partitions_def=submission_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="submissions",
    kinds={"sql"},
    deps=[reference_observatories],
    check_specs=[
        dg.AssetCheckSpec(HELD_CHECK, asset="submissions"),
        dg.AssetCheckSpec(
            SUITE_CHECK,
            asset="submissions",
            description="The merged records meet the contract's Great Expectations suite",
        ),
        dg.AssetCheckSpec(
            VOLUME_CHECK,
            asset="submissions",
            description="Each file's size is within 3x of its observatory's usual (warning)",
        ),
    ],
)
def submissions(
    context: dg.AssetExecutionContext, dropzone: DropzoneResource, warehouse: WarehouseResource
):
    """Archive, read, validate and merge each file (any dataset); write the observatory's feedback.

    A file that cannot be read is a rejected submission with feedback, not a failed run. An
    unexpected error on one file is logged and the others still finish.
    """
    engine = warehouse.engine()
    zone = dropzone.dropzone()
    registry = observatories(engine=engine)
    today = dt.date.today()
    outcomes, failed = [], {}
    for key in context.partition_keys:
        try:
            outcomes.append(
                process_submission(key, zone, engine, registry, today, context.run.run_id)
            )
        except Exception as exc:  # one file must not fail its batch
            context.log.exception(f"submission {key} failed")
            failed[key] = f"{type(exc).__name__}: {exc}"
    by_status = {}
    for o in outcomes:
        by_status[o.status] = by_status.get(o.status, 0) + 1
        context.log.info(f"{o.key} {o.file_name!r}: {o.status} {o.counts}")
    merged_now = [o for o in outcomes if not o.already_merged]
    checks_started = time.perf_counter()
    with engine.connect() as conn:
        gaps = missing_from_warehouse(conn, {o.submission_id: o.dataset for o in outcomes})
        volumes = unusual_volumes(conn, [o.submission_id for o in merged_now])
        suites = {}
        for dataset in sorted({o.dataset for o in merged_now}):
            ids = [o.submission_id for o in merged_now if o.dataset == dataset]
            try:
                frame = merged_rows(conn, dataset, ids)
                suites[dataset] = run_suite(zone.root, load_contract(dataset), frame)
            except Exception as exc:  # the suite is a check: its failure must not undo the merge
                context.log.exception(f"expectation suite for {dataset} could not run")
                suites[dataset] = SuiteOutcome(
                    False, 0, [{"error": f"{type(exc).__name__}: {exc}"}]
                )
    seconds = {s: sum(o.seconds.get(s, 0.0) for o in outcomes) for s in STAGES}
    seconds["checks"] = time.perf_counter() - checks_started
    yield dg.MaterializeResult(
        metadata={
            **{f"seconds {stage}": round(value, 2) for stage, value in seconds.items()},
            "submissions": len(outcomes),
            **{f"status {k}": v for k, v in sorted(by_status.items())},
            "rows accepted": sum(o.counts["rows_accepted"] for o in outcomes),
            "rows inserted": sum(o.counts["rows_inserted"] for o in outcomes),
            "rows updated": sum(o.counts["rows_updated"] for o in outcomes),
            "rows rejected": sum(o.counts["rows_rejected"] for o in outcomes),
            "failed": dg.MetadataValue.json(failed),
        }
    )
    yield dg.AssetCheckResult(
        check_name=HELD_CHECK,
        passed=not gaps and not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows not held, by submission": dg.MetadataValue.json(gaps),
            "failed": dg.MetadataValue.json(failed),
        },
    )
    docs = next((s.data_docs for s in suites.values() if s.data_docs), None)
    yield dg.AssetCheckResult(
        check_name=SUITE_CHECK,
        passed=all(s.success for s in suites.values()),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows evaluated": sum(s.evaluated_rows for s in suites.values()),
            "failures": dg.MetadataValue.json({d: s.failures for d, s in suites.items()}),
            **({"data docs": dg.MetadataValue.path(docs)} if docs else {}),
        },
    )
    yield dg.AssetCheckResult(
        check_name=VOLUME_CHECK,
        passed=not volumes,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unusual submissions": dg.MetadataValue.json(volumes)},
    )
