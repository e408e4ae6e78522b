"""A national month end to end, through `obsx run`, against the bare database.

Generates from a seed one month of incidents for all 340 Guatemalan municipios, one observatory
each (a deployment made from deployments/gt with 340 contributors), in the shapes observatories
send (CSV in UTF-8, UTF-8 with BOM and cp1252, comma and semicolon; one file in ten an Excel
workbook), drops them into their inboxes and runs `obsx run` (files in inboxes -> indicators
refreshed) in a process of its own, timing each stage. In the same run it loads the same rows
into the same database bare (COPY or executemany into a staging table, then INSERT … ON CONFLICT),
and reports the ratio; and the records it merged into empty copies of the warehouse's own three
tables with their indexes, set-based (the schema floor: what the data model costs before any
per-file work). Then: an idle run, and one new 100-row file to refreshed indicators.

    make bench                                   # SQLite, and PostgreSQL when BENCH_URL is set
    BENCH_ROWS=100000,300000,1000000 make bench  # the growth curve (default: 1,000,000)
    BENCH_BIG_ROWS=0 make bench                  # skip the one 2,000,000-row file

Writes bench/results.json and prints a table.
"""

import csv
import datetime as dt
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openpyxl
import sqlalchemy as sa
from databases import database

REPO = Path(__file__).resolve().parent.parent
MUNICIPIOS = REPO / "tests" / "fixtures" / "gt" / "municipios.csv"
HEADER = ["Código incidente", "Fecha", "Distrito", "Delito (ICCS)", "Sexo", "Edad", "Arma"]
CRIMES = ["0101", "0102", "02011", "0401", "0502", "050211", "0301", "0601"]
WEIGHTS = [3, 2, 20, 25, 30, 8, 7, 5]
SEXES, WEAPONS = ["M", "F"], ["FIREARM", "SHARP", "BLUNT", "OTHER", "NONE", "UNKNOWN"]
STYLES = [("utf-8", ",")] * 6 + [("cp1252", ";")] * 2 + [("utf-8-sig", ",")] + [("xlsx", None)]
TIME = "/usr/bin/time"


def municipios() -> list[str]:
    with open(MUNICIPIOS, encoding="utf-8") as fh:
        return [row["muni_code"] for row in csv.DictReader(fh)]


