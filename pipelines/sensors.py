"""The inbox sensor: finished uploads become dynamic partitions and one run per batch.

The sensor does no parsing. Its cursor remembers, for files still in an inbox, their hash (so a
file is read once) and that a run was already requested for them (so a file waiting for its run,
or one that failed, is not requested again every tick). It is bounded by the inbox contents.
"""

import json

import dagster as dg

from assets.submissions import submission_partitions
from pipelines.jobs import process_submissions_job
from pipelines.planning import plan
from pipelines.resources import DropzoneResource


@dg.sensor(
    job=process_submissions_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def incident_inbox_sensor(context: dg.SensorEvaluationContext, dropzone: DropzoneResource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    zone = dropzone.dropzone(hashes=cursor.get("hashes"))
    files = zone.scan(settle_seconds=dropzone.settle_seconds, limit=dropzone.max_files_per_tick)
    requested = set(cursor.get("requested", []))
    pending = [f for f in files if f.fingerprint not in requested]
    present = {f.fingerprint: f.sha256 for f in files}
    new_cursor = json.dumps(
        {
            "hashes": present,
            "requested": sorted((requested & present.keys()) | {f.fingerprint for f in pending}),
        }
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
