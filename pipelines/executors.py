"""How a run's steps are executed, chosen per deployment by the environment (docs/deploy.md).

``OBSX_EXECUTOR`` is read when the definitions load (code server, daemon, run worker):

- unset or ``default``: the jobs keep Dagster's default executor (a run launched by the daemon or
  ``dagster dev`` executes its steps in subprocesses; ``obsx run`` executes in process) and a
  batch of submissions is one step, as before;
- ``multiprocess``: steps in subprocesses on the run's machine, at most ``OBSX_MAX_CONCURRENT``
  (default: the machine's CPUs) at once, and a batch of submissions split into as many shards;
- ``celery``: steps sent to dagster-celery workers through the broker ``OBSX_CELERY_BROKER``
  (results through ``OBSX_CELERY_BACKEND``, default ``rpc://``), on the queue
  ``OBSX_CELERY_QUEUE`` (default ``dagster``); a batch split into ``OBSX_SHARDS`` shards
  (default 4). The warehouse must be PostgreSQL.

A shard is a set of whole contributors: each contributor's files stay together and in upload
order, so its revisions are merged in the order it sent them, whichever worker runs the shard.
``OBSX_SHARDS`` overrides the number of shards for any executor.
"""

import os

import dagster as dg
import sqlalchemy as sa

from obsx.config import data_root, warehouse_url
from obsx.intake.dropzone import parse_partition_key

EXECUTOR_ENV = "OBSX_EXECUTOR"
EXECUTORS = ("default", "multiprocess", "celery")
# Run tag read by the submissions asset: how many steps a batch is split into. Set on the job
# (jobs.py) from the environment; a run request may override it.
SHARDS_TAG = "obsx/submission_shards"
DEFAULT_CELERY_SHARDS = 4


class ExecutorSettingError(ValueError):
    """An executor setting in the environment that cannot be used; the message says which."""


def executor_name() -> str:
    name = (os.environ.get(EXECUTOR_ENV) or "default").strip().lower()
    if name not in EXECUTORS:
        raise ExecutorSettingError(
            f"{EXECUTOR_ENV}={name!r} is not an executor: use one of {', '.join(EXECUTORS)}"
        )
    return name


def _positive_int(variable: str, default: int) -> int:
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ExecutorSettingError(f"{variable}={raw!r}: expected a whole number of at least 1")
    return value


def max_concurrent() -> int:
    return _positive_int("OBSX_MAX_CONCURRENT", os.cpu_count() or 1)


def celery_broker() -> str:
    broker = os.environ.get("OBSX_CELERY_BROKER")
    if not broker:
        raise ExecutorSettingError(
            f"{EXECUTOR_ENV}=celery needs OBSX_CELERY_BROKER, e.g. redis://redis:6379/0 or "
            "pyamqp://guest@rabbit//"
        )
    return broker


def celery_config() -> dict:
    """The executor's config: the broker, backend and queue the workers are started with
    (``dagster-celery worker start -y deploy/celery.yaml -q $OBSX_CELERY_QUEUE``)."""
    config = {
        "broker": celery_broker(),
        "backend": os.environ.get("OBSX_CELERY_BACKEND") or "rpc://",
    }
    queue = os.environ.get("OBSX_CELERY_QUEUE")
    if queue:  # where steps are sent; dagster-celery's default queue is "dagster"
        config["config_source"] = {"task_default_queue": queue}
    return config


def _refuse_sqlite_on_celery() -> None:
    url = warehouse_url(None, data_root(None))
    if sa.make_url(url).get_backend_name() == "sqlite":
        raise ExecutorSettingError(
            f"{EXECUTOR_ENV}=celery needs a PostgreSQL warehouse (WAREHOUSE_URL): workers on "
            "other machines cannot share one SQLite file, which allows a single writer"
        )


def job_executor() -> dg.ExecutorDefinition | None:
    """The executor every job is defined with; None keeps Dagster's default."""
    name = executor_name()
    if name == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": max_concurrent()})
    if name == "celery":
        from dagster_celery import celery_executor

        _refuse_sqlite_on_celery()
        return celery_executor.configured(celery_config())
    return None


def submission_shards() -> int:
    """How many steps a batch of submissions is split into (1: the whole batch in one step)."""
    default = {"default": 1, "multiprocess": max_concurrent(), "celery": DEFAULT_CELERY_SHARDS}
    return _positive_int("OBSX_SHARDS", default[executor_name()])


def job_tags() -> dict[str, str]:
    shards = submission_shards()
    return {SHARDS_TAG: str(shards)} if shards > 1 else {}


def shards_of(run_tags: dict[str, str]) -> int:
    try:
        return max(1, int(run_tags.get(SHARDS_TAG, "1")))
    except ValueError:
        return 1


def shard_by_contributor(keys: list[str], shards: int, sizes: dict[str, int] | None = None):
    """Split partition keys into at most ``shards`` lists, never splitting a contributor.

    Each list keeps the batch's order, so a contributor's files are merged in upload order.
    Contributors are dealt largest first (by ``sizes`` in bytes, else by number of files) to the
    lightest shard, so shards take about the same time. Empty shards are dropped.
    """
    by_code: dict[str, list[str]] = {}
    for key in keys:
        by_code.setdefault(parse_partition_key(key)[0], []).append(key)
    weight = {
        code: sum((sizes or {}).get(k, 1) for k in code_keys) for code, code_keys in by_code.items()
    }
    loads = [0] * max(1, shards)
    members: list[set[str]] = [set() for _ in loads]
    for code in sorted(by_code, key=lambda c: (-weight[c], c)):
        lightest = loads.index(min(loads))
        loads[lightest] += weight[code]
        members[lightest].add(code)
    order = {key: i for i, key in enumerate(keys)}
    result = []
    for codes in members:
        shard = sorted((k for c in codes for k in by_code[c]), key=order.__getitem__)
        if shard:
            result.append(shard)
    return sorted(result, key=lambda s: order[s[0]])
