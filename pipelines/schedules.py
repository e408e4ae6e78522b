"""The nightly refresh: 02:00 in the deployment's time zone unless OBSX_NIGHTLY_CRON /
OBSX_TIMEZONE say otherwise."""

import os

import dagster as dg

from obsx.deployment import current_deployment
from pipelines.jobs import nightly_refresh_job

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