def make_deployment(folder: Path, codes: list[str]) -> Path:
    """deployments/gt with one observatory per municipio (and no other contributor)."""
    shutil.copytree(REPO / "deployments" / "gt", folder)
    for profile in (folder / "profiles").iterdir():
        if profile.name != "ministry":
            shutil.rmtree(profile)
    lines = ["contributors:"]
    for code in codes:
        lines += [f"  - code: m{code}", f"    name: Observatorio {code}", f'    units: ["{code}"]']
    (folder / "contributors.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def month_rows(code: str, count: int, rng: random.Random, tag: str = "") -> list[list]:
    days = [dt.date(2025, 10, d).isoformat() for d in range(1, 32)]
    crimes = rng.choices(CRIMES, WEIGHTS, k=count)
    return [
        [
            f"{code}-{tag}{i}",
            rng.choice(days),
            code,
            crimes[i],
            rng.choice(SEXES),
            rng.randint(0, 90),
            rng.choice(WEAPONS),
        ]
        for i in range(count)
    ]


def write_file(inbox: Path, name: str, rows: list[list], style) -> None:
    encoding, delimiter = style
    if encoding == "xlsx":
        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet("Incidentes")
        sheet.append(HEADER)
        for row in rows:
            sheet.append(row)
        book.save(inbox / f"{name}.xlsx")
        return
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    (inbox / f"{name}.csv").write_bytes(text.getvalue().encode(encoding))


def drop_month(root: Path, codes: list[str], total: int, seed: int) -> list[list]:
    """One file per municipio; returns every row (with its observatory) for the baseline."""
    rng = random.Random(seed)
    per = total // len(codes)
    everything = []
    for i, code in enumerate(codes):
        count = per + (1 if i < total - per * len(codes) else 0)
        rows = month_rows(code, count, rng)
        inbox = root / "dropzone" / f"m{code}" / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        write_file(inbox, f"incidentes_{code}_2025_10", rows, STYLES[i % len(STYLES)])
        everything += [[f"m{code}", *row] for row in rows]
    return everything


def obsx_run(env: dict) -> dict:
    """`obsx run` in a process of its own: wall time, peak memory and its time by stage."""
    out = Path(env["OBSX_DATA_DIR"]) / "time.txt"
    child = subprocess.run(
        [TIME, "-f", "%e %M", "-o", str(out), str(REPO / ".venv" / "bin" / "obsx"), "run"]
        + ["--settle-seconds", "0", "--batch-size", "400"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall, peak_kb = out.read_text().split()[-2:]
    stages = {}
    match = re.search(r"^Time: .*\((.*)\)$", child.stdout, re.M)
    if match:
        for part in match.group(1).replace(";", ",").split(","):
            *name, seconds = part.split()
            stages[" ".join(name)] = float(seconds)
    return {
        "exit": child.returncode,
        "seconds": float(wall),
        "peak_rss_mb": int(peak_kb) // 1024,
        "stages": stages,
        "summary": child.stdout.splitlines()[:2],
    }


def stage(conn: sa.Connection, table: str, columns: str, rows: list) -> None:
    """Rows into a staging table as a bare load does it: COPY (PostgreSQL) or executemany."""
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" * len(columns.split(",")))
        conn.connection.driver_connection.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows
        )


def baseline(url: str, rows: list[list]) -> float:
    """The same rows into the same database, bare: staging table, then one upsert."""
    engine = sa.create_engine(url)
    columns = "observatory_code, incident_id, occurred_on, district_code, crime_code, "
    columns += "victim_sex, victim_age, weapon"
    create = (
        "CREATE TABLE bare_incidents (observatory_code varchar(64), incident_id varchar(64),"
        " occurred_on date, district_code varchar(16), crime_code varchar(16),"
        " victim_sex varchar(4), victim_age integer, weapon varchar(16),"
        " PRIMARY KEY (observatory_code, incident_id))"
    )
    upsert = (
        f"INSERT INTO bare_incidents ({columns}) SELECT {columns} FROM bare_stage WHERE true"
        " ON CONFLICT (observatory_code, incident_id) DO UPDATE SET"
        " occurred_on = excluded.occurred_on, crime_code = excluded.crime_code"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bare_incidents")
        conn.exec_driver_sql(create)
    typed = [[*r[:2], dt.date.fromisoformat(r[2]), *r[3:]] for r in rows]
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            create.replace("bare_incidents", "bare_stage").replace("CREATE", "CREATE TEMPORARY")
        )
        stage(conn, "bare_stage", columns, typed)
        conn.exec_driver_sql(upsert)
    seconds = time.perf_counter() - start
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE bare_incidents")
    engine.dispose()
    return seconds


def schema_floor(url: str, server: str | None, folder: Path, dataset: str = "incidents") -> float:
    """The records the pipeline merged, loaded again into empty copies of the warehouse's own
    tables (current, revision, manifest, with every index they have), set-based in one
    transaction: staging table, then three INSERT … SELECT. What the data model costs before any
    of the pipeline's per-file work; the pipeline's time over this says what is ours."""
    from obsx.warehouse.migrations import upgrade

    source = sa.create_engine(url)
    with source.connect() as conn:
        result = conn.exec_driver_sql(f"SELECT * FROM {dataset}")
        names, records = list(result.keys()), result.all()
    source.dispose()
    folder.mkdir(parents=True, exist_ok=True)
    with database(server, folder) as floor_url:
        engine = sa.create_engine(floor_url)
        upgrade(engine)
        key = sa.inspect(engine).get_pk_constraint(dataset)["constrained_columns"]
        columns = ", ".join(names)
        kept = [n for n in names if n not in key]
        statements = [
            f"INSERT INTO {dataset}_revision ({columns}, valid_from)"
            f" SELECT {columns}, CURRENT_TIMESTAMP FROM floor_stage",
            f"INSERT INTO {dataset} ({columns}) SELECT {columns} FROM floor_stage WHERE true"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
            + ", ".join(f"{n} = excluded.{n}" for n in kept),
            f"INSERT INTO {dataset}_submitted (submission_id, {', '.join(key)}, source_row,"
            f" row_hash) SELECT submission_id, {', '.join(key)}, 0, row_hash FROM floor_stage",
        ]
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE floor_stage AS SELECT * FROM {dataset} WHERE 1 = 0"
            )
            stage(conn, "floor_stage", columns, records)
            for sql in statements:
                conn.exec_driver_sql(sql)
        seconds = time.perf_counter() - start
        engine.dispose()
    return seconds


def run_env(tmp: Path, deployment: Path, root: Path, url: str) -> dict:
    """The environment of an `obsx run` on a benchmark's deployment, data root and warehouse."""
    return {
        **os.environ,
        "OBSX_DEPLOYMENT": str(deployment),
        "OBSX_DATA_DIR": str(root),
        "WAREHOUSE_URL": url,
        "DAGSTER_HOME": str(tmp / "dagster"),
    }


def one_case(database_kind: str, server: str | None, total: int, seed: int = 11) -> dict:
    codes = municipios()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deployment = make_deployment(tmp / "deployment", codes)
        root = tmp / "data"
        with database(server if database_kind == "postgres" else None, tmp) as url:
            rows = drop_month(root, codes, total, seed)
            env = run_env(tmp, deployment, root, url)
            run = obsx_run(env)
            bare = baseline(url, rows)
            floor = schema_floor(
                url, server if database_kind == "postgres" else None, tmp / "floor"
            )
            idle = obsx_run(env)
            extra = month_rows(codes[0], 100, random.Random(seed + 1), tag="new")
            write_file(root / "dropzone" / f"m{codes[0]}" / "inbox", "nuevo", extra, STYLES[0])
            small = obsx_run(env)
    return {
        "rows": total,
        "files": len(codes),
        "pipeline_s": run["seconds"],
        "baseline_s": round(bare, 2),
        "ratio": round(run["seconds"] / bare, 1),
        "schema_floor_s": round(floor, 2),
        "ratio_to_schema_floor": round(run["seconds"] / floor, 1),
        "rows_per_s": round(total / run["seconds"]),
        "peak_rss_mb": run["peak_rss_mb"],
        "stages_s": run["stages"],
        "exit": run["exit"],
        "summary": run["summary"],
        "idle_s": idle["seconds"],
        "one_submission_s": small["seconds"],
    }


def big_file(total: int, seed: int = 5, server: str | None = None) -> dict:
    """One CSV of ``total`` rows from one observatory, through `obsx run` on SQLite (or in a
    database of its own on the PostgreSQL ``server``)."""
    codes = municipios()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deployment = make_deployment(tmp / "deployment", codes)
        root = tmp / "data"
        inbox = root / "dropzone" / f"m{codes[0]}" / "inbox"
        inbox.mkdir(parents=True)
        write_file(inbox, "grande", month_rows(codes[0], total, random.Random(seed)), STYLES[0])
        with database(server, tmp) as url:
            env = run_env(tmp, deployment, root, url)
            run = obsx_run(env)
    return {"rows": total, "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"]} | {
        "stages_s": run["stages"]
    }


