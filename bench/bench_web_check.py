"""How long "check before sending" takes in the portal for a 5,000-row file (issue #22: under 3 s).

A real ``obsx web`` process on a free port over a temporary SQLite warehouse; a contributor signs
in and POSTs a 5,000-row CSV of the Panamá demo's shape (with the demo's spoilt rows, so there are
problems to list) to the check route, five times. Prints each time, from the request sent to the
verdict page received; the first includes loading the validation stack in the server process.
"""

import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from obsx.warehouse import accounts
from obsx.warehouse.deployment import load_deployment

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.conftest import sqlite_warehouse  # noqa: E402
from tests.webserver import PASSWORD, start_server, stop_server  # noqa: E402

ROWS = 5_000
TIMES = 5


def main() -> None:
    demo = load_deployment("pa").demo()
    rng = random.Random(1)
    rows = [
        r for year in range(2016, 2026) for r in demo.incidents_for_year("pa_panama", year, rng)
    ]
    data = demo.render(demo.STYLES["pa_panama"], rows[:ROWS], rng, spoil=True)
    print(f"file: {ROWS:,} rows, {len(data) / 1e6:.2f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        engine = sqlite_warehouse(root)
        accounts.add_user(engine, "bench", "contributor", PASSWORD, contributors=["pa_panama"])
        server, url = start_server(root)
        try:
            client = httpx.Client(base_url=url, timeout=120)
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
            client.post("/login", data={"csrf": token, "username": "bench", "password": PASSWORD})
            seconds = []
            for _ in range(TIMES):
                page = client.get("/c/pa_panama").text
                token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
                start = time.perf_counter()
                answer = client.post(
                    "/c/pa_panama/check",
                    data={"csrf": token, "dataset": ""},
                    files={"file": ("incidentes.csv", data, "text/csv")},
                )
                seconds.append(time.perf_counter() - start)
                assert answer.status_code == 200 and 'id="verdict"' in answer.text, answer.text
            verdict = re.search(r'class="status (\w+)"', answer.text).group(1)
            counts = re.findall(r'<th scope="row">[^<]+</th><td>(\d+)</td>', answer.text)
            print(f"verdict: {verdict}; rows read, accepted, rejected, warnings: {counts}")
            print("check before sending: " + ", ".join(f"{s:.2f} s" for s in seconds))
            print(
                f"median {statistics.median(seconds):.2f} s, first {seconds[0]:.2f} s"
                f" (load average {os.getloadavg()[0]:.1f})"
            )
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
