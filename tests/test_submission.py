"""One submission end to end without Dagster: crash and rerun, reprocessing from the archive."""

import datetime as dt
import hashlib
import json
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import obsx.intake.submission
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.submission import process_submission
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import record_tables, submission
from tests.conftest import TODAY

incidents = record_tables("incidents").current
CSV = b"id,fecha,distrito,delito\nP1,2025-01-03,0804,0101\nP2,2025-01-04,0804,0401\n"


@pytest.fixture
def upload(tmp_path):
    zone = Dropzone(tmp_path, ["pa_panama"])
    zone.ensure_folders()
    path = zone.inbox("pa_panama") / "enero.csv"
    path.write_bytes(CSV)
    return zone, partition_key("pa_panama", zone.sha256(path, path.stat()))


def held(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(incidents.c.incident_id, incidents.c.revision)).all()


def test_crash_in_the_merge_leaves_nothing_and_a_rerun_finishes_the_job(
    upload, engine, monkeypatch
):
    zone, key = upload
    real_merge = obsx.intake.submission.merge_staged

    def merge_then_crash(*args, **kwargs):
        real_merge(*args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(obsx.intake.submission, "merge_staged", merge_then_crash)
    with pytest.raises(OSError):
        process_submission(key, zone, engine, observatories(), TODAY)
    assert held(engine) == []
    assert (zone.inbox("pa_panama") / "enero.csv").exists()  # not consumed

    monkeypatch.setattr(obsx.intake.submission, "merge_staged", real_merge)
    outcome = process_submission(key, zone, engine, observatories(), TODAY)

    assert (outcome.status, outcome.counts["rows_inserted"]) == ("accepted", 2)
    assert sorted(held(engine)) == [("P1", 1), ("P2", 1)]
    assert list(zone.inbox("pa_panama").iterdir()) == []


def test_reprocessing_from_the_archive_changes_nothing(upload, engine):
    zone, key = upload
    first = process_submission(key, zone, engine, observatories(), TODAY)
    with engine.connect() as conn:
        before = conn.execute(sa.select(submission)).mappings().one()

    again = process_submission(key, zone, engine, observatories(), TODAY)

    assert again.already_merged and again.counts == first.counts
    assert again.file_name == "enero.csv"
    assert sorted(held(engine)) == [("P1", 1), ("P2", 1)]
    with engine.connect() as conn:
        assert conn.execute(sa.select(submission)).mappings().one() == before


def _send(zone, engine, code, name, data):
    (zone.inbox(code) / name).write_bytes(data)
    key = partition_key(code, hashlib.sha256(data).hexdigest())
    return process_submission(key, zone, engine, observatories(), TODAY)


def test_a_record_resent_under_a_new_id_is_flagged_as_a_possible_duplicate(tmp_path, engine):
    zone = Dropzone(tmp_path, ["pa_panama"])
    zone.ensure_folders()
    _send(zone, engine, "pa_panama", "enero.csv", CSV)
    again = b"id,fecha,distrito,delito\nX9,2025-01-03,0804,0101\nP9,2025-01-05,0804,0101\n"

    outcome = _send(zone, engine, "pa_panama", "enero_v2.csv", again)

    report = json.loads(outcome.feedback[0].read_text())
    flagged = [
        (p["row"], p["value"]) for p in report["problems"] if p["code"] == "possible-duplicate"
    ]
    assert flagged == [(2, "P1")]
    assert outcome.counts["rows_inserted"] == 2  # a warning: both are kept


def test_the_same_bytes_from_another_observatory_are_refused_and_said_so(tmp_path, engine):
    zone = Dropzone(tmp_path, ["pa_panama", "pa_colon"])
    zone.ensure_folders()
    first = _send(zone, engine, "pa_panama", "enero.csv", CSV)

    second = _send(zone, engine, "pa_colon", "enero.csv", CSV)

    assert (first.status, second.status) == ("accepted", "rejected")
    report = json.loads(second.feedback[0].read_text())
    assert [p["code"] for p in report["problems"]] == ["sent-by-another-observatory"]
    assert "pa_panama" in report["problems"][0]["message_es"]
    assert sorted(held(engine)) == [("P1", 1), ("P2", 1)]  # Panamá's rows, nothing for Colón


def test_bytes_rejected_for_the_wrong_observatory_do_not_block_their_owner(tmp_path, engine):
    # Colón sends Panamá's file first: it is rejected there (0804 is not Colón's district) ...
    zone = Dropzone(tmp_path, ["pa_panama", "pa_colon"])
    zone.ensure_folders()
    wrong = _send(zone, engine, "pa_colon", "enero.csv", CSV)
    assert wrong.status == "rejected"

    # ... and the rightful owner's identical bytes are judged as its own, not refused.
    right = _send(zone, engine, "pa_panama", "enero.csv", CSV)

    assert right.status == "accepted"
    report = json.loads(right.feedback[0].read_text())
    assert "sent-by-another-observatory" not in [p["code"] for p in report["problems"]]
    assert sorted(held(engine)) == [("P1", 1), ("P2", 1)]
    with engine.connect() as conn:
        owner = conn.scalar(sa.select(submission.c.observatory_code))
    assert owner == "pa_panama"


def test_a_header_that_matches_nothing_is_rejected_at_once_with_its_problems(tmp_path, engine):
    """Random text, or an export whose header matches no field: a verdict the contributor can act
    on (the columns missing), not a crash in the merge that holds the observatory's next files."""
    zone = Dropzone(tmp_path, ["pa_panama"])
    zone.ensure_folders()
    for name, data in (
        ("basura.csv", b"foo,bar,baz\nqwe,rty,uio\nasd,fgh,jkl\n"),
        ("texto.csv", b"lorem ipsum dolor sit amet\nconsectetur adipiscing elit\n"),
    ):
        outcome = _send(zone, engine, "pa_panama", name, data)
        assert outcome.status == "rejected", name
        codes = {p["code"] for p in json.loads(outcome.feedback[0].read_text())["problems"]}
        assert "missing-column" in codes, (name, codes)
    assert held(engine) == []
    # the observatory's next file is judged on its own
    assert _send(zone, engine, "pa_panama", "enero.csv", CSV).status == "accepted"


def test_a_superseded_file_sent_again_applies_again_and_the_latest_is_one_submission(
    tmp_path, engine
):
    zone = Dropzone(tmp_path, ["pa_panama"])
    zone.ensure_folders()
    v1 = b"id,fecha,distrito,delito\nP1,2025-01-03,0804,0101\n"
    v2 = b"id,fecha,distrito,delito\nP1,2025-01-03,0804,0401\n"
    _send(zone, engine, "pa_panama", "a.csv", v1)
    _send(zone, engine, "pa_panama", "b.csv", v2)

    undo = _send(zone, engine, "pa_panama", "c.csv", v1)  # v1's bytes again: undo the correction

    assert undo.counts["rows_updated"] == 1 and not undo.already_merged
    assert sorted(held(engine)) == [("P1", 3)]
    with engine.connect() as conn:
        assert conn.scalar(sa.select(incidents.c.crime_code)) == "0101"
    again = _send(zone, engine, "pa_panama", "d.csv", v1)  # the latest again: one submission
    assert again.already_merged and sorted(held(engine)) == [("P1", 3)]


def test_a_paused_writer_loses_nothing(tmp_path, engine):
    """A real writer writes half the rows, pauses longer than the settle time, writes the rest:
    the half is processed, and what came after comes back as a new submission."""
    import subprocess
    import sys
    import time

    zone = Dropzone(tmp_path, ["pa_panama"])
    zone.ensure_folders()
    path = zone.inbox("pa_panama") / "lento.csv"
    first = "".join(f"W{i},2025-01-{i + 1:02d},0804,0401\n" for i in range(20))
    rest = "".join(f"W{i},2025-02-{i - 19:02d},0804,0401\n" for i in range(20, 40))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "with open(sys.argv[1], 'w') as f:\n"
            "    f.write(sys.argv[2]); f.flush(); time.sleep(2.5); f.write(sys.argv[3])\n",
            str(path),
            "id,fecha,distrito,delito\n" + first,
            rest,
        ]
    )
    time.sleep(1.5)  # settled (0.5 s) with half written
    files = zone.scan(settle_seconds=0.5, limit=10)
    assert [f.path.name for f in files] == ["lento.csv"]
    half = process_submission(files[0].key, zone, engine, observatories(), TODAY)
    assert half.counts["rows_inserted"] == 20
    assert writer.wait(timeout=30) == 0

    zone.ensure_folders()  # every run does: the held file was written to, it comes back
    files = zone.scan(settle_seconds=0, limit=10)
    assert [f.path.name for f in files] == ["lento.csv"]
    whole = process_submission(files[0].key, zone, engine, observatories(), TODAY)

    assert (whole.counts["rows_unchanged"], whole.counts["rows_inserted"]) == (20, 20)
    assert len(held(engine)) == 40
    assert list(zone.inbox("pa_panama").iterdir()) == []


