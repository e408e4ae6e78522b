"""What flows back: the ministry's monthly bulletin, each contributor's pack, the open-data files.

``build_report(engine, root, "2025-10")`` writes, from what the warehouse publishes (values with
disclosure control applied; see obsx/indicators/suppression.py):

- ``reports/<period>/boletin_<period>.html`` and ``.pdf`` (``bulletin_…`` in English): headline
  indicators with their change against the previous month and the same month a year before,
  24-month trends (national and first level), a table per level, who reported on time, the
  revisions since the previous bulletin, and the catalogue's definitions as footnotes;
- ``dropzone/<contributor>/reportes/informe_<contributor>_<period>.html`` and ``.pdf``: one page
  per contributor, its units against their first-level area and the nation, its reporting record
  and the commonest reasons its rows were rejected;
- ``reports/<period>/datos_abiertos/``: SDMX-CSV, CSV and Parquet (obsx/publication/opendata.py).

Every printed figure carries its lineage key (``data-key``; ``obsx explain`` in its tooltip) and
is recorded in ``publication_figure``, so the next bulletin can list what was revised since.
Charts are Vega-Lite (Altair) rendered to SVG by vl-convert; the PDF is the same HTML printed by
WeasyPrint.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd
import sqlalchemy as sa

from obsx.indicators.catalogue import NOT_AVAILABLE
from obsx.indicators.engine import catalogue
from obsx.indicators.reconcile import concepts
from obsx.intake.contract import load_contract
from obsx.intake.problems import label
from obsx.warehouse.deployment import Deployment, current_deployment, local_time
from obsx.warehouse.tables import (
    geography,
    geography_rollup,
    indicator_value,
    observatory,
    observatory_unit,
    publication,
    publication_figure,
    quarantine,
    reporting_status,
    submission,
    submission_scope,
)

TEMPLATES = Path(__file__).parent / "templates"
# The figures a bulletin leads with, in this order (catalogue codes): homicide first (SDG
# 16.1.1), then violence against women, property crime, and how complete the month is.
HEADLINE = (
    "SDG_16_1_1",
    "HOMICIDE_COUNT",
    "FIREARM_HOMICIDE_SHARE",
    "FEMICIDE_RATE",
    "SEXUAL_VIOLENCE_RATE",
    "DOMESTIC_VIOLENCE_RATE",
    "ROBBERY_RATE",
    "THEFT_RATE",
    "EXTORTION_RATE",
    "REPORTING_COVERAGE",
    "COMPLETENESS",
    "TIMELINESS",
)
LEVEL_TABLE = ("SDG_16_1_1", "HOMICIDE_COUNT", "FEMICIDE_RATE", "ROBBERY_RATE", "THEFT_RATE")
PACK = ("SDG_16_1_1", "HOMICIDE_COUNT", "FEMICIDE_RATE", "SEXUAL_VIOLENCE_RATE", "ROBBERY_RATE")
TREND = "SDG_16_1_1"
WITHHELD = ("C", "D")


def _mark(status: str) -> str:
    """What a reader sees for a figure not printed: c for any withheld one (a small count and a
    cell withheld to protect one look alike, docs/analytics.md)."""
    return "c" if status in WITHHELD else status.lower()


# indicator_value.reconciliation (obsx/indicators/reconcile.py) as printed after a figure
RECONCILED = {"agreed": "†", "pending": "‡"}
TREND_MONTHS = 24

MONTHS = {
    "es": [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
}
WORDS = {
    "es": {
        "file": "boletin",
        "pack_file": "informe",
        "title": "Boletín mensual de seguridad ciudadana",
        "pack_title": "Informe mensual del contribuyente",
        "headline": "Indicadores principales, nivel nacional",
        "indicator": "Indicador",
        "unit": "Unidad",
        "month": "Mes",
        "previous": "Mes anterior",
        "change": "Variación",
        "year_ago": "Mismo mes del año anterior",
        "year_to_date": "Año a la fecha",
        "trends": "Tendencias de los últimos 24 meses",
        "national_trend": "Nacional",
        "by_level": "Por {level}",
        "area": "Área",
        "code": "Código",
        "reporting": "Completitud y oportunidad del reporte",
        "contributor": "Contribuyente",
        "dataset": "Datos",
        "due": "Vence",
        "received": "Recibido",
        "status": "Estado",
        "statuses": {
            "on_time": "a tiempo",
            "late": "tarde",
            "missing": "falta",
            "not_due": "aún no vence",
        },
        "left_exchange": "{contributor} dejó el intercambio el {date}: sus datos hasta entonces "
        "siguen contando, y desde entonces no debe entregas.",
        "reported_summary": "{on_time} a tiempo, {late} tarde, {missing} faltan, "
        "{not_due} aún no vencen, de {total} entregas debidas para {period}.",
        "revisions": "Revisiones desde el boletín anterior",
        "first_edition": "Primera edición: no hay un boletín anterior con el cual comparar.",
        "no_revisions": "Ninguna cifra publicada en el boletín del {date} ha cambiado.",
        "revised_intro": "Cifras publicadas en el boletín del {date} que cambiaron desde "
        "entonces, y los archivos recibidos que las cambiaron:",
        "before": "Publicado",
        "now": "Ahora",
        "why": "Por qué",
        "why_files": "{files} de {who} recibido(s) después, sobre {months}",
        "why_unknown": "recalculo (población, geografía o catálogo)",
        "definitions": "Definiciones",
        "legend": "c: confidencial (menos de {n} casos, o deducible); …: no reportado; n.d.: no "
        "disponible (las fuentes no lo registran; no es 0); §: cubre parte de la población o de "
        "los meses; *: tasa inestable (menos de 20 casos). Cada cifra: «obsx explain».",
        "generated": "Generado el {now} con datos recibidos hasta el {as_of}.",
        "not_available": "n.d.",
        "note_not_available": "No disponible: ninguna fuente registra ",
        "scope": "los delitos o la unidad de cuenta que cuenta",
        "note_population": "Tasa calculada con la población de {year}.",
        "nation": "Nacional",
        "own_units": "Su área",
        "compare": "Sus indicadores frente a {parent} y el país",
        "compare_national": "Los indicadores del país",
        "trend_national": "Tasa de homicidio mensual del país",
        "record": "Su registro de entregas (últimos 6 periodos)",
        "rejections": "Filas rechazadas en los últimos 12 meses",
        "rejected_summary": "{files} archivo(s), {read} filas leídas, {rejected} rechazadas "
        "({share}).",
        "reason": "Motivo",
        "rows": "Filas",
        "example": "Ejemplo",
        "no_rejections": "Ninguna fila rechazada.",
        "no_record": "No le corresponden entregas periódicas en el calendario del despliegue.",
        "trend_pack": "Tasa de homicidio mensual: su área, {parent} y el país",
        "reconciliation": "Conciliación de fuentes",
        "reconciliation_summary": "{name}, {period}: {agree} unidad-mes en que las fuentes "
        "coinciden, {within} dentro de la tolerancia, {pending} por conciliar (se publica la "
        "fuente por defecto: {default}), {decided} conciliadas por decisión.",
        "reconciliation_legend": " †: cifra conciliada (sigue una decisión de la mesa de "
        "conciliación); ‡: fuentes aún por conciliar, se publica la fuente por defecto.",
        "decision_line": "{geo} {period}: sigue a {source} ({figure:g}); {by}, {at}: {reason}",
        "units": {
            "per 100,000": "por 100.000",
            "per 100,000 women": "por 100.000 mujeres",
            "victims": "víctimas",
            "events": "hechos",
            "participants": "participantes",
        },
    },
    "en": {
        "file": "bulletin",
        "pack_file": "report",
        "title": "Monthly citizen-security bulletin",
        "pack_title": "Contributor's monthly report",
        "headline": "Headline indicators, national",
        "indicator": "Indicator",
        "unit": "Unit",
        "month": "Month",
        "previous": "Previous month",
        "change": "Change",
        "year_ago": "Same month a year before",
        "year_to_date": "Year to date",
        "trends": "Trends over the last 24 months",
        "national_trend": "National",
        "by_level": "By {level}",
        "area": "Area",
        "code": "Code",
        "reporting": "Completeness and timeliness of reporting",
        "contributor": "Contributor",
        "dataset": "Data",
        "due": "Due",
        "received": "Received",
        "status": "Status",
        "statuses": {
            "on_time": "on time",
            "late": "late",
            "missing": "missing",
            "not_due": "not yet due",
        },
        "left_exchange": "{contributor} left the exchange on {date}: its data until then still "
        "count, and it owes nothing since.",
        "reported_summary": "{on_time} on time, {late} late, {missing} missing, "
        "{not_due} not yet due, of {total} deliveries owed for {period}.",
        "revisions": "Revisions since the previous bulletin",
        "first_edition": "First edition: there is no previous bulletin to compare with.",
        "no_revisions": "No figure published in the bulletin of {date} has changed.",
        "revised_intro": "Figures published in the bulletin of {date} that have changed since, "
        "and the files received that changed them:",
        "before": "Published",
        "now": "Now",
        "why": "Why",
        "why_files": "{files} from {who} received after, about {months}",
        "why_unknown": "recomputed (population, geography or catalogue)",
        "definitions": "Definitions",
        "legend": "c: confidential (fewer than {n} cases, or deducible); …: not reported; n/a: "
        "not available (the sources do not record it; not 0); §: covers part of the population "
        "or of the months; *: unstable rate (fewer than 20 cases). Every figure: 'obsx explain'.",
        "generated": "Generated on {now} from data received up to {as_of}.",
        "not_available": "n/a",
        "note_not_available": "Not available: no source records ",
        "scope": "the crimes or the counting unit it counts",
        "note_population": "Rate computed with the population of {year}.",
        "nation": "National",
        "own_units": "Your area",
        "compare": "Your indicators against {parent} and the country",
        "compare_national": "The country's indicators",
        "trend_national": "Monthly homicide rate of the country",
        "record": "Your delivery record (last 6 periods)",
        "rejections": "Rows rejected in the last 12 months",
        "rejected_summary": "{files} file(s), {read} rows read, {rejected} rejected ({share}).",
        "reason": "Reason",
        "rows": "Rows",
        "example": "Example",
        "no_rejections": "No row rejected.",
        "no_record": "The deployment's reporting calendar owes nothing periodic from you.",
        "trend_pack": "Monthly homicide rate: your area, {parent} and the country",
        "reconciliation": "Reconciling sources",
        "reconciliation_summary": "{name}, {period}: {agree} unit-months where the sources "
        "agree, {within} within tolerance, {pending} to reconcile (the default source is "
        "published: {default}), {decided} reconciled by a decision.",
        "reconciliation_legend": " †: reconciled figure (follows a decision of the "
        "reconciliation table); ‡: sources still to reconcile, the default source is published.",
        "decision_line": "{geo} {period}: follows {source} ({figure:g}); {by}, {at}: {reason}",
        "units": {},
    },
}


@dataclass(frozen=True)
class Figure:
    """One printed figure: its text, where it comes from (lineage key) and how to trace it."""

    text: str
    key: str
    explain: str
    css: str = ""
    value: float | None = None  # the warehouse's, unrounded; None when withheld or missing
    status: str = "F"  # conf_status, or "" when there is no value


@dataclass
class Built:
    period: str
    lang: str
    bulletin_html: Path
    bulletin_pdf: Path
    packs: list[Path] = field(default_factory=list)
    open_data: dict[str, Path] = field(default_factory=dict)
    revised: int = 0

    @property
    def paths(self) -> list[Path]:
        return [self.bulletin_html, self.bulletin_pdf, *self.packs, *self.open_data.values()]

    def summary(self) -> str:
        lines = [
            f"Bulletin {self.period} ({self.lang}): {self.bulletin_html}",
            f"  PDF: {self.bulletin_pdf}",
            f"  figures revised since the previous bulletin: {self.revised}",
            f"Contributors' packs: {len(self.packs) // 2} (HTML and PDF in dropzone/<code>/reportes/)",
        ]
        lines += [f"Open data: {p}" for p in self.open_data.values()]
        return "\n".join(lines)


def last_closed_month(now: dt.datetime | None = None, deployment: Deployment | None = None) -> str:
    """The last month that has ended, in the deployment's time zone."""
    deployment = deployment or current_deployment()
    now = (now or dt.datetime.now(dt.UTC)).astimezone(zoneinfo.ZoneInfo(deployment.time_zone))
    first = now.date().replace(day=1)
    return (first - dt.timedelta(days=1)).strftime("%Y-%m")


