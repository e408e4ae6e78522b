"""Feedback to the observatory: a JSON document for machines and an HTML page in Spanish."""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from obsx.problems import ERROR, Problem

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
        "explain": "La fila es la que muestra su hoja de cálculo (la fila de encabezados cuenta). "
        "Corrija las filas rechazadas y vuelva a enviarlas: las filas ya aceptadas se actualizan, "
        "no se duplican.",
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
        "explain": "The row is the one your spreadsheet shows (the header row counts). Fix the "
        "rejected rows and send them again: rows already accepted are updated, not duplicated.",
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

    def as_document(self) -> dict:
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
            "problems": [p.as_record() for p in self.problems],
        }


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
<strong>{{ t.received }}:</strong> {{ r.received_at }}<br>
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
<p>{{ t.explain }}</p>
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


def render_html(report: Report, rejected_file: str | None = None) -> str:
    ordered = sorted(report.problems, key=lambda p: (p.severity != ERROR, p.row or 0))
    shown = ordered[:HTML_PROBLEM_LIMIT]
    return PAGE.render(
        kinds=_kinds(ordered, report.lang) if len(ordered) > SUMMARY_FROM else [],
        r=report,
        t=TEXT[report.lang],
        lang=report.lang,
        problems=shown,
        truncated=len(shown) < len(ordered),
        total=len(ordered),
        rejected_file=rejected_file,
    )


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = r"^[+-]?\d+([.,]\d+)?$"


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


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_feedback(folder: Path, stem: str, report: Report) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.html`` and, when rows were rejected, a CSV of them (with a
    reason column) to fix and send again; a rerun overwrites them with the same content."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.json", folder / f"{stem}.html"]
    rejected_name = None
    if report.rejected_rows is not None and not report.rejected_rows.empty:
        rejected_name = f"{stem}.{TEXT[report.lang]['rejected_suffix']}.csv"
        # UTF-8 with BOM so that Excel opens accents correctly.
        csv_text = defuse_formulas(report.rejected_rows).to_csv(index=False)
        _write_atomically(folder / rejected_name, "\ufeff" + csv_text)
        paths.append(folder / rejected_name)
    _write_atomically(paths[0], json.dumps(report.as_document(), ensure_ascii=False, indent=2))
    _write_atomically(paths[1], render_html(report, rejected_name))
    return paths
