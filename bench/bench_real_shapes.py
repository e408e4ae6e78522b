"""Real shapes at real volume, end to end, each in a process of its own (so peak memory is its own).

- the PNC arrests workbook of 2023 (45,278 rows, the real file): read through its profile,
  validated, merged into a fresh warehouse, feedback written;
- a 30,000-row file with months as columns and places as names (about 337,500 records, a third
  of them rejected), generated from a seed: validated (target: under 60 s and 1 GB), then end to
  end.

Run by `make bench` (SQLite) or with a PostgreSQL server URL as argument (a database is created
and dropped for each measurement). Prints seconds, rows per second and peak memory.
"""

import datetime as dt
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "gt"
TODAY = dt.date.today()


def _fixtures():
    spec = importlib.util.spec_from_file_location("gt_fixtures", FIXTURES / "make_gt_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(task: str, path: str, url: str) -> dict:
    """Run one task in this process (called in a child) and return what was measured."""
    from databases import database

    from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
    from obsx.intake.submission import check_file, process_submission
    from obsx.warehouse import reference
    from obsx.warehouse.migrations import upgrade
    from obsx.warehouse.tables import get_engine

    registry = reference.observatories()
    source = Path(path)
    start = time.perf_counter()
    if task == "validate":
        result, _ = check_file(source.read_bytes(), source.name, registry["gt_pnc"], None, TODAY)
        counts = {
            "rows_read": result.rows_read,
            "rows_accepted": len(result.accepted),
            "rows_rejected": result.rows_rejected,
        }
    else:
        root = Path(tempfile.mkdtemp())
        with database(url if url.startswith("postgresql") else None, root) as target:
            engine = get_engine(target)
            upgrade(engine)
            reference.load_geography(engine, reference.read_geography())
            reference.load_population(engine, reference.read_population())
            reference.load_observatories(engine)
            zone = Dropzone(root, registry)
            zone.ensure_folders()
            shutil.copy(source, zone.inbox("gt_pnc") / source.name)
            key = partition_key("gt_pnc", file_sha256(zone.inbox("gt_pnc") / source.name))
            start = time.perf_counter()
            outcome = process_submission(key, zone, engine, registry, TODAY)
            counts = dict(outcome.counts)
            engine.dispose()
        shutil.rmtree(root, ignore_errors=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak), **counts}


def main(url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wide = Path(tmp) / "wide_meses_2024_bench.csv"
        expected = _fixtures().write_wide_months(wide, rows=30_000, seed=7)
        runs = [
            ("arrests 2023 workbook, end to end", "merge", FIXTURES / "pnc" / "Detenidos2023.xlsx"),
            ("wide months 30,000 rows, validate", "validate", wide),
            ("wide months 30,000 rows, end to end", "merge", wide),
        ]
        env = {**os.environ, "OBSX_DEPLOYMENT": "gt"}
        database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
        print(f"real shapes (Guatemala deployment, {database}):")
        for label, task, path in runs:
            child = subprocess.run(
                [sys.executable, __file__, "--measure", task, str(path), url],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            m = json.loads(child.stdout.strip().splitlines()[-1])
            rate = m["rows_read"] / m["seconds"]
            print(
                f"  {label:<38} {m['rows_read']:>9,} records {m['seconds']:7.1f} s"
                f" {rate:>9,.0f} records/s  peak {m['peak_rss_mb']:,} MB"
                f"  (accepted {m['rows_accepted']:,}, rejected {m['rows_rejected']:,})"
            )
            if path == wide:
                assert m["rows_accepted"] == expected["valid_records"], (m, expected)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2], sys.argv[3], sys.argv[4])))
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "sqlite")
