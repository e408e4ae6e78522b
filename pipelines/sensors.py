"""The inbox sensor: finished uploads become dynamic partitions and one run per batch.

The sensor does no parsing. Its cursor holds the fingerprints (name, size, modification time) of
files still in an inbox for which a run was already requested, so that a file waiting for its
run, or one whose run failed, is neither requested again every tick nor in the way of newer
files. Files leave the inbox once processed, so the cursor stays as small as the backlog; a
changed file (new size or time) is a new upload.
"""

import json
from collections.abc import Iterable

import dagster as dg

from assets.submissions import submission_partitions
from obsx.intake.dropzone import InboxFile, display_name, fingerprint
from pipelines.jobs import process_submissions_job
from pipelines.planning import plan
from pipelines.resources import DropzoneResource

# Run tags an operator reads in the runs list: which files, how many, and who started the run.
# A tag value is stored in an indexed column (PostgreSQL refuses an index row over 2,712 bytes),
# so the list of names is cut well below that, saying how many more there were.
FILES_TAG, COUNT_TAG, LAUNCHED_BY_TAG = "obsx/files", "obsx/file_count", "obsx/launched_by"
FILES_TAG_BYTES = 1_000


def files_tag(names: list[str], limit: int = FILES_TAG_BYTES) -> str:
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        candidate = ", ".join([*shown, name]) + (f" (+{rest} more)" if rest else "")
        if len(candidate.encode("utf-8")) > limit:
            more = len(names) - len(shown)
            return ", ".join(shown) + f" (+{more} more)" if shown else f"{more} files"
        shown.append(name)
    return ", ".join(shown)


def run_tags(files: Iterable[InboxFile], keys: list[str], launched_by: str) -> dict[str, str]:
    """Tags for a run over ``keys``: each key's file as ``contributor/name``, in key order."""
    names: dict[str, str] = {}
    for f in files:
        names.setdefault(f.key, f"{f.observatory_code}/{display_name(f.path)}")
    listed = [names.get(k, k) for k in keys]
    return {
        FILES_TAG: files_tag(listed),
        COUNT_TAG: str(len(keys)),
        LAUNCHED_BY_TAG: launched_by,
    }


def with_file_tags(requests: list[dg.RunRequest], work, files: list[InboxFile], launched_by: str):
    """The plan's run requests, each tagged with the files it covers."""
    tagged = []
    for request, keys in zip(requests, work.batches(), strict=True):
        tagged.append(
            dg.RunRequest(
                run_key=request.run_key,
                partition_key=request.partition_key,
                tags={**request.tags, **run_tags(files, keys, launched_by)},
            )
        )
    return tagged


@dg.sensor(
    job=process_submissions_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def incident_inbox_sensor(context: dg.SensorEvaluationContext, dropzone: DropzoneResource):
    requested = set(json.loads(context.cursor)["requested"]) if context.cursor else set()
    zone = dropzone.dropzone()
    present = {
        fingerprint(path, stat.st_size, stat.st_mtime_ns)
        for _, path, stat in zone.finished_files(dropzone.settle_seconds)
    }
    pending = zone.scan(
        settle_seconds=dropzone.settle_seconds, limit=dropzone.max_files_per_tick, skip=requested
    )
    new_cursor = json.dumps(
        {"requested": sorted((requested & present) | {f.fingerprint for f in pending})}
    )
    for folder in zone.unknown_folders():
        context.log.warning(f"drop folder {folder!r} belongs to no registered observatory")
    if not pending:
        return dg.SensorResult(
            skip_reason="no new finished files in the inboxes", cursor=new_cursor
        )
    registered = context.instance.get_dynamic_partitions(submission_partitions.name)  # in order
    work = plan(pending, registered)
    return dg.SensorResult(
        run_requests=with_file_tags(work.run_requests(), work, pending, "sensor"),
        dynamic_partitions_requests=[submission_partitions.build_add_request(work.new_keys)]
        if work.new_keys
        else [],
        cursor=new_cursor,
    )