def last_month_with_data(conn: sa.Connection, until: str | None = None) -> str | None:
    """The latest month (YYYY-MM, not after ``until``) of any current record of any dataset
    contributors send; None when there is none (an empty warehouse)."""
    from obsx.intake.contract import observatory_datasets
    from obsx.warehouse.tables import record_tables

    months = []
    for dataset in observatory_datasets():
        current = record_tables(dataset).current
        query = sa.select(sa.func.max(current.c.period_month))
        if until:
            query = query.where(current.c.period_month <= until)
        months.append(conn.scalar(query))
    return max((m for m in months if m), default=None)


def _shift(period: str, months: int) -> str:
    y, m = int(period[:4]), int(period[5:7])
    index = y * 12 + (m - 1) + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _month_label(period: str, lang: str) -> str:
    return f"{MONTHS[lang][int(period[5:7]) - 1]} {period[:4]}"


def decimals(unit: str, period_type: str) -> int:
    """Digits printed after the point: counts none, shares one, rates one (two for a month)."""
    if unit.startswith("per "):
        return 2 if period_type == "month" else 1
    return 1 if unit == "%" else 0


def format_value(value: float, unit: str, period_type: str) -> str:
    return f"{value:,.{decimals(unit, period_type)}f}"


class _Values:
    """The published values the report prints, looked up by key (one query)."""

    def __init__(self, conn: sa.Connection, codes, periods, lang: str = "es"):
        self.conn, self.lang = conn, lang
        v = indicator_value.c
        query = sa.select(indicator_value).where(
            v.indicator_code.in_(list(codes)), v.disaggregation == "", v.period.in_(list(periods))
        )
        self.frame = pd.read_sql(query, conn)
        self.rows = {
            (r["indicator_code"], r["geo_code"], r["period"]): r
            for r in self.frame.to_dict("records")
        }

    def row(self, code: str, geo: str, period: str) -> dict | None:
        return self.rows.get((code, geo, period))

    def figure(self, code: str, geo_level: str, geo: str, period: str, unit: str) -> Figure:
        r = self.row(code, geo, period)
        period_type = "month" if len(period) == 7 else ("quarter" if "Q" in period else "year")
        key = f"{code}|{geo_level}|{geo}|{period_type}|{period}|"
        explain = f"obsx explain {code} --geo {geo} --period {period}"
        if r is None:
            return Figure("…", key, explain, "missing", status="")
        if r["quality_flag"] == NOT_AVAILABLE:  # the sources do not supply what it counts
            return Figure(WORDS[self.lang]["not_available"], key, explain, "missing", status="")
        if r["conf_status"] in WITHHELD:  # one mark for both: which is small is not told
            return Figure("c", key, explain, "withheld", None, "C")
        if r["value"] is None or pd.isna(r["value"]):
            return Figure("…", key, explain, "missing", status="")
        text = format_value(r["value"], unit, period_type)
        unstable = r["quality_flag"] == "unstable"
        css = "unstable" if unstable else ""
        text += ("*" if unstable else "") + RECONCILED.get(r.get("reconciliation") or "", "")
        if partial(r.get("coverage")):
            text += PARTIAL
        return Figure(text, key, explain, css, float(r["value"]))

    def change(self, code: str, geo: str, period: str, column: str) -> str:
        r = self.row(code, geo, period)
        if r is None or r["conf_status"] != "F" or r[column] is None or pd.isna(r[column]):
            return "—"
        return f"{r[column]:+.1f} %"


