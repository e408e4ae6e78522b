"""Scale-out on dagster-celery: a batch spread over two real workers equals a single-process run.

Needs Redis (``CELERY_TEST_BROKER``, default ``redis://127.0.0.1:6379/15``: a database of its
own, and a queue named for this test) and the PostgreSQL test server (``WAREHOUSE_TEST_URL``):
the Dagster instance (deploy/dagster.yaml, dagster-postgres) and both warehouses are databases
the test creates and drops. Outside CI it skips when either is missing; under ``CI=true`` it fails.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from obsx.config import REPO_ROOT
from pipelines.planning import plan, range_tags
from pipelines.resources import DropzoneResource
from tests.conftest import postgres_database

pytestmark = pytest.mark.postgres

BROKER = os.environ.get("CELERY_TEST_BROKER", "redis://127.0.0.1:6379/15")
BIN = Path(sys.executable).parent
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "incidents"

COLON_ENERO = (
    "No. caso;Fecha del hecho;Distrito;ICCS;Sexo;Edad;Arma empleada\n"
    "C1;09/01/2025;301;101;Hombre;22;AF\n"
    "C2;15/01/2025;301;401;Mujer;30;\n"
).encode("cp1252")
# The same observatory's correction, sent after: merged after the first, whichever worker runs it.
COLON_CORRECCION = (
    "No. caso;Fecha del hecho;Distrito;ICCS;Sexo;Edad;Arma empleada\n"
    "C1;09/01/2025;301;101;Hombre;23;AF\n"
    "C3;20/01/2025;301;101;Hombre;40;AF\n"
).encode("cp1252")
PANAMA_CSV = (
    "Código incidente,Fecha,Distrito,Delito (ICCS),Sexo víctima,Edad,Arma\n"
    "P1,2025-01-03,0804,0101,Masculino,25,Arma de fuego\n"
    "P2,2025-01-20,0804,0401,Femenino,31,Sin arma\n"
    "P3,2025-13-01,0804,0101,M,40,Arma de fuego\n"
).encode()
# (observatory, file name, bytes) in upload order: six files from four observatories.
FILES = [
    ("pa_colon", "enero.csv", COLON_ENERO),
    ("pa_panama", "enero.csv", PANAMA_CSV),
    ("pa_arraijan", "arraijan_marzo.csv", (FIXTURES / "arraijan_marzo.csv").read_bytes()),
    ("pa_colon", "enero_corregido.csv", COLON_CORRECCION),
    (
        "pa_la_chorrera",
        "la_chorrera_febrero.xls",
        (FIXTURES / "la_chorrera_febrero.xls").read_bytes(),
    ),
    ("pa_panama", "panama_abril.sav", (FIXTURES / "panama_abril.sav").read_bytes()),
]


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"Celery tests must run under CI=true: {reason}")
    pytest.skip(f"Celery tests skipped: {reason}")


@pytest.fixture
def broker():
    """Redis reachable, and a queue no other test run listens on; the queue is removed after."""
    import redis

    client = redis.Redis.from_url(BROKER, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        _unavailable(f"cannot reach Redis at {BROKER} ({exc}); start it with redis-server")
    queue = f"obsx_test_{uuid.uuid4().hex[:12]}"
    try:
        yield queue
    finally:
        client.delete(queue, f"_kombu.binding.{queue}")
        client.close()


def drop_files(root: Path) -> list[str]:
    for code, name, data in FILES:
        inbox = root / "dropzone" / code / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(data)
        time.sleep(0.01)  # distinct modification times: upload order
    files = DropzoneResource(data_dir=str(root)).dropzone().scan(settle_seconds=0, limit=100)
    return plan(files, set()).new_keys


def start_worker(name: str, env: dict, log: Path) -> subprocess.Popen:
    """A dagster-celery worker as docs/deploy.md starts one, in a process group of its own."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                str(BIN / "dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(REPO_ROOT / "deploy" / "celery.yaml"),
                "-q",
                env["OBSX_CELERY_QUEUE"],
                "-n",
                name,
                "-i",
                "pipelines.definitions",  # imported once at start, not on the first step
                "--",
                "--pool",
                "solo",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_workers(names, deadline: float, workers, logs) -> None:
    from celery import Celery

    app = Celery(broker=BROKER)
    try:
        while True:
            replies = app.control.ping(timeout=1.0)
            up = {name.split("@")[0] for reply in replies for name in reply}
            if set(names) <= up:
                return
            for process, log in zip(workers, logs, strict=True):
                if process.poll() is not None:
                    pytest.fail(f"a Celery worker exited:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"Celery workers not ready; up: {sorted(up)}")
            time.sleep(0.5)
    finally:
        app.close()


def snapshot(url: str) -> tuple[dict[str, int], list[tuple]]:
    """Row counts of every warehouse table, and indicator_value without its timestamps."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            counts = {
                t: conn.scalar(sa.text(f'SELECT count(*) FROM "{t}"'))
                for t in sorted(tables)
                if t != "alembic_version"
            }
            columns = [
                c["name"]
                for c in sa.inspect(conn).get_columns("indicator_value")
                if c["name"] != "computed_at"
            ]
            listed = ", ".join(f'"{c}"' for c in columns)
            values = conn.execute(
                sa.text(f"SELECT {listed} FROM indicator_value ORDER BY {listed}")
            ).all()
    finally:
        engine.dispose()
    return counts, [tuple(v) for v in values]


def test_a_batch_spread_over_two_celery_workers_equals_a_single_process_run(
    tmp_path, broker, monkeypatch
):
    import assets.submissions

    if not hasattr(assets.submissions, "plan_submission_shards"):  # until #11's asset change lands
        pytest.skip("a batch is still one step: assets/submissions.py does not split it yet")
    workers_named = (f"{broker}_w1", f"{broker}_w2")  # unique: other runs may share the broker
    with (
        postgres_database() as instance_db,
        postgres_database() as celery_warehouse,
        postgres_database() as single_warehouse,
    ):
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        pg_url = sa.make_url(instance_db).set(drivername="postgresql+psycopg2")
        root = tmp_path / "celery"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # it runs `celery`
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": pg_url.render_as_string(hide_password=False),
            "OBSX_DATA_DIR": str(root),
            "WAREHOUSE_URL": celery_warehouse,
            "OBSX_EXECUTOR": "celery",
            "OBSX_CELERY_BROKER": BROKER,
            "OBSX_CELERY_BACKEND": BROKER,
            "OBSX_CELERY_QUEUE": broker,
            "OBSX_SHARDS": "4",
            "OPENBLAS_NUM_THREADS": "1",
        }
        logs = [tmp_path / f"{name}.log" for name in workers_named]
        workers = []
        try:
            started = time.monotonic()
            workers = [
                start_worker(n, env, log) for n, log in zip(workers_named, logs, strict=True)
            ]

            # While the workers start: the same files, run in this process into another database.
            keys = drop_files(root)
            single_root = tmp_path / "single"
            assert drop_files(single_root) == keys
            monkeypatch.setenv("OBSX_DATA_DIR", str(single_root))
            monkeypatch.setenv("WAREHOUSE_URL", single_warehouse)
            from pipelines.definitions import defs

            (tmp_path / "single_home").mkdir()
            with dg.instance_for_test(temp_dir=str(tmp_path / "single_home")) as instance:
                instance.add_dynamic_partitions("submissions", keys)
                single_started = time.perf_counter()
                result = defs.resolve_job_def("process_submissions").execute_in_process(
                    instance=instance, tags=range_tags(keys[0], keys[-1])
                )
                single_seconds = time.perf_counter() - single_started
                assert result.success

            # The instance the workers share: keys registered, then one run of the batch.
            monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
            monkeypatch.setenv("DAGSTER_PG_URL", env["DAGSTER_PG_URL"])
            with dg.DagsterInstance.get() as instance:
                instance.add_dynamic_partitions("submissions", keys)
            wait_for_workers(workers_named, time.monotonic() + 60, workers, logs)
            ready = time.monotonic() - started
            celery_started = time.perf_counter()
            launched = subprocess.run(
                [
                    str(BIN / "dagster"),
                    "job",
                    "execute",
                    "-m",
                    "pipelines.definitions",
                    "-j",
                    "process_submissions",
                    "--tags",
                    json.dumps(range_tags(keys[0], keys[-1])),
                ],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            celery_seconds = time.perf_counter() - celery_started
            assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]

            with dg.DagsterInstance.get() as instance:
                (run,) = instance.get_runs()
                assert run.status == dg.DagsterRunStatus.SUCCESS
                where = {}  # step key -> worker that executed it
                for record in instance.all_logs(run.run_id):
                    event = record.dagster_event
                    if event and event.is_engine_event and event.step_key:
                        worker = event.engine_event_data.metadata.get("Celery worker")
                        if worker is not None:
                            where[event.step_key] = worker.value.split("@")[0]
        finally:
            for process in workers:
                stop(process)

        shard_steps = {k: w for k, w in where.items() if "process_submission_shard" in k}
        print(
            f"\nbatch of {len(keys)} files: single process {single_seconds:.1f} s; "
            f"two Celery workers {celery_seconds:.1f} s (workers ready after {ready:.1f} s); "
            f"steps by worker: {where}"
        )
        assert len(shard_steps) == 4, where  # four contributors, four shards
        assert set(shard_steps.values()) == set(workers_named), where  # both workers took shards
        assert set(where.values()) == set(workers_named)

        single, spread = snapshot(single_warehouse), snapshot(celery_warehouse)
        assert spread[0] == single[0]
        assert spread[0]["submission"] == len(FILES)
        assert spread[0]["incidents"] > 0 and len(spread[1]) > 0
        assert spread[1] == single[1]
        engine = sa.create_engine(celery_warehouse)
        with engine.connect() as conn:  # the correction was merged after the file it corrects
            age = conn.scalar(
                sa.text(
                    "SELECT victim_age FROM incidents "
                    "WHERE observatory_code = 'pa_colon' AND incident_id = 'C1'"
                )
            )
        engine.dispose()
        assert age == 23
