"""What an operator sees: each partition's own file and counts in the Dagster event log, run
tags naming the files and who launched the run, the last-night table, progress lines and exit
statuses of ``obsx run``, and no Dagster run for files already merged.

SQLite warehouse only (the PostgreSQL path is the same code, covered in test_pipeline.py).
"""

import json
import os

import dagster as dg
import pytest
import sqlalchemy as sa

from obsx import cli
from obsx.warehouse.tables import submission
from pipelines.sensors import FILES_TAG_BYTES, files_tag
from tests.test_pipeline import COLON_CSV, PANAMA_CSV, drop, tick

SUBMISSIONS = dg.AssetKey("submissions")


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("OBSX_DATA_DIR", str(root))
    monkeypatch.setenv("WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    return root


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


@pytest.fixture
def home(tmp_path, monkeypatch):
    """``obsx run``'s own instance, as under a data root."""
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def partition_metadata(instance, key: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SUBMISSIONS, asset_partitions=[key]), limit=1
    ).records
    assert records, f"no materialization for {key}"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_each_partition_of_a_batch_shows_its_own_file_and_counts(root, instance):
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)
    drop(root, "pa_colon", "enero colón.csv", COLON_CSV)

    result, runs = tick(instance)

    assert len(runs) == 1 and runs[0].success
    keys = instance.get_dynamic_partitions("submissions")
    shown = {meta["file"]: meta for meta in (partition_metadata(instance, key) for key in keys)}
    assert set(shown) == {"enero.csv", "enero colón.csv"}
    panama, colon = shown["enero.csv"], shown["enero colón.csv"]
    assert panama["contributor"].startswith("pa_panama (")
    assert colon["contributor"].startswith("pa_colon (")
    assert (panama["dataset"], panama["status"]) == ("incidents", "partly_accepted")
    assert (panama["rows read"], panama["rows accepted"], panama["rows rejected"]) == (3, 2, 1)
    assert panama["top problem"].startswith("type-date x1")
    assert (colon["status"], colon["rows read"], colon["rows accepted"]) == ("accepted", 1, 1)
    assert colon["rows rejected"] == 0 and colon["top problem"] == ""
    assert panama["feedback"].endswith(".json") and "pa_panama" in panama["feedback"]

    # The run names its files and who started it.
    tags = runs[0].dagster_run.tags
    assert tags["obsx/file_count"] == "2"
    assert set(tags["obsx/files"].split(", ")) == {
        "pa_panama/enero.csv",
        "pa_colon/enero colón.csv",
    }
    assert tags["obsx/launched_by"] == "sensor"

    # What arrived last night, and what was rejected: one table, rebuilt by the batch.
    event = instance.get_latest_materialization_event(dg.AssetKey("last_night"))
    meta = event.asset_materialization.metadata
    assert (meta["files"].value, meta["partly accepted"].value, meta["accepted"].value) == (
        2,
        1,
        1,
    )
    table = meta["table"].value
    assert "**2 files received in the 24 h to " in table
    panama_line = next(line for line in table.splitlines() if "enero.csv" in line)
    assert "| pa\\_panama | enero.csv | incidents | partly accepted | 3 | 2 | 1 |" in panama_line
    assert "type-date x1" in panama_line
    assert "enero colón.csv | incidents | accepted | 1 | 1 | 0 |" in table


def test_files_tag_stays_bounded_and_says_how_many_more():
    names = [f"pa_panama/informe_{i:04d}_con_un_nombre_largo.xlsx" for i in range(500)]
    value = files_tag(names)
    assert len(value.encode()) <= FILES_TAG_BYTES
    assert value.startswith("pa_panama/informe_0000") and value.endswith(" more)")
    shown = value.rsplit(" (+", 1)[0].split(", ")
    assert value.endswith(f"(+{500 - len(shown)} more)")
    assert files_tag(["a.csv", "b.csv"]) == "a.csv, b.csv"


