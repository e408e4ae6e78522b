"""Process everything waiting in the inboxes once, without the daemon (``obsx run``).

Registers the new files as dynamic partitions in the Dagster instance and executes the same jobs
the sensor starts, so the runs show in the UI afterwards.
"""

import datetime as dt
import getpass
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from assets.submissions import PROGRESS, submission_partitions
from obsx.indicators.engine import NOT_AVAILABLE
from obsx.indicators.expectations import import_in_background
from obsx.intake.dropzone import parse_partition_key
from obsx.intake.submission import COUNT_COLUMNS, process_submission
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import indicator_value, submission
from pipelines import stopping
from pipelines.definitions import defs
from pipelines.planning import contiguous_blocks, plan, range_tags, refresh_stale, stale_indicators
from pipelines.resources import DropzoneResource, WarehouseResource
from pipelines.sensors import FILES_TAG, LAUNCHED_BY_TAG, run_tags

STATUS_WORDS = {
    "accepted": "accepted",
    "partly_accepted": "partly accepted",
    "rejected": "rejected",
}


@dataclass
class RunReport:
    submissions: list[dict] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    earlier_failed_runs: list[str] = field(default_factory=list)  # since the last success
    already_merged: list[str] = field(default_factory=list)  # sent again: feedback, no run
    failed_checks: list[str] = field(default_factory=list)
    warning_checks: list[str] = field(default_factory=list)
    unprocessed_keys: list[str] = field(default_factory=list)
    unknown_folders: list[str] = field(default_factory=list)
    stale_indicators: str = ""  # recomputed: records merged after the last refresh (a killed run)
    indicators_not_refreshed: str = ""  # they were stale and could not be recomputed: why
    never_processed: list[str] = field(default_factory=list)  # links, folders, hidden names
    left_in_inbox: list[Path] = field(default_factory=list)
    warehouse: str = ""
    homicide_rates: list[dict] = field(default_factory=list)
    plan_execution: list[dict] = field(default_factory=list)
    victimization: list[dict] = field(default_factory=list)
    arrests: list[dict] = field(default_factory=list)
    highlights: list[dict] = field(default_factory=list)  # HIGHLIGHTS, the homicide rate's year
    seconds: dict[str, float] = field(default_factory=dict)  # time by stage, over every run
    wall_seconds: float = 0.0
    stopped_by: int = 0  # the signal (SIGINT, SIGTERM) that stopped the run before its end
    not_started: int = 0  # files left in their inboxes because of it

    @property
    def all_processed(self) -> bool:
        return not (
            self.stopped_by
            or self.failed_runs
            or self.failed_checks
            or self.unprocessed_keys
            or self.unknown_folders
            or self.never_processed
            or self.left_in_inbox
            or self.indicators_not_refreshed
        )

    def summary(self) -> str:
        counts = {s: sum(1 for x in self.submissions if x["status"] == s) for s in STATUS_WORDS}

        def total(column: str) -> int:
            return sum(x[column] for x in self.submissions)

        lines = [
            f"Submissions processed: {len(self.submissions)} ("
            + ", ".join(f"{counts[s]} {w}" for s, w in STATUS_WORDS.items())
            + ")",
            f"Rows merged: {total('rows_accepted') - total('rows_held')} "
            f"(new {total('rows_inserted')}, updated {total('rows_updated')}, "
            f"unchanged {total('rows_unchanged')}); rows quarantined: {total('rows_rejected')}"
            + (
                f"; held for approval (closed periods): {total('rows_held')}"
                if total("rows_held")
                else ""
            ),
            f"Warehouse: {self.warehouse}",
        ]
        if self.seconds:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items())
            other = self.wall_seconds - sum(self.seconds.values())
            lines.append(
                f"Time: {self.wall_seconds:.1f} s ({stages}; Dagster and the rest {other:.1f})"
            )
        for rate in self.homicide_rates:
            if rate["conf_status"] != "F" or rate["quality_flag"] == NOT_AVAILABLE:
                lines.append(_highlight(rate | {"indicator_code": "National homicide rate"}))
                continue
            value = "n/a (no population)" if rate["value"] is None else f"{rate['value']:.1f}"
            lines.append(
                f"National homicide rate {rate['period']} (SDG 16.1.1): {value} per 100,000 "
                f"({rate['numerator']:.0f} victims / {rate['denominator'] or 0:,.0f} inhabitants of "
                f"reporting units{_coverage(rate)})"
            )
        for row in self.arrests:
            if row["conf_status"] != "F":
                lines.append(_highlight(row | {"indicator_code": "Arrests"}))
                continue
            lines.append(
                f"Arrests {row['period']}: {row['value']:.1f} per 100,000 "
                f"({row['numerator']:,.0f} arrests / {row['denominator'] or 0:,.0f} inhabitants of "
                "reporting units)"
            )
        for row in self.plan_execution:
            lines.append(
                f"Prevention plans {row['period']}: {row['value']:.1f}% of "
                f"{row['denominator']:.0f} planned activities executed"
            )
        for row in self.victimization:
            lines.append(
                f"Victimization {row['period']} (surveys, weighted): {row['value']:.1f}% of people "
                "aged 15+ in the surveyed units were victims in the last 12 months"
            )
        if self.highlights:
            lines.append("More indicators, national, same year (indicators/catalogue.yaml):")
        for row in self.highlights:
            lines.append("  " + _highlight(row))
        if self.stale_indicators:
            lines.append(self.stale_indicators)
        if self.already_merged:
            lines.append(
                f"Sent again, already merged earlier (feedback only, no Dagster run): "
                f"{len(self.already_merged)}"
            )
        if self.warning_checks:
            lines.append("Warnings (checks): " + ", ".join(self.warning_checks))
        if self.earlier_failed_runs:
            lines.append(
                "Runs that failed since the last successful one (Dagster UI, Runs): "
                + "; ".join(self.earlier_failed_runs)
            )
        if self.stopped_by:
            lines.append(
                f"NEEDS ATTENTION - Stopped by {stopping.name(self.stopped_by)}: "
                f"{self.not_started} file(s) not started, left in their inboxes for the next run;"
                " indicators not recomputed (the next run recomputes them)"
            )
        for name, items in (
            ("Runs that failed", self.failed_runs),
            ("Checks that failed", self.failed_checks),
            ("Submissions not processed", self.unprocessed_keys),
            ("Drop folders of no registered observatory", self.unknown_folders),
            ("In an inbox but never processed (rename or remove)", self.never_processed),
            ("Files still waiting in an inbox", [str(p) for p in self.left_in_inbox]),
            (
                "Indicators stale, not recomputed",
                [self.indicators_not_refreshed] * bool(self.indicators_not_refreshed),
            ),
        ):
            if items:
                lines.append(f"NEEDS ATTENTION - {name}: " + ", ".join(items))
        return "\n".join(lines)


