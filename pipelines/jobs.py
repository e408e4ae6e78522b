"""Jobs: what a sensor tick, a command run and the nightly schedule materialize."""

import dagster as dg

from assets.indicators import indicator_value
from assets.publication import monthly_bulletin
from assets.submissions import submissions
from pipelines.executors import job_executor, job_tags

# Read once when the definitions load: OBSX_EXECUTOR (default, multiprocess or celery) chooses
# how every job's steps are executed; the executor belongs to the job, not to its run config.
EXECUTOR = job_executor()

# The per-submission asset and everything downstream of it, in one run for a batch of files.
# Reference data are reloaded first (a fraction of a second) so that a fresh warehouse fed only
# by the sensor has its denominators, and a corrected population file is picked up.
process_submissions_job = dg.define_asset_job(
    "process_submissions",
    selection=dg.AssetSelection.groups("reference")
    | dg.AssetSelection.assets(submissions).downstream() - dg.AssetSelection.groups("publication"),
    description="Process a batch of uploaded files and refresh the indicators.",
    executor_def=EXECUTOR,
    tags=job_tags(),  # how many steps a batch is split into (pipelines/executors.py)
)

# Reference data reloaded from the repository files, then every indicator recomputed.
nightly_refresh_job = dg.define_asset_job(
    "nightly_refresh",
    selection=dg.AssetSelection.groups("reference") | dg.AssetSelection.assets(indicator_value),
    description="Reload geography, population and observatories; recompute all indicators.",
    executor_def=EXECUTOR,
)

# Reference data only: what `obsx run` refreshes before processing files.
load_reference_job = dg.define_asset_job(
    "load_reference",
    selection=dg.AssetSelection.groups("reference"),
    description="Load geography, population and the observatory registry from reference/.",
    executor_def=EXECUTOR,
)

# Last month's bulletin, packs and open-data files (one partition per month reported).
monthly_bulletin_job = dg.define_asset_job(
    "build_monthly_bulletin",
    selection=dg.AssetSelection.assets(monthly_bulletin),
    description="Build the monthly bulletin, every contributor's pack and the open-data files.",
    executor_def=EXECUTOR,
)
