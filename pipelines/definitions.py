"""The code location: loaded by ``workspace.yaml``."""

import dagster as dg

from assets.indicators import indicator_value
from assets.operations import last_night
from assets.publication import monthly_bulletin
from assets.reconciliation import source_reconciliation
from assets.reference import (
    reference_contracts,
    reference_geography,
    reference_observatories,
    reference_population,
)
from assets.submissions import submissions
from pipelines.executors import job_executor
from pipelines.jobs import (
    load_reference_job,
    monthly_bulletin_job,
    nightly_refresh_job,
    process_submissions_job,
)
from pipelines.resources import DropzoneResource, WarehouseResource
from pipelines.schedules import monthly_bulletin_schedule, nightly_refresh_schedule
from pipelines.sensors import incident_inbox_sensor

defs = dg.Definitions(
    assets=[
        reference_geography,
        reference_population,
        reference_observatories,
        reference_contracts,
        submissions,
        last_night,
        indicator_value,
        source_reconciliation,
        monthly_bulletin,
    ],
    jobs=[process_submissions_job, nightly_refresh_job, load_reference_job, monthly_bulletin_job],
    sensors=[incident_inbox_sensor],
    schedules=[nightly_refresh_schedule(), monthly_bulletin_schedule()],
    resources={"warehouse": WarehouseResource(), "dropzone": DropzoneResource()},
    executor=job_executor(),  # what materializations from the UI use too (OBSX_EXECUTOR)
)