# A few catalogue indicators the run summary shows (code, disaggregation).
HIGHLIGHTS = [
    ("SDG_16_1_1", "sex=F"),
    ("FIREARM_HOMICIDE_SHARE", ""),
    ("HOMICIDE_YOUTH_SHARE", ""),
    ("ROBBERY_RATE", ""),
    ("SDG_16_1_4", ""),
    ("COMPLETENESS", ""),
    ("TIMELINESS", ""),
]


def _coverage(row: dict) -> str:
    """How much of the country and the year a national value covers, when not all of it."""
    coverage = row.get("coverage")
    if coverage is None or coverage >= 99.95:
        return ""
    return f"; covers {coverage:.1f}% of the country's population-months"


def _highlight(row: dict) -> str:
    what = row["indicator_code"] + (f" {row['disaggregation']}" if row["disaggregation"] else "")
    if row["quality_flag"] == NOT_AVAILABLE:
        return f"{what} {row['period']}: not available (no source supplies what it counts)"
    if row["conf_status"] != "F" or row["value"] is None:
        return f"{what} {row['period']}: withheld (disclosure control)"
    text = f"{what} {row['period']}: {row['value']:.1f} {row['unit']}"
    text += f" ({row['numerator']:,.0f} / {row['denominator'] or 0:,.0f}{_coverage(row)})"
    if row["ci_low"] is not None:
        text += f", 95% CI {row['ci_low']:.1f}-{row['ci_high']:.1f}"
    if row["quality_flag"]:
        text += f" [{row['quality_flag']}]"
    return text


