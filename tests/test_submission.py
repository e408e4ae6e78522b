"""One submission end to end without Dagster: crash and rerun, reprocessing from the archive."""

import json

import pytest
import sqlalchemy as sa

import obsx.submission
from obsx.dropzone import Dropzone, file_sha256, partition_key
from obsx.reference import observatories
from obsx.submission import process_submission
from obsx.warehouse import record_tables, submission
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
    real_merge = obsx.submission.merge_records

    def merge_then_crash(*args, **kwargs):
        real_merge(*args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(obsx.submission, "merge_records", merge_then_crash)
    with pytest.raises(OSError):
        process_submission(key, zone, engine, observatories(), TODAY)
    assert held(engine) == []
    assert (zone.inbox("pa_panama") / "enero.csv").exists()  # not consumed

    monkeypatch.setattr(obsx.submission, "merge_records", real_merge)
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


def test_a_record_resent_under_a_new_id_is_flagged_as_a_possible_duplicate(tmp_path, engine):
    zone = Dropzone(tmp_path, ["pa_panama"])
    zone.ensure_folders()
    first = zone.inbox("pa_panama") / "enero.csv"
    first.write_bytes(CSV)
    process_submission(
        partition_key("pa_panama", zone.sha256(first, first.stat())),
        zone,
        engine,
        observatories(),
        TODAY,
    )
    again = zone.inbox("pa_panama") / "enero_v2.csv"
    again.write_bytes(
        b"id,fecha,distrito,delito\nX9,2025-01-03,0804,0101\nP9,2025-01-05,0804,0101\n"
    )

    outcome = process_submission(
        partition_key("pa_panama", zone.sha256(again, again.stat())),
        zone,
        engine,
        observatories(),
        TODAY,
    )

    report = json.loads(outcome.feedback[0].read_text())
    flagged = [
        (p["row"], p["value"]) for p in report["problems"] if p["code"] == "possible-duplicate"
    ]
    assert flagged == [(2, "P1")]
    assert outcome.counts["rows_inserted"] == 2  # a warning: both are kept


def test_the_same_bytes_from_another_observatory_are_refused_and_said_so(tmp_path, engine):
    zone = Dropzone(tmp_path, ["pa_panama", "pa_colon"])
    zone.ensure_folders()
    for code in ("pa_panama", "pa_colon"):
        (zone.inbox(code) / "enero.csv").write_bytes(CSV)
    first = process_submission(
        partition_key("pa_panama", file_sha256(zone.inbox("pa_panama") / "enero.csv")),
        zone,
        engine,
        observatories(),
        TODAY,
    )

    second = process_submission(
        partition_key("pa_colon", file_sha256(zone.inbox("pa_colon") / "enero.csv")),
        zone,
        engine,
        observatories(),
        TODAY,
    )

    assert (first.status, second.status) == ("accepted", "rejected")
    report = json.loads(second.feedback[0].read_text())
    assert [p["code"] for p in report["problems"]] == ["sent-by-another-observatory"]
    assert "pa_panama" in report["problems"][0]["message_es"]
    assert sorted(held(engine)) == [("P1", 1), ("P2", 1)]  # Panamá's rows, nothing for Colón
