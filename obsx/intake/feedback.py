"""Feedback to the observatory: a JSON document for machines and an HTML page in Spanish."""

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from obsx.intake.contract import FORMULA_START
from obsx.intake.limits import Limits, current_limits
from obsx.intake.problems import ERROR, Problem
from obsx.warehouse import deployment

# What the page says, in the observatory's language (its profile's `language`, Spanish first).
TEXT = {
    "es": {
        "title": "Resultado del envío",
        "observatory": "Observatorio",
        "file": "Archivo",
        "received": "Recibido",
        "id": "Identificador del envío",
        "accepted": "Aceptado",
        "partly_accepted": "Aceptado parcialmente",
        "rejected": "Rechazado",
        "dry_run": "Prueba (nada se guardó): así se recibiría este archivo.",
        "duplicate": "Este archivo es idéntico a uno ya recibido: no se cambió nada en el almacén nacional.",
        "summary": "Resumen",
        "rows_read": "Filas leídas",
        "rows_accepted": "Filas aceptadas",
        "rows_inserted": "nuevas",
        "rows_updated": "actualizadas",
        "rows_unchanged": "sin cambios",
        "rows_held": "pendientes de aprobación (período cerrado)",
        "rows_ignored": "bajas de incidentes inexistentes (ignoradas)",
        "rows_rejected": "Filas rechazadas",
        "warnings": "Advertencias",
        "problems": "Problemas encontrados",
        "explain": "La fila es la que muestra su hoja de cálculo (la fila de encabezados cuenta).",
        "fix": "Corrija las filas rechazadas y vuelva a enviarlas: las filas ya aceptadas se "
        "actualizan, no se duplican.",
        "resend": "Las filas rechazadas, con el motivo, están en",
        "row": "Fila",
        "column": "Columna",
        "value": "Valor",
        "kind": "Tipo",
        "message": "Explicación",
        "whole_file": "todo el archivo",
        "error": "Error",
        "warning": "Advertencia",
        "truncated": "Se muestran los primeros {shown} problemas de {total}; la lista completa "
        "está en el archivo JSON.",
        "none": "No se encontraron problemas.",
        "by_kind": "Problemas por tipo",
        "times": "Veces",
        "first_rows": "Primeras filas",
        "example": "Ejemplo",
        "rejected_suffix": "rechazadas",
        "not_listed": "Además, {count} problemas más del mismo tipo que no se listan uno por uno "
        "(se muestran los primeros {shown} de cada tipo).",
        "csv_cut": "El archivo de filas rechazadas trae las primeras {shown} de {total}; corrija "
        "esas, reenvíe, y recibirá las siguientes.",
    },
    "en": {
        "title": "Submission result",
        "observatory": "Observatory",
        "file": "File",
        "received": "Received",
        "id": "Submission id",
        "accepted": "Accepted",
        "partly_accepted": "Partly accepted",
        "rejected": "Rejected",
        "dry_run": "Dry run (nothing was stored): this is how the file would be received.",
        "duplicate": "This file is identical to one already received: nothing changed in the "
        "national warehouse.",
        "summary": "Summary",
        "rows_read": "Rows read",
        "rows_accepted": "Rows accepted",
        "rows_inserted": "new",
        "rows_updated": "updated",
        "rows_unchanged": "unchanged",
        "rows_held": "pending approval (closed period)",
        "rows_ignored": "deletions of unknown incidents (ignored)",
        "rows_rejected": "Rows rejected",
        "warnings": "Warnings",
        "problems": "Problems found",
        "explain": "The row is the one your spreadsheet shows (the header row counts).",
        "fix": "Fix the rejected rows and send them again: rows already accepted are updated, not "
        "duplicated.",
        "resend": "The rejected rows, with the reason, are in",
        "row": "Row",
        "column": "Column",
        "value": "Value",
        "kind": "Kind",
        "message": "Explanation",
        "whole_file": "whole file",
        "error": "Error",
        "warning": "Warning",
        "truncated": "The first {shown} problems of {total} are shown; the JSON file has them all.",
        "none": "No problems found.",
        "by_kind": "Problems by kind",
        "times": "Times",
        "first_rows": "First rows",
        "example": "Example",
        "rejected_suffix": "rejected",
        "not_listed": "Also {count} more problems of the same kinds that are not listed one by one "
        "(the first {shown} of each kind are shown).",
        "csv_cut": "The rejected-rows file holds the first {shown} of {total}; fix those, send "
        "them again, and you will get the next ones.",
    },
}