# A run `obsx run` stopped on a signal (SIGINT, SIGTERM) carries it.
STOPPED_TAG = "obsx/stopped_by"

# The command prints its own summary; Dagster's step-by-step log stays in the instance (and UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _execute(job: dg.JobDefinition, instance: dg.DagsterInstance, report: RunReport, **kwargs):
    result = job.execute_in_process(
        run_config=QUIET, instance=instance, raise_on_error=False, **kwargs
    )
    if not result.success:
        signum = stopping.requested()
        if signum:  # stopped: the summary says so; the run says why, in the UI and next time
            instance.add_run_tags(result.run_id, {STOPPED_TAG: stopping.name(signum)})
        else:
            report.failed_runs.append(result.run_id)
    # Each partition carries its own file's time by stage; the checks' time is on a check.
    events = [e.materialization for e in result.get_asset_materialization_events()]
    for evaluation in result.get_asset_check_evaluations():
        events.append(evaluation)
    for event in events:
        for name, value in event.metadata.items():
            if name.startswith("seconds "):
                stage = name.removeprefix("seconds ")
                report.seconds[stage] = report.seconds.get(stage, 0.0) + float(value.value)
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            error = evaluation.metadata.get("error")
            failed = evaluation.metadata.get("failed")
            if error is not None:
                name += f" ({error.value})"
            elif failed is not None and failed.value:
                name += " (" + "; ".join(f"{k}: {v}" for k, v in failed.value.items()) + ")"
            if evaluation.severity == dg.AssetCheckSeverity.WARN:
                report.warning_checks.append(name)  # worth a look, not a failed run
            else:
                report.failed_checks.append(name)
    return result


def _refused_as_sent_by_another(conn: sa.Connection, keys: list[str], found: list[dict]):
    """Keys whose bytes another observatory had already sent: refused with feedback, so
    processed (as rejected), not left behind."""
    done = {s["partition_key"] for s in found}
    refused = []
    for key in keys:
        if key in done:
            continue
        code, sha16 = parse_partition_key(key)
        first = conn.execute(
            sa.select(submission.c.observatory_code).where(
                submission.c.submission_id.like(f"{sha16}%"), submission.c.observatory_code != code
            )
        ).first()
        if first is not None:
            refused.append(
                {"partition_key": key, "status": "rejected"} | dict.fromkeys(COUNT_COLUMNS, 0)
            )
    return refused