PARTIAL = "§"  # a value over part of the area's population or of the period's months


def partial(coverage) -> bool:
    """Whether a value covers less than all of its area's population-months."""
    return coverage is not None and not pd.isna(coverage) and coverage < 99.95


def _availability_notes(values: _Values, codes, geo: str, period: str, lang: str) -> dict:
    """Per indicator, what the notes say of its value for ``geo`` in ``period``: not available
    (and what no source supplied), or divided by the population of another year. (A value over
    part of the population or of the months is marked in its cell: ``PARTIAL``.)"""
    w = WORDS[lang]
    cat = catalogue()
    said = {}
    supplied: dict[str, set[str]] = {}  # dataset -> fields some file of it supplied
    for dataset, fields in values.conn.execute(
        sa.select(submission_scope.c.dataset, submission_scope.c.supplied)
    ):
        supplied.setdefault(dataset, set()).update(json.loads(fields))
    for code in codes:
        r = values.row(code, geo, period)
        if r is None:
            continue
        lines = []
        if r["quality_flag"] == NOT_AVAILABLE:
            ind = cat.indicator(code)
            contract = load_contract(ind.dataset)
            fields = [
                " / ".join(contract.field(f).title.get(lang, f) for f in alternatives)
                for alternatives in cat.need(ind).fields
                if not supplied.get(ind.dataset, set()) & set(alternatives)
            ]
            lines.append(w["note_not_available"] + (", ".join(fields) if fields else w["scope"]))
        year = r.get("population_year")
        if year is not None and not pd.isna(year) and int(year) != int(period[:4]):
            lines.append(w["note_population"].format(year=int(year)))
        if lines:
            said[code] = " ".join(lines)
    return said


