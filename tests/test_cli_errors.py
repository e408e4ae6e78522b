"""Every mistake an operator makes with ``obsx`` ends in one clear line on stderr and exit
status 2, never a traceback, and does nothing (exit 1 stays for results that need a person)."""

import os
import subprocess
import sys

import pytest

from obsx import cli
from obsx.config import REPO_ROOT
from obsx.warehouse.migrations import upgrade
from obsx.warehouse.tables import get_engine
from tests.conftest import load_reference


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """A SQLite warehouse holding the geography (so that area codes can be unknown), no
    indicator values and no corrections."""
    url = f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'warehouse.db'}"
    engine = get_engine(url)
    upgrade(engine)
    load_reference(engine)
    engine.dispose()
    return url


@pytest.fixture
def env(tmp_path, monkeypatch, warehouse):
    """A data root of its own, the module's warehouse, the default deployment; the variables the
    command sets (OBSX_DATA_DIR, DAGSTER_HOME) are restored afterwards."""
    monkeypatch.setenv("OBSX_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "var" / "dagster"))
    monkeypatch.setenv("WAREHOUSE_URL", warehouse)
    monkeypatch.delenv("OBSX_DEPLOYMENT", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file.txt").write_text("not a folder\n", encoding="utf-8")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "incidentes.csv").write_text(
        "id,fecha,distrito,delito,sexo,edad,arma\nX1,2025-01-02,0804,0101,M,30,FIREARM\n",
        encoding="utf-8",
    )
    return tmp_path


def run_cli(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse refuses the arguments themselves
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code, out, err, said):
    assert code == cli.USAGE == 2, (code, out, err)
    assert "Traceback" not in err + out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("obsx"), err
    assert said in lines[0], err
    assert out == ""  # nothing done, nothing reported as done


MISTAKES = [
    # the command line itself
    ([], "the following arguments are required: command"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["validate", "incidentes.csv"], "required: --observatory"),
    # files and folders
    (["validate", "missing.csv", "--observatory", "pa_colon"], "No such file or directory"),
    (["validate", "a_folder", "--observatory", "pa_colon"], "Is a directory: a_folder"),
    (
        ["validate", "incidentes.csv", "--observatory", "pa_colon", "--out", "a_file.txt"],
        "a file is there, a folder is needed: a_file.txt",
    ),
    (["template", "incidents", "--out", "a_folder"], "Is a directory: a_folder"),
    (["template", "incidents", "--out", "no/such/folder/t.xlsx"], "No such file or directory"),
    (["schema-docs", "--out", "a_file.txt"], "a file is there, a folder is needed"),
    (["catalogue-docs", "--out", "a_file.txt"], "a file is there, a folder is needed"),
    (["--data-dir", "a_file.txt", "run"], "is a file, not a folder"),
    (["--data-dir", "a_file.txt/var", "indicators"], "cannot use the data root"),
    # unknown names
    (["validate", "incidentes.csv", "--observatory", "pa_atlantis"], "unknown observatory"),
    (
        ["validate", "incidentes.csv", "--observatory", "pa_colon", "--dataset", "crimes"],
        "unknown dataset 'crimes'",
    ),
    (["template", "crimes"], "unknown dataset 'crimes'"),
    (["indicators", "--indicator", "HOMICIDES"], "unknown indicator 'HOMICIDES'"),
    (["indicators", "--geo", "99"], "unknown area code '99'"),
    (["explain", "HOMICIDES", "--geo", "03", "--period", "2025"], "unknown indicator"),
    (["explain", "SDG_16_1_1", "--geo", "99", "--period", "2025"], "unknown area code '99'"),
    (["explain", "SDG_16_1_1", "--geo", "03", "--period", "2031"], "has no value for 03, 2031"),
    (["corrections", "show", "999"], "no correction #999"),
    (["corrections", "approve", "1", "999"], "no correction #1, #999"),
    # malformed values
    (["indicators", "--as-of", "yesterday"], "'yesterday' is not an ISO date or time"),
    (["indicators", "--period", "2025-13"], "'2025-13' is not a period"),
    (["explain", "SDG_16_1_1", "--geo", "03", "--period", "enero"], "'enero' is not a period"),
    (
        ["explain", "SDG_16_1_1", "--geo", "03", "--period", "2025", "--disaggregation", "F"],
        "'F' is not dimension=value",
    ),
    (["period", "close", "2025-13"], "'2025-13' is not a month YYYY-MM or a year YYYY"),
    (["period", "close", "octubre"], "is not a month YYYY-MM or a year YYYY"),
    (["period", "reopen"], "needs a period"),
    (["corrections", "approve"], "needs correction ids"),
    (["corrections", "approve", "one"], "invalid int value: 'one'"),
    (["corrections", "reject", "3"], "needs --reason"),
    (["seed", "--year", "25"], "'25' is not a year"),
    (["run", "--batch-size", "0"], "'0' is not a whole number >= 1"),
    (["run", "--settle-seconds", "soon"], "'soon' is not a number of seconds"),
    (["validate", "incidentes.csv", "--observatory", "pa_colon", "--show", "-1"], "'-1'"),
    (["db", "roles"], "roles exist on PostgreSQL only"),
    (["db", "vacuum"], "invalid choice: 'vacuum'"),
]


@pytest.mark.parametrize(("argv", "said"), MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_a_mistake_is_one_line_and_exit_2(env, capsys, argv, said):
    assert_one_line(*run_cli(argv, capsys), said)


URL = "postgresql+psycopg://obsx:s3cret@127.0.0.1:1/obsx"  # port 1: nobody listens
SETTINGS = [
    ("WAREHOUSE_URL", "warehouse.db", ["indicators"], "WAREHOUSE_URL is not a database URL"),
    ("WAREHOUSE_URL", "mysql://obsx@db/obsx", ["db", "upgrade"], "WAREHOUSE_URL mysql://"),
    (
        "WAREHOUSE_URL",
        URL,
        ["indicators"],
        "cannot reach the warehouse postgresql+psycopg://obsx:***@",
    ),
    ("WAREHOUSE_URL", URL, ["db", "upgrade"], "Connection refused"),
    ("WAREHOUSE_URL", URL, ["db", "roles"], "cannot reach the warehouse"),
    ("WAREHOUSE_URL", URL, ["period", "list"], "cannot reach the warehouse"),
    ("WAREHOUSE_URL", URL, ["corrections", "list"], "cannot reach the warehouse"),
    ("WAREHOUSE_URL", "sqlite:////no/such/folder/w.db", ["indicators"], "unable to open"),
    (
        "OBSX_DEPLOYMENT",
        "atlantis",
        ["validate", "incidentes.csv", "--observatory", "pa_colon"],
        "OBSX_DEPLOYMENT=atlantis: no such deployment (known: gt, pa)",
    ),
]


@pytest.mark.parametrize(
    ("variable", "value", "argv", "said"),
    SETTINGS,
    ids=[f"{v}={x} {' '.join(a)}" for v, x, a, _ in SETTINGS],
)
def test_a_wrong_setting_is_one_line_and_exit_2(
    env, capsys, monkeypatch, variable, value, argv, said
):
    monkeypatch.setenv(variable, value)
    code, out, err = run_cli(argv, capsys)
    assert_one_line(code, out, err, said)
    assert "s3cret" not in err  # a password is never echoed


def test_a_wrong_deployment_stops_run_and_seed(env, capsys, monkeypatch):
    (env / "var").mkdir()  # (a data root that does not exist is refused first)
    monkeypatch.setenv("OBSX_DEPLOYMENT", "atlantis")
    assert_one_line(*run_cli(["run"], capsys), "no such deployment (known: gt, pa)")
    monkeypatch.setenv("OBSX_DEPLOYMENT", "gt")
    assert_one_line(*run_cli(["seed"], capsys), "deployment 'gt' has no demo to seed")
    assert not (env / "var" / "dropzone").exists()


def test_an_unreadable_file_is_one_line(env, capsys, monkeypatch):
    """(The tests may run as root, who reads every file: the refusal is simulated.)"""

    read_bytes = cli.Path.read_bytes

    def refused(self):
        if self.name == "incidentes.csv":
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(cli.Path, "read_bytes", refused)
    code, out, err = run_cli(["validate", "incidentes.csv", "--observatory", "pa_colon"], capsys)
    assert_one_line(code, out, err, "Permission denied: incidentes.csv")


def test_a_wrong_url_stops_run_before_dagster(env, capsys, monkeypatch):
    """With a file waiting, ``obsx run`` checks the warehouse first: no Dagster run is started
    to fail, the file stays in the inbox. A server that cannot be reached is a fault of the
    night, not a mistake in the command: one NEEDS ATTENTION line, exit status 1."""
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://obsx@127.0.0.1:1/obsx")
    inbox = env / "var" / "dropzone" / "pa_colon" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "incidentes.csv").write_bytes((env / "incidentes.csv").read_bytes())
    code, out, err = run_cli(["run", "--settle-seconds", "0"], capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("NEEDS ATTENTION - ")
    assert "the warehouse database at 127.0.0.1:1 cannot be reached" in err
    assert "Traceback" not in err and (inbox / "incidentes.csv").exists()


def test_results_that_need_a_person_keep_exit_1(env, capsys):
    """A file with rejected rows is a result, not a mistake: 1, as before."""
    (env / "incidentes.csv").write_text(
        "id,fecha,distrito,delito,sexo,edad,arma\nX1,2025-13-02,0804,0101,M,30,FIREARM\n",
        encoding="utf-8",
    )
    code, _, err = run_cli(
        ["validate", "incidentes.csv", "--observatory", "pa_colon", "--out", "fb"], capsys
    )
    assert code == cli.ATTENTION and err == ""


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["indicators", "--as-of", "yesterday"], "is not an ISO date or time"),
        (["validate", "missing.csv", "--observatory", "pa_colon"], "No such file or directory"),
        (["template", "crimes"], "unknown dataset 'crimes'"),
    ],
)
def test_as_a_process(env, argv, said):
    """The same from a shell: exit status 2 and one line, whatever Python prints on its own."""
    done = subprocess.run(
        [sys.executable, "-m", "obsx.cli", *argv],
        capture_output=True,
        text=True,
        cwd=env,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and said in done.stderr and done.stdout == ""