def national_yearly(
    conn: sa.Connection, indicator_code: str, disaggregation: str = ""
) -> list[dict]:
    """An indicator's national totals by year, oldest first."""
    deployment = current_deployment()
    v = indicator_value.c
    query = (
        sa.select(
            v.indicator_code,
            v.disaggregation,
            v.period,
            v.numerator,
            v.denominator,
            v.value,
            v.unit,
            v.ci_low,
            v.ci_high,
            v.quality_flag,
            v.conf_status,
            v.coverage,
        )
        .where(
            v.indicator_code == indicator_code,
            v.geo_level == deployment.levels[0].code,
            v.geo_code == deployment.country_code,
            v.period_type == "year",
            v.disaggregation == disaggregation,
        )
        .order_by(v.period)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


class _Progress(logging.Handler):
    """Prints one line per file as the asset finishes it: files done of total, rows read.

    Every file is printed in a batch of up to 100; in a bigger one a line at most every two
    seconds (and the last), so that a 10,000-file night stays readable."""

    def __init__(self, total: int, say: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.total, self.say, self.done, self.rows, self.last = total, say, 0, 0, 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if not hasattr(record, "obsx_key"):
            return
        self.done += 1
        self.rows += record.obsx_rows
        now = time.monotonic()
        if self.total > 100 and self.done < self.total and now - self.last < 2.0:
            return
        self.last = now
        code = record.obsx_key.rpartition("__")[0]
        self.say(
            f"[{self.done}/{self.total}] {code}/{record.obsx_file}: "
            f"{record.obsx_status.replace('_', ' ')}, {record.obsx_rows:,} rows read "
            f"({self.rows:,} so far)"
        )


def _launcher() -> str:
    try:
        return f"obsx run ({getpass.getuser()})"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "obsx run"


def _command_tags(files, keys: list[str]) -> dict[str, str]:
    # The tag `user` is what the UI's "Launched by" shows (instead of "Manually launched"); for
    # runs the daemon starts it adds dagster/sensor_name or dagster/schedule_name itself.
    return {**run_tags(files, keys, "obsx run"), "user": _launcher()}


def failed_since_last_success(instance: dg.DagsterInstance, jobs=None) -> list[str]:
    """Runs of each job that failed after its last successful run, newest first."""
    found = []
    for job in jobs or ("process_submissions", "nightly_refresh"):
        last = instance.get_run_records(
            filters=dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1
        )
        failed = instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=job,
                statuses=[dg.DagsterRunStatus.FAILURE],
                created_after=last[0].create_timestamp if last else None,
            ),
            limit=20,
        )
        for record in failed:
            run = record.dagster_run
            who = run.tags.get(LAUNCHED_BY_TAG) or (
                "sensor"
                if "dagster/sensor_name" in run.tags
                else "schedule"
                if "dagster/schedule_name" in run.tags
                else "launched by hand"
            )
            files = run.tags.get(FILES_TAG)
            when = record.create_timestamp.astimezone(dt.UTC)
            if run.tags.get(STOPPED_TAG):
                who += f", stopped by {run.tags[STOPPED_TAG]}"
            found.append(
                f"{job} {run.run_id[:8]} at {when:%Y-%m-%d %H:%M} UTC ({who}"
                + (f"; files: {files}" if files else "")
                + ")"
            )
    return found


def _already_merged(engine: sa.Engine, keys: list[str]) -> set[str]:
    """Keys sent again whose submission this contributor already merged: no run needed."""
    if not keys:
        return set()
    with engine.connect() as conn:
        return set(
            conn.scalars(
                sa.select(submission.c.partition_key).where(
                    submission.c.partition_key.in_(keys), submission.c.merged_at.is_not(None)
                )
            )
        )