def test_obsx_run_prints_progress_tags_its_runs_and_reruns_make_no_run(root, home, capsys):
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)
    drop(root, "pa_colon", "enero colón.csv", COLON_CSV)

    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "Processing 2 files in 1 Dagster run(s)" in out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and lines[-1].startswith("[2/2] ")
    assert any("pa_panama/enero.csv: partly accepted, 3 rows read" in line for line in lines)
    assert lines[-1].endswith("(4 so far)")

    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.tags["obsx/launched_by"] == "obsx run"
        assert run.tags["user"].startswith("obsx run")  # the UI: not "Manually launched"
        assert run.tags["obsx/file_count"] == "2"

    # The same bytes again (a demo seeded twice): feedback again, inbox cleared, no new run.
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)
    drop(root, "pa_colon", "enero colón.csv", COLON_CSV)
    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "Sent again, already merged earlier (feedback only, no Dagster run): 2" in out
    assert "NEEDS ATTENTION" not in out
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == 1
    assert list((root / "dropzone" / "pa_panama" / "inbox").iterdir()) == []
    feedback = sorted((root / "dropzone" / "pa_panama" / "feedback").glob("*.json"))
    assert json.loads(feedback[0].read_text())["duplicate_of_earlier_upload"] is True


def test_a_warning_level_check_alone_exits_zero(root, home, capsys):
    """Three ordinary files, then one ten times bigger: the volume check warns; nothing
    needs a person, so the exit status is 0."""
    header, *rows = PANAMA_CSV.decode().splitlines()
    for month in ("01", "02", "03"):
        body = "\n".join(
            f"M{month}{i},2025-{month}-0{i + 1},0804,0101,Masculino,25,Arma de fuego"
            for i in range(3)
        )
        drop(root, "pa_panama", f"{month}.csv", f"{header}\n{body}\n".encode())
        assert cli.main(["run", "--settle-seconds", "0"]) == 0
    body = "\n".join(
        f"A{i},2025-04-{i % 28 + 1:02d},0804,0101,Masculino,25,Arma de fuego" for i in range(40)
    )
    drop(root, "pa_panama", "abril.csv", f"{header}\n{body}\n".encode())
    capsys.readouterr()

    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "Warnings (checks): submissions:volume_in_line_with_history" in out
    assert "NEEDS ATTENTION" not in out


@pytest.mark.parametrize("together", [False, True], ids=["later", "same-batch"])
def test_the_same_file_from_a_second_observatory_is_refused_and_exits_zero(
    root, home, capsys, together
):
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)
    if not together:
        assert cli.main(["run", "--settle-seconds", "0"]) == 0
    copy = drop(root, "pa_colon", "copia.csv", PANAMA_CSV)
    os.utime(copy, (2, 2))  # after Panamá's own upload

    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "NEEDS ATTENTION" not in out
    assert list((root / "dropzone" / "pa_colon" / "inbox").iterdir()) == []
    with dg.DagsterInstance.get() as instance:
        colon = next(
            k for k in instance.get_dynamic_partitions("submissions") if k.startswith("pa_colon")
        )
        meta = partition_metadata(instance, colon)
        table = (
            instance.get_latest_materialization_event(dg.AssetKey("last_night"))
            .asset_materialization.metadata["table"]
            .value
        )
    assert (meta["file"], meta["status"]) == ("copia.csv", "rejected")
    assert meta["top problem"].startswith("sent-by-another-observatory")
    line = next(line for line in table.splitlines() if "copia.csv" in line)
    assert "| pa\\_colon | copia.csv |" in line and "sent-by-another-observatory" in line


def test_failed_runs_since_the_last_success_are_listed(root, home, capsys):
    from pipelines.run_once import failed_since_last_success

    with dg.DagsterInstance.get() as instance:
        # a sensor run that succeeded, then one that failed (run records, as the daemon makes)
        for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
            instance.add_run(
                dg.DagsterRun(
                    job_name="process_submissions",
                    status=status,
                    tags={"obsx/launched_by": "sensor", "obsx/files": "pa_panama/enero.csv"},
                )
            )
        listed = failed_since_last_success(instance)
    assert len(listed) == 1
    assert listed[0].startswith("process_submissions ")
    assert "(sensor; files: pa_panama/enero.csv)" in listed[0]

    drop(root, "pa_colon", "enero colón.csv", COLON_CSV)
    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    assert "Runs that failed since the last successful one" in capsys.readouterr().out


def test_no_run_when_nothing_new_and_submission_table_untouched(root, home, capsys):
    drop(root, "pa_colon", "enero colón.csv", COLON_CSV)
    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    engine = sa.create_engine(f"sqlite:///{root.parent / 'warehouse.db'}")
    with engine.connect() as conn:
        before = conn.execute(sa.select(submission)).all()
    drop(root, "pa_colon", "enero colón (otra vez).csv", COLON_CSV)
    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(submission)).all() == before
    engine.dispose()
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == 1
