"""One new small file to refreshed indicators, in a warehouse that holds a national year.

Builds (from a seed, through `obsx run`) a year of incidents for all 340 Guatemalan municipios —
one file per municipio, records spread over the twelve months of 2025 — then drops, one at a
time, a new 100-row file of one municipio for one month and times `obsx run` on it (wall time,
and the stages `obsx run` reports). The first new file is a warm-up (a change of the indicator
code makes its refresh a full recompute) and is not counted; the next ``BENCH_REPEAT`` are.

    .venv/bin/python bench/bench_one_file.py [POSTGRES_SERVER_URL]
    BENCH_YEAR_ROWS=120000 BENCH_REPEAT=5 BENCH_KEEP=/tmp/onefile ...   # keep and reuse the setup
    BENCH_PROFILE=1 ...   # also one run under pyinstrument (profile in BENCH_KEEP or a temp dir)

Prints the figures (min and median) and the load average; writes nothing into the repository.
"""

import datetime as dt
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_national import (
    REPO,
    STYLES,
    TIME,
    make_deployment,
    municipios,
    obsx_run,
    run_env,
    write_file,
)
from databases import database

CRIMES = ["0101", "0102", "02011", "0401", "0502", "050211", "0301", "0601"]
WEIGHTS = [3, 2, 20, 25, 30, 8, 7, 5]


def year_rows(code: str, count: int, rng: random.Random, tag: str = "", month=None) -> list:
    start = dt.date(2025, 1, 1)
    if month is None:
        days = [start + dt.timedelta(days=d) for d in range(365)]
    else:
        days = [dt.date(2025, month, d) for d in range(1, 29)]
    crimes = rng.choices(CRIMES, WEIGHTS, k=count)
    return [
        [
            f"{code}-{tag}{i}",
            rng.choice(days).isoformat(),
            code,
            crimes[i],
            rng.choice(["M", "F"]),
            rng.randint(0, 90),
            rng.choice(["FIREARM", "SHARP", "BLUNT", "OTHER", "NONE", "UNKNOWN"]),
        ]
        for i in range(count)
    ]


def setup(root: Path, codes: list[str], total: int, seed: int) -> None:
    rng = random.Random(seed)
    per = total // len(codes)
    for i, code in enumerate(codes):
        inbox = root / "dropzone" / f"m{code}" / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        write_file(inbox, f"incidentes_{code}_2025", year_rows(code, per, rng), STYLES[i % 9])


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    server = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None
    total = int(os.environ.get("BENCH_YEAR_ROWS", "120000"))
    repeat = int(os.environ.get("BENCH_REPEAT", "5"))
    keep = os.environ.get("BENCH_KEEP")
    codes = municipios()
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp())
    if server and (tmp / "data").exists():
        shutil.rmtree(tmp / "data")  # a PostgreSQL database lives as long as one run
    fresh = not (tmp / "data").exists()
    tmp.mkdir(parents=True, exist_ok=True)
    deployment = tmp / "deployment"
    if fresh:
        shutil.rmtree(deployment, ignore_errors=True)
        make_deployment(deployment, codes)
    root = tmp / "data"
    shutil.rmtree(tmp / "dagster", ignore_errors=True) if fresh else None
    with database(server, tmp) as url:
        env = run_env(tmp, deployment, root, url)
        if fresh:
            setup(root, codes, total, seed=7)
            first = obsx_run(env)
            print(
                f"setup: {total:,} rows in {len(codes)} files, {first['seconds']:.1f} s,"
                f" stages {first['stages']}",
                flush=True,
            )
        n = len(list((root / "dropzone").glob("*/inbox/../*"))) + random.randrange(10**6)
        figures = []
        for i in range(repeat + 1):
            rng = random.Random(n + i)
            code = codes[rng.randrange(len(codes))]
            rows = year_rows(code, 100, rng, tag=f"n{n}x{i}-", month=rng.randint(1, 12))
            write_file(root / "dropzone" / f"m{code}" / "inbox", f"nuevo_{n}_{i}", rows, STYLES[0])
            before = load()
            run = obsx_run(env)
            label = "warm-up" if i == 0 else f"run {i}"
            print(
                f"{label}: {run['seconds']:.1f} s (exit {run['exit']}), load before {before},"
                f" stages {run['stages']}",
                flush=True,
            )
            if i:
                figures.append(run)
        if os.environ.get("BENCH_PROFILE"):
            code = codes[3]
            rows = year_rows(code, 100, random.Random(n), tag=f"p{n}-", month=5)
            write_file(root / "dropzone" / f"m{code}" / "inbox", f"perfil_{n}", rows, STYLES[0])
            out = tmp / f"profile_{n}"
            subprocess.run(
                [str(REPO / ".venv" / "bin" / "pyinstrument"), "-r", "text", "-o", f"{out}.txt",
                 "--show-all" if os.environ.get("BENCH_PROFILE") == "all" else "--hide=EMPTY",
                 str(REPO / ".venv" / "bin" / "obsx"), "run", "--settle-seconds", "0"],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            print(f"profile: {out}.txt", flush=True)
    seconds = sorted(f["seconds"] for f in figures)
    if seconds:
        print(f"one new 100-row file to refreshed indicators ({'PostgreSQL' if server else 'SQLite'},"
              f" {total:,} rows in the year): min {seconds[0]:.1f} s,"
              f" median {statistics.median(seconds):.1f} s over {len(seconds)};"
              f" {os.cpu_count()} cores, load now {load()}")  # fmt: skip
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    assert Path(TIME).exists()
    main()
