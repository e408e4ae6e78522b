"""Disclosure control at national scale: the indicator refresh of a large country, from empty.

Generates from a seed a deployment of 2,500 municipalities in 32 states (population by sex and
age group) and two years of a national police register — homicide, robbery and assault, one row
per victim with sex, age and weapon — merges it file by file as a run would, then refreshes the
indicators from empty (``compute_indicators``) in a process of its own and measures its wall
time and peak memory. The issue's targets on the 2-core machine: under 120 s and 1.5 GB.

    python bench/bench_national_refresh.py                   # SQLite
    BENCH_UNITS=500 python bench/bench_national_refresh.py   # a smaller country
    BENCH_REFRESH_TIMEOUT=600 ...                            # give up after 10 minutes

Adds `national_refresh` to bench/results.json (units, states, rows, seconds, peak_rss_mb,
withheld cells per level).
"""

import csv
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIME = "/usr/bin/time"
STATES = 32
HEADER = ["Código incidente", "Fecha", "Distrito", "Delito (ICCS)", "Sexo", "Edad", "Arma"]
# victims per 100,000 a year, roughly a violent country's: homicide, robbery, assault
CRIMES = {"0101": 25, "0401": 120, "02011": 90}
WEAPONS = ["FIREARM", "FIREARM", "FIREARM", "SHARP", "BLUNT", "OTHER", "UNKNOWN"]
BANDS = ["0-14", "15-29", "30-44", "45-59", "60+"]
SHARES = [0.25, 0.27, 0.22, 0.15, 0.11]


