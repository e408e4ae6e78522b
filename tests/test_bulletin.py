"""The bulletin and the packs, read as their readers read them.

The demo's 27 files go through the drop folders into a SQLite warehouse once for the module;
``build_report`` writes the bulletin and the packs. Headless Chromium renders the bulletin's
HTML (its DOM, after rendering, is what is compared) and pdftoppm / pdftotext turn the PDF into
pages and text: every printed figure must equal the warehouse's published value, rounded as
printed, and withheld cells must print as withheld. A late file then changes December and the
next bulletin must say which figures changed and which file changed them.
"""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest
import sqlalchemy as sa

from obsx.indicators.engine import compute_indicators
from obsx.publication.bulletin import (
    HEADLINE,
    build_report,
    changes_since_last_bulletin,
    last_closed_month,
)
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.reference import observatories
from tests.conftest import process_inboxes, sqlite_warehouse

PERIOD = "2025-12"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian: apt-get install chromium poppler-utils)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _process_inboxes(root, engine) -> None:
    process_inboxes(root, engine)
    compute_indicators(engine)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("bulletin")
    engine = sqlite_warehouse(root)
    current_deployment().demo().seed_demo(root)
    _process_inboxes(root, engine)
    built = build_report(engine, root, PERIOD, lang="es", open_data=False)
    return root, engine, built


def _published(engine) -> dict[str, dict]:
    """The analysts' view (what the public sees), keyed like the bulletin's ``data-key``."""
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text("SELECT * FROM analytics_indicator_value"), conn)
    keys = frame[
        ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
    ].astype(str)
    return dict(zip(keys.agg("|".join, axis=1), frame.to_dict("records"), strict=True))


class _Figures(HTMLParser):
    """Every element with a data-key and the text it shows."""

    def __init__(self):
        super().__init__()
        self.figures: list[tuple[str, str]] = []
        self._key: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td" and "data-key" in attrs:
            self._key, self._text = attrs["data-key"], ""

    def handle_data(self, data):
        if self._key is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "td" and self._key is not None:
            self.figures.append((self._key, self._text.strip()))
            self._key = None


def _check_figure(key: str, text: str, published: dict[str, dict]) -> None:
    row = published.get(key)
    if row is None:
        assert text == "…", f"{key}: no value in the warehouse, printed {text!r}"
        return
    if row["quality_flag"] == "not_available":
        assert text == "n.d.", f"{key}: not available, printed {text!r}"
        return
    if row["conf_status"] in ("C", "D"):
        assert text == "c", f"{key}: withheld, printed {text!r}"
        return
    partial = row["coverage"] is not None and row["coverage"] < 99.95
    assert text.endswith("§") == partial, (key, text, row["coverage"])
    text = text.removesuffix("§")
    number = text.rstrip("*†‡")
    assert re.fullmatch(r"-?[\d,]+(\.\d+)?", number), f"{key}: printed {text!r}"
    digits = len(number.split(".")[1]) if "." in number else 0
    printed = float(number.replace(",", ""))
    assert abs(printed - row["value"]) <= 0.5 * 10**-digits + 1e-9, (key, text, row["value"])
    assert text.rstrip("†‡").endswith("*") == (row["quality_flag"] == "unstable"), (key, text)
    mark = {"agreed": "†", "pending": "‡"}.get(row["reconciliation"], "")
    assert (text[-1] if text[-1] in "†‡" else "") == mark, (key, text)


def test_browser_shows_the_warehouse_figures(demo):
    root, engine, built = demo
    chromium = _tool("chromium")
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            built.bulletin_html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    parser = _Figures()
    parser.feed(dom)
    published = _published(engine)
    assert len(parser.figures) > 60
    for key, text in parser.figures:
        _check_figure(key, text, published)
    # The headline leads with SDG 16.1.1 for the month, nationally, and it is published.
    national = f"SDG_16_1_1|national|PA|month|{PERIOD}|"
    shown = dict(parser.figures)
    assert shown[national].rstrip("†‡§") == f"{published[national]['value']:.2f}"
    assert published[national]["numerator"] == 35  # December's victims in the demo files
    # The charts are there as rendered SVG, and withheld cells do appear as such.
    assert dom.count("<svg") >= 2
    assert any(text in ("c", "d") for _, text in parser.figures)
    assert "Completitud y oportunidad del reporte" in dom


