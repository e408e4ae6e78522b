"""How fast one large submission goes through reading, validation, merge and indicators.

Run with `make bench` (a temporary SQLite warehouse) or
`make bench BENCH_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres` (a server: a
database is created for the measurement and dropped after). Prints rows per second per stage and
the peak memory.
"""

import datetime as dt
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from databases import database

from obsx.indicators.engine import compute_indicators
from obsx.intake.contract import load_contract
from obsx.intake.reading import read_submission
from obsx.intake.validation import validate
from obsx.warehouse import reference
from obsx.warehouse.deployment import load_deployment
from obsx.warehouse.migrations import upgrade
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import get_engine, merge_records

PANAMA_DEMO = load_deployment("pa").demo()
STYLES, incidents_for_year, render = (
    PANAMA_DEMO.STYLES,
    PANAMA_DEMO.incidents_for_year,
    PANAMA_DEMO.render,
)


def timed(label, rows, fn):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<28} {rows:>9,} rows {seconds:8.2f} s {rows / seconds:>12,.0f} rows/s")
    return result


def main(years: int = 10) -> None:
    rng = random.Random(1)
    style = STYLES["pa_panama"]
    rows = [
        r for year in range(2016, 2016 + years) for r in incidents_for_year("pa_panama", year, rng)
    ]
    data = render(style, rows, rng, spoil=False)
    print(f"file: {len(rows):,} rows, {len(data) / 1e6:.1f} MB ({style.file_format})")
    server = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as tmp, database(server, Path(tmp)) as url:
        engine = get_engine(url)
        upgrade(engine)
        reference.load_geography(engine, reference.read_geography())
        reference.load_population(engine, reference.read_population())
        observatory = observatories()["pa_panama"]
        table = timed("read", len(rows), lambda: read_submission(data, "bench.csv"))
        contract = load_contract("incidents")
        result = timed(
            "validate", len(rows), lambda: validate(table, contract, observatory, dt.date.today())
        )
        assert not result.rejected_rows

        def merge(submission_id):
            with engine.begin() as conn:
                return merge_records(
                    conn,
                    "incidents",
                    "pa_panama",
                    submission_id,
                    result.accepted,
                    dt.datetime.now(dt.UTC),
                )

        timed("merge (all new)", len(rows), lambda: merge("first"))
        timed("merge (all unchanged)", len(rows), lambda: merge("again"))
        timed("indicators", len(rows), lambda: compute_indicators(engine))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