def test_a_file_that_keeps_killing_its_run_is_set_aside_with_feedback(upload, engine):
    zone, key = upload
    code, _ = key.split("__")
    sha = next(zone.inbox(code).iterdir())
    sha = file_sha256(sha)
    zone.start_attempt(code, sha)  # two attempts that never finished (a killed process)
    zone.start_attempt(code, sha)

    outcome = process_submission(key, zone, engine, observatories(), TODAY)

    assert outcome.status == "rejected" and held(engine) == []
    report = json.loads(outcome.feedback[0].read_text())
    assert [p["code"] for p in report["problems"]] == ["failed-repeatedly"]
    assert list(zone.inbox("pa_panama").iterdir()) == []  # it blocks no one
    assert zone.failed_attempts(code, sha) == 0


def test_a_retry_after_a_crash_past_the_merge_is_no_duplicate_and_leaves_no_part_files(
    upload, engine, monkeypatch
):
    import obsx.intake.feedback

    zone, key = upload
    real_write = obsx.intake.feedback._write_atomically

    def disk_full(path, text):  # the partial file is written, then the disk is full
        path.with_name(f".{path.name}.999999.part").write_text(text[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(obsx.intake.feedback, "_write_atomically", disk_full)
    with pytest.raises(OSError):
        process_submission(key, zone, engine, observatories(), TODAY)
    assert len(held(engine)) == 2  # merged before the disk filled
    feedback = zone.feedback_dir("pa_panama")
    assert any(p.name.endswith(".part") for p in feedback.iterdir())  # left by the "crash"
    monkeypatch.setattr(obsx.intake.feedback, "_write_atomically", real_write)
    monkeypatch.setattr("obsx.intake.dropzone._pid_alive", lambda pid: False)
    zone.ensure_folders()  # the next run

    outcome = process_submission(key, zone, engine, observatories(), TODAY)

    report = json.loads(outcome.feedback[0].read_text())
    assert report["duplicate_of_earlier_upload"] is False
    assert report["summary"]["rows_inserted"] == 2
    assert not [p for p in feedback.iterdir() if p.name.endswith(".part")]


def test_a_feedback_written_after_a_crash_past_the_merge_says_the_merges_warnings(
    tmp_path, loaded_engine, monkeypatch
):
    """Killed after the merge committed and before the feedback was written, the next run writes
    the feedback from the file read again: with the warnings the merge said (seen once, in
    tests/test_faults.py, as a missing 'unit-without-population' after a SIGKILL)."""
    import obsx.intake.feedback

    zone = Dropzone(tmp_path, observatories())
    zone.ensure_folders()
    path = zone.inbox("pa_panama") / "agregado.csv"
    path.write_text(
        "incident_id,occurred_on,district_code,crime_code,victim_count\n"
        "AG1,2025-01-15,0804,0101,90000\n",  # more than 1% of San Miguelito in a month
        encoding="utf-8",
    )
    key = partition_key("pa_panama", zone.sha256(path, path.stat()))

    def crash(path, text):
        raise OSError(28, "No space left on device")

    real_write = obsx.intake.feedback._write_atomically
    monkeypatch.setattr(obsx.intake.feedback, "_write_atomically", crash)
    with pytest.raises(OSError):
        process_submission(key, zone, loaded_engine, observatories(), TODAY)
    monkeypatch.setattr(obsx.intake.feedback, "_write_atomically", real_write)
    monkeypatch.setattr("obsx.intake.dropzone._pid_alive", lambda pid: False)
    zone.ensure_folders()  # the next run

    outcome = process_submission(key, zone, loaded_engine, observatories(), TODAY)

    assert outcome.already_merged
    report = json.loads(outcome.feedback[0].read_text())
    assert report["problem_counts"] == {"implausible-count": 1}, report["problems"]


ROW = st.tuples(
    st.integers(0, 30),  # id
    st.dates(dt.date(2024, 1, 1), dt.date(2025, 12, 31)),
    st.sampled_from(["0101", "0401", "0502"]),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(ROW, min_size=1, max_size=30))
def test_merging_the_same_file_twice_is_idempotent(engine, rows):
    lines = [f"H{i},{day.isoformat()},0804,{crime}" for i, day, crime in rows]
    data = ("id,fecha,distrito,delito\n" + "\n".join(lines) + "\n").encode()
    with tempfile.TemporaryDirectory() as folder:
        zone = Dropzone(Path(folder), ["pa_panama"])
        zone.ensure_folders()
        (zone.inbox("pa_panama") / "h.csv").write_bytes(data)
        key = partition_key("pa_panama", hashlib.sha256(data).hexdigest())
        first = process_submission(key, zone, engine, observatories(), TODAY)
        with engine.connect() as conn:
            before = conn.execute(sa.select(incidents).order_by(incidents.c.incident_id)).all()
        (zone.inbox("pa_panama") / "h.csv").write_bytes(data)  # the same bytes again
        again = process_submission(key, zone, engine, observatories(), TODAY)
        with engine.connect() as conn:
            after = conn.execute(sa.select(incidents).order_by(incidents.c.incident_id)).all()
    assert after == before
    assert again.already_merged and again.counts == first.counts


def test_the_feedback_page_speaks_local_time_and_asks_no_correction_of_nothing(tmp_path, engine):
    """A file with a warning and no rejected row: the page gives the time as the observatory
    reads it (Panama, UTC-5) and does not tell it to correct rejected rows it does not have."""
    zone = Dropzone(tmp_path, ["pa_panama"])
    zone.ensure_folders()
    for name, data in (("enero.csv", CSV), ("enero_v2.csv", CSV.replace(b"P1", b"P7"))):
        outcome = _send(zone, engine, "pa_panama", name, data)
    report = json.loads(outcome.feedback[0].read_text())
    page = next(p for p in outcome.feedback if p.suffix == ".html").read_text()
    assert report["summary"]["rows_rejected"] == 0 and report["problems"]  # a warning only
    assert "Corrija las filas rechazadas" not in page
    received = dt.datetime.fromisoformat(report["received_at"])
    received = received if received.tzinfo else received.replace(tzinfo=dt.UTC)
    local = received.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert f"{local:%d/%m/%Y %H:%M} (hora de America/Panama)" in page
    assert report["received_at"] not in page
