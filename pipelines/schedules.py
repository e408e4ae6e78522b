"""The nightly refresh: 02:00 America/Panama unless OBSX_NIGHTLY_CRON / OBSX_TIMEZONE say otherwise."""

import os

import dagster as dg

from pipelines.jobs import nightly_refresh_job

DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "America/Panama"


def nightly_refresh_schedule() -> dg.ScheduleDefinition:
    # Read when the definitions are built: a schedule's cron is part of its definition.
    return dg.ScheduleDefinition(
        name="nightly_refresh_schedule",
        job=nightly_refresh_job,
        cron_schedule=os.environ.get("OBSX_NIGHTLY_CRON", DEFAULT_CRON),
        execution_timezone=os.environ.get("OBSX_TIMEZONE", DEFAULT_TIMEZONE),
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
