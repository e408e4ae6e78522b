"""The inbox sensor: finished uploads become dynamic partitions and one run per batch.

The sensor does no parsing. Its cursor holds the fingerprints (name, size, modification time) of
files still in an inbox for which a run was already requested, so that a file waiting for its
run, or one whose run failed, is neither requested again every tick nor in the way of newer
files. Files leave the inbox once processed, so the cursor stays as small as the backlog; a
changed file (new size or time) is a new upload.
"""

import json

import dagster as dg

from assets.submissions import submission_partitions
from obsx.dropzone import fingerprint
from pipelines.jobs import process_submissions_job
from pipelines.planning import plan
from pipelines.resources import DropzoneResource


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
    registered = set(context.instance.get_dynamic_partitions(submission_partitions.name))
    work = plan(pending, registered)
    return dg.SensorResult(
        run_requests=work.run_requests(),
        dynamic_partitions_requests=[submission_partitions.build_add_request(work.new_keys)]
        if work.new_keys
        else [],
        cursor=new_cursor,
    )