def _with_status(notes: list[dict], said: dict) -> list[dict]:
    return [n | {"status": said.get(n["code"], "")} for n in notes]


def _svg(chart) -> str:
    import vl_convert

    return vl_convert.vegalite_to_svg(chart.to_dict())


def _trend_chart(frame: pd.DataFrame, unit: str, facet: str | None = None, height=170) -> str:
    """A line chart of ``value`` by ``month`` (one line per ``series``; small multiples by
    ``facet``). Withheld and unreported months are gaps, never zeros."""
    import altair as alt

    ticks = 4 if facet else 8
    base = alt.Chart(frame).encode(
        x=alt.X(
            "month:T", title=None, axis=alt.Axis(format="%m/%y", labelAngle=0, tickCount=ticks)
        ),
        y=alt.Y("value:Q", title=unit),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
    )
    chart = base.mark_line(point=alt.OverlayMarkDef(size=18), strokeWidth=1.6)
    if facet:
        chart = (
            chart.properties(width=150, height=70)
            .facet(facet=alt.Facet(f"{facet}:N", title=None), columns=4)
            .resolve_scale(y="independent")
        )
    else:
        chart = chart.properties(width=620, height=height)
    return _svg(chart.configure_view(stroke=None))


def _series(values: _Values, code: str, geo_names: dict[str, str], months: list[str]):
    rows = []
    for geo, name in geo_names.items():
        for m in months:
            r = values.row(code, geo, m)
            published = r is not None and r["conf_status"] == "F" and pd.notna(r["value"])
            rows.append(
                {"month": f"{m}-01", "series": name, "value": r["value"] if published else None}
            )
    return pd.DataFrame(rows)


def _names(conn: sa.Connection) -> pd.DataFrame:
    """Today's name, level and parent of every area, by code."""
    g = geography.c
    frame = pd.read_sql(
        sa.select(g.geo_code, g.geo_level, g.name, g.parent_code).where(g.valid_to.is_(None)), conn
    )
    return frame.drop_duplicates("geo_code", keep="last").set_index("geo_code")


def _definitions(codes, lang: str):
    cat = {i.code: i for i in catalogue().indicators}
    notes = []
    for n, code in enumerate(codes, start=1):
        ind = cat[code]
        name = ind.name_es if lang == "es" else ind.name_en
        definition = ind.definition_es if lang == "es" else ind.definition_en
        notes.append(
            {"n": n, "code": code, "name": name, "text": definition, "standard": ind.standard}
        )
    return notes, cat


def _render(template: str, context: dict) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(template).render(**context)


def _write(path: Path, html_text: str) -> tuple[Path, Path]:
    """The HTML and its PDF, each written under a temporary name and renamed when complete."""
    import weasyprint

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(html_text, encoding="utf-8")
    os.replace(partial, path)
    pdf = path.with_suffix(".pdf")
    partial = pdf.with_name(f".{pdf.name}.{os.getpid()}.part")
    weasyprint.HTML(string=html_text, base_url=str(path.parent)).write_pdf(partial)
    os.replace(partial, pdf)
    return path, pdf


def _record(
    conn, kind, period, lang, path, root, figures: list[Figure], now, observatory_code=None
):
    """Keep what was printed: the next bulletin compares against it."""
    publication_id = conn.execute(
        publication.insert().values(
            kind=kind,
            period=period,
            lang=lang,
            observatory_code=observatory_code,
            path=str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
            built_at=now,
        )
    ).inserted_primary_key[0]
    seen, rows = set(), []
    for f in figures:
        if f.key in seen:
            continue
        seen.add(f.key)
        if not f.status:
            continue  # nothing was printed but "not reported"
        code, level, geo, ptype, period_, disaggregation = f.key.split("|")
        rows.append(
            {
                "publication_id": publication_id,
                "indicator_code": code,
                "geo_level": level,
                "geo_code": geo,
                "period_type": ptype,
                "period": period_,
                "disaggregation": disaggregation,
                "value": f.value,
                "conf_status": f.status,
            }
        )
    if rows:
        conn.execute(publication_figure.insert(), rows)


