"""Faults an operator meets with ``obsx run`` and ``obsx report`` (#23, item 5): each ends in one
line that names its cause and an exit status a cron job can act on, never a traceback on the
terminal (an unexpected one goes to ``<data root>/logs/obsx-errors.log``).

SQLite warehouses only; the unreachable server is a PostgreSQL URL on a port nobody listens to.
"""

import errno
import os
import subprocess
import sys
import time

import pytest

from obsx import cli
from obsx.config import REPO_ROOT
from obsx.warehouse.migrations import upgrade
from obsx.warehouse.tables import get_engine
from tests.test_pipeline import COLON_CSV, drop

UNREACHABLE = "postgresql+psycopg://obsx:s3cret@127.0.0.1:1/obsx"  # port 1: nobody listens


def obsx(*argv, env=None, cwd=None, timeout=180):
    """``obsx`` as a shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "obsx.cli", *argv],
        capture_output=True,
        text=True,
        cwd=cwd or REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        timeout=timeout,
    )


def attention_lines(done) -> list[str]:
    return [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.startswith("NEEDS ATTENTION")
    ]


@pytest.fixture
def place(tmp_path):
    """A data root that exists, its own Dagster instance, a migrated empty SQLite warehouse."""
    root = tmp_path / "var"
    root.mkdir()
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = get_engine(url)
    upgrade(engine)
    engine.dispose()
    env = {
        "OBSX_DATA_DIR": str(root),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "WAREHOUSE_URL": url,
        "OBSX_DEPLOYMENT": "pa",
    }
    return root, env


@pytest.mark.parametrize("command", ["run-idle", "run-with-a-file", "report"])
def test_an_unreachable_warehouse_is_one_attention_line_and_exit_1(place, command):
    root, env = place
    env = {**env, "WAREHOUSE_URL": UNREACHABLE}
    if command == "run-with-a-file":
        drop(root, "pa_colon", "enero.csv", COLON_CSV)
    argv = ["report"] if command == "report" else ["run", "--settle-seconds", "0"]
    done = obsx(*argv, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = attention_lines(done)
    assert "the warehouse database at 127.0.0.1:1 cannot be reached" in line
    assert "Connection refused" in line and "s3cret" not in done.stdout + done.stderr
    if command == "run-with-a-file":  # nothing was started: the file waits for the next run
        assert (root / "dropzone" / "pa_colon" / "inbox" / "enero.csv").exists()


def test_report_on_an_empty_warehouse_says_there_is_nothing_yet(place):
    root, env = place
    for argv in (["report"], ["report", "--period", "2025-12"]):
        done = obsx(*argv, env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "IndexError" not in done.stderr
        (line,) = attention_lines(done)
        assert "nothing to report yet" in line
    assert not (root / "reports").exists()


@pytest.mark.parametrize("how", ["--data-dir", "OBSX_DATA_DIR"])
@pytest.mark.parametrize("command", [["run"], ["report"], ["indicators"]])
def test_a_data_root_that_does_not_exist_is_an_error_and_nothing_is_created(
    place, tmp_path, how, command
):
    _, env = place
    missing = tmp_path / "vra"  # a typo
    env = {**env, "DAGSTER_HOME": str(missing / "dagster")}
    if how == "--data-dir":
        argv = ["--data-dir", str(missing), *command]
    else:
        argv, env = command, {**env, "OBSX_DATA_DIR": str(missing)}
    if command == ["indicators"]:  # the default warehouse, in the data root
        env = {k: v for k, v in env.items() if k != "WAREHOUSE_URL"}
    done = obsx(*argv, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"the data root {missing} does not exist" in done.stderr
    assert not missing.exists()


def test_db_upgrade_and_seed_create_the_data_root(tmp_path):
    for argv in (["db", "upgrade"], ["seed"]):
        root = tmp_path / argv[-1] / "var"
        done = obsx("--data-dir", str(root), *argv, env={"WAREHOUSE_URL": "", "DAGSTER_HOME": ""})
        assert done.returncode == 0, done.stdout + done.stderr
        assert root.is_dir()
    assert (tmp_path / "upgrade" / "var" / "warehouse.db").is_file()
    assert any((tmp_path / "seed" / "var" / "dropzone").rglob("*.csv"))


def test_a_file_inside_its_settle_time_is_said_to_be_arriving(place):
    root, env = place
    path = drop(root, "pa_colon", "enero.csv", COLON_CSV)
    os.utime(path, (time.time(), time.time()))  # written just now
    done = obsx("run", "--settle-seconds", "600", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Nothing waiting" not in done.stdout
    assert "1 file still arriving (pa_colon/enero.csv)" in done.stdout
    assert "the next run takes it" in done.stdout
    assert path.exists()


@pytest.fixture
def in_process(place, monkeypatch):
    root, env = place
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return root


def test_a_full_disk_during_a_run_is_one_attention_line(in_process, monkeypatch, capsys):
    """A full disk under the Dagster instance (simulated: the instance refuses to open)."""
    import dagster as dg

    drop(in_process, "pa_colon", "enero.csv", COLON_CSV)
    path = str(in_process.parent / "dagster" / "history" / "runs.db")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(dg.DagsterInstance, "get", full)
    code = cli.main(["run", "--settle-seconds", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    (line,) = [x for x in (out + err).splitlines() if x.startswith("NEEDS ATTENTION")]
    assert "No space left on device" in line and path in line
    assert "Traceback" not in err
    assert (in_process / "dropzone" / "pa_colon" / "inbox" / "enero.csv").exists()


def test_an_unexpected_error_goes_to_the_log_not_the_terminal(in_process, monkeypatch, capsys):
    """Instance storage broken in a way nobody foresaw: one line naming the log, which holds
    the traceback."""
    import dagster as dg

    drop(in_process, "pa_colon", "enero.csv", COLON_CSV)

    def broken(*args, **kwargs):
        raise RuntimeError("instance storage broken")

    monkeypatch.setattr(dg.DagsterInstance, "get", broken)
    code = cli.main(["run", "--settle-seconds", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    (line,) = [x for x in (out + err).splitlines() if x.startswith("NEEDS ATTENTION")]
    log = in_process / "logs" / "obsx-errors.log"
    assert "RuntimeError: instance storage broken" in line and str(log) in line
    assert "Traceback" not in err
    assert "Traceback" in log.read_text(encoding="utf-8")


def test_report_without_period_builds_the_last_month_that_has_data(in_process, monkeypatch, capsys):
    """Colón's file is of January 2025: that is the month built, not the month just ended
    (whose packs would be empty)."""
    from obsx.publication import bulletin

    drop(in_process, "pa_colon", "enero.csv", COLON_CSV)
    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    capsys.readouterr()
    built = []

    class Built:
        def summary(self):
            return "built"

    def build_report(engine, root, period, lang="es"):
        built.append(period)
        return Built()

    monkeypatch.setattr(bulletin, "build_report", build_report)
    assert cli.main(["report"]) == 0
    out = capsys.readouterr().out
    assert built == ["2025-01"]
    assert "no --period: the last month that has data, 2025-01" in out
    assert cli.main(["report", "--period", "2024-06"]) == 0  # asked for: built as asked
    assert built[-1] == "2024-06"


def test_an_operator_releases_a_file_set_aside_and_the_next_run_judges_it(place):
    """#23 item 1: a file whose processing kept dying is set aside unread; once the cause is
    gone, ``obsx inbox release`` gives it back and the next run accepts it."""
    from obsx.intake.dropzone import Dropzone, file_sha256

    root, env = place
    path = drop(root, "pa_colon", "colon_enero.csv", COLON_CSV)
    sha = file_sha256(path)
    zone = Dropzone(root, ["pa_colon"])
    for _ in range(2):  # two runs killed while reading it (an OOM, a restart)
        zone.start_attempt("pa_colon", sha)

    set_aside = obsx("run", "--settle-seconds", "0", env=env)
    assert "rejected" in set_aside.stdout, set_aside.stdout + set_aside.stderr
    assert not (root / "dropzone/pa_colon/inbox/colon_enero.csv").exists()

    refused = obsx("inbox", "release", "zz", env=env)
    assert refused.returncode == 2 and "8 hex digits" in refused.stderr
    released = obsx("inbox", "release", sha[:12], env=env)
    assert released.returncode == 0, released.stdout + released.stderr
    assert "dropzone/pa_colon/inbox/colon_enero.csv" in released.stdout
    assert zone.failed_attempts("pa_colon", sha) == 0

    again = obsx("run", "--settle-seconds", "0", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "colon_enero.csv: accepted" in again.stdout
    twice = obsx("inbox", "release", sha[:12], env=env)
    assert twice.returncode == 2 and "not rejected" in twice.stderr
