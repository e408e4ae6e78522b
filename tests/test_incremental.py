"""Refreshing only the periods a file touches gives the values a full recompute gives.

A small warehouse loaded through the drop folders (Panamá and Colón, 2024 and 2025, small
counts so that disclosure control withholds cells), refreshed once in full; then a small file
adds records in one month, moves a record from one month to another and adds one to the year
before. The refresh that follows recomputes those months, their quarters and their years only;
every indicator value (all columns but ``computed_at``) must equal what ``compute_indicators``
gives from scratch over the same warehouse, on SQLite and on PostgreSQL.
"""

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from obsx.indicators import engine as ind_module
from obsx.indicators.engine import compute_indicators, months_to_refresh, refresh_indicators
from obsx.intake.dropzone import Dropzone
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import indicator_value
from tests.test_catalogue import COLON_ROWS, PANAMA_ROWS, deliver

T1 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
T2 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
MORE_PANAMA = [
    "M1,2025-07-03,0804,0101,M,31,FIREARM,STRANGER,,",
    "M2,2025-08-14,0804,0401,F,29,NONE,,,",
    "M3,2025-11-30,0804,0502,M,61,NONE,,,",
    "M4,2024-11-02,0804,0502,F,52,NONE,,,",
]
NEW_FILE = [
    "N1,2025-02-05,0804,0101,M,22,FIREARM,STRANGER,,",  # a new homicide in February
    "N2,2025-02-06,0804,0502,F,35,NONE,,,",
    "H2,2025-05-20,0804,0101,M,19,SHARP,,,",  # H2 moves from January to May
    "Y2,2024-06-01,0804,0101,M,50,FIREARM,,,",  # and one in the year before
]


def values(engine) -> pd.DataFrame:
    columns = [c for c in indicator_value.columns if c.name != "computed_at"]
    with engine.connect() as conn:
        frame = pd.read_sql(
            sa.select(*columns).order_by(*indicator_value.primary_key.columns), conn
        )
    return frame.reset_index(drop=True)


def panama_and_colon(tmp_path, engine) -> Dropzone:
    """The drop folders, with Panamá's and Colón's files merged into ``engine``."""
    zone = Dropzone(tmp_path, observatories())
    zone.ensure_folders()
    deliver(zone, engine, "pa_panama", "incidentes_panama.csv", PANAMA_ROWS + MORE_PANAMA)
    deliver(zone, engine, "pa_colon", "incidentes_colon.csv", COLON_ROWS)
    return zone


def test_a_small_file_refreshes_its_periods_as_a_full_recompute_would(
    tmp_path, loaded_engine, monkeypatch
):
    zone = panama_and_colon(tmp_path, loaded_engine)
    # refreshes at the clock's time: files are merged at it (what changed since a refresh)
    assert refresh_indicators(loaded_engine)["years"] is None  # the first: everything
    before = values(loaded_engine)
    assert (before["conf_status"] != "F").any()  # disclosure control is exercised

    deliver(zone, loaded_engine, "pa_panama", "nuevo.csv", NEW_FILE)
    with loaded_engine.connect() as conn:
        months, _ = months_to_refresh(conn)
    assert months == ["2024-06", "2025-01", "2025-02", "2025-05"]
    calls = []
    original = ind_module.compute_indicators

    def spy(*args, **kwargs):
        calls.append(kwargs.get("months"))
        return original(*args, **kwargs)

    monkeypatch.setattr(ind_module, "compute_indicators", spy)
    done = refresh_indicators(loaded_engine)
    assert done["years"] == ["2024", "2025"]
    assert calls == [months]  # the incremental path, not a full recompute
    incremental = values(loaded_engine)
    assert not incremental.equals(before)  # the file changed something

    compute_indicators(loaded_engine)  # from scratch, over the same records
    full = values(loaded_engine)
    pd.testing.assert_frame_equal(incremental, full, check_exact=True)


def test_periods_of_a_month_are_the_month_its_quarter_and_its_year():
    assert ind_module.periods_of(["2025-02", "2025-03", "2024-12"]) == {
        "month": ["2024-12", "2025-02", "2025-03"],
        "quarter": ["2024-Q4", "2025-Q1"],
        "year": ["2024", "2025"],
    }


@pytest.mark.parametrize("month", ["2025-03", "2025-12"])
def test_recomputing_one_untouched_month_changes_nothing(tmp_path, loaded_engine, month):
    zone = Dropzone(tmp_path, observatories())
    zone.ensure_folders()
    deliver(zone, loaded_engine, "pa_panama", "incidentes_panama.csv", PANAMA_ROWS + MORE_PANAMA)
    compute_indicators(loaded_engine, T1)
    full = values(loaded_engine)
    compute_indicators(loaded_engine, T2, months=[month])
    pd.testing.assert_frame_equal(values(loaded_engine), full, check_exact=True)
