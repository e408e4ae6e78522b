"""Properties of the merge and the indicators, on generated submissions (hypothesis).

- Revisions never lose a version: whatever sequence of files revises a set of incidents, the
  revision table holds every distinct consecutive version of each, in order, with no gap in
  validity, and the current row is the last one sent.
- Indicators are invariant to the order in which submissions arrive: the same files (each
  observatory's own incidents) processed in two orders give the same indicator values.

Each example runs files through ``process_submission`` into a real SQLite warehouse file.
"""

import datetime as dt
import hashlib
import os
import tempfile
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from obsx.indicators.engine import compute_indicators
from obsx.intake.dropzone import Dropzone, partition_key
from obsx.intake.submission import process_submission
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import indicator_value, record_tables
from tests.conftest import TODAY, sqlite_warehouse

HEADER = "id,fecha,distrito,delito,sexo,edad"
CRIMES = ["0101", "0401", "0502", "02011"]
VERSION = st.tuples(
    st.integers(0, 4),  # which incident
    st.dates(dt.date(2025, 1, 1), dt.date(2025, 6, 30)),
    st.sampled_from(CRIMES),
    st.sampled_from(["F", "M"]),
    st.integers(15, 70),
)
# OBSX_PROPERTY_EXAMPLES=500 runs the search longer once (the examples below are what it found)
PROFILE = settings(
    max_examples=int(os.environ.get("OBSX_PROPERTY_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _send(zone: Dropzone, engine, code: str, district: str, rows, name: str):
    lines = [f"H-{i},{day.isoformat()},{district},{c},{s},{a}" for i, day, c, s, a in rows]
    data = ("\n".join([HEADER, *lines]) + "\n").encode()
    (zone.inbox(code) / name).write_bytes(data)
    key = partition_key(code, hashlib.sha256(data).hexdigest())
    outcome = process_submission(key, zone, engine, observatories(), TODAY)
    assert outcome.counts["rows_rejected"] == 0, outcome
    return outcome


V1 = (0, dt.date(2025, 1, 1), "0101", "F", 15)
V2 = (0, dt.date(2025, 1, 1), "0401", "F", 15)


@PROFILE
@given(st.lists(st.lists(VERSION, min_size=1, max_size=5), min_size=1, max_size=6))
@example([[V1], [V2], [V1]])  # v1's bytes sent again undo the correction (the latest wins)
@example([[V1], [V2], [V1], [V2]])
def test_revisions_never_lose_a_version(files):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        engine = sqlite_warehouse(root)
        zone = Dropzone(root, observatories())
        zone.ensure_folders()
        sent: dict[str, list[tuple]] = {}  # incident -> the distinct consecutive versions
        for n, rows in enumerate(files):
            last = {}
            for i, day, crime, sex, age in rows:
                last[i] = (day, crime, sex, age)
            if len(last) != len(rows):
                continue  # a file repeating an id is rejected row by row: not a revision
            _send(zone, engine, "pa_panama", "0804", rows, f"f{n}.csv")
            for i, version in last.items():
                history = sent.setdefault(f"H-{i}", [])
                if not history or history[-1] != version:
                    history.append(version)
        current, revision, _, _ = record_tables("incidents")
        with engine.connect() as conn:
            revisions = pd.read_sql(
                sa.select(revision).order_by(revision.c.incident_id, revision.c.revision), conn
            )
            now = pd.read_sql(sa.select(current), conn).set_index("incident_id")
        engine.dispose()
    for incident, versions in sent.items():
        mine = revisions[revisions["incident_id"] == incident]
        assert mine["revision"].tolist() == list(range(1, len(versions) + 1))
        seen = [
            (pd.Timestamp(r.occurred_on).date(), r.crime_code, r.victim_sex, int(r.victim_age))
            for r in mine.itertuples()
        ]
        assert seen == versions  # every version, in the order sent
        # validity intervals follow each other with no gap; only the last is open
        assert mine["valid_to"].iloc[:-1].tolist() == mine["valid_from"].iloc[1:].tolist()
        assert pd.isna(mine["valid_to"].iloc[-1])
        last = now.loc[incident]
        assert (last["crime_code"], last["victim_sex"]) == versions[-1][1:3]


PANAMA = st.lists(VERSION, min_size=1, max_size=6, unique_by=lambda r: r[0])


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(PANAMA, min_size=2, max_size=3),
    st.lists(PANAMA, min_size=1, max_size=2),
    st.randoms(use_true_random=False),
)
def test_indicators_do_not_depend_on_the_order_files_arrive(panama, colon, rng):
    # Distinct incidents per file (ids offset by the file), two observatories.
    deliveries = [
        ("pa_panama", "0804", [(i + 10 * n, *rest) for i, *rest in rows], f"p{n}.csv")
        for n, rows in enumerate(panama)
    ] + [
        ("pa_colon", "0301", [(i + 10 * n, *rest) for i, *rest in rows], f"c{n}.csv")
        for n, rows in enumerate(colon)
    ]
    shuffled = deliveries[:]
    rng.shuffle(shuffled)
    results = []
    for order in (deliveries, shuffled[::-1]):
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            engine = sqlite_warehouse(root)
            zone = Dropzone(root, observatories())
            zone.ensure_folders()
            for code, district, rows, name in order:
                _send(zone, engine, code, district, rows, name)
            compute_indicators(engine, dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
            with engine.connect() as conn:
                values = pd.read_sql(sa.select(indicator_value), conn)
            engine.dispose()
        key = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
        results.append(values.drop(columns=["computed_at"]).sort_values(key).reset_index(drop=True))
    pd.testing.assert_frame_equal(results[0], results[1])
