"""What observatories read about the contract: an Excel template and the contract's documentation.

Both are derived from ``schemas/*.yaml``; neither is written by hand.
"""

import html
import io
from pathlib import Path

import openpyxl
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from obsx.intake.contract import POPULATION_SHARE, Contract
from obsx.intake.feedback import defuse_text

WORDS = {
    "es": {
        "data": "Datos",
        "lists": "Listas",
        "required": "obligatorio",
        "optional": "opcional",
        "field": "Campo",
        "title": "Título",
        "type": "Tipo",
        "rules": "Reglas",
        "headers": "Encabezados aceptados",
        "code": "Código",
        "label": "Etiqueta",
        "accepted_values": "Valores aceptados",
        "key": "Clave natural",
        "generated": "Generado a partir de schemas/{dataset}.yaml (versión {version}); no lo edite a mano.",
        "types": {
            "string": "texto",
            "integer": "número entero",
            "number": "número",
            "date": "fecha",
            "time": "hora",
        },
        "help_row": "Fila de ayuda: no la borre. Escriba los datos desde la fila 3.",
    },
    "en": {
        "data": "Data",
        "lists": "Lists",
        "required": "required",
        "optional": "optional",
        "field": "Field",
        "title": "Title",
        "type": "Type",
        "rules": "Rules",
        "headers": "Accepted headers",
        "code": "Code",
        "label": "Label",
        "accepted_values": "Accepted values",
        "key": "Natural key",
        "generated": "Generated from schemas/{dataset}.yaml (version {version}); do not edit by hand.",
        "types": {
            "string": "text",
            "integer": "whole number",
            "number": "number",
            "date": "date",
            "time": "time",
        },
        "help_row": "Help row: keep it. Enter data from row 3 on.",
    },
}
TEMPLATE_ROWS = 2000  # rows the drop-down lists and formats cover


def _rules(f, lang: str) -> str:
    c = f.constraints
    words = []
    if "min" in c:
        words.append(f"≥ {c['min']}")
    if "max" in c:
        words.append(f"≤ {c['max']}")
    if "max_length" in c:
        words.append(f"≤ {c['max_length']} " + ("caracteres" if lang == "es" else "characters"))
    if c.get("not_in_future"):
        words.append("no futura" if lang == "es" else "not in the future")
    if "pattern" in c:
        words.append(f"`{c['pattern']}`")
    if f.band is not None:
        low, high = f.band
        words.append(
            f"18-24 o 60+ (de {low} a {high})"
            if lang == "es"
            else f"18-24 or 60+ ({low} to {high})"
        )
    if POPULATION_SHARE in c:
        share = f"{c[POPULATION_SHARE]:.0%}"
        words.append(
            f"aviso si pasa del {share.replace('%', ' %')} de la población de la unidad en un mes"
            if lang == "es"
            else f"a warning above {share} of the unit's population in a month"
        )
    if f.default is not None:
        words.append(("vacío = " if lang == "es" else "empty = ") + str(f.default))
    return ", ".join(words)