def test_pdf_pages_print_the_same_figures(demo, tmp_path):
    root, engine, built = demo
    pdftoppm, pdftotext = _tool("pdftoppm"), _tool("pdftotext")
    subprocess.run(
        [pdftoppm, "-r", "50", "-png", built.bulletin_pdf, tmp_path / "page"],
        check=True,
        timeout=120,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert 2 <= len(pages) <= 6
    assert all(p.stat().st_size > 10_000 for p in pages)  # drawn, not blank
    text = subprocess.run(
        [pdftotext, "-layout", built.bulletin_pdf, "-"], capture_output=True, text=True, check=True
    ).stdout
    published = _published(engine)
    parser = _Figures()
    parser.feed(built.bulletin_html.read_text(encoding="utf-8"))
    headline = [(k, t) for k, t in parser.figures if k.split("|")[1] == "national"]
    assert len(headline) == 4 * len(HEADLINE)
    for code in HEADLINE:  # each headline row carries its four figures, in order, on one line
        figures = [t for k, t in headline if k.startswith(f"{code}|")]
        for key, shown in ((k, t) for k, t in headline if k.startswith(f"{code}|")):
            _check_figure(key, shown, published)
        pattern = r"\s+".join(re.escape(f) + r"(?:\s+\S+ %|\s+—)?" for f in figures[:2])
        assert re.search(pattern, text), f"{code}: {figures} not found in the PDF text"
    assert "diciembre 2025" in text


def test_each_contributor_gets_a_one_page_pack(demo):
    root, engine, built = demo
    pdftotext = _tool("pdftotext")
    packs = [p for p in built.packs if p.suffix == ".pdf"]
    assert sorted(p.parent.parent.name for p in packs) == sorted(observatories())
    published = _published(engine)
    with engine.connect() as conn:
        files = pd.read_sql(sa.text("SELECT * FROM submission"), conn)
    for pdf in packs:
        code = pdf.parent.parent.name
        assert pdf.parent == root / "dropzone" / code / "reportes"
        text = subprocess.run(
            [pdftotext, pdf, "-"], capture_output=True, text=True, check=True
        ).stdout
        assert text.count("\f") == 1, f"{code}: the pack is not one page"
        parser = _Figures()
        parser.feed(pdf.with_suffix(".html").read_text(encoding="utf-8"))
        for key, shown in parser.figures:
            _check_figure(key, shown, published)
        own = files[files["observatory_code"] == code]
        read, rejected = own["rows_read"].sum(), own["rows_rejected"].sum()
        assert f"{read:,} filas leídas, {rejected:,} rechazadas" in text
    colon = (root / "dropzone/pa_colon/reportes/informe_pa_colon_2025-12.html").read_text()
    assert "código no válido" in colon  # its commonest reasons, in words, with an example
    assert "codelist" not in colon and ">incidents<" not in colon  # no machine word
    assert "Incidentes delictivos" in colon


def test_a_late_file_is_a_revision_with_its_reason(demo):
    root, engine, built = demo
    late = root / "dropzone/pa_panama/inbox/incidentes_2025_12_tardio.csv"
    rows = [
        f"PAN-2025-LATE-{n},2025-12-2{n},22:1{n},0804,0101,M,3{n},Arma de fuego"
        for n in range(1, 7)
    ]
    late.write_text(
        "Código incidente,Fecha,Hora,Distrito,Delito (ICCS),Sexo víctima,Edad,Arma\n"
        + "\n".join(rows)
        + "\n",
        encoding="utf-8",
    )
    _process_inboxes(root, engine)
    national = f"SDG_16_1_1|national|PA|month|{PERIOD}|"
    # what the analysts' desk shows before the next bulletin is built: the same revisions
    ahead = {r["key"]: r for r in changes_since_last_bulletin(engine, "es")["rows"]}
    assert ahead[national]["before"] == "1.60"
    assert "incidentes_2025_12_tardio.csv" in ahead[national]["why"]
    again = build_report(engine, root, PERIOD, lang="es", open_data=False)
    html = again.bulletin_html.read_text(encoding="utf-8")
    assert again.revised > 0
    published = _published(engine)
    assert published[national]["numerator"] == 41
    section = html[html.index("Revisiones desde el boletín anterior") :]
    row = re.search(rf'<tr data-key="{re.escape(national)}">(.*?)</tr>', section, re.S)
    assert row, "the national December rate is not listed as revised"
    assert "1.60" in row.group(1) and f"{published[national]['value']:.2f}" in row.group(1)
    assert "incidentes_2025_12_tardio.csv" in row.group(1) and "2025-12" in row.group(1)
    # A third build with nothing new revises nothing.
    third = build_report(engine, root, PERIOD, lang="es", open_data=False)
    assert third.revised == 0
    assert "ha cambiado" in third.bulletin_html.read_text(encoding="utf-8")


def test_english_on_request(demo):
    root, engine, built = demo
    english = build_report(engine, root, PERIOD, lang="en", open_data=False)
    html = english.bulletin_html.read_text(encoding="utf-8")
    assert english.bulletin_html.name == "bulletin_2025-12.html"
    assert "Monthly citizen-security bulletin" in html and "December 2025" in html
    assert (root / "dropzone/pa_colon/reportes/report_pa_colon_2025-12.pdf").exists()


def test_last_closed_month_is_in_the_deployment_time_zone():
    import datetime as dt

    # 2026-03-01 03:00 UTC is still February 28 in Panama (UTC-5): January has ended, not Feb.
    assert last_closed_month(dt.datetime(2026, 3, 1, 3, tzinfo=dt.UTC)) == "2026-01"
    assert last_closed_month(dt.datetime(2026, 3, 1, 6, tzinfo=dt.UTC)) == "2026-02"


def test_the_dagster_asset_builds_a_month_and_links_its_files(demo):
    import dagster as dg

    from assets.publication import monthly_bulletin
    from pipelines.definitions import defs
    from pipelines.resources import DropzoneResource, WarehouseResource

    root, engine, built = demo
    result = dg.materialize(
        [monthly_bulletin],
        partition_key="2025-11-01",
        resources={
            "warehouse": WarehouseResource(url=str(engine.url), data_dir=str(root)),
            "dropzone": DropzoneResource(data_dir=str(root)),
        },
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    html = metadata["bulletin (HTML)"].value
    assert html.endswith("reports/2025-11/boletin_2025-11.html") and os.path.exists(html)
    assert os.path.exists(metadata["bulletin (PDF)"].value)
    assert os.path.exists(metadata["open data: sdmx"].value)
    assert "informe_pa_colon_2025-11.pdf" in metadata["contributors' packs"].value
    # Built on the 5th at 06:00 in the deployment's time zone, for the month before.
    schedule = defs.resolve_schedule_def("monthly_bulletin_schedule")
    assert schedule.cron_schedule == "0 6 5 * *"
    assert schedule.execution_timezone == current_deployment().time_zone


def test_a_reconciliation_decision_changes_the_figure_and_its_footnote(demo):
    """December in Colón: the observatory counts 5 homicide victims, forensic medicine 4 (the
    demo's planted difference). The table decides for forensic medicine: the national count
    loses one victim and is marked †, Colón's 4 is withheld (a small count) like any, and the
    bulletin says who decided what."""
    from obsx.indicators import reconcile
    from obsx.indicators.engine import refresh_indicators

    root, engine, built = demo
    national = f"HOMICIDE_COUNT|national|PA|month|{PERIOD}|"
    before = _published(engine)[national]
    assert before["reconciliation"] == "pending"
    reconcile.decide(
        engine, None, "0301", PERIOD, "forensic", "mesa de conciliación", "acta 12/2025"
    )
    refresh_indicators(engine)
    again = build_report(engine, root, PERIOD, lang="es", open_data=False)
    published = _published(engine)
    assert published[national]["numerator"] == before["numerator"] - 1
    assert published[national]["reconciliation"] == "agreed"
    parser = _Figures()
    parser.feed(again.bulletin_html.read_text(encoding="utf-8"))
    shown = dict(parser.figures)
    assert shown[national] == f"{published[national]['value']:,.0f}†§"  # 5 districts of 81
    assert shown[f"HOMICIDE_COUNT|district|0301|month|{PERIOD}|"] == "c"
    html = again.bulletin_html.read_text(encoding="utf-8")
    assert "Colón 2025-12: sigue a Medicina Legal (IMELCF) (4); mesa de conciliación" in html
    assert "acta 12/2025" in html and "†: cifra conciliada" in html
    for key, text in parser.figures:
        _check_figure(key, text, published)
