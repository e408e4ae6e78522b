"""Closed periods: changes are held as corrections, nothing moves until one is approved."""

import datetime as dt

import pytest
import sqlalchemy as sa

from obsx.indicators.engine import compute_indicators
from obsx.warehouse.corrections import (
    approve,
    close_period,
    indicator_changes,
    list_corrections,
    months_of,
    reject,
    reopen_period,
)
from obsx.warehouse.tables import indicator_value, merge_records, record_tables
from tests.conftest import typed_rows

incidents, revisions, _, pending = record_tables("incidents")
T1 = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
T2 = dt.datetime(2026, 2, 10, tzinfo=dt.UTC)


def merge(engine, submission_id, *lines, now):
    with engine.begin() as conn:
        return merge_records(conn, "incidents", "pa_panama", submission_id, typed_rows(*lines), now)


def record(engine, incident_id):
    with engine.connect() as conn:
        return (
            conn.execute(sa.select(incidents).where(incidents.c.incident_id == incident_id))
            .mappings()
            .one_or_none()
        )


def january_homicides(engine):
    v = indicator_value.c
    with engine.connect() as conn:
        return conn.scalar(
            sa.select(v.numerator).where(
                v.indicator_code == "SDG_16_1_1",
                v.geo_level == "national",
                v.period == "2025-01",
                v.disaggregation == "",
            )
        )


@pytest.fixture
def published(loaded_engine):
    """January 2025 published with one homicide (P1), then closed."""
    merge(
        loaded_engine,
        "s1",
        "P1,2025-01-03,0804,0101,M,25,FIREARM",
        "P2,2025-02-04,0804,0401,F,40,NONE",
        now=T1,
    )
    compute_indicators(loaded_engine, T1)
    assert close_period(loaded_engine, "2025-01", by="analista") == ["2025-01"]
    return loaded_engine


def test_change_to_a_closed_month_is_held_and_changes_nothing(published):
    counts = merge(
        published,
        "s2",
        "P1,2025-01-03,0804,0401,M,25,FIREARM",  # reclassified
        "P3,2025-03-01,0804,0101,F,30,SHARP",
        now=T2,
    )  # March is open
    compute_indicators(published, T2)

    assert (counts["rows_held"], counts["rows_inserted"], counts["rows_updated"]) == (1, 1, 0)
    assert record(published, "P1")["crime_code"] == "0101"
    assert record(published, "P3") is not None
    assert january_homicides(published) == 1
    [held] = list_corrections(published)
    assert (held.record_id, held.period_month, held.submission_id) == ("P1", "2025-01", "s2")
    assert held.changes == {"crime_code": ("0101", "0401")}


def test_preview_shows_the_indicator_changes_without_writing_them(published):
    merge(published, "s2", "P1,2025-01-03,0804,0401,M,25,FIREARM", now=T2)
    [held] = list_corrections(published)

    changes = indicator_changes(published, [held.correction_id])

    january = changes.query(
        "indicator_code == 'SDG_16_1_1' and geo_level == 'national' and period == '2025-01'"
        " and disaggregation == ''"
    )
    assert january[["numerator_published", "numerator_proposed"]].values.tolist() == [[1, 0]]
    assert record(published, "P1")["crime_code"] == "0101"
    assert january_homicides(published) == 1
    assert list_corrections(published)[0].status == "pending"


def test_approved_correction_becomes_a_revision_and_updates_indicators(published):
    merge(published, "s2", "P1,2025-01-03,0804,0401,M,25,FIREARM", now=T2)
    [held] = list_corrections(published)

    assert approve(published, [held.correction_id], by="directora") == 1

    p1 = record(published, "P1")
    assert (p1["crime_code"], p1["revision"], p1["submission_id"]) == ("0401", 2, "s2")
    with published.connect() as conn:
        stored = conn.execute(sa.select(pending.c.row_hash, pending.c.status)).one()
    assert (p1["row_hash"], "approved") == tuple(stored)
    assert january_homicides(published) == 0
    assert list_corrections(published) == []


def test_rejected_correction_leaves_the_warehouse_as_it_was(published):
    merge(published, "s2", "P1,2025-01-03,0804,0401,M,25,FIREARM", now=T2)
    [held] = list_corrections(published)

    assert reject(published, [held.correction_id], by="directora", reason="sin sustento") == 1

    assert record(published, "P1")["crime_code"] == "0101"
    assert [c.status for c in list_corrections(published, status=None)] == ["rejected"]


def test_a_later_correction_supersedes_the_pending_one(published):
    merge(published, "s2", "P1,2025-01-03,0804,0401,M,25,FIREARM", now=T2)
    merge(published, "s3", "P1,2025-01-03,0804,0102,M,25,FIREARM", now=T2)

    statuses = [(c.submission_id, c.status) for c in list_corrections(published, status=None)]
    assert statuses == [("s2", "superseded"), ("s3", "pending")]


def test_moving_a_record_out_of_a_closed_month_is_held_too(published):
    counts = merge(published, "s2", "P1,2025-03-03,0804,0101,M,25,FIREARM", now=T2)

    assert counts["rows_held"] == 1
    assert record(published, "P1")["period_month"] == "2025-01"


def test_reopened_month_takes_changes_again(published):
    reopen_period(published, "2025")
    counts = merge(published, "s2", "P1,2025-01-03,0804,0401,M,25,FIREARM", now=T2)
    assert (counts["rows_held"], counts["rows_updated"]) == (0, 1)


def test_periods_are_months_or_years():
    assert months_of("2025-10") == ["2025-10"]
    assert len(months_of("2025")) == 12
    with pytest.raises(ValueError):
        months_of("2025-13")


def test_resending_the_held_record_unchanged_withdraws_the_waiting_correction(published):
    merge(published, "s2", "P1,2025-01-03,0804,0401,M,25,FIREARM", now=T2)  # held
    merge(published, "s3", "P1,2025-01-03,0804,0101,M,25,FIREARM", now=T2)  # as held: unchanged

    assert [(c.submission_id, c.status) for c in list_corrections(published, status=None)] == [
        ("s2", "superseded")
    ]
    assert record(published, "P1")["crime_code"] == "0101"