def changes_since_last_bulletin(engine: sa.Engine, lang: str) -> dict:
    """What the next bulletin would list as revised: the figures the last bulletin printed that
    differ now (as published: a withheld one without its value), and the files that changed
    them (the analysts' desk reads it before building)."""
    with engine.connect() as conn:
        names = _names(conn)["name"].to_dict()
        return _revisions(conn, lang, dt.datetime.now(dt.UTC), names)


def _revisions(conn, lang: str, now: dt.datetime, names) -> dict:
    """What changed in the figures the previous bulletin printed, and the files that changed it."""
    w = WORDS[lang]
    p = publication.c
    previous = conn.execute(
        sa.select(p.publication_id, p.built_at)
        .where(p.kind == "bulletin", p.built_at < now)
        .order_by(p.built_at.desc())
        .limit(1)
    ).first()
    if previous is None:
        return {"intro": w["first_edition"], "rows": []}
    built_at = previous.built_at
    date = _local(built_at)
    printed = pd.read_sql(
        sa.select(publication_figure).where(
            publication_figure.c.publication_id == previous.publication_id
        ),
        conn,
    )
    key = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
    current = pd.read_sql(
        sa.select(
            *[indicator_value.c[k] for k in key],
            indicator_value.c.value.label("value_now"),
            indicator_value.c.conf_status.label("status_now"),
            indicator_value.c.unit,
        ).where(
            indicator_value.c.indicator_code.in_(printed["indicator_code"].unique().tolist()),
            indicator_value.c.disaggregation == "",
        ),
        conn,
    )
    both = printed.merge(current, on=key, how="left")
    both["value"] = both["value"].astype(float)
    both["value_now"] = both["value_now"].astype(float).where(both["status_now"] == "F")
    both["status_now"] = both["status_now"].replace({"D": "C"}).fillna("…")  # as published
    same_value = (both["value"].round(6) == both["value_now"].round(6)) | (
        both["value"].isna() & both["value_now"].isna()
    )
    changed = both[~same_value | (both["conf_status"] != both["status_now"])]
    if changed.empty:
        return {"intro": w["no_revisions"].format(date=date), "rows": []}
    s = submission.c
    since = pd.read_sql(
        sa.select(s.submission_id, s.observatory_code, s.dataset, s.file_name, s.merged_at).where(
            s.merged_at > built_at, s.rows_inserted + s.rows_updated > 0
        ),
        conn,
    )
    months = _months_touched(conn, since)
    units = pd.read_sql(sa.select(observatory_unit), conn)
    g = geography_rollup.c  # which contributors report inside each area: read once
    inside = pd.read_sql(sa.select(g.geo_code, g.unit_code).distinct(), conn).merge(
        units.rename(columns={"geo_code": "unit_code"}), on="unit_code"
    )
    contributors_in = inside.groupby("geo_code")["observatory_code"].agg(set).to_dict()
    rows = []
    for r in changed.sort_values(key).to_dict("records"):
        unit = r["unit"] or ""
        before = (
            format_value(r["value"], unit, r["period_type"])
            if pd.notna(r["value"])
            else _mark(r["conf_status"])
        )
        now_text = (
            format_value(r["value_now"], unit, r["period_type"])
            if pd.notna(r["value_now"])
            else _mark(r["status_now"])
        )
        rows.append(
            {
                "indicator": r["indicator_code"],
                "area": names.get(r["geo_code"], r["geo_code"]),
                "period": r["period"],
                "before": before,
                "now": now_text,
                "why": _why(r, since, months, contributors_in.get(r["geo_code"], set()), lang),
                "key": "|".join(str(r[k]) for k in key),
            }
        )
    return {"intro": w["revised_intro"].format(date=date), "rows": rows}


def _months_touched(conn, since: pd.DataFrame) -> dict[str, set[str]]:
    """Per submission, the months of the records it changed (from the revision tables)."""
    from obsx.warehouse.tables import record_tables

    touched: dict[str, set[str]] = {}
    for dataset, group in since.groupby("dataset"):
        revision = record_tables(dataset).revision
        if "period_month" not in revision.c:
            continue
        found = conn.execute(
            sa.select(revision.c.submission_id, revision.c.period_month)
            .where(revision.c.submission_id.in_(group["submission_id"].tolist()))
            .distinct()
        )
        for sid, month in found:
            touched.setdefault(sid, set()).add(month)
    return touched


