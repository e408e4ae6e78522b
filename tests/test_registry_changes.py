"""A contributor leaves the exchange explicitly (#23 item 4): deleting it from the registry would
silently revise published years (its records would count nowhere, or as another source's), so
the registry load refuses that and asks for an end date; with ``closed_on`` its records stay
counted for the periods it covered, it owes nothing after, and its later files are refused."""

import datetime as dt
import json
import shutil

import pytest
import sqlalchemy as sa

from obsx.indicators.engine import compute_indicators
from obsx.indicators.reporting import reporting_frame
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.submission import process_submission
from obsx.publication.bulletin import build_report
from obsx.sourceyaml import SourceError
from obsx.warehouse import reference
from obsx.warehouse.deployment import DEPLOYMENTS_DIR
from tests.conftest import sqlite_warehouse
from tests.test_reconcile import HEADER, NOW, PANAMA

TODAY = dt.date(2026, 3, 1)
COLON = [row.replace(",0804,", ",0301,") for row in PANAMA]  # 5 homicides, Jan-Apr 2025
ENTRY = "  - code: pa_colon\n"


def send(engine, root, name: str, rows: list[str]):
    registry = reference.observatories()
    zone = Dropzone(root, registry)
    zone.ensure_folders()
    path = zone.inbox("pa_colon") / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    key = partition_key("pa_colon", file_sha256(path))
    return process_submission(key, zone, engine, registry, TODAY)


def homicides(engine) -> float:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text(
                "SELECT numerator FROM indicator_value WHERE indicator_code = 'HOMICIDE_COUNT'"
                " AND geo_code = '0301' AND period = '2025' AND disaggregation = ''"
            )
        )


@pytest.fixture
def registry(tmp_path, monkeypatch):
    folder = tmp_path / "pa_registry"
    shutil.copytree(DEPLOYMENTS_DIR / "pa", folder, ignore=shutil.ignore_patterns("demo"))
    monkeypatch.setenv("OBSX_DEPLOYMENT", str(folder))
    return folder / "contributors.yaml"


def test_a_contributor_leaves_with_an_end_date_never_by_deletion(tmp_path, registry):
    root = tmp_path / "data"
    root.mkdir()
    engine = sqlite_warehouse(root)
    assert send(engine, root, "colon_2025.csv", COLON).status == "accepted"
    compute_indicators(engine, NOW)
    assert homicides(engine) == 5

    # deleted from the registry: refused, with what to do instead; nothing changes
    text = registry.read_text(encoding="utf-8")
    start = text.index(ENTRY)
    end = text.index("  - code:", start + len(ENTRY))
    registry.write_text(text[:start] + text[end:], encoding="utf-8")
    with pytest.raises(
        SourceError, match=r"contributors.yaml: pa_colon is no longer registered.*closed_on"
    ):
        reference.load_observatories(engine)
    with engine.connect() as conn:
        assert (
            conn.scalar(
                sa.text("SELECT count(*) FROM observatory WHERE observatory_code = 'pa_colon'")
            )
            == 1
        )

    # leaving with an end date: its records stay counted, it owes nothing after
    registry.write_text(
        text.replace(ENTRY, ENTRY + "    closed_on: 2025-04-30\n"), encoding="utf-8"
    )
    reference.load_observatories(engine)
    compute_indicators(engine, NOW)
    assert homicides(engine) == 5
    with engine.connect() as conn:
        owed = reporting_frame(conn, TODAY)
    colon = owed[(owed["observatory_code"] == "pa_colon") & (owed["dataset"] == "incidents")]
    assert colon["period"].max() == "2025-04" and len(colon) == 4
    others = owed[(owed["observatory_code"] == "pa_panama") & (owed["dataset"] == "incidents")]
    assert others["period"].max() > "2025-04"  # the others still owe their months

    # a later file from it is refused, in words its staff can act on, and changes nothing
    late = send(
        engine,
        root,
        "colon_2025_05.csv",
        [COLON[0].replace("2025-01-03", "2025-05-03").replace("H1", "H9")],
    )
    assert late.status == "rejected"
    doc = json.loads(next(p for p in late.feedback if p.suffix == ".json").read_text("utf-8"))
    assert [p["code"] for p in doc["problems"]] == ["contributor-closed"]
    assert "dejó el intercambio el 2025-04-30" in json.dumps(doc["problems"], ensure_ascii=False)
    compute_indicators(engine, NOW)
    assert homicides(engine) == 5

    # and the bulletin tells its readers
    built = build_report(engine, root, "2025-05", lang="es", open_data=False)
    html = built.bulletin_html.read_text(encoding="utf-8")
    assert "Colón dejó el intercambio el 2025-04-30: sus datos hasta entonces siguen" in html


def test_an_end_date_before_the_opening_is_refused_with_its_line(registry):
    text = registry.read_text(encoding="utf-8")
    registry.write_text(
        text.replace(ENTRY, ENTRY + "    closed_on: 2001-01-01\n"), encoding="utf-8"
    )
    with pytest.raises(SourceError, match=r"contributors.yaml:\d+: pa_colon: closed_on"):
        reference.read_contributors()