def run_once(
    root: Path,
    settle_seconds: float,
    batch_size: int = 200,
    say: Callable[[str], None] | None = None,
) -> RunReport:
    """``say`` receives the progress lines (None: silent)."""
    started = time.perf_counter()
    instance = dg.DagsterInstance.get()
    report = RunReport()
    report.earlier_failed_runs = failed_since_last_success(instance)
    dropzone_resource = DropzoneResource(data_dir=str(root), settle_seconds=settle_seconds)
    zone = dropzone_resource.dropzone()
    engine = WarehouseResource(data_dir=str(root)).engine()
    report.warehouse = engine.url.render_as_string(hide_password=True)
    report.unknown_folders = zone.unknown_folders()
    report.never_processed = zone.never_processed()

    # Records merged after the last indicator refresh: a run killed between its merges and its
    # indicators. This run's own indicator step recomputes them, or else the end of this run.
    with engine.connect() as conn:
        stale_before = stale_indicators(conn)

    files = zone.scan(settle_seconds=settle_seconds, limit=10**9)
    order = instance.get_dynamic_partitions(submission_partitions.name)  # insertion order
    work = plan(files, set(order))
    if work.new_keys:
        instance.add_dynamic_partitions(submission_partitions.name, work.new_keys)

    # The same bytes sent again by the contributor that already merged them (a demo seeded
    # twice, a re-sent file): the same feedback and the inbox cleared, without a Dagster run.
    done_before = _already_merged(engine, work.again_keys)
    if done_before:
        registry, today = observatories(engine=engine), dt.date.today()
    for key in [k for k in work.again_keys if k in done_before]:
        if stopping.requested():
            done_before.discard(key)
            continue
        try:
            process_submission(key, zone, engine, registry, today)
            report.already_merged.append(key)
        except Exception:  # anything unexpected: the run below handles it as before
            done_before.discard(key)
    run_keys = [k for k in work.again_keys if k not in done_before]
    # Registered before but not merged (a run killed or failed): neighbours in the instance's
    # order run as one range, as they first did, instead of one Dagster run per file.
    blocks = [
        block[start : start + batch_size]
        for block in contiguous_blocks(run_keys, order)
        for start in range(0, len(block), batch_size)
    ]

    total = len(work.new_keys) + len(run_keys)
    handler = _Progress(total, say) if say and total else None
    if handler:
        say(
            f"Processing {total} files in {-(-len(work.new_keys) // batch_size) + len(blocks)}"
            " Dagster run(s)"
            + (f"; {len(done_before)} sent again, already merged: no run" if done_before else "")
        )
        PROGRESS.addHandler(handler)
        PROGRESS.setLevel(logging.INFO)
    if total:
        import_in_background()  # the runs' checks need it; meanwhile they read and merge
    try:
        job = defs.resolve_job_def("process_submissions")
        for start in range(0, len(work.new_keys), batch_size):
            if stopping.requested():  # no batch starts after a SIGINT or SIGTERM
                break
            batch = work.new_keys[start : start + batch_size]
            tags = {**range_tags(batch[0], batch[-1]), **_command_tags(files, batch)}
            _execute(job, instance, report, tags=tags)
        for block in blocks:
            if stopping.requested():
                break
            if len(block) == 1:
                tags = _command_tags(files, block)
                _execute(job, instance, report, partition_key=block[0], tags=tags)
            else:
                tags = {**range_tags(block[0], block[-1]), **_command_tags(files, block)}
                _execute(job, instance, report, tags=tags)
    finally:
        if handler:
            PROGRESS.removeHandler(handler)

    # Still stale (no run needed, or the runs failed before their indicator step): recompute
    # here; one line says so either way. Not when asked to stop: the next run does it.
    report.stopped_by = stopping.requested() or 0
    try:
        if report.stopped_by:
            raise _Stopped
        with engine.connect() as conn:
            stale = stale_indicators(conn)
        if stale:
            report.stale_indicators = refresh_stale(engine, stale)
        elif stale_before:
            report.stale_indicators = (
                f"Indicators were stale ({stale_before}): recomputed by this run"
            )
    except _Stopped:
        pass
    except Exception as exc:  # the run's results stand; the next run tries again
        report.indicators_not_refreshed = (
            f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        )

    keys = work.new_keys + work.again_keys
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(submission).where(submission.c.partition_key.in_(keys))
        ).mappings()
        report.submissions = [dict(r) for r in rows]
        report.submissions += _refused_as_sent_by_another(conn, keys, report.submissions)
        report.homicide_rates = national_yearly(conn, "SDG_16_1_1")
        report.plan_execution = national_yearly(conn, "PLAN_EXECUTION")
        report.victimization = national_yearly(conn, "VICTIMIZATION_PREVALENCE")
        report.arrests = national_yearly(conn, "ARRESTS_RATE")
        latest = report.homicide_rates[-1]["period"] if report.homicide_rates else None
        report.highlights = [
            row
            for code, split in HIGHLIGHTS
            for row in national_yearly(conn, code, split)
            if row["period"] == latest
        ]
    report.wall_seconds = time.perf_counter() - started
    done = {s["partition_key"] for s in report.submissions}
    report.unprocessed_keys = [k for k in keys if k not in done]
    report.left_in_inbox = [
        f.path for f in zone.scan(settle_seconds=0, limit=10**9) if f.key in keys
    ]
    if report.stopped_by:  # what the stop left: one count, not thousands of names
        report.not_started = len(report.left_in_inbox)
        report.unprocessed_keys, report.left_in_inbox = [], []
    return report


class _Stopped(Exception):
    """``obsx run`` was asked to stop: the indicators are left to the next run."""