def _why(r, since, months, who: set[str], lang) -> str:
    """The files merged since the previous bulletin, from contributors inside the figure's area,
    that changed records of its months."""
    w = WORDS[lang]
    period = r["period"]
    if r["period_type"] == "month":
        wanted = {period}
    elif r["period_type"] == "quarter":
        q = int(period[-1])
        wanted = {f"{period[:4]}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)}
    else:
        wanted = {f"{period}-{m:02d}" for m in range(1, 13)}
    hits = since[
        since["observatory_code"].isin(who)
        & since["submission_id"].map(lambda sid: bool(months.get(sid, set()) & wanted))
    ]
    if hits.empty:
        return w["why_unknown"]
    touched = sorted(set().union(*(months[sid] & wanted for sid in hits["submission_id"])))
    return w["why_files"].format(
        files=", ".join(sorted(hits["file_name"].unique())),
        who=", ".join(sorted(hits["observatory_code"].unique())),
        months=", ".join(touched),
    )


def _reconciliation(conn, period: str, lang: str, names: dict[str, str]) -> list[dict]:
    """Per concept, the year to the month: how many unit-months agree, wait for a decision or
    follow one, and the decisions behind the month's figures."""
    from obsx.warehouse.tables import reconciliation_decision as d
    from obsx.warehouse.tables import reconciliation_item as item

    w = WORDS[lang]
    out = []
    for concept in concepts():
        frame = pd.read_sql(
            sa.select(item.c.status, item.c.geo_code, item.c.period).where(
                item.c.concept == concept.code,
                item.c.period >= f"{period[:4]}-01",
                item.c.period <= period,
            ),
            conn,
        )
        counts = frame["status"].value_counts()
        decisions = pd.read_sql(
            sa.select(d)
            .where(
                d.c.concept == concept.code,
                d.c.closed_at.is_(None),
                d.c.period >= f"{period[:4]}-01",
                d.c.period <= period,
            )
            .order_by(d.c.period, d.c.geo_code),
            conn,
        )
        out.append(
            {
                "summary": w["reconciliation_summary"].format(
                    name=concept.name.get(lang, concept.code),
                    period=f"{period[:4]}-01 … {period}",
                    agree=counts.get("agree", 0),
                    within=counts.get("within_tolerance", 0),
                    pending=counts.get("to_reconcile", 0) + counts.get("reopened", 0),
                    default=concept.source(concept.default).said(lang),
                    decided=counts.get("decided", 0),
                ),
                "decisions": [
                    w["decision_line"].format(
                        geo=names.get(r["geo_code"], r["geo_code"]),
                        period=r["period"],
                        source=concept.source(r["source"]).said(lang),
                        figure=r["figure"],
                        by=r["decided_by"],
                        at=pd.Timestamp(r["decided_at"]).strftime("%Y-%m-%d"),
                        reason=r["reason"],
                    )
                    for r in decisions.to_dict("records")
                ],
            }
        )
    return out


def _dataset_title(dataset: str, lang: str) -> str:
    """A dataset as its readers call it (the contract's title: "Incidentes delictivos")."""
    try:
        return load_contract(dataset).title.get(lang, dataset)
    except (FileNotFoundError, KeyError):
        return dataset


def _delivery(r: dict, w: dict, lang: str) -> dict:
    """One row of ``reporting_status`` as printed: what was owed, by when, when it came."""
    return {
        "code": r["observatory_code"],
        "dataset": _dataset_title(r["dataset"], lang),
        "period": r["period"],
        "due": r["due_on"].strftime("%Y-%m-%d") if pd.notna(r["due_on"]) else "",
        "received": pd.Timestamp(r["received_at"]).strftime("%Y-%m-%d")
        if pd.notna(r["received_at"])
        else "—",
        "status": r["status"],
        "status_text": w["statuses"].get(r["status"], r["status"]),
    }


def _reporting(conn, period: str, lang: str, obs_names: dict[str, str]) -> dict:
    """Who owed what for the month (and for the quarter it ends), and when it arrived."""
    w = WORDS[lang]
    quarter = f"{period[:4]}-Q{(int(period[5:7]) - 1) // 3 + 1}"
    rs = reporting_status.c
    frame = pd.read_sql(
        sa.select(reporting_status)
        .where(rs.period.in_([period, quarter]))
        .order_by(rs.status, rs.observatory_code, rs.dataset),
        conn,
    )
    if int(period[5:7]) % 3:  # a quarter is owed once it has ended
        frame = frame[frame["period"] == period]
    counts = frame["status"].value_counts()
    rows = [
        _delivery(r, w, lang)
        | {"contributor": obs_names.get(r["observatory_code"], r["observatory_code"])}
        for r in frame.to_dict("records")
    ]
    summary = w["reported_summary"].format(
        on_time=counts.get("on_time", 0),
        late=counts.get("late", 0),
        missing=counts.get("missing", 0),
        not_due=counts.get("not_due", 0),
        total=len(frame),
        period=_month_label(period, lang),
    )
    # contributors that left by the end of the period: their earlier data still count
    left = conn.execute(
        sa.text(
            "SELECT observatory_code, closed_on FROM observatory WHERE closed_on IS NOT NULL"
            " AND closed_on <= :end ORDER BY closed_on, observatory_code"
        ),
        {"end": _month_end(period)},
    ).all()
    notes = [
        w["left_exchange"].format(contributor=obs_names.get(code, code), date=str(closed_on)[:10])
        for code, closed_on in left
    ]
    return {"summary": summary, "rows": rows, "left": notes}


def _month_end(period: str) -> dt.date:
    year, month = int(period[:4]), int(period[5:7])
    return dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)


def _local(moment) -> str:
    """A stored moment in the deployment's time zone, written 2026-12-05 11:11 as the
    bulletin has always written it (``local_time``'s English form, without the zone)."""
    return local_time(moment, "en", note=False)


def _common(deployment: Deployment, lang: str, period: str, now: dt.datetime, as_of) -> dict:
    return {
        "lang": lang,
        "w": WORDS[lang],
        "country": deployment.country_name.get(lang) or deployment.country_code,
        "period": period,
        "period_label": _month_label(period, lang),
        "generated": WORDS[lang]["generated"].format(
            now=_local(now),
            as_of=_local(as_of) if as_of is not None else "—",
        ),
    }


