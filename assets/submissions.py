"""Per-submission asset: one dynamic partition per uploaded file, many files per run."""

import datetime as dt
import json
import logging
import time
import warnings

import dagster as dg
import sqlalchemy as sa

from obsx.indicators.expectations import SuiteOutcome, merged_rows, run_suite, unusual_volumes
from obsx.intake.contract import load_contract
from obsx.intake.dropzone import parse_partition_key
from obsx.intake.submission import COUNT_COLUMNS, STAGES, process_submission
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import quarantine, record_tables, submission
from pipelines import stopping
from pipelines.executors import shard_by_contributor, shards_of
from pipelines.resources import DropzoneResource, WarehouseResource

# single_run() is what turns a burst of files into one run (DESIGN.md, decision 4); its beta
# status is known and accepted, so the warning is not repeated on every command.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

submission_partitions = dg.DynamicPartitionsDefinition(name="submissions")
HELD_CHECK = "accepted_rows_held_in_warehouse"
SUITE_CHECK = "contract_expectations"
VOLUME_CHECK = "volume_in_line_with_history"
SHOWN_COUNTS = tuple(c for c in COUNT_COLUMNS if c.startswith("rows_") and c != "rows_ignored")
# One record per file as it is done: `obsx run` prints them (files done of total, rows); under
# the daemon nothing listens and they cost nothing. The Dagster event log has its own lines.
PROGRESS = logging.getLogger("obsx.progress")


def progress(position: int, total: int, key: str, file_name: str, status: str, counts) -> None:
    rows = int(counts.get("rows_read", 0)) if isinstance(counts, dict) else 0
    PROGRESS.info(
        "%s/%s %s %s: %s",
        position,
        total,
        key,
        file_name,
        status,
        extra={"obsx_key": key, "obsx_file": file_name, "obsx_status": status, "obsx_rows": rows},
    )


def _file_name(zone, key: str) -> str:
    """The uploaded name of a key whose processing failed, if it can still be found."""
    try:
        return zone.find_key(key)[1]
    except Exception:  # the name is for the operator: a key with no file left is still named
        return ""


def top_problems(conn: sa.Connection, submission_ids: list[str]) -> dict[str, str]:
    """Per submission, its most frequent quarantine rule, how often, and one message."""
    if not submission_ids:
        return {}
    q = quarantine.c
    counts = conn.execute(
        sa.select(q.submission_id, q.rule, sa.func.count().label("n"), sa.func.min(q.message_en))
        .where(q.submission_id.in_(submission_ids))
        .group_by(q.submission_id, q.rule)
    ).all()
    best: dict[str, tuple] = {}
    for sid, rule, n, message in counts:
        if sid not in best or (n, rule) > (best[sid][1], best[sid][0]):
            best[sid] = (rule, n, message)
    return {
        sid: f"{rule} x{n}: {_shorten(message)}" if message else f"{rule} x{n}"
        for sid, (rule, n, message) in best.items()
    }