def excel_template(contract: Contract, lang: str = "es") -> bytes:
    """A workbook to fill in: a help row, the contract's headers, drop-down lists of codes.

    Every text cell is formula-safe (defuse_text): the contract is ours, but a label written
    ``=…`` must still arrive as text, never run."""
    w = WORDS[lang]
    book = openpyxl.Workbook()
    data = book.active
    data.title = w["data"]
    lists = book.create_sheet(w["lists"])
    lists.sheet_state = "hidden"
    help_style = Font(italic=True, color="555555", size=9)
    for column, f in enumerate(contract.fields, start=1):
        letter = get_column_letter(column)
        need = w["required"] if f.required else w["optional"]
        help_cell = data.cell(
            row=1, column=column, value=defuse_text(f"{f.description[lang]} ({need})")
        )
        help_cell.font, help_cell.alignment = help_style, Alignment(wrap_text=True, vertical="top")
        header = data.cell(row=2, column=column, value=defuse_text(f.title[lang]))
        header.font = Font(bold=True)
        if f.required:
            header.fill = PatternFill("solid", fgColor="FFF1C2")
        header.comment = Comment(f"{f.name}: {w['types'][f.type]}. {_rules(f, lang)}", "obsx")
        data.column_dimensions[letter].width = max(14, len(f.title[lang]) + 4)
        cells = f"{letter}3:{letter}{TEMPLATE_ROWS + 2}"
        if f.type == "number":
            for row in range(3, TEMPLATE_ROWS + 3):
                data.cell(row=row, column=column).number_format = "0.00"
        elif f.type in ("string", "time"):
            for row in range(3, TEMPLATE_ROWS + 3):  # text: codes keep their leading zeros
                data.cell(row=row, column=column).number_format = "@"
        elif f.type == "date":
            for row in range(3, TEMPLATE_ROWS + 3):
                data.cell(row=row, column=column).number_format = "yyyy-mm-dd"
        if f.codelist is not None:
            labels = [label[lang] for label in f.codelist.labels.values()]
            for row, label in enumerate(labels, start=1):
                lists.cell(row=row, column=column, value=defuse_text(label))
            source = f"'{w['lists']}'!${letter}$1:${letter}${len(labels)}"
            choice = DataValidation(type="list", formula1=source, allow_blank=not f.required)
            choice.error = f"{f.title[lang]}: {w['accepted_values']}"
            data.add_data_validation(choice)
            choice.add(cells)
    data.row_dimensions[1].height = 60
    data.freeze_panes = "A3"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def contract_markdown(contract: Contract, lang: str = "es") -> str:
    """The contract as a page an observatory can read."""
    w = WORDS[lang]
    key = ", ".join(contract.primary_key)
    lines = [
        f"# {contract.title[lang]} (`{contract.dataset}`)",
        "",
        contract.description[lang],
        "",
        f"{w['key']}: `{key}`.",
        "",
        f"| {w['field']} | {w['title']} | {w['type']} | | {w['rules']} | {w['headers']} |",
        "|---|---|---|---|---|---|",
    ]
    for f in contract.fields:
        need = w["required"] if f.required else w["optional"]
        headers = ", ".join(dict.fromkeys([f.title["es"], f.title["en"], *f.aliases]))
        kind = w["types"][f.type]
        if f.codelist is not None:
            kind += f" ([{f.codelist.title[lang]}](#{f.codelist.name}))"
        rules = _rules(f, lang).replace("|", "\\|")
        lines.append(f"| `{f.name}` | {f.title[lang]} | {kind} | {need} | {rules} | {headers} |")
    for name, codes in contract.codelists.items():
        lines += [
            "",
            f'<a id="{name}"></a>',
            f"## {codes.title[lang]}",
            "",
            f"| {w['code']} | {w['label']} |",
            "|---|---|",
        ]
        lines += [f"| `{code}` | {label[lang]} |" for code, label in codes.labels.items()]
    lines += [
        "",
        "_" + w["generated"].format(dataset=contract.dataset, version=contract.version) + "_",
        "",
    ]
    return "\n".join(lines)


def contract_html(contract: Contract, lang: str = "es") -> str:
    """The same page as standalone HTML (tables rendered, no Markdown tool needed)."""
    out = [
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">',
        f"<title>{html.escape(contract.title[lang])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;"
        "padding:0 1rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:.3rem .5rem;text-align:left;vertical-align:top}</style></head><body>",
    ]
    in_table = False
    for line in contract_markdown(contract, lang).splitlines():
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]
            if set(line) <= {"|", "-"}:
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("# "):
            out.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("<a id="):
            out.append(line)
        elif line:
            out.append(f"<p>{_inline(line)}</p>")
    if in_table:
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then render `code`, _emphasis_ and [links](#x) of our own Markdown."""
    import re

    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\[([^\]]+)\]\((#[\w-]+)\)", r'<a href="\2">\1</a>', text)
    return re.sub(r"^_(.*)_$", r"<em>\1</em>", text)


def write_contract_docs(contracts: list[Contract], out: Path, lang: str = "es") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for contract in contracts:
        suffix = "" if lang == "es" else f".{lang}"
        md, page = out / f"{contract.dataset}{suffix}.md", out / f"{contract.dataset}{suffix}.html"
        md.write_text(contract_markdown(contract, lang), encoding="utf-8")
        page.write_text(contract_html(contract, lang), encoding="utf-8")
        written += [md, page]
    return written