def build_report(
    engine: sa.Engine,
    root: Path,
    period: str,
    lang: str = "es",
    now: dt.datetime | None = None,
    open_data: bool = True,
) -> Built:
    """Build the bulletin, every contributor's pack and the open-data files for ``period``."""
    now = now or dt.datetime.now(dt.UTC)
    deployment = current_deployment()
    w = WORDS[lang]
    months = [_shift(period, -k) for k in range(TREND_MONTHS - 1, -1, -1)]
    year_ago, previous = _shift(period, -12), _shift(period, -1)
    codes = list(dict.fromkeys(HEADLINE + LEVEL_TABLE + PACK))
    notes, cat = _definitions(codes, lang)
    note_of = {n["code"]: n["n"] for n in notes}
    levels = deployment.level_codes
    top = levels[0]
    with engine.begin() as conn:
        names_frame = _names(conn)
        names = names_frame["name"].to_dict()
        national = names_frame[names_frame["geo_level"] == top].index[0]
        values = _Values(conn, codes, [*months, year_ago, period[:4]], lang)
        as_of = conn.scalar(sa.select(sa.func.max(submission.c.merged_at)))
        obs_names = dict(
            conn.execute(sa.select(observatory.c.observatory_code, observatory.c.name)).all()
        )
        context = _common(deployment, lang, period, now, as_of)
        figures: list[Figure] = []

        def fig(code, level, geo, p):
            f = values.figure(code, level, geo, p, cat[code].unit)
            figures.append(f)
            return f

        headline = [
            {
                "code": code,
                "name": cat[code].name_es if lang == "es" else cat[code].name_en,
                "note": note_of[code],
                "unit": w["units"].get(cat[code].unit, cat[code].unit),
                "now": fig(code, top, national, period),
                "previous": fig(code, top, national, previous),
                "change_previous": values.change(code, national, period, "change_previous"),
                "year_ago": fig(code, top, national, year_ago),
                "change_year_ago": values.change(code, national, period, "change_year_ago"),
                "ytd": fig(code, top, national, period[:4]),
            }
            for code in HEADLINE
        ]
        unit_text = w["units"].get(cat[TREND].unit, cat[TREND].unit)
        trend_name = cat[TREND].name_es if lang == "es" else cat[TREND].name_en
        charts = [
            {
                "title": f"{trend_name} — {w['national_trend']}",
                "svg": _trend_chart(
                    _series(values, TREND, {national: w["national_trend"]}, months), unit_text
                ),
            }
        ]
        first = levels[1] if len(levels) > 1 else None
        if first:
            with_data = values.frame[
                (values.frame["indicator_code"] == TREND) & (values.frame["geo_level"] == first)
            ]["geo_code"].unique()
            areas = {g: names.get(g, g) for g in sorted(with_data)}
            if areas:
                level_name = deployment.level(first).name[lang].lower()
                frame = _series(values, TREND, areas, months).assign(area=lambda f: f["series"])
                charts.append(
                    {
                        "title": f"{trend_name} — {w['by_level'].format(level=level_name)}",
                        "svg": _trend_chart(frame, unit_text, facet="area"),
                    }
                )
        tables = []
        for level in levels[1:]:
            present = values.frame[
                (values.frame["geo_level"] == level) & (values.frame["period"] == period[:4])
            ]["geo_code"].unique()
            rows = []
            for g in sorted(present):
                cells = [values.figure(c, level, g, period, cat[c].unit) for c in LEVEL_TABLE]
                if all(f.css == "missing" for f in cells):
                    continue  # a unit nobody reports for this month: not a row of zeros
                figures.extend(cells)
                rows.append({"code": g, "name": names.get(g, g), "cells": cells})
            if not rows:
                continue
            tables.append(
                {
                    "title": w["by_level"].format(level=deployment.level(level).name[lang].lower()),
                    "columns": [
                        {
                            "code": c,
                            "name": cat[c].name_es if lang == "es" else cat[c].name_en,
                            "note": note_of[c],
                            "unit": w["units"].get(cat[c].unit, cat[c].unit),
                        }
                        for c in LEVEL_TABLE
                    ],
                    "rows": rows,
                }
            )
        context |= {
            "title": f"{w['title']} — {context['country']}",
            "headline": headline,
            "charts": charts,
            "tables": tables,
            "reporting": _reporting(conn, period, lang, obs_names),
            "revisions": _revisions(conn, lang, now, names),
            "reconciliation": _reconciliation(conn, period, lang, names),
            "compact": False,
            "notes": _with_status(
                [n for n in notes if n["code"] in HEADLINE + LEVEL_TABLE],
                _availability_notes(values, codes, national, period[:4], lang),
            ),
            "legend": w["legend"].format(n=min(i.suppress_below or 5 for i in cat.values()))
            + (w["reconciliation_legend"] if concepts() else ""),
        }
        folder = root / "reports" / period
        html_path, pdf_path = _write(
            folder / f"{w['file']}_{period}.html", _render("bulletin.html.j2", context)
        )
        _record(conn, "bulletin", period, lang, html_path, root, figures, now)
        built = Built(period, lang, html_path, pdf_path, revised=len(context["revisions"]["rows"]))
        built.packs = _packs(conn, root, period, lang, now, values, cat, names_frame, months, as_of)
    if open_data:
        from obsx.publication.opendata import write_open_data

        built.open_data = write_open_data(
            engine, root / "reports" / period / "datos_abiertos", period
        )
    return built