@dataclass
class Report:
    """What happened to one submission, as the observatory will read it."""

    submission_id: str
    observatory_code: str
    observatory_name: str
    dataset: str
    file_name: str
    received_at: str
    status: str
    counts: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    file_info: dict[str, str | None] = field(default_factory=dict)
    duplicate_of_earlier_upload: bool = False
    lang: str = "es"
    dry_run: bool = False
    rejected_rows: pd.DataFrame | None = None  # for resending: see ValidationResult
    max_problems_per_code: int | None = None  # None: every problem listed

    def listed(self) -> tuple[list[Problem], dict[str, int]]:
        """The problems listed one by one (the first ``max_problems_per_code`` of each code),
        and how many of each code are left unlisted."""
        return bound_problems(self.problems, self.max_problems_per_code)

    def as_document(self) -> dict:
        listed, unlisted = self.listed()
        counts: dict[str, int] = {}
        for p in self.problems:
            counts[p.code] = counts.get(p.code, 0) + 1
        return {
            "submission_id": self.submission_id,
            "observatory_code": self.observatory_code,
            "dataset": self.dataset,
            "file_name": self.file_name,
            "received_at": self.received_at,
            "status": self.status,
            "duplicate_of_earlier_upload": self.duplicate_of_earlier_upload,
            "dry_run": self.dry_run,
            "summary": self.counts,
            "file": self.file_info,
            "problem_counts": counts,
            "problems_not_listed": unlisted,
            "problems": [p.as_record() for p in listed],
        }


def bound_problems(
    problems: list[Problem], per_code: int | None
) -> tuple[list[Problem], dict[str, int]]:
    """The first ``per_code`` problems of each code, in order, and the count of the rest."""
    if per_code is None:
        return list(problems), {}
    seen: dict[str, int] = {}
    listed = []
    for p in problems:
        seen[p.code] = seen.get(p.code, 0) + 1
        if seen[p.code] <= per_code:
            listed.append(p)
    return listed, {code: n - per_code for code, n in seen.items() if n > per_code}


PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<title>{{ t.title }}: {{ r.file_name }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
.status{display:inline-block;padding:.3rem .8rem;border-radius:.3rem;font-weight:bold}
.accepted{background:#d6f5d6}.partly_accepted{background:#fff1c2}.rejected{background:#f8d0d0}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f2f2}.error td:first-child{border-left:4px solid #c0392b}
.warning td:first-child{border-left:4px solid #e0a800}
</style></head><body>
<h1>{{ t.title }}</h1>
<p><strong>{{ t.observatory }}:</strong> {{ r.observatory_name }}<br>
<strong>{{ t.file }}:</strong> {{ r.file_name }}<br>
<strong>{{ t.received }}:</strong> {{ received }}<br>
<strong>{{ t.id }}:</strong> <code>{{ r.submission_id[:16] }}</code></p>
<p class="status {{ r.status }}">{{ t[r.status] }}</p>
{% if r.dry_run %}<p>{{ t.dry_run }}</p>{% endif %}
{% if r.duplicate_of_earlier_upload %}<p>{{ t.duplicate }}</p>{% endif %}
<h2>{{ t.summary }}</h2>
<table>
<tr><th>{{ t.rows_read }}</th><td>{{ r.counts.rows_read }}</td></tr>
<tr><th>{{ t.rows_accepted }}</th><td>{{ r.counts.rows_accepted }}</td></tr>
{% for key in ["rows_inserted", "rows_updated", "rows_unchanged", "rows_held", "rows_ignored"] %}
{% if key in r.counts %}<tr><th>&nbsp;&nbsp;{{ t[key] }}</th><td>{{ r.counts[key] }}</td></tr>{% endif %}
{% endfor %}
<tr><th>{{ t.rows_rejected }}</th><td>{{ r.counts.rows_rejected }}</td></tr>
<tr><th>{{ t.warnings }}</th><td>{{ r.counts.warnings }}</td></tr>
</table>
{% if problems %}
<h2>{{ t.problems }}</h2>
<p>{{ t.explain }}{% if r.counts.rows_rejected %} {{ t.fix }}{% endif %}</p>
{% if rejected_file %}<p>{{ t.resend }} <code>{{ rejected_file }}</code>.</p>{% endif %}
{% if kinds %}
<h3>{{ t.by_kind }}</h3>
<table>
<tr><th>{{ t.kind }}</th><th>{{ t.column }}</th><th>{{ t.times }}</th><th>{{ t.first_rows }}</th><th>{{ t.example }}</th></tr>
{% for k in kinds %}
<tr class="{{ k.severity }}"><td>{{ t[k.severity] }}</td><td>{{ k.column or "" }}</td>
<td>{{ k.count }}</td><td>{{ k.rows }}</td><td>{{ k.example }}</td></tr>
{% endfor %}
</table>
{% endif %}
<table>
<tr><th>{{ t.row }}</th><th>{{ t.column }}</th><th>{{ t.value }}</th><th>{{ t.kind }}</th><th>{{ t.message }}</th></tr>
{% for p in problems %}
<tr class="{{ p.severity }}"><td>{{ p.row if p.row is not none else t.whole_file }}</td>
<td>{{ p.column or "" }}</td><td>{{ p.value if p.value is not none else "" }}</td>
<td>{{ t[p.severity] }}</td><td>{{ p.message(lang) }}</td></tr>
{% endfor %}
</table>
{% if truncated %}<p>{{ t.truncated.format(shown=problems|length, total=total) }}</p>{% endif %}
{% if not_listed %}<p>{{ t.not_listed.format(count=not_listed, shown=per_code) }}</p>{% endif %}
{% if csv_cut %}<p>{{ t.csv_cut.format(shown=csv_cut[0], total=csv_cut[1]) }}</p>{% endif %}
{% else %}
<p>{{ t.none }}</p>
{% endif %}
</body></html>
"""
)

HTML_PROBLEM_LIMIT = 500
SUMMARY_FROM = 20  # more problems than this: a table by kind first, so a national file reads well


def _kinds(problems: list[Problem], lang: str) -> list[dict]:
    """Problems grouped by kind: how many, in which columns, the first rows, one example."""
    groups: dict[tuple, dict] = {}
    for p in problems:
        group = groups.setdefault(
            (p.severity != ERROR, p.code),
            {"severity": p.severity, "count": 0, "columns": {}, "rows": {}, "first": p},
        )
        group["count"] += 1
        if p.column and len(group["columns"]) < 6:
            group["columns"][p.column] = None
        if p.row is not None and len(group["rows"]) < 5:
            group["rows"][p.row] = None
    return [
        {
            "severity": g["severity"],
            "count": g["count"],
            "column": ", ".join(list(g["columns"])[:5]) + (" …" if len(g["columns"]) > 5 else ""),
            "rows": ", ".join(map(str, g["rows"])),
            "example": g["first"].message(lang),
        }
        for _, g in sorted(groups.items(), key=lambda item: (item[0][0], -item[1]["count"]))
    ]


def render_html(
    report: Report, rejected_file: str | None = None, csv_cut: tuple[int, int] | None = None
) -> str:
    """The page; the table by kind counts every problem, the list shows the bounded ones."""
    listed, unlisted = report.listed()
    ordered = sorted(listed, key=lambda p: (p.severity != ERROR, p.row or 0))
    shown = ordered[:HTML_PROBLEM_LIMIT]
    everything = len(report.problems)
    return PAGE.render(
        kinds=_kinds(report.problems, report.lang) if everything > SUMMARY_FROM else [],
        r=report,
        received=deployment.local_time(report.received_at, report.lang),
        t=TEXT[report.lang],
        lang=report.lang,
        problems=shown,
        truncated=len(shown) < len(ordered),
        total=len(ordered),
        not_listed=sum(unlisted.values()),
        per_code=report.max_problems_per_code,
        rejected_file=rejected_file,
        csv_cut=csv_cut,
    )


NUMBER = r"^[+-]?\d+([.,]\d+)?$"


def defuse_text(value):
    """One cell as defuse_formulas writes it (for cells written one by one, e.g. openpyxl,
    which would store ``=…`` as a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not re.match(NUMBER, value):
        return "'" + value
    return value


def defuse_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells a spreadsheet would run as a formula (``=HYPERLINK(…)``, ``+cmd|…``, ``@SUM(…)``)
    get a leading apostrophe, so that the file observatories are told to open and fix shows them
    as text; plain numbers such as ``-2`` stay as they are."""
    out = frame.copy()
    for column in out.columns:
        text = out[column].astype("str")
        risky = text.str.startswith(FORMULA_START).fillna(False) & ~text.str.match(NUMBER).fillna(
            False
        )
        if risky.any():
            out[column] = text.where(~risky, "'" + text)
    return out


def defuse_text_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """defuse_formulas on the text columns only: numbers and dates keep their types (for a CSV
    of figures, where ``-1.5e-05`` is a number, not a formula)."""
    text = [
        c
        for c in frame.columns
        if not (
            pd.api.types.is_numeric_dtype(frame[c])
            or pd.api.types.is_datetime64_any_dtype(frame[c])
        )
    ]
    out = frame.copy()
    if text:
        out[text] = defuse_formulas(frame[text].fillna(""))
        out[text] = out[text].where(frame[text].notna(), None)
    return out


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def bounded_csv(frame: pd.DataFrame, max_bytes: int, max_cell_chars: int = 1000) -> tuple[str, int]:
    """The rows of ``frame`` as formula-safe CSV text, as many as fit in ``max_bytes`` (cells
    longer than ``max_cell_chars`` shortened); returns the text and how many rows it holds."""
    safe = defuse_formulas(frame)
    for column in safe.columns:
        text = safe[column].astype("str")
        long = text.str.len() > max_cell_chars
        if long.any():
            safe[column] = text.where(~long, text.str.slice(0, max_cell_chars) + "…")
    header = safe.iloc[0:0].to_csv(index=False)
    parts, size, rows, step = [header], len(header.encode()), 0, 1000
    while rows < len(safe):
        chunk = safe.iloc[rows : rows + step].to_csv(index=False, header=False)
        if size + len(chunk.encode()) > max_bytes:
            if step == 1:
                break
            step = max(1, step // 10)
            continue
        parts.append(chunk)
        size += len(chunk.encode())
        rows += min(step, len(safe) - rows)
    return "".join(parts), rows


def write_feedback(
    folder: Path, stem: str, report: Report, limits: Limits | None = None
) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.html`` and, when rows were rejected, a CSV of them (with a
    reason column) to fix and send again; a rerun overwrites them with the same content.

    Bounded whatever the file: at most ``max_problems_per_code`` problems of each code are
    listed (the rest counted), the CSV holds the rows that fit in ``max_rejected_csv_bytes``."""
    limits = limits or current_limits()
    if report.max_problems_per_code is None:
        report.max_problems_per_code = limits.max_problems_per_code
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.json", folder / f"{stem}.html"]
    rejected_name, csv_cut = None, None
    if report.rejected_rows is not None and not report.rejected_rows.empty:
        rejected_name = f"{stem}.{TEXT[report.lang]['rejected_suffix']}.csv"
        csv_text, rows = bounded_csv(report.rejected_rows, limits.max_rejected_csv_bytes)
        if rows < len(report.rejected_rows):
            csv_cut = (rows, len(report.rejected_rows))
        # UTF-8 with BOM so that Excel opens accents correctly.
        _write_atomically(folder / rejected_name, "\ufeff" + csv_text)
        paths.append(folder / rejected_name)
    _write_atomically(paths[0], json.dumps(report.as_document(), ensure_ascii=False, indent=2))
    _write_atomically(paths[1], render_html(report, rejected_name, csv_cut))
    return paths
