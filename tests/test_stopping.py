"""``obsx run`` on a backlog stops on SIGTERM and SIGINT (#23, item 3): the file being processed
finishes with its feedback, no other file or batch starts, the summary is printed and the exit
status is 128 + the signal's number. SQLite warehouse, a real process."""

import os
import signal
import subprocess
import sys
import time

import pytest

from obsx.config import REPO_ROOT
from tests.test_pipeline import drop

FILES = 40
HEADER = "No. caso;Fecha del hecho;Distrito;ICCS;Sexo;Edad;Arma empleada\n"


def backlog(root) -> dict[str, bytes]:
    """Colón's small valid files, one case each, in upload order (one contributor: one step)."""
    files = {}
    for i in range(FILES):
        data = (HEADER + f"C{i};{i % 28 + 1:02d}/01/2025;301;101;Hombre;22;AF\n").encode("cp1252")
        path = drop(root, "pa_colon", f"caso_{i:02d}.csv", data)
        os.utime(path, (1000 + i, 1000 + i))
        files[path.name] = data
    return files


def run_env(tmp_path, root) -> dict[str, str]:
    """``obsx run``'s environment: its own data root, Dagster instance and SQLite warehouse."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "OBSX_DATA_DIR": str(root),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "WAREHOUSE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}",
        "OBSX_DEPLOYMENT": "pa",
    }


def wait_for(process: subprocess.Popen, out, marker: bytes) -> None:
    """Until ``marker`` appears in the process's output (at most 4 minutes)."""
    deadline = time.monotonic() + 240
    while marker not in out.read_bytes():
        assert process.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.05)


def run_to_the_end(env, argv) -> subprocess.CompletedProcess:
    """``obsx argv`` left alone (the next run, after a stopped one)."""
    return subprocess.run(
        [sys.executable, "-m", "obsx.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )


def interrupt(tmp_path, env, argv, marker: bytes, *signals, pause: float = 0.0):
    """``obsx argv`` until ``marker`` appears in its output, then, after ``pause`` seconds,
    ``signals`` 20 ms apart: its exit status, its output and how long it took to stop."""
    out = tmp_path / "run.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "obsx.cli", *argv],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        try:
            wait_for(process, out, marker)
            time.sleep(pause)
            for n, signum in enumerate(signals):
                time.sleep(0.02 if n else 0)
                process.send_signal(signum)
            sent = time.monotonic()
            code = process.wait(timeout=60)
            took = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
    return code, out.read_text(), took


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_backlog_after_the_current_file(tmp_path, signum):
    root = tmp_path / "var"
    files = backlog(root)
    inbox = root / "dropzone" / "pa_colon" / "inbox"
    feedback = root / "dropzone" / "pa_colon" / "feedback"
    before = {p.name: p.stat().st_mtime for p in inbox.iterdir()}
    env = run_env(tmp_path, root)
    argv = ["run", "--settle-seconds", "0"]
    # after the first file's progress line
    code, text, took = interrupt(tmp_path, env, argv, b"] pa_colon/", signum)
    assert code == 128 + signum, text
    assert took < 30, (took, text)
    assert "Traceback" not in text
    assert "Submissions processed: " in text  # the summary
    assert f"NEEDS ATTENTION - Stopped by {signum.name}: " in text

    left = {p.name for p in inbox.iterdir()}
    done = set(files) - left
    assert done and left, text  # stopped part-way through the backlog
    for name in left:  # untouched
        assert (inbox / name).read_bytes() == files[name] and (inbox / name).stat().st_mtime == (
            before[name]
        )
    for name in done:  # every file that left the inbox has its feedback
        stem = name.removesuffix(".csv")
        assert list(feedback.glob(f"{stem}__*.json")), name
        assert list(feedback.glob(f"{stem}__*.html")), name
    assert f"{len(left)} file(s) not started" in text
    assert f"Submissions processed: {len(done)} ({len(done)} accepted" in text

    # The next run takes the rest and recomputes the indicators the stopped one left stale.
    done_again = run_to_the_end(env, argv)
    assert done_again.returncode == 0, done_again.stdout + done_again.stderr
    assert list(inbox.iterdir()) == []
    assert f"Submissions processed: {len(left)} ({len(left)} accepted" in done_again.stdout
    assert f"(obsx run, stopped by {signum.name}; files: " in done_again.stdout


def test_a_signal_between_batches_starts_no_other_batch(tmp_path):
    """One file per Dagster run: the signal lands after the first file (in its run's checks or
    indicators, where Dagster's own handler interrupts the step, or between runs); no other
    run starts."""
    root = tmp_path / "var"
    files = backlog(root)
    inbox = root / "dropzone" / "pa_colon" / "inbox"
    env = run_env(tmp_path, root)
    argv = ["run", "--settle-seconds", "0", "--batch-size", "1"]
    # 0.3 s past the file: the run's checks or indicators
    code, text, _ = interrupt(tmp_path, env, argv, b"[1/", signal.SIGTERM, pause=0.3)
    assert code == 128 + signal.SIGTERM, text
    left = {p.name for p in inbox.iterdir()}
    assert len(files) - 3 <= len(left) < len(files), text  # one run, maybe two, not forty
    assert all((inbox / name).read_bytes() == files[name] for name in left)
    assert "NEEDS ATTENTION - Stopped by SIGTERM: " in text


def test_a_second_signal_stops_at_once_and_loses_nothing(tmp_path):
    """Two SIGTERMs in a row: whatever was being done is rolled back; every file is either
    processed with its feedback or untouched in its inbox."""
    root = tmp_path / "var"
    files = backlog(root)
    inbox = root / "dropzone" / "pa_colon" / "inbox"
    feedback = root / "dropzone" / "pa_colon" / "feedback"
    env = run_env(tmp_path, root)
    argv = ["run", "--settle-seconds", "0"]
    code, text, _ = interrupt(tmp_path, env, argv, b"[1/", signal.SIGTERM, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, text
    assert "NEEDS ATTENTION - Stopped" in text
    left = {p.name for p in inbox.iterdir()}
    assert left, text
    for name, data in files.items():
        if name in left:
            assert (inbox / name).read_bytes() == data
        else:
            assert list(feedback.glob(f"{name.removesuffix('.csv')}__*.json")), name
    done_again = run_to_the_end(env, argv)
    assert done_again.returncode == 0, done_again.stdout + done_again.stderr
    assert list(inbox.iterdir()) == []