def _packs(conn, root, period, lang, now, values: _Values, cat, names_frame, months, as_of):
    """One page per contributor, in its own folder."""
    from obsx.intake.dropzone import Dropzone

    deployment = current_deployment()
    w = WORDS[lang]
    levels = deployment.level_codes
    top = levels[0]
    names = names_frame["name"].to_dict()
    national = names_frame[names_frame["geo_level"] == top].index[0]
    notes, _ = _definitions(PACK, lang)
    units = pd.read_sql(sa.select(observatory_unit), conn)
    contributors = pd.read_sql(sa.select(observatory.c.observatory_code, observatory.c.name), conn)
    zone = Dropzone(root, contributors["observatory_code"].tolist())
    paths = []
    since = now - dt.timedelta(days=365)
    for code, name in contributors.itertuples(index=False):
        own = sorted(units[units["observatory_code"] == code]["geo_code"])
        if not own:
            continue
        figures: list[Figure] = []

        def fig(ind, geo, p, figures=figures):
            level = names_frame.loc[geo, "geo_level"] if geo in names_frame.index else top
            f = values.figure(ind, level, geo, p, cat[ind].unit)
            figures.append(f)
            return f

        parent = _first_level_parent(names_frame, own[0], levels)

        def label(geo):  # a district and its province often share a name
            level = deployment.level(names_frame.loc[geo, "geo_level"]).name[lang]
            return f"{names.get(geo, geo)} ({level.lower()})"

        parents = {_first_level_parent(names_frame, g, levels) for g in own}
        if len(parents) > 1:  # a national institution: its figures are the nation's
            parent, areas = None, [(national, w["nation"])]
        else:
            areas = [(g, label(g)) for g in own]
            if parent and parent not in own:
                areas.append((parent, label(parent)))
            if national not in own:
                areas.append((national, w["nation"]))
        rows = [
            {
                "name": cat[ind].name_es if lang == "es" else cat[ind].name_en,
                "note": n + 1,
                "unit": w["units"].get(cat[ind].unit, cat[ind].unit),
                "cells": [(fig(ind, g, period), fig(ind, g, period[:4])) for g, _ in areas],
            }
            for n, ind in enumerate(PACK)
        ]
        chart = {
            "title": w["trend_pack"].format(parent=names.get(parent, parent))
            if parent
            else w["trend_national"],
            "svg": _trend_chart(
                _series(values, TREND, dict(areas), months),
                w["units"].get(cat[TREND].unit, cat[TREND].unit),
                height=85,
            ),
        }
        rs = reporting_status.c
        record = pd.read_sql(
            sa.select(reporting_status)
            .where(rs.observatory_code == code, rs.period <= period)
            .order_by(rs.period.desc(), rs.dataset)
            .limit(6),
            conn,
        )
        context = _common(deployment, lang, period, now, as_of) | {
            "title": f"{w['pack_title']} — {name}",
            "observatory": name,
            "code": code,
            "compare_title": w["compare"].format(parent=names.get(parent, parent))
            if parent
            else w["compare_national"],
            "areas": [a for _, a in areas],
            "rows": rows,
            "chart": chart,
            "record": [_delivery(r, w, lang) for r in record.to_dict("records")],
            "rejections": _rejections(conn, code, since, lang),
            "compact": True,  # one page: the definitions without their standards
            "notes": notes,  # one page: the legend says what n.d. and § mean
            "legend": w["legend"].format(n=min(i.suppress_below or 5 for i in cat.values()))
            + (w["reconciliation_legend"] if concepts() else ""),
        }
        html_path, pdf_path = _write(
            zone.reports_dir(code) / f"{w['pack_file']}_{code}_{period}.html",
            _render("pack.html.j2", context),
        )
        _record(conn, "pack", period, lang, html_path, root, figures, now, observatory_code=code)
        paths += [html_path, pdf_path]
    return paths


def _first_level_parent(names_frame: pd.DataFrame, geo: str, levels) -> str | None:
    """The first-level area (province, departamento) a unit lies in."""
    if len(levels) < 2:
        return None
    seen = 0
    while geo in names_frame.index and seen < len(levels):
        if names_frame.loc[geo, "geo_level"] == levels[1]:
            return geo
        geo = names_frame.loc[geo, "parent_code"]
        seen += 1
    return None


def _rejections(conn, code: str, since: dt.datetime, lang: str) -> dict:
    w = WORDS[lang]
    s = submission.c
    files = pd.read_sql(
        sa.select(s.submission_id, s.rows_read, s.rows_rejected).where(
            s.observatory_code == code, s.received_at >= since
        ),
        conn,
    )
    read, rejected = int(files["rows_read"].sum()), int(files["rows_rejected"].sum())
    q = quarantine.c
    message = q.message_es if lang == "es" else q.message_en
    reasons = conn.execute(
        sa.select(q.rule, sa.func.count().label("n"), sa.func.min(message))
        .where(q.submission_id.in_(files["submission_id"].tolist()))
        .group_by(q.rule)
        .order_by(sa.func.count().desc(), q.rule)
        .limit(3)
    ).all()
    share = f"{100 * rejected / read:.1f} %" if read else "—"
    return {
        "summary": w["rejected_summary"].format(
            files=len(files), read=f"{read:,}", rejected=f"{rejected:,}", share=share
        ),
        "reasons": [{"rule": label(r, lang), "rows": n, "example": m} for r, n, m in reasons],
        "share": share,
    }
