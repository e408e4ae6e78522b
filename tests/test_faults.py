"""Faults through the real command: ``obsx run`` SIGKILLed at points drawn from a seeded RNG (from
reading to the indicators), a PostgreSQL connection terminated in the middle of a merge, and
indicators left stale by an interrupted run. After a retry the warehouse, the submissions, the
feedback, the inboxes and the indicators equal those of a clean run of the same files.

The killed runs are subprocesses (a real SIGKILL, nothing cleaned up); the clean runs and the
retries run in this process (``cli.main``), to keep the test's time down."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from obsx import cli
from obsx.warehouse.tables import metadata
from tests.conftest import postgres_database

SEED = 20261126
HEADER = "id,fecha,distrito,delito,sexo,edad,arma"
# Two files of one contributor (the second revises a record of the first), a larger one whose
# merge takes long enough to be caught, another contributor's file, and a broken workbook.
FILES = [
    (
        "pa_panama",
        "enero.csv",
        HEADER + "\nP1,2025-01-03,0804,0101,M,25,Arma de fuego\n"
        "P2,2025-01-20,0804,0401,F,31,Sin arma\nP3,2025-13-01,0804,0101,M,40,Arma de fuego\n",
    ),
    (
        "pa_panama",
        "febrero.csv",
        HEADER + "\nP2,2025-01-20,0804,0502,F,31,Sin arma\nP4,2025-02-11,0804,0101,F,19,Otro\n",
    ),
    (
        "pa_panama",
        "marzo.csv",
        HEADER
        + "\n"
        + "".join(
            f"M{i},2025-03-{i % 28 + 1:02d},0804,{('0401', '0502', '0101')[i % 3]},"
            f"{'MF'[i % 2]},{18 + i % 50},Sin arma\n"
            for i in range(1500)
        ),
    ),
    (
        "pa_colon",
        "enero colón.csv",
        "No. caso;Fecha del hecho;Distrito;ICCS;Sexo;Edad;Arma empleada\n"
        "C1;09/01/2025;301;101;Hombre;22;AF\n",
    ),
    ("pa_colon", "roto.xlsx", "PK\x03\x04 not really a workbook"),
]
# Columns that legitimately differ between two runs of the same files: times, run ids and
# surrogate keys (PostgreSQL sequences are not rolled back with a killed transaction).
VOLATILE = {"run_id", "revision", "correction_id"}
KILLED = -signal.SIGKILL


def drop_files(root: Path) -> None:
    for mtime, (code, name, text) in enumerate(FILES, start=1):
        inbox = root / "dropzone" / code / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        data = text.encode("cp1252" if code == "pa_colon" else "utf-8")
        (inbox / name).write_bytes(data)
        os.utime(inbox / name, (mtime, mtime))  # long finished, in this order


@contextlib.contextmanager
def warehouses(dialect: str, tmp_path: Path, names: list[str]):
    """A fresh, empty warehouse URL for each name."""
    with contextlib.ExitStack() as stack:
        if dialect == "sqlite":
            yield {n: f"sqlite:///{tmp_path / n / 'warehouse.db'}" for n in names}
        else:
            yield {n: stack.enter_context(postgres_database()) for n in names}


def environment(place: Path, url: str) -> dict[str, str]:
    return {
        "OBSX_DATA_DIR": str(place / "data"),
        "WAREHOUSE_URL": url,
        "DAGSTER_HOME": str(place / "dagster"),
    }


def run_here(monkeypatch, capsys, place: Path, url: str) -> tuple[int, str]:
    """``obsx run`` in this process, to completion."""
    for name, value in environment(place, url).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = cli.main(["run", "--settle-seconds", "0"])
    return code, capsys.readouterr().out


def start_run(place: Path, url: str) -> tuple[subprocess.Popen, Path]:
    out = place / "killed-run.out"
    env = {**os.environ, **environment(place, url), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "obsx.cli", "run", "--settle-seconds", "0"],
        env=env,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return process, out


def merged(engine: sa.Engine) -> tuple[int, int]:
    """Submission rows committed, and how many of them merged (0, 0 before the tables exist)."""
    try:
        with engine.connect() as conn:
            return tuple(
                conn.execute(sa.text("SELECT count(*), count(merged_at) FROM submission")).one()
            )
    except sa.exc.DBAPIError:
        return 0, 0


def wait_for(condition, args, process: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll ``condition(*args)`` until true; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition(*args):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("the run never reached the point where it is to be killed")


def state(place: Path, url: str) -> str:
    """What a killed run left behind, in words (for the test's output)."""
    engine = sa.create_engine(url)
    rows, done = merged(engine)
    try:
        with engine.connect() as conn:
            refreshes = conn.scalar(sa.text("SELECT count(*) FROM indicator_refresh"))
    except sa.exc.DBAPIError:
        refreshes = 0
    engine.dispose()
    root = place / "data"
    feedback = len(list(root.glob("dropzone/*/feedback/*.json")))
    waiting = len(list(root.glob("dropzone/*/inbox/*")))
    parts = len(part_files(root))
    return (
        f"{done}/{len(FILES)} merged, {feedback} feedback, {waiting} in inboxes, "
        f"{parts} .part files, {refreshes} indicator refreshes"
    )


def part_files(root: Path) -> list[str]:
    return [
        os.path.join(where, name)
        for where, _, names in os.walk(root)
        for name in names
        if name.endswith(".part") or ".part." in name
    ]


def keep(table: sa.Table, column: sa.Column) -> bool:
    if isinstance(column.type, sa.DateTime) or column.name in VOLATILE:
        return False
    surrogate = (
        column.primary_key
        and len(table.primary_key.columns) == 1
        and isinstance(column.type, sa.Integer)
    )
    return not surrogate


def snapshot(place: Path, url: str) -> dict:
    """Everything a retry must leave as a clean run does, minus times and surrogate keys."""
    engine = sa.create_engine(url)
    tables = {}
    with engine.connect() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for table in metadata.sorted_tables:
            if table.name not in present or table.name == "indicator_refresh":
                continue  # when refreshes ran, and what they remember: history, not results
            columns = [c for c in table.columns if keep(table, c)]
            rows = conn.execute(sa.select(*columns)).all()
            tables[table.name] = sorted((tuple(r) for r in rows), key=repr)
        submissions = conn.execute(
            sa.text("SELECT observatory_code, submission_id, file_name, status FROM submission")
        ).all()
    engine.dispose()
    root = place / "data"
    feedback = {}
    for code, sha, name, status in submissions:
        (found,) = (root / "dropzone" / code / "feedback").glob(f"*__{sha[:16]}.json")
        report = json.loads(found.read_text(encoding="utf-8"))
        assert report["status"] == status, (name, report["status"], status)
        assert report["duplicate_of_earlier_upload"] is False, name
        feedback[name] = (status, report["summary"], report["problem_counts"])
    return {
        "tables": tables,
        "statuses": {name: status for _, _, name, status in submissions},
        "feedback": feedback,
        "feedback files": sorted(p.name for p in root.glob("dropzone/*/feedback/*")),
        "inboxes": sorted(str(p) for p in root.glob("dropzone/*/inbox/*")),
        "part files": part_files(root),
    }


def assert_same(clean: dict, retried: dict, what: str) -> None:
    assert retried["inboxes"] == [], what
    assert retried["part files"] == [], what
    assert retried["statuses"] == clean["statuses"], what
    assert retried["feedback"] == clean["feedback"], what
    assert retried["feedback files"] == clean["feedback files"], what
    assert retried["tables"]["indicator_value"] == clean["tables"]["indicator_value"], what
    for name, rows in clean["tables"].items():
        assert retried["tables"][name] == rows, f"{what}: table {name}"


_CLEAN: dict[str, tuple[int, dict]] = {}  # a clean run's exit status and snapshot, by dialect


def clean_run(monkeypatch, capsys, tmp_path: Path, dialect: str) -> tuple[int, dict]:
    """The files run once, uninterrupted, into a fresh warehouse (once per dialect and session)."""
    if dialect in _CLEAN:
        return _CLEAN[dialect]
    with warehouses(dialect, tmp_path, ["clean"]) as urls:
        place = tmp_path / "clean"
        drop_files(place / "data")
        code, out = run_here(monkeypatch, capsys, place, urls["clean"])
        result = snapshot(place, urls["clean"])
    assert result["statuses"] == {
        "enero.csv": "partly_accepted",
        "febrero.csv": "accepted",
        "marzo.csv": "accepted",
        "enero colón.csv": "accepted",
        "roto.xlsx": "rejected",
    }, out
    assert result["inboxes"] == [] and result["part files"] == [], out
    _CLEAN[dialect] = code, result
    return code, result


# Where each kill is aimed: after what the run shows from outside, plus a delay drawn from the
# seeded RNG. Together they span reading, the merges, feedback, checks and the indicators.
KILL_POINTS = {
    "reading": (lambda out, engine: b"Processing" in out.read_bytes(), 1.5),
    "merging": (lambda out, engine: merged(engine)[0] >= 1, 0.6),
    "after the merges": (lambda out, engine: merged(engine)[1] == len(FILES), 3.0),
}


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_sigkill_anywhere_then_a_retry_equals_a_clean_run(dialect, tmp_path, monkeypatch, capsys):
    rng = random.Random(f"{SEED}-{dialect}")
    started = time.perf_counter()
    clean_code, clean = clean_run(monkeypatch, capsys, tmp_path, dialect)
    # PostgreSQL (production) at every point; SQLite where its single writer matters, in a
    # merge (the state after the merges is also made directly by the stale-indicators test).
    points = KILL_POINTS if dialect == "postgresql" else {"merging": KILL_POINTS["merging"]}
    with warehouses(dialect, tmp_path, list(points)) as urls:
        seen = []
        for point, (reached, spread) in points.items():
            place, url = tmp_path / point, urls[point]
            drop_files(place / "data")
            delay = rng.uniform(0, spread)
            process, out = start_run(place, url)
            engine = sa.create_engine(url)
            try:
                assert wait_for(reached, (out, engine), process), out.read_text()
                time.sleep(delay)
                process.send_signal(signal.SIGKILL)
                assert process.wait(30) == KILLED, f"{point}: the run ended before the kill"
            finally:
                engine.dispose()
                if process.poll() is None:
                    process.kill()
                    process.wait()
            left = state(place, url)

            code, said = run_here(monkeypatch, capsys, place, url)

            what = f"{dialect}, killed {point} +{delay:.2f} s ({left})"
            seen.append(what)
            assert code == clean_code, f"{what}\n{said}"
            assert_same(clean, snapshot(place, url), what)
        # (pytest -s shows where the kills landed)
        print(f"\n{time.perf_counter() - started:.1f} s: " + "; ".join(seen))


def test_a_run_killed_after_its_merges_leaves_stale_indicators_the_next_run_recomputes(
    tmp_path, monkeypatch, capsys
):
    """The state a SIGKILL between the merges and the indicators leaves (made here directly:
    the last indicator refresh forgotten, as if it never ran): an idle ``obsx run`` says so in
    one line and recomputes; the next idle run finds nothing stale and stays quiet."""
    with warehouses("sqlite", tmp_path, ["run"]) as urls:
        place, url = tmp_path / "run", urls["run"]
        drop_files(place / "data")
        assert run_here(monkeypatch, capsys, place, url)[0] == 0
        before = snapshot(place, url)["tables"]["indicator_value"]
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            latest = sa.text("SELECT max(refreshed_at) FROM indicator_refresh")
            conn.execute(
                sa.text("DELETE FROM indicator_refresh WHERE refreshed_at = (:at)"),
                {"at": conn.scalar(latest)},
            )
            conn.execute(sa.text("DELETE FROM indicator_value WHERE period LIKE '2025%'"))
        engine.dispose()

        code, out = run_here(monkeypatch, capsys, place, url)
        assert code == 0, out
        stale = [line for line in out.splitlines() if line.startswith("Indicators were stale")]
        assert len(stale) == 1, out
        assert "5 submissions merged" in stale[0] and "recomputed every year" in stale[0], out
        assert snapshot(place, url)["tables"]["indicator_value"] == before

        code, out = run_here(monkeypatch, capsys, place, url)
        assert code == 0 and "stale" not in out, out
        assert out.strip().startswith("Nothing waiting")


def test_an_idle_run_checks_staleness_without_importing_dagster(tmp_path):
    """Nothing waiting and nothing stale: the command stays light (no Dagster, no pandas)."""
    root = tmp_path / "data"
    probe = (
        "import sys\n"
        "from obsx import cli\n"
        "code = cli.main(['run', '--settle-seconds', '0'])\n"
        "assert 'dagster' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "OBSX_DATA_DIR": str(root), "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("WAREHOUSE_URL", None)
    # A warehouse file with a submission merged before the last refresh: nothing stale.
    root.mkdir()
    engine = sa.create_engine(f"sqlite:///{root / 'warehouse.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE submission (merged_at TIMESTAMP)")
        conn.exec_driver_sql("CREATE TABLE indicator_refresh (refreshed_at TIMESTAMP)")
        conn.exec_driver_sql(
            "CREATE TABLE incidents_revision (valid_from TIMESTAMP, valid_to TIMESTAMP)"
        )
        conn.exec_driver_sql("INSERT INTO submission VALUES ('2026-11-26 06:00:00.000000')")
        conn.exec_driver_sql("INSERT INTO indicator_refresh VALUES ('2026-11-26 06:00:01.000000')")
        conn.exec_driver_sql(
            "INSERT INTO incidents_revision VALUES ('2026-11-26 06:00:00.000000', NULL)"
        )
    engine.dispose()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("Nothing waiting") and "stale" not in done.stdout
    assert seconds < 5  # about 0.5 s on a quiet machine; generous for a loaded one


SUBMISSION_WRITERS = """
SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE c.relname = 'submission' AND l.mode = 'RowExclusiveLock'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid <> pg_backend_pid()
"""
TERMINATE = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


@pytest.mark.postgres
def test_a_connection_dropped_in_a_merge_fails_the_file_visibly_and_a_retry_finishes_it(
    tmp_path, monkeypatch, capsys
):
    clean_code, clean = clean_run(monkeypatch, capsys, tmp_path, "postgresql")
    with warehouses("postgresql", tmp_path, ["dropped"]) as urls:
        place, url = tmp_path / "dropped", urls["dropped"]
        drop_files(place / "data")
        process, out = start_run(place, url)
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:

                def merging(conn):
                    try:
                        return bool(conn.execute(sa.text(SUBMISSION_WRITERS)).first())
                    except sa.exc.ProgrammingError:
                        return False

                # A merge transaction has claimed its submission row: cut every connection.
                assert wait_for(merging, (conn,), process), out.read_text()
                conn.execute(sa.text(TERMINATE))
            code = process.wait(120)
        finally:
            admin.dispose()
            if process.poll() is None:
                process.kill()
                process.wait()
        said = out.read_text()
        assert code == 1, said  # a person is told
        assert "Traceback" not in said.split("Submissions processed")[-1], said
        failed = [line for line in said.splitlines() if ": failed, " in line]
        names = sorted(line.split(": failed")[0].rsplit("/", 1)[1] for line in failed)
        name = failed[0].split(": failed")[0].rsplit("/", 1)[1]  # the one the connection lost
        # not lost: still in its inbox, with the same contributor's later files behind it
        waiting = sorted(p.name for p in (place / "data").glob("dropzone/*/inbox/*"))
        assert waiting == names, said
        assert "NEEDS ATTENTION" in said and name in said.split("NEEDS ATTENTION", 1)[1], said

        code, said = run_here(monkeypatch, capsys, place, url)

        assert code == clean_code, said
        assert_same(clean, snapshot(place, url), f"after a dropped connection in {name}")


def test_the_sensor_reruns_files_seen_before_as_one_run_not_one_per_file(tmp_path, monkeypatch):
    """Files registered before (a demo seeded twice, or a batch whose run was killed) come back
    as one range of neighbours: one run request, not one per file."""
    import dagster as dg

    from pipelines.resources import DropzoneResource
    from pipelines.sensors import COUNT_TAG, incident_inbox_sensor

    root = tmp_path / "data"
    monkeypatch.setenv("OBSX_DATA_DIR", str(root))
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:

        def tick():
            context = dg.build_sensor_context(
                instance=instance, resources={"dropzone": DropzoneResource(settle_seconds=0)}
            )
            result = incident_inbox_sensor(context)
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(
                    request.partitions_def_name, list(request.partition_keys)
                )
            return result.run_requests or []

        drop_files(root)
        (first,) = tick()  # registered; its run never happens (killed before it started)
        assert first.tags[COUNT_TAG] == str(len(FILES))
        (again,) = tick()  # no cursor: as after a restart of the daemon
        assert again.partition_key is None and again.run_key is None
        assert again.tags[COUNT_TAG] == str(len(FILES))
        assert (
            again.tags["dagster/asset_partition_range_start"],
            again.tags["dagster/asset_partition_range_end"],
        ) == (
            first.tags["dagster/asset_partition_range_start"],
            first.tags["dagster/asset_partition_range_end"],
        )
        # One file of the range gone: two ranges around it.
        (root / "dropzone" / "pa_panama" / "inbox" / "febrero.csv").unlink()
        requests = tick()
        assert [r.tags[COUNT_TAG] for r in requests] == ["1", "3"]
        assert requests[0].partition_key is not None
