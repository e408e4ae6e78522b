"""Merging accepted rows: natural-key upsert, revisions, idempotency, atomicity."""

import datetime as dt

import pytest
import sqlalchemy as sa

from obsx.warehouse.tables import merge_records, record_tables
from tests.conftest import typed_rows

incidents, revisions, manifest, pending = record_tables("incidents")
T1 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
T2 = dt.datetime(2026, 2, 5, 10, 0, tzinfo=dt.UTC)


def merge(engine, submission_id, rows, now=T1):
    with engine.begin() as conn:
        return merge_records(conn, "incidents", "pa_panama", submission_id, rows, now)


def current(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.select(incidents).order_by(incidents.c.incident_id)).mappings()
        return [dict(r) for r in rows]


FIRST = typed_rows(
    "A1,2025-01-03,0804,0101,M,25,FIREARM",
    "A2,2025-02-10,0804,0401,F,31,NONE",
)


def test_new_rows_are_inserted_as_revision_one(engine):
    counts = merge(engine, "s1", FIRST)

    assert counts == {
        "rows_inserted": 2,
        "rows_updated": 0,
        "rows_unchanged": 0,
        "rows_held": 0,
        "rows_ignored": 0,
    }
    rows = current(engine)
    assert [(r["incident_id"], r["revision"], r["submission_id"]) for r in rows] == [
        ("A1", 1, "s1"),
        ("A2", 1, "s1"),
    ]
    assert rows[0]["occurred_on"] == dt.date(2025, 1, 3)
    assert (rows[0]["period_month"], rows[0]["period_year"]) == ("2025-01", "2025")


def test_resent_incident_updates_it_and_keeps_the_previous_version(engine):
    merge(engine, "s1", FIRST, now=T1)
    corrected = typed_rows(
        "A1,2025-01-03,0804,0101,M,25,SHARP",  # weapon corrected
        "A2,2025-02-10,0804,0401,F,31,NONE",  # unchanged
    )

    counts = merge(engine, "s2", corrected, now=T2)

    assert counts == {
        "rows_inserted": 0,
        "rows_updated": 1,
        "rows_unchanged": 1,
        "rows_held": 0,
        "rows_ignored": 0,
    }
    a1, a2 = current(engine)
    assert (a1["weapon"], a1["revision"], a1["submission_id"]) == ("SHARP", 2, "s2")
    assert (a2["revision"], a2["submission_id"]) == (1, "s1")
    with engine.connect() as conn:
        history = conn.execute(
            sa.select(
                revisions.c.revision,
                revisions.c.weapon,
                revisions.c.submission_id,
                revisions.c.valid_from,
                revisions.c.valid_to,
            )
            .where(revisions.c.incident_id == "A1")
            .order_by(revisions.c.revision)
        ).all()
    assert [(r.revision, r.weapon, r.submission_id) for r in history] == [
        (1, "FIREARM", "s1"),
        (2, "SHARP", "s2"),
    ]
    assert history[0].valid_to.replace(tzinfo=None) == T2.replace(tzinfo=None)
    assert history[1].valid_from.replace(tzinfo=None) == T2.replace(tzinfo=None)
    assert history[1].valid_to is None


def test_merging_the_same_rows_twice_changes_nothing(engine):
    merge(engine, "s1", FIRST, now=T1)
    before = current(engine)

    counts = merge(engine, "s1", FIRST, now=T2)

    assert counts == {
        "rows_inserted": 0,
        "rows_updated": 0,
        "rows_unchanged": 2,
        "rows_held": 0,
        "rows_ignored": 0,
    }
    assert current(engine) == before
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(revisions)) == 2
        assert conn.scalar(sa.select(sa.func.count()).select_from(manifest)) == 2


def test_a_merge_that_fails_midway_leaves_nothing_written(engine):
    with pytest.raises(RuntimeError), engine.begin() as conn:
        merge_records(conn, "incidents", "pa_panama", "s1", FIRST, T1)
        raise RuntimeError("crash after the upsert, before commit")

    assert current(engine) == []
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(revisions)) == 0


def test_records_of_two_observatories_with_the_same_id_stay_apart(engine):
    merge(engine, "s1", FIRST)
    with engine.begin() as conn:
        merge_records(conn, "incidents", "pa_colon", "s2", FIRST, T2)

    assert len(current(engine)) == 4


def test_a_withdrawal_is_a_soft_delete_kept_in_history(engine):
    merge(engine, "s1", FIRST, now=T1)

    counts = merge(engine, "s2", typed_rows("A1,,,,,,,Eliminar"), now=T2)

    assert (counts["rows_updated"], counts["rows_ignored"]) == (1, 0)
    a1 = current(engine)[0]
    assert (a1["record_action"], a1["crime_code"], a1["revision"]) == ("DELETE", "0101", 2)
    with engine.connect() as conn:
        versions = (
            conn.execute(
                sa.select(revisions.c.record_action)
                .where(revisions.c.incident_id == "A1")
                .order_by(revisions.c.revision)
            )
            .scalars()
            .all()
        )
    assert versions == ["UPSERT", "DELETE"]


def test_resending_a_withdrawn_record_restores_it(engine):
    merge(engine, "s1", FIRST, now=T1)
    merge(engine, "s2", typed_rows("A1,,,,,,,Eliminar"), now=T2)

    counts = merge(engine, "s3", FIRST, now=T2)

    assert (counts["rows_updated"], counts["rows_unchanged"]) == (1, 1)
    assert current(engine)[0]["record_action"] == "UPSERT"


def test_withdrawing_an_unknown_record_changes_nothing(engine):
    merge(engine, "s1", FIRST, now=T1)

    counts = merge(engine, "s2", typed_rows("Z9,,,,,,,Eliminar"), now=T2)

    assert (counts["rows_ignored"], counts["rows_updated"], counts["rows_inserted"]) == (1, 0, 0)
    assert len(current(engine)) == 2
