"""The nightly refresh: 02:00 in the deployment's time zone unless OBSX_NIGHTLY_CRON /
OBSX_TIMEZONE say otherwise. The monthly bulletin: the 5th at 06:00, for the month before."""

import os

import dagster as dg

from obsx.warehouse.deployment import current_deployment
from pipelines.jobs import monthly_bulletin_job, nightly_refresh_job

DEFAULT_CRON = "0 2 * * *"


def nightly_refresh_schedule() -> dg.ScheduleDefinition:
    # Read when the definitions are built: a schedule's cron is part of its definition.
    return dg.ScheduleDefinition(
        name="nightly_refresh_schedule",
        job=nightly_refresh_job,
        cron_schedule=os.environ.get("OBSX_NIGHTLY_CRON", DEFAULT_CRON),
        execution_timezone=os.environ.get("OBSX_TIMEZONE") or current_deployment().time_zone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )


def monthly_bulletin_schedule() -> dg.ScheduleDefinition:
    # A monthly-partitioned job: on the 5th it builds the partition of the month that ended
    # (files are due on the 10th; the bulletin of the 5th reports what arrived, and says who is
    # late). The partitions carry the deployment's time zone.
    return dg.build_schedule_from_partitioned_job(
        monthly_bulletin_job,
        name="monthly_bulletin_schedule",
        day_of_month=5,
        hour_of_day=6,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