def deployment(folder: Path, units: int, rng: random.Random) -> dict[str, int]:
    """A country of ``units`` municipalities in 32 states; returns each one's population."""
    folder.mkdir(parents=True)
    (folder / "profiles").mkdir()
    (folder / "deployment.yaml").write_text(
        """country_code: XX
country_name: {es: País de prueba, en: Test country}
levels:
  - code: national
    name: {es: País, en: Country}
    pattern: "^XX$"
  - code: state
    name: {es: Estado, en: State}
    pattern: "^[0-9]{2}$"
  - code: municipality
    name: {es: Municipio, en: Municipality}
    pattern: "^[0-9]{5}$"
    parent_prefix: 2
time_zone: America/Mexico_City
language: es
reference:
  geography: geography.csv
  population: population.csv
contributors: contributors.yaml
profiles: profiles
""",
        encoding="utf-8",
    )
    (folder / "contributors.yaml").write_text(
        "contributors:\n  - code: xx_police\n    name: Policía nacional\n"
        "    kind: institution\n    units: all\n",
        encoding="utf-8",
    )
    geography = [["XX", "national", "País de prueba", "", "1990-01-01", "", "generated"]]
    population: dict[str, int] = {}
    for s in range(1, STATES + 1):
        geography.append([f"{s:02d}", "state", f"Estado {s}", "XX", "1990-01-01", "", "generated"])
    for u in range(units):
        state = u % STATES + 1
        code = f"{state:02d}{u // STATES + 1:03d}"
        geography.append(
            [
                code,
                "municipality",
                f"Municipio {code}",
                f"{state:02d}",
                "1990-01-01",
                "",
                "generated",
            ]
        )
        population[code] = int(rng.lognormvariate(9.8, 1.1)) + 500  # 500 to a few million
    with open(folder / "geography.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["geo_code", "geo_level", "name", "parent_code", "valid_from", "valid_to", "source"]
        )
        writer.writerows(geography)
    with open(folder / "population.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["geo_code", "year", "sex", "age_group", "population", "source"])
        for code, people in population.items():
            for year in (2024, 2025):
                for sex in ("F", "M"):
                    for band, share in zip(BANDS, SHARES, strict=True):
                        count = max(1, int(people * share / 2))
                        writer.writerow([code, year, sex, band, count, "generated"])
    return population


def register(inbox: Path, population: dict[str, int], rng: random.Random) -> int:
    """One file per month of both years; returns the rows written."""
    inbox.mkdir(parents=True, exist_ok=True)
    rows = 0
    codes = list(population)
    for year in (2024, 2025):
        for month in range(1, 13):
            lines = []
            for crime, rate in CRIMES.items():
                for code in codes:
                    mean = population[code] * rate / 100_000 / 12
                    for _ in range(_poisson(rng, mean)):
                        day = dt.date(year, month, rng.randint(1, 28))
                        sex = "M" if rng.random() < 0.85 else "F"
                        age = min(90, max(0, int(rng.gauss(31, 13))))
                        weapon = rng.choice(WEAPONS)
                        lines.append([f"R{rows}", day.isoformat(), code, crime, sex, age, weapon])
                        rows += 1
            with open(inbox / f"registro_{year}_{month:02d}.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(HEADER)
                writer.writerows(lines)
    return rows


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 30:
        return max(0, int(rng.gauss(mean, mean**0.5)))
    limit, k, p = pow(2.718281828459045, -mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


# The records merged file by file, as a run would, without the run's own indicator refresh.
LOAD = """
import datetime as dt, sys
from pathlib import Path
from obsx.warehouse import reference
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.warehouse.migrations import upgrade
from obsx.intake.submission import process_submission
from obsx.warehouse.tables import get_engine
engine = get_engine(sys.argv[1])
upgrade(engine)
reference.load_geography(engine, reference.read_geography())
reference.load_population(engine, reference.read_population())
reference.load_observatories(engine)
registry = reference.observatories()
zone = Dropzone(Path(sys.argv[2]), registry)
for path in sorted(zone.inbox("xx_police").iterdir()):
    key = partition_key("xx_police", file_sha256(path))
    outcome = process_submission(key, zone, engine, registry, dt.date.today())
    print(path.name, outcome.status, outcome.counts["rows_inserted"])
"""

REFRESH = """
import sys, time
import sqlalchemy as sa
from obsx.indicators.engine import compute_indicators
from obsx.warehouse.tables import get_engine
engine = get_engine(sys.argv[1])
start = time.perf_counter()
compute_indicators(engine)
print(f"refresh {time.perf_counter() - start:.1f}")
with engine.connect() as conn:
    for level, status, n in conn.execute(sa.text(
        "SELECT geo_level, conf_status, count(*) FROM indicator_value"
        " WHERE conf_status <> 'F' GROUP BY geo_level, conf_status ORDER BY 1, 2")):
        print("withheld", level, status, n)
"""


def main() -> dict:
    units = int(os.environ.get("BENCH_UNITS", "2500"))
    rng = random.Random(20)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        population = deployment(tmp / "deployment", units, rng)
        root = tmp / "data"
        rows = register(root / "dropzone" / "xx_police" / "inbox", population, rng)
        url = f"sqlite:///{root / 'warehouse.db'}"
        env = {
            **os.environ,
            "OBSX_DEPLOYMENT": str(tmp / "deployment"),
            "OBSX_DATA_DIR": str(root),
            "WAREHOUSE_URL": url,
            "DAGSTER_HOME": str(tmp / "dagster"),
        }
        loaded = subprocess.run(
            [sys.executable, "-c", LOAD, url, str(root)], env=env, capture_output=True, text=True
        )
        print(loaded.stdout[-600:], loaded.stderr[-2000:], flush=True)
        timing = tmp / "time.txt"
        limit = float(os.environ.get("BENCH_REFRESH_TIMEOUT", "1800"))
        command = [TIME, "-f", "%e %M", "-o", str(timing), sys.executable, "-c", REFRESH, url]
        child = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a process group: a timeout ends the refresh too
        )
        try:
            stdout, stderr = child.communicate(timeout=limit)
        except subprocess.TimeoutExpired:  # the note says by how much: more than the limit
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return {
                "units": units,
                "states": STATES,
                "rows": rows,
                "finished": False,
                "seconds": f"> {limit:.0f}",
                "when": dt.datetime.now().isoformat(timespec="seconds"),
            }
        refresh = subprocess.CompletedProcess(command, child.returncode, stdout, stderr)
        wall, peak_kb = timing.read_text().split()[-2:]
        print(refresh.stdout, refresh.stderr[-3000:], flush=True)
        withheld: dict = {}
        for line in refresh.stdout.splitlines():
            if line.startswith("withheld "):
                _, level, status, n = line.split()
                withheld.setdefault(level, {})[status] = int(n)
        return {
            "units": units,
            "states": STATES,
            "rows": rows,
            "finished": refresh.returncode == 0,
            "seconds": float(wall),
            "peak_rss_mb": int(peak_kb) // 1024,
            "withheld": withheld,
            "when": dt.datetime.now().isoformat(timespec="seconds"),
        }


if __name__ == "__main__":
    result = main()
    print(json.dumps(result, indent=2))
    path = REPO / "bench" / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["national_refresh"] = result
    path.write_text(json.dumps(results, indent=2) + "\n")
    print("written: bench/results.json (national_refresh)")
