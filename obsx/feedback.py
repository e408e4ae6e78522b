"""Feedback to the observatory: a JSON document for machines and an HTML page in Spanish."""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from obsx.problems import ERROR, Problem

STATUS_ES = {
    "accepted": "Aceptado",
    "partly_accepted": "Aceptado parcialmente",
    "rejected": "Rechazado",
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

    def as_document(self) -> dict:
        return {
            "submission_id": self.submission_id,
            "observatory_code": self.observatory_code,
            "dataset": self.dataset,
            "file_name": self.file_name,
            "received_at": self.received_at,
            "status": self.status,
            "duplicate_of_earlier_upload": self.duplicate_of_earlier_upload,
            "summary": self.counts,
            "file": self.file_info,
            "problems": [p.as_record() for p in self.problems],
        }


PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="es"><head><meta charset="utf-8">
<title>Resultado del envío: {{ r.file_name }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
.status{display:inline-block;padding:.3rem .8rem;border-radius:.3rem;font-weight:bold}
.accepted{background:#d6f5d6}.partly_accepted{background:#fff1c2}.rejected{background:#f8d0d0}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f2f2}.error td:first-child{border-left:4px solid #c0392b}
.warning td:first-child{border-left:4px solid #e0a800}
</style></head><body>
<h1>Resultado del envío</h1>
<p><strong>Observatorio:</strong> {{ r.observatory_name }}<br>
<strong>Archivo:</strong> {{ r.file_name }}<br>
<strong>Recibido:</strong> {{ r.received_at }}<br>
<strong>Identificador del envío:</strong> <code>{{ r.submission_id[:16] }}</code></p>
<p class="status {{ r.status }}">{{ status_es }}</p>
{% if r.duplicate_of_earlier_upload %}
<p>Este archivo es idéntico a uno ya recibido: no se cambió nada en el almacén nacional.</p>
{% endif %}
<h2>Resumen</h2>
<table>
<tr><th>Filas leídas</th><td>{{ r.counts.rows_read }}</td></tr>
<tr><th>Filas aceptadas</th><td>{{ r.counts.rows_accepted }}</td></tr>
<tr><th>&nbsp;&nbsp;nuevas</th><td>{{ r.counts.rows_inserted }}</td></tr>
<tr><th>&nbsp;&nbsp;actualizadas</th><td>{{ r.counts.rows_updated }}</td></tr>
<tr><th>&nbsp;&nbsp;sin cambios</th><td>{{ r.counts.rows_unchanged }}</td></tr>
<tr><th>&nbsp;&nbsp;pendientes de aprobación (período cerrado)</th><td>{{ r.counts.rows_held }}</td></tr>
<tr><th>&nbsp;&nbsp;bajas de incidentes inexistentes (ignoradas)</th><td>{{ r.counts.rows_ignored }}</td></tr>
<tr><th>Filas rechazadas</th><td>{{ r.counts.rows_rejected }}</td></tr>
<tr><th>Advertencias</th><td>{{ r.counts.warnings }}</td></tr>
</table>
{% if problems %}
<h2>Problemas encontrados</h2>
<p>La fila es la que muestra su hoja de cálculo (la fila de encabezados cuenta). Corrija las filas
rechazadas y vuelva a enviarlas: las filas ya aceptadas se actualizan, no se duplican.</p>
<table>
<tr><th>Fila</th><th>Columna</th><th>Valor</th><th>Tipo</th><th>Explicación</th></tr>
{% for p in problems %}
<tr class="{{ p.severity }}"><td>{{ p.row if p.row is not none else "todo el archivo" }}</td>
<td>{{ p.column or "" }}</td><td>{{ p.value if p.value is not none else "" }}</td>
<td>{{ "Error" if p.severity == "error" else "Advertencia" }}</td><td>{{ p.message("es") }}</td></tr>
{% endfor %}
</table>
{% if truncated %}<p>Se muestran los primeros {{ problems|length }} problemas de {{ total }};
la lista completa está en el archivo JSON.</p>{% endif %}
{% else %}
<p>No se encontraron problemas.</p>
{% endif %}
</body></html>
"""
)

HTML_PROBLEM_LIMIT = 1000


def render_html(report: Report) -> str:
    ordered = sorted(report.problems, key=lambda p: (p.severity != ERROR, p.row or 0))
    shown = ordered[:HTML_PROBLEM_LIMIT]
    return PAGE.render(
        r=report,
        status_es=STATUS_ES[report.status],
        problems=shown,
        truncated=len(shown) < len(ordered),
        total=len(ordered),
    )


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_feedback(folder: Path, stem: str, report: Report) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.html``; a rerun overwrites them with the same content."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / f"{stem}.json", folder / f"{stem}.html"
    _write_atomically(json_path, json.dumps(report.as_document(), ensure_ascii=False, indent=2))
    _write_atomically(html_path, render_html(report))
    return json_path, html_path