def _shorten(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_feedback_problem(paths) -> str:
    """A file-level refusal that the quarantine does not hold (e.g. sent by another observatory):
    the first problem of the feedback document."""
    for path in paths:
        if not str(path).endswith(".json"):
            continue
        try:
            problems = json.loads(path.read_text(encoding="utf-8")).get("problems") or []
        except (OSError, ValueError):
            return ""
        if problems:
            first = problems[0]
            message = first.get("message_en") or first.get("message") or ""
            return (
                f"{first.get('code', '')}: {_shorten(message)}"
                if message
                else first.get("code", "")
            )
    return ""


def add_partition_metadata(context: dg.AssetExecutionContext, metadata: dict, key: str) -> None:
    """``context.add_asset_metadata(metadata, partition_key=key)`` for a key of this run.

    The public call first checks that the key is targeted by reading every registered key of the
    dynamic partitions (57 ms with 10,000 registered files, measured: 11 s for a batch of 200,
    growing with history). Every key here comes from ``context.partition_keys``, so the check is
    redundant: the metadata goes straight to the step's accumulator, where the public call puts
    it. Should that private attribute go in a later Dagster, the public call is used."""
    step = getattr(context, "_step_execution_context", None)
    accumulator = getattr(step, "_metadata_accumulator", None)
    if accumulator is None or not hasattr(accumulator, "with_additional_asset_metadata"):
        context.add_asset_metadata(metadata, partition_key=key)
        return
    step._metadata_accumulator = accumulator.with_additional_asset_metadata(  # noqa: SLF001
        asset_key=context.asset_key, metadata=metadata, partition_key=key
    )


def _feedback_path(paths) -> dict:
    document = next((p for p in paths if str(p).endswith(".json")), None)
    return {"feedback": dg.MetadataValue.path(str(document))} if document else {}


def missing_from_warehouse(conn: sa.Connection, submissions: dict[str, str]) -> dict[str, int]:
    """Per submission, how many accepted rows the warehouse does not account for.

    Every merged row (manifest) must have a revision with its content hash, and merged rows plus
    rows held for a closed period (not yet approved) must make up what the submission accepted.
    One grouped query per dataset and count, for the whole batch (one per submission was 6 s of
    a national month on PostgreSQL).
    """
    by_dataset: dict[str, list[str]] = {}
    for sid, dataset in submissions.items():
        by_dataset.setdefault(dataset, []).append(sid)
    s = submission.c
    gaps = {}
    for dataset, sids in by_dataset.items():
        _, revision, manifest, pending = record_tables(dataset)
        m, r, p = manifest.c, revision.c, pending.c
        (key,) = [c.name for c in manifest.primary_key.columns if c.name != "submission_id"]
        held = sa.select(sa.literal(1)).where(
            r.observatory_code == m.observatory_code, r[key] == m[key], r.row_hash == m.row_hash
        )
        listed: dict[str, int] = {sid: 0 for sid in sids}
        missing: dict[str, int] = {sid: 0 for sid in sids}
        expected: dict[str, int | None] = {sid: None for sid in sids}
        for i in range(0, len(sids), 1000):
            part = sids[i : i + 1000]
            queries = (
                (
                    listed,
                    sa.select(m.submission_id, sa.func.count())
                    .where(m.submission_id.in_(part))
                    .group_by(m.submission_id),
                ),
                (
                    listed,
                    sa.select(p.submission_id, sa.func.count())
                    .where(p.submission_id.in_(part), p.status != "approved")
                    .group_by(p.submission_id),
                ),
                (
                    missing,
                    sa.select(m.submission_id, sa.func.count())
                    .where(m.submission_id.in_(part), ~held.exists())
                    .group_by(m.submission_id),
                ),
            )
            for tally, query in queries:
                for sid, count in conn.execute(query):
                    tally[sid] += count or 0
            for sid, accepted, ignored in conn.execute(
                sa.select(s.submission_id, s.rows_accepted, s.rows_ignored).where(
                    s.submission_id.in_(part)
                )
            ):
                expected[sid] = accepted
                listed[sid] += ignored or 0
        for sid in sids:
            if expected[sid] is None or listed[sid] != expected[sid] or missing[sid]:
                gaps[sid] = (expected[sid] or 0) - listed[sid] + missing[sid]
    return gaps


CHECK_SPECS = [
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
]


@dg.op(ins={"after_reference": dg.In(dg.Nothing)}, out=dg.DynamicOut(list))
def plan_submission_shards(context: dg.OpExecutionContext):
    """Split the batch into shards of whole contributors (pipelines/executors.py): one step each.

    The run tag ``obsx/submission_shards`` (set on the job from ``OBSX_EXECUTOR`` /
    ``OBSX_SHARDS``) says how many; without it the batch is one shard, as before.
    """
    shards = shard_by_contributor(list(context.partition_keys), shards_of(context.run.tags))
    for i, shard in enumerate(shards):
        context.log.info(f"shard {i}: {len(shard)} submissions")
        yield dg.DynamicOutput(shard, mapping_key=f"shard_{i}")


@dg.op
def process_submission_shard(
    context: dg.OpExecutionContext,
    dropzone: DropzoneResource,
    warehouse: WarehouseResource,
    shard: list,
) -> dict:
    """Archive, read, validate and merge each file of a shard, in upload order; write feedback.

    A file that cannot be read is a rejected submission with feedback, not a failed run. An
    unexpected error on one file is logged and the other contributors' files still finish; the
    same contributor's later files stay in the inbox for the retry, to merge in upload order. Each merge is one
    transaction that claims its submission row first, so shards on other workers are safe.
    """
    engine = warehouse.engine()
    zone = dropzone.dropzone()
    registry = observatories(engine=engine)
    today = dt.date.today()
    outcomes, failed = [], {}
    keys = context.partition_keys  # positions are the batch's, whichever shard this is
    positions = {key: i for i, key in enumerate(keys, start=1)}
    stopped: dict[str, str] = {}  # contributor -> its file that failed in this shard
    left: list[str] = []  # not started: `obsx run` was asked to stop (SIGINT, SIGTERM)
    with stopping.deferred():  # a signal finishes the current file, then stops
        for key in shard:
            if stopping.requested():
                left.append(key)
                continue
            position = positions[key]
            contributor = parse_partition_key(key)[0]
            if contributor in stopped:
                # Its later files wait in the inbox: merged after the failed one, on the retry,
                # so that an older file never lands on top of a newer one.
                failed[key] = (
                    f"waiting behind {stopped[contributor]}, which failed: left in the inbox"
                )
                progress(position, len(keys), key, _file_name(zone, key), "failed", 0)
                continue
            try:
                outcome = process_submission(key, zone, engine, registry, today, context.run.run_id)
            except Exception as exc:  # one file must not fail its batch
                context.log.exception(f"submission {key} failed")
                failed[key] = f"{type(exc).__name__}: {exc}"
                name = _file_name(zone, key)
                stopped[contributor] = name or key
                progress(position, len(keys), key, name, "failed", 0)
                continue
            outcomes.append(outcome)
            context.log.info(f"{key} {outcome.file_name!r}: {outcome.status} {outcome.counts}")
            progress(position, len(keys), key, outcome.file_name, outcome.status, outcome.counts)
    if left:
        signal_name = stopping.name(stopping.requested())
        context.log.info(f"stopped by {signal_name}: {len(left)} files left in the inbox")
    return {"outcomes": outcomes, "failed": failed, "left": left}


@dg.op(
    out={
        "result": dg.Out(dg.Nothing),
        **{spec.get_python_identifier(): dg.Out(dg.Nothing) for spec in CHECK_SPECS},
    }
)
def check_submissions(
    context: dg.AssetExecutionContext,
    dropzone: DropzoneResource,
    warehouse: WarehouseResource,
    shards: list,
):
    """The batch's materialization and checks, over every shard's outcomes (a SIGINT or SIGTERM
    of `obsx run` waits for them: the files just merged are recorded)."""
    with stopping.deferred():
        yield from _check_submissions(context, dropzone, warehouse, shards)


def _check_submissions(context, dropzone, warehouse, shards):
    engine = warehouse.engine()
    zone = dropzone.dropzone()
    registry = observatories(engine=engine)
    keys = context.partition_keys
    outcomes = [o for shard in shards for o in shard["outcomes"]]
    failed = {k: v for shard in shards for k, v in shard["failed"].items()}
    left = [k for shard in shards for k in shard.get("left", [])]  # stopped before them
    merged_now = [o for o in outcomes if not o.already_merged]
    checks_started = time.perf_counter()
    with engine.connect() as conn:
        gaps = missing_from_warehouse(conn, {o.submission_id: o.dataset for o in outcomes})
        volumes = unusual_volumes(conn, [o.submission_id for o in merged_now])
        problems = top_problems(conn, [o.submission_id for o in outcomes])
        owners = dict(  # the same bytes from two contributors: one row, the first sender's
            conn.execute(
                sa.select(submission.c.submission_id, submission.c.partition_key).where(
                    submission.c.submission_id.in_([o.submission_id for o in outcomes])
                )
            ).all()
        )
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
    # Each partition's materialization carries its own file, contributor, status and counts
    # (the UI shows a partition's metadata; without partition_key it would be the batch's).
    for o in outcomes:
        observatory = registry.get(o.observatory_code)
        if owners.get(o.submission_id) == o.key:
            top = problems.get(o.submission_id, "")
        else:  # refused as another contributor's file: the quarantine is the other's
            top = _first_feedback_problem(o.feedback)
        add_partition_metadata(
            context,
            {
                "file": o.file_name,
                "contributor": o.observatory_code
                + (f" ({observatory.name})" if observatory else ""),
                "dataset": o.dataset,
                "status": o.status,
                **{c.replace("_", " "): int(o.counts.get(c, 0)) for c in SHOWN_COUNTS},
                "top problem": top or "",
                "duplicate of an earlier upload": bool(o.already_merged),
                "submission id": o.submission_id,
                **_feedback_path(o.feedback),
                **{f"seconds {stage}": round(o.seconds.get(stage, 0.0), 3) for stage in STAGES},
            },
            o.key,
        )
    for key, error in failed.items():
        add_partition_metadata(
            context,
            {
                "file": _file_name(zone, key),
                "contributor": parse_partition_key(key)[0],
                "status": "failed",
                "error": error,
            },
            key,
        )
    check_seconds = time.perf_counter() - checks_started
    yield dg.MaterializeResult(
        metadata={
            "files in this run": len(keys),
            **({"left in the inbox (run stopped)": len(left)} if left else {}),
        }
    )
    yield dg.AssetCheckResult(
        check_name=HELD_CHECK,
        passed=not gaps and not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows not held, by submission": dg.MetadataValue.json(gaps),
            "failed": dg.MetadataValue.json(failed),
            "seconds checks": round(check_seconds, 2),
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


@dg.graph_asset(
    partitions_def=submission_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="submissions",
    kinds={"sql"},
    ins={"reference_observatories": dg.AssetIn(dagster_type=dg.Nothing)},
    check_specs=CHECK_SPECS,
)
def submissions(reference_observatories):
    """Archive, read, validate and merge each file (any dataset); write the observatory's feedback.

    A batch is split into shards of whole contributors, one step each (in parallel under the
    multiprocess or Celery executor, pipelines/executors.py), then checked as a whole.
    """
    shards = plan_submission_shards(reference_observatories).map(process_submission_shard)
    return check_submissions(shards.collect())