def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_ROWS", "1000000").split(",")]
    server = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None
    results: dict = {"machine": f"{os.cpu_count()} cores", "when": dt.datetime.now().isoformat()}
    cases = [("sqlite", None)] + ([("postgres", server)] if server else [])
    print(
        f"{'database':<9} {'rows':>9} {'pipeline s':>10} {'bare s':>7} {'ratio':>6} "
        f"{'tables s':>8} {'ratio':>6} "
        f"{'rows/s':>8} {'peak MB':>8} {'idle s':>6} {'1 file s':>8}  stages (s)"
    )
    for kind, url in cases:
        for total in sizes:
            case = one_case(kind, url, total)
            results.setdefault(kind, {})[str(total)] = case
            stages = ", ".join(f"{k} {v:.1f}" for k, v in case["stages_s"].items())
            print(
                f"{kind:<9} {total:>9,} {case['pipeline_s']:>10.1f} {case['baseline_s']:>7.2f}"
                f" {case['ratio']:>6.1f} {case['schema_floor_s']:>8.2f}"
                f" {case['ratio_to_schema_floor']:>6.1f}"
                f" {case['rows_per_s']:>8,} {case['peak_rss_mb']:>8,}"
                f" {case['idle_s']:>6.2f} {case['one_submission_s']:>8.1f}  {stages}",
                flush=True,
            )
        largest = results[kind][str(max(sizes))]
        kept = (
            "pipeline_s",
            "baseline_s",
            "ratio",
            "schema_floor_s",
            "ratio_to_schema_floor",
            "rows",
        )
        results[kind] |= {k: largest[k] for k in kept}
    big_rows = int(os.environ.get("BENCH_BIG_ROWS", "2000000"))
    if big_rows:
        results["big_file"] = big_file(big_rows)
        big = results["big_file"]
        print(
            f"one file of {big_rows:,} rows (SQLite): {big['seconds']:.1f} s,"
            f" peak {big['peak_rss_mb']:,} MB",
            flush=True,
        )
    first = results["sqlite"][str(max(sizes))]
    results["idle_tick_s"] = first["idle_s"]
    results["one_submission_s"] = first["one_submission_s"]
    results["rows"] = max(sizes)
    (REPO / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("written: bench/results.json")


if __name__ == "__main__":
    main()
