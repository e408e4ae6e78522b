"""Realistic synthetic incident files for the demo: a year of uploads from five observatories.

Each observatory exports in its own layout (CSV or Excel, UTF-8 or cp1252, comma or semicolon,
its own Spanish headers, labels and crime names, title rows, totals, a cover sheet, aggregated
counts), read through its profile in deployments/pa/profiles/; with a few bad rows, as real exports have; one
file is unreadable. Magnitudes follow ../shared/DOMAIN.md (Colón high, San Miguelito above the mean).
All people and events are invented.
"""

import csv
import datetime as dt
import io
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pandas as pd

from obsx.intake.dropzone import Dropzone
from obsx.warehouse.reference import observatories

# Victims per 100,000 inhabitants per year, by ICCS code (homicide varies per observatory).
OTHER_CRIME_RATES = {
    "0102": 6,
    "02011": 70,
    "020221": 0.5,
    "03011": 12,
    "03012": 10,
    "0401": 60,
    "0502": 90,
    "050211": 12,
    "0601": 25,
}


@dataclass(frozen=True)
class ExportStyle:
    """How one observatory's own tool writes its files (see its profile under profiles/)."""

    prefix: str
    district: str
    population: int
    homicide_rate: float
    file_format: str  # csv or xlsx
    headers: tuple[str, ...]  # id, date, time, district, crime, sex, age, weapon
    sex_labels: dict[str, str]
    weapon_labels: dict[str, str]
    encoding: str = "utf-8"
    delimiter: str = ","
    date_format: str = "%Y-%m-%d"
    crime_labels: dict[str, str] | None = None  # ICCS code -> the observatory's crime name
    strip_leading_zeros: bool = False  # codes stored as numbers
    sheet: str = "Incidentes"
    cover_sheet: bool = False  # a first sheet that is a cover page, not data
    title_rows: tuple[str, ...] = ()  # lines above the headers
    total_row: bool = False  # a TOTAL row and a source note below the data
    extra_columns: tuple[str, ...] = ()  # columns the contract does not collect
    aggregated: bool = False  # one row per day, crime, sex and weapon with a victim count


WEAPONS_ES = {
    "FIREARM": "Arma de fuego",
    "SHARP": "Arma blanca",
    "BLUNT": "Contundente",
    "OTHER": "Otro",
    "NONE": "Ninguno",
    "UNKNOWN": "Desconocido",
}
COLON_CRIMES = {
    "0101": "Homicidio",
    "0102": "Tentativa de homicidio",
    "02011": "Lesiones",
    "020221": "Secuestro",
    "03011": "Violación",
    "03012": "Abuso sexual",
    "0401": "Robo",
    "0502": "Hurto",
    "050211": "Hurto de vehículo",
    "0601": "Drogas",
}

STYLES = {
    # No profile: the contract's own headers and labels, the plainest CSV.
    "pa_panama": ExportStyle(
        prefix="PAN",
        district="0804",
        population=1_110_000,
        homicide_rate=15.0,
        file_format="csv",
        headers=(
            "Código incidente",
            "Fecha",
            "Hora",
            "Distrito",
            "Delito (ICCS)",
            "Sexo víctima",
            "Edad",
            "Arma",
        ),
        sex_labels={"F": "F", "M": "M", "NE": "NE"},
        weapon_labels={**WEAPONS_ES, "BLUNT": "Objeto contundente", "NONE": "Sin arma"},
    ),
    "pa_san_miguelito": ExportStyle(
        prefix="SMG",
        district="0805",
        population=300_000,
        homicide_rate=21.0,
        file_format="csv",
        encoding="cp1252",
        delimiter=";",
        date_format="%d-%m-%Y",
        headers=(
            "id_incidente",
            "fecha_hecho",
            "hora_hecho",
            "cod_distrito",
            "codigo_delito",
            "sexo",
            "edad",
            "medio",
        ),
        sex_labels={"F": "Femenino", "M": "Masculino", "NE": "Sin dato"},
        weapon_labels={**WEAPONS_ES, "OTHER": "Otros", "UNKNOWN": "Sin dato"},
    ),
    "pa_colon": ExportStyle(
        prefix="COL",
        district="0301",
        population=250_000,
        homicide_rate=38.0,
        file_format="xlsx",
        headers=(
            "No. caso",
            "Fecha del hecho",
            "Hora del hecho",
            "Distrito",
            "Tipo de delito",
            "Sexo de la víctima",
            "Edad",
            "Arma empleada",
        ),
        sex_labels={"F": "Mujer", "M": "Hombre", "NE": "No especificado"},
        weapon_labels={**WEAPONS_ES, "FIREARM": "AF", "SHARP": "AB", "NONE": "Ninguna"},
        crime_labels=COLON_CRIMES,
        title_rows=("Observatorio de Seguridad Ciudadana de Colón", "Incidentes registrados"),
        total_row=True,
    ),
    "pa_arraijan": ExportStyle(
        prefix="ARR",
        district="1301",
        population=310_000,
        homicide_rate=12.0,
        file_format="csv",
        encoding="utf-8-sig",
        delimiter=";",
        date_format="%d/%m/%Y",
        headers=(
            "Numero de caso",
            "Fecha",
            "Código distrito",
            "Código delito",
            "Sexo",
            "Medio empleado",
            "Víctimas",
        ),
        sex_labels={"F": "F", "M": "M", "NE": "NE"},
        weapon_labels={code: code for code in WEAPONS_ES},
        strip_leading_zeros=True,
        aggregated=True,
    ),
    "pa_la_chorrera": ExportStyle(
        prefix="LCH",
        district="1304",
        population=215_000,
        homicide_rate=10.0,
        file_format="xlsx",
        headers=(
            "Caso",
            "Fecha",
            "Hora",
            "Distrito",
            "Tipo delito",
            "Sexo víctima",
            "Edad víctima",
            "Arma",
        ),
        sex_labels={"F": "Femenino", "M": "Masculino", "NE": "Desconocido"},
        weapon_labels={**WEAPONS_ES, "FIREARM": "Arma de fuego"},
        sheet="Datos",
        cover_sheet=True,
        title_rows=("Municipio de La Chorrera — Observatorio", ""),
        extra_columns=("Observaciones internas",),
    ),
}


def _poisson(rng: random.Random, mean: float) -> int:
    # Normal approximation is plenty for demo counts; never negative.
    return (
        max(0, round(rng.gauss(mean, mean**0.5)))
        if mean > 30
        else sum(rng.random() < mean / 1000 for _ in range(1000))
    )


def _victim(rng: random.Random, crime: str) -> tuple[str, int | None, str]:
    if crime.startswith("010"):
        sex = "M" if rng.random() < 0.9 else "F"
        age = min(90, max(12, round(rng.gauss(29, 10))))
        weapon = rng.choices(["FIREARM", "SHARP", "BLUNT", "OTHER"], [76, 15, 5, 4])[0]
    elif crime.startswith("030"):
        sex = "F" if rng.random() < 0.87 else "M"
        age = min(80, max(3, round(rng.gauss(19, 9))))
        weapon = rng.choices(["NONE", "SHARP", "OTHER", "UNKNOWN"], [70, 8, 7, 15])[0]
    else:
        sex = rng.choices(["M", "F", "NE"], [55, 42, 3])[0]
        age = min(95, max(10, round(rng.gauss(36, 14))))
        weapon = rng.choices(["NONE", "FIREARM", "SHARP", "OTHER", "UNKNOWN"], [55, 15, 10, 5, 15])[
            0
        ]
    if rng.random() < 0.05:
        age = None
    return sex, age, weapon


def incidents_for_year(code: str, year: int, rng: random.Random) -> list[dict]:
    """One record per victim for an observatory's year, sorted by date."""
    style = STYLES[code]
    rates = {"0101": style.homicide_rate, **OTHER_CRIME_RATES}
    days = (dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days
    rows = []
    for crime, rate in rates.items():
        for _ in range(_poisson(rng, rate * style.population / 100_000)):
            sex, age, weapon = _victim(rng, crime)
            rows.append(
                {
                    "date": dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(days)),
                    "time": f"{rng.randrange(24):02d}:{rng.randrange(60):02d}",
                    "crime": crime,
                    "sex": sex,
                    "age": age,
                    "weapon": weapon,
                }
            )
    rows.sort(key=lambda r: (r["date"], r["time"]))
    for n, row in enumerate(rows, start=1):
        row["id"] = f"{style.prefix}-{year}-{n:05d}"
    return rows


def _aggregate(style: ExportStyle, rows: list[dict]) -> list[dict]:
    """Victims counted per day, crime, sex and weapon, as an aggregated export has them."""
    groups: dict[tuple, int] = {}
    for r in rows:
        group = (r["date"], r["crime"], r["sex"], r["weapon"])
        groups[group] = groups.get(group, 0) + 1
    return [
        {
            "id": f"{style.prefix}-{d:%Y%m%d}-{crime}-{sex}-{weapon}",
            "date": d,
            "crime": crime,
            "sex": sex,
            "weapon": weapon,
            "count": n,
        }
        for (d, crime, sex, weapon), n in sorted(groups.items())
    ]


def _cells(style: ExportStyle, row: dict) -> list:
    date = row["date"] if style.file_format == "xlsx" else row["date"].strftime(style.date_format)
    crime, district = row["crime"], style.district
    if style.crime_labels:
        crime = style.crime_labels[crime]
    if style.strip_leading_zeros:
        crime, district = crime.lstrip("0"), district.lstrip("0")
    sex, weapon = style.sex_labels[row["sex"]], style.weapon_labels[row["weapon"]]
    if style.aggregated:
        return [row["id"], date, district, crime, sex, weapon, row["count"]]
    age = "" if row["age"] is None else row["age"]
    return [row["id"], date, row["time"], district, crime, sex, age, weapon]


def _spoil(cells: list[list], rng: random.Random) -> None:
    """Put in a few of the mistakes real files carry, each one a row an observatory must fix."""
    mistakes = [
        lambda c: c.__setitem__(1, "31/02/2025"),  # no such day
        lambda c: c.__setitem__(4 if len(c) > 7 else 3, "9999"),  # not a crime code
        lambda c: c.__setitem__(3 if len(c) > 7 else 2, "0808"),  # another municipality's
        lambda c: c.__setitem__(0, ""),  # missing id
    ]
    for mistake in mistakes[: rng.randrange(1, len(mistakes) + 1)]:
        mistake(cells[rng.randrange(len(cells))])
    if len(cells) > 2:
        cells.append(list(cells[rng.randrange(len(cells) - 1)]))  # the same id twice


REMARKS = ["", "", "", "verificar con DIJ", "caso reabierto", "dato de prensa"]


@dataclass
class Table:
    """One export before it is written: lines above the headers, the headers, the data rows,
    lines below; ``spoiled``: ids of the rows ``_spoil`` broke (the pipeline rejects them)."""

    above: list[list]
    headers: list[str]
    cells: list[list]
    below: list[list]
    spoiled: frozenset[str]


def table(style: ExportStyle, rows: list[dict], rng: random.Random, spoil: bool, extra=()) -> Table:
    """The cells of one export. ``extra``: more columns, as (header, value maker) pairs."""
    if style.aggregated:
        rows = _aggregate(style, rows)
    headers = list(style.headers)
    cells = [_cells(style, r) for r in rows]
    spoiled = frozenset()
    if spoil:
        clean = [list(c) for c in cells]
        _spoil(cells, rng)
        spoiled = frozenset(
            c[0] for c, now in zip(clean, cells, strict=False) if c != now
        )  # the copy _spoil appends repeats an id: the pipeline keeps the first
    for header, make in [*((h, lambda: rng.choice(REMARKS)) for h in style.extra_columns), *extra]:
        headers.append(header)  # not in the contract: dropped (named in the feedback unless the
        for c in cells:  # profile says to ignore it)
            c.append(make())
    above = [[line] for line in style.title_rows]
    below = []
    if style.total_row:
        below = [["TOTAL", "", "", "", "", "", "", len(cells)], [], ["Fuente: Policía Nacional."]]
    return Table(above, headers, cells, below, spoiled)


# Re-seeding writes the same bytes, so that a second `make demo` finds every file already merged:
# a workbook's zip entries and its docProps carry the time of saving, a .sav header its date.
FIXED_ZIP_TIME = (2025, 1, 1, 0, 0, 0)
FIXED_W3CDTF = b"2025-01-01T00:00:00Z"
SAV_STAMP = slice(92, 109)


def stable_xlsx(data: bytes) -> bytes:
    """The workbook with its saving time fixed (zip entries' times, created/modified)."""
    import re
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)",
                    rb"\g<1>" + FIXED_W3CDTF + rb"\g<2>",
                    body,
                )
            entry = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            entry.compress_type, entry.external_attr = info.compress_type, info.external_attr
            dst.writestr(entry, body)
    return out.getvalue()


def encode(style: ExportStyle, t: Table) -> bytes:
    """The bytes of one export, as the observatory's tool writes them."""
    if style.file_format == "xlsx":
        book = openpyxl.Workbook()
        sheet = book.active
        if style.cover_sheet:
            sheet.title = "Portada"
            sheet.append(["Informe mensual de incidentes"])
            sheet = book.create_sheet(style.sheet)
        sheet.title = style.sheet
        for line in [*t.above, t.headers, *t.cells, *t.below]:
            sheet.append(line)
        buffer = io.BytesIO()
        book.save(buffer)
        return stable_xlsx(buffer.getvalue())
    text = io.StringIO()
    writer = csv.writer(text, delimiter=style.delimiter, lineterminator="\r\n")
    writer.writerows([*t.above, t.headers, *t.cells, *t.below])
    return text.getvalue().encode(style.encoding)


def render(
    style: ExportStyle, rows: list[dict], rng: random.Random, spoil: bool, extra=()
) -> bytes:
    """The bytes of one export. ``extra``: more columns, as (header, value maker) pairs."""
    return encode(style, table(style, rows, rng, spoil, extra))


NAMES = ["Ana", "Luis", "María", "José", "Yaritza", "Edwin", "Itzel", "Ricardo"]


def incident_exports(year: int, rng: random.Random):
    """Every observatory's quarterly incident exports, in the order seed_demo writes them and
    drawing from ``rng`` as it does: (code, quarter, the quarter's victims, the table)."""
    for code, style in STYLES.items():
        rows = incidents_for_year(code, year, rng)
        for quarter in range(1, 5):
            months = range(3 * quarter - 2, 3 * quarter + 1)
            part = [r for r in rows if r["date"].month in months]
            extra = ()
            if code == "pa_san_miguelito" and quarter == 2:
                extra = (("Nombre víctima", lambda: rng.choice(NAMES)),)
            spoil = (quarter + len(code)) % 2 == 0
            yield code, quarter, part, table(style, part, rng, spoil, extra)


def seed_demo(root: Path, year: int = 2025, random_seed: int = 16_1_1) -> list[Path]:
    """Write a year of quarterly incident files into every demo observatory's inbox, the
    prevention-plan monitoring and victimization survey of three of them, and forensic
    medicine's (IMELCF) register of the same homicides, with known differences."""
    rng = random.Random(random_seed)
    zone = Dropzone(root, observatories())
    zone.ensure_folders()
    written = []
    base_time = time.time() - 3600
    for code, quarter, _, t in incident_exports(year, rng):
        style = STYLES[code]
        name = f"incidentes_{year}_T{quarter}.{style.file_format}"
        written.append(_drop(zone, code, name, encode(style, t), base_time))
        base_time += 1
    for code in PREVENTION:
        name, data = render_prevention(code, prevention_plan(code, year, rng))
        written.append(_drop(zone, code, name, data, base_time))
        base_time += 1
    for code in SURVEYS:
        name, data = render_survey(code, survey_sample(code, year, rng))
        written.append(_drop(zone, code, name, data, base_time))
        base_time += 1
    # An upload that broke on the way: an Excel name over a truncated workbook.
    good = render(STYLES["pa_colon"], incidents_for_year("pa_colon", year, rng)[:20], rng, False)
    written.append(
        _drop(zone, "pa_colon", "reporte_diciembre (copia).xlsx", good[: len(good) // 3], base_time)
    )
    # The same victims as forensic medicine counts them: the sources to reconcile (issue 12).
    written.append(seed_forensic(root, year, random_seed))
    return written


def _drop(zone: Dropzone, code: str, name: str, data: bytes, mtime: float) -> Path:
    """Upload as an observatory's tool would: write a partial file, then rename it."""
    target = zone.inbox(code) / name
    partial = target.with_name(name + ".part")
    partial.write_bytes(data)
    os.utime(partial, (mtime, mtime))
    os.replace(partial, target)
    return target


# Prevention plans: (observatory, activity names in its own words, how it exports)
CONTRACTS = {  # as in reference/contracts.csv
    "0804": ["CONV-2025-0804-01", "CONV-2025-0804-02"],
    "0805": ["CONV-2025-02", "CONV-2025-03"],
    "0301": ["CONV-2025-0301-01"],
}
PREVENTION = {
    "pa_panama": {"prefix": "PAN-ACT", "district": "0804", "activities": 48},
    "pa_san_miguelito": {"prefix": "SMG-ACT", "district": "0805", "activities": 30},
    "pa_colon": {"prefix": "COL-ACT", "district": "0301", "activities": 24},
}
SMG_TYPES = {
    "TRAINING": "Diplomado en convivencia",
    "COMMITTEE_MEETING": "Comité de seguridad",
    "YOUTH_NETWORK": "Red de jóvenes",
    "PUBLIC_SPACE": "Rescate de parque",
    "CAMPAIGN": "Campaña Barrio Seguro",
    "DV_NETWORK": "Red VIF",
}
COLON_TYPES = {
    "COMMITTEE_MEETING": "Comité",
    "YOUTH_NETWORK": "Red juvenil",
    "TRAINING": "Capacitación",
    "PUBLIC_SPACE": "Espacio público",
    "CAMPAIGN": "Campaña",
    "DV_NETWORK": "Red contra la VD",
}


def prevention_plan(code: str, year: int, rng: random.Random) -> list[dict]:
    """A year's plan: activities spread over the months, most executed, some pending."""
    plan = PREVENTION[code]
    rows = []
    for n in range(1, plan["activities"] + 1):
        day = dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(365))
        kind = rng.choice(list(SMG_TYPES))
        status = rng.choices(["EXECUTED", "PLANNED", "CANCELLED"], [75, 18, 7])[0]
        women, men = rng.randrange(5, 40), rng.randrange(5, 40)
        planned = rng.randrange(5, 60) * 100
        rows.append(
            {
                "id": f"{plan['prefix']}-{year}-{n:03d}",
                "plan": f"PLAN-{plan['district']}-{year}",
                # the grant fund's contracts with this municipality (reference/contracts.csv)
                "contract": rng.choice(["", *CONTRACTS[plan["district"]]]),
                "type": kind,
                "date": day,
                "status": status,
                "district": plan["district"],
                "women": women if status == "EXECUTED" else None,
                "men": men if status == "EXECUTED" else None,
                "youth": rng.randrange(0, women + men) if status == "EXECUTED" else None,
                "planned": planned,
                "executed": round(planned * rng.uniform(0.6, 1.15), 2)
                if status == "EXECUTED"
                else None,
            }
        )
    return sorted(rows, key=lambda r: r["date"])


def _blank(value):
    return "" if value is None else value


def render_prevention(code: str, rows: list[dict]) -> tuple[str, bytes]:
    """One observatory's plan-monitoring file, in its own export shape."""
    total = [None if r["women"] is None else r["women"] + r["men"] for r in rows]
    if code == "pa_san_miguelito":
        text = io.StringIO()
        writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
        writer.writerow(
            [
                "No. actividad",
                "Plan",
                "Convenio",
                "Tipo",
                "Fecha",
                "Estado",
                "Distrito",
                "Mujeres",
                "Hombres",
                "Jóvenes 15-29",
                "Total",
                "Presupuesto (B/.)",
                "Ejecutado (B/.)",
            ]
        )
        status = {"EXECUTED": "Realizada", "PLANNED": "Programada", "CANCELLED": "Suspendida"}
        for r, t in zip(rows, total, strict=True):
            writer.writerow(
                [
                    r["id"],
                    r["plan"],
                    r["contract"],
                    SMG_TYPES[r["type"]],
                    r["date"].strftime("%d/%m/%Y"),
                    status[r["status"]],
                    r["district"],
                    _blank(r["women"]),
                    _blank(r["men"]),
                    _blank(r["youth"]),
                    _blank(t),
                    r["planned"],
                    str(_blank(r["executed"])).replace(".", ","),
                ]
            )
        return "plan_prevencion_2025.csv", text.getvalue().encode("cp1252")
    book = openpyxl.Workbook()
    sheet = book.active
    if code == "pa_colon":
        sheet.title = "Plan 2025"
        sheet.append(["Seguimiento del plan local de prevención — Colón"])
        sheet.append(
            [
                "Actividad N°",
                "Plan",
                "Convenio",
                "Tipo de actividad",
                "Fecha",
                "Ejecutada",
                "Distrito",
                "Mujeres",
                "Hombres",
                "Total",
                "Presupuesto",
                "Ejecutado",
            ]
        )
        status = {"EXECUTED": "Sí", "PLANNED": "No", "CANCELLED": "Cancelada"}
        for r, t in zip(rows, total, strict=True):
            sheet.append(
                [
                    r["id"],
                    r["plan"],
                    r["contract"],
                    COLON_TYPES[r["type"]],
                    r["date"],
                    status[r["status"]],
                    r["district"],
                    r["women"],
                    r["men"],
                    t,
                    r["planned"],
                    r["executed"],
                ]
            )
        sheet.append(
            [
                "Total",
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                sum(r["planned"] for r in rows),
            ]
        )
        name = "plan_prevencion_2025.xlsx"
    else:  # the national template's headers, as `obsx template` writes them
        from obsx.intake.contract import load_contract

        contract = load_contract("prevention_activities")
        sheet.title = "Datos"
        sheet.append([f.title["es"] for f in contract.fields])
        labels = {f.name: f.codelist for f in contract.fields if f.codelist}
        for r, t in zip(rows, total, strict=True):
            sheet.append(
                [
                    r["id"],
                    r["plan"],
                    r["contract"],
                    labels["activity_type"].labels[r["type"]]["es"],
                    r["date"],
                    labels["activity_status"].labels[r["status"]]["es"],
                    r["district"],
                    None,
                    r["women"],
                    r["men"],
                    r["youth"],
                    t,
                    r["planned"],
                    r["executed"],
                    None,
                ]
            )
        name = "actividades_prevencion_2025.xlsx"
    buffer = io.BytesIO()
    book.save(buffer)
    return name, stable_xlsx(buffer.getvalue())


# Victimization surveys: (district, respondents, share victimized, share feeling safe at night)
SURVEYS = {
    "pa_panama": ("0804", 320, 0.22, 0.41),
    "pa_san_miguelito": ("0805", 160, 0.27, 0.33),
    "pa_colon": ("0301", 150, 0.31, 0.28),
}
SURVEY_CRIMES = ["0401", "0502", "0501", "02011", "0701", "050211"]


def survey_sample(code: str, year: int, rng: random.Random) -> list[dict]:
    """Respondents of one district's survey round, with design weights that add up to its
    population aged 15 and over (about three quarters of it)."""
    district, size, victimized, safe = SURVEYS[code]
    population = STYLES[code].population * 0.75
    rows = []
    for n in range(1, size + 1):
        was_victim = rng.random() < victimized
        rows.append(
            {
                "id": f"{code[3:6].upper()}-ENV{year}-{n:04d}",
                "survey": f"ENV-{year}",
                "date": dt.date(year, 9, 1) + dt.timedelta(days=rng.randrange(45)),
                "district": district,
                "stratum": rng.choice(["URB-1", "URB-2", "URB-3"]),
                "psu": f"S{rng.randrange(1, 41):03d}",
                "weight": round(population / size * rng.uniform(0.6, 1.4), 2),
                "sex": rng.choice(["F", "M"]),
                "age": rng.randrange(15, 85),
                "victimized": "YES" if was_victim else rng.choices(["NO", "DK"], [97, 3])[0],
                "crime": rng.choice(SURVEY_CRIMES) if was_victim else None,
                "reported": (rng.choices(["YES", "NO"], [35, 65])[0] if was_victim else None),
                "safe": rng.choices(["YES", "NO", "DK"], [safe, 0.97 - safe, 0.03])[0],
            }
        )
    return rows


def render_survey(code: str, rows: list[dict]) -> tuple[str, bytes]:
    """One observatory's survey file: SPSS for Panamá, CSV for San Miguelito, Excel for Colón."""
    yes_no_es = {"YES": "Sí", "NO": "No", "DK": "NS/NR", None: ""}
    if code == "pa_panama":  # SPSS microdata: short variable names, numeric codes with labels
        import pyreadstat

        numeric = {"YES": 1.0, "NO": 2.0, "DK": 9.0, None: float("nan")}
        frame = pd.DataFrame(
            {
                "FOLIO": [r["id"] for r in rows],
                "RONDA": [r["survey"] for r in rows],
                "FECHA": [r["date"] for r in rows],
                "DIST": [r["district"] for r in rows],
                "ESTRATO": [r["stratum"] for r in rows],
                "UPM": [r["psu"] for r in rows],
                "FEXP": [r["weight"] for r in rows],
                "P1_SEXO": [1.0 if r["sex"] == "M" else 2.0 for r in rows],
                "P2_EDAD": [float(r["age"]) for r in rows],
                "P10_VICT": [numeric[r["victimized"]] for r in rows],
                "P11_DELITO": [r["crime"] or "" for r in rows],
                "P12_DENUNCIA": [numeric[r["reported"]] for r in rows],
                "P20_SEGURO": [numeric[r["safe"]] for r in rows],
            }
        )
        labels = {1.0: "Sí", 2.0: "No", 9.0: "NS/NR"}
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "encuesta.sav"
            pyreadstat.write_sav(
                frame,
                path,
                variable_value_labels={
                    "P1_SEXO": {1.0: "Hombre", 2.0: "Mujer"},
                    "P10_VICT": labels,
                    "P12_DENUNCIA": labels,
                    "P20_SEGURO": labels,
                },
            )
            data = bytearray(path.read_bytes())
            data[SAV_STAMP] = b"01 Jan 25" + b"00:00:00"  # the header's creation date and time
            return "encuesta_victimizacion_2025.sav", bytes(data)
    header = [
        "Boleta",
        "Encuesta",
        "Fecha",
        "Distrito",
        "Estrato",
        "UPM",
        "Factor",
        "Sexo",
        "Edad",
        "Víctima",
        "Delito",
        "Denunció",
        "Seguro de noche",
    ]
    cells = [
        [
            r["id"],
            r["survey"],
            r["date"],
            r["district"],
            r["stratum"],
            r["psu"],
            r["weight"],
            "Mujer" if r["sex"] == "F" else "Hombre",
            r["age"],
            yes_no_es[r["victimized"]],
            r["crime"] or "",
            yes_no_es[r["reported"]],
            yes_no_es[r["safe"]],
        ]
        for r in rows
    ]
    if code == "pa_san_miguelito":
        text = io.StringIO()
        writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
        writer.writerow(header)
        for c in cells:
            c[2] = c[2].strftime("%d/%m/%Y")
            c[6] = str(c[6]).replace(".", ",")
        writer.writerows(cells)
        return "encuesta_2025.csv", text.getvalue().encode("cp1252")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Microdatos"
    sheet.append(["Encuesta de victimización 2025 — Colón"])
    sheet.append(header)
    for c in cells:
        sheet.append(c)
    buffer = io.BytesIO()
    book.save(buffer)
    return "encuesta_2025.xlsx", stable_xlsx(buffer.getvalue())


# --------------------------------------------------------------------------- forensic medicine
# IMELCF (Instituto de Medicina Legal y Ciencias Forenses) performs the autopsy of every homicide
# victim and exports its register as a latin-1, semicolon-separated CSV, one row per necropsy
# (read through profiles/pa_imelcf/incidents.yaml). Its demo file is derived from the victims the
# observatories' files above carry and the pipeline accepts (a row _spoil broke is not one), with
# differences planted on purpose for the reconciliation of sources (issue 12):
#
# - most victims are the same: same district, sex and weapon; for about 15% the date of death is
#   the day after the observatory's date of the incident (never into another month), for about
#   10% the autopsy's age is one year off;
# - only_imelcf: three victims the observatories do not have (three districts, three months);
# - only_observatory: two victims IMELCF does not have (two districts, two months);
# - recoded: one San Miguelito (0805) victim that IMELCF places in Panamá (0804);
# - ambiguous: two victims of one day, district and sex whose ages are within MATCH_YEARS in
#   both sources, IMELCF giving both the same age, equally near to either: a matcher cannot tell
#   which is which (chosen among the pairs the observatories' data already hold).
#
# Date shifts and age changes touch only victims with no other victim of their district and sex
# within 2 days and 4 years, and the planted victims are chosen among those too, so the only
# victims a matcher within MATCH_DAYS and MATCH_YEARS cannot tell apart are the ambiguous pair
# and the close pairs the observatories' own data hold (forensic_differences lists both).
# forensic_differences(year) is the exact manifest tests assert against.

IMELCF = "pa_imelcf"
MATCH_DAYS, MATCH_YEARS = 1, 2  # the tolerance under which two victims are "the same"
IMELCF_HEADERS = [
    "N° necropsia",
    "Fecha de defunción",
    "Sede",
    "Provincia",
    "Distrito",
    "Sexo",
    "Edad",
    "Manera de muerte",
    "Mecanismo",
]
IMELCF_PLACES = {  # district -> (IMELCF regional office, province, district) as it writes them
    "0804": ("Morgue Judicial de Panamá", "Panamá", "Panamá"),
    "0805": ("Morgue Judicial de Panamá", "Panamá", "San Miguelito"),
    "0301": ("Sede Regional de Colón", "Colón", "Colón"),
    "1301": ("Sede Regional de Panamá Oeste", "Panamá Oeste", "Arraiján"),
    "1304": ("Sede Regional de Panamá Oeste", "Panamá Oeste", "La Chorrera"),
}
IMELCF_SEX = {"M": "Masculino", "F": "Femenino"}
IMELCF_MECHANISM = {
    "FIREARM": ["Arma de fuego"],
    "SHARP": ["Arma blanca"],
    "BLUNT": ["Objeto contundente"],
    "OTHER": ["Asfixia mecánica", "Otro mecanismo"],
}


def observatory_homicides(year: int = 2025, random_seed: int = 16_1_1) -> list[dict]:
    """The homicide victims (ICCS 0101) of seed_demo's incident files that the pipeline accepts,
    one dict per victim: observatory, district, id (the file's row id; an aggregated row's id
    for each of its victims), date, sex, age (None where the file has none), weapon."""
    return _observatory_homicides(year, random.Random(random_seed))


def _observatory_homicides(year: int, rng: random.Random) -> list[dict]:
    victims = []
    for code, _, part, t in incident_exports(year, rng):
        style = STYLES[code]
        for r in part:
            if r["crime"] != "0101":
                continue
            row_id = r["id"]
            if style.aggregated:
                row_id = f"{style.prefix}-{r['date']:%Y%m%d}-{r['crime']}-{r['sex']}-{r['weapon']}"
            if row_id in t.spoiled:
                continue
            victims.append(
                {
                    "observatory": code,
                    "district": style.district,
                    "id": row_id,
                    "date": r["date"],
                    "sex": r["sex"],
                    "age": None if style.aggregated else r["age"],
                    "true_age": r["age"],  # what an autopsy finds, shown or not in the file
                    "weapon": r["weapon"],
                }
            )
    return victims


def _near(a: dict, b: dict, days: int, years: int) -> bool:
    """Same district and sex, dates within `days`, ages within `years` (an unknown age fits)."""
    return (
        a["district"] == b["district"]
        and a["sex"] == b["sex"]
        and abs((a["date"] - b["date"]).days) <= days
        and (a["age"] is None or b["age"] is None or abs(a["age"] - b["age"]) <= years)
    )


def _forensic(year: int, random_seed: int) -> tuple[list[dict], dict]:
    """IMELCF's records for the year and the manifest of what differs from the observatories."""
    rng = random.Random(random_seed)  # seed_demo's generator, drawn as seed_demo draws it
    victims = _observatory_homicides(year, rng)
    # Who is near whom (2 days, 4 years: wider than MATCH_*, so that a date moved by a day or an
    # age by a year never brings a victim within a matcher's reach of another).
    near = {id(v): [w for w in victims if w is not v and _near(v, w, 2, 4)] for v in victims}
    rows_of = Counter(v["id"] for v in victims)  # an aggregated row holds several victims
    lone = [v for v in victims if not near[id(v)] and rows_of[v["id"]] == 1]
    taken: set[tuple[str, str]] = set()  # each planted difference in a (district, month) of its own

    def month(v: dict) -> str:
        return f"{v['date']:%Y-%m}"

    def pick(candidates: list[dict], n: int) -> list[dict]:
        chosen: list[dict] = []
        for v in rng.sample(candidates, len(candidates)):
            if len(chosen) == n:
                break
            if (v["district"], month(v)) in taken or any(
                v["district"] == c["district"] or month(v) == month(c) for c in chosen
            ):
                continue
            chosen.append(v)
            taken.add((v["district"], month(v)))
        if len(chosen) < n:
            raise ValueError(f"{year}: not {n} victims to plant a difference on")
        return chosen

    # Ambiguous: a pair of one day, district and sex, ages within MATCH_YEARS, nobody else near;
    # IMELCF gives both the age halfway, so either assignment is as good as the other.
    pairs = [
        (a, b)
        for a in victims
        for b in near[id(a)]
        if near[id(a)] == [b]
        and near[id(b)] == [a]
        and a["id"] < b["id"]
        and a["date"] == b["date"]
        and None not in (a["age"], b["age"])
        and abs(a["age"] - b["age"]) <= MATCH_YEARS
    ]
    if not pairs:
        raise ValueError(f"{year}: no two victims alone on one day, district and sex")
    widest = max(abs(a["age"] - b["age"]) for a, b in pairs)
    pair = list(rng.choice([(a, b) for a, b in pairs if abs(a["age"] - b["age"]) == widest]))
    halfway = min(v["age"] for v in pair) + widest // 2
    taken.add((pair[0]["district"], month(pair[0])))

    only_observatory = pick(lone, 2)
    # Recoded: a San Miguelito victim IMELCF files under Panamá (0804), nobody near it there.
    moved = [
        v
        for v in lone
        if v["district"] == "0805"
        and not any(v is o for o in only_observatory)
        and (v["district"], month(v)) not in taken
        and ("0804", month(v)) not in taken
        and not any(_near({**v, "district": "0804"}, w, 2, 4) for w in victims)
    ]
    (recoded,) = pick(moved, 1)
    taken.add(("0804", month(recoded)))

    only_imelcf: list[dict] = []
    days = (dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days
    districts = rng.sample(sorted(IMELCF_PLACES), 3)
    while len(only_imelcf) < 3:
        sex, age, weapon = _victim(rng, "0101")
        new = {
            "district": districts[len(only_imelcf)],
            "date": dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(days)),
            "sex": sex,
            "age": age,
            "weapon": weapon,
        }
        if (
            age is None
            or (new["district"], month(new)) in taken
            or any(month(new) == month(o) for o in only_imelcf)
            or any(_near(new, w, 2, 4) for w in victims)
        ):
            continue
        taken.add((new["district"], month(new)))
        only_imelcf.append({**new, "true_age": age})

    # Dates a day later, ages a year off: among the victims alone in their neighbourhood.
    planted = {id(v) for v in [*pair, *only_observatory, recoded]}
    both = [v for v in victims if id(v) not in planted]
    steady = [v for v in both if not near[id(v)]]
    can_move = [v for v in steady if (v["date"] + dt.timedelta(days=1)).month == v["date"].month]
    later = {id(v) for v in rng.sample(can_move, min(len(can_move), round(0.15 * len(both))))}
    aged = [v for v in steady if v["age"] is not None]
    off = {
        id(v): rng.choice([-1, 1])
        for v in rng.sample(aged, min(len(aged), round(0.10 * len(both))))
    }

    records = []
    for v in victims:
        if any(v is o for o in only_observatory):
            continue
        record = {**v, "age": v["true_age"], "source": v}  # the autopsy finds the age
        if any(v is w for w in pair):
            record["age"] = halfway
        if v is recoded:
            record["district"] = "0804"
        if id(v) in later:
            record["date"] = v["date"] + dt.timedelta(days=1)
        if id(v) in off:
            record["age"] = v["age"] + off[id(v)]
        records.append(record)
    records += [{**v, "source": None} for v in only_imelcf]
    records.sort(
        key=lambda r: (
            r["date"],
            r["district"],
            r["sex"],
            -1 if r["age"] is None else r["age"],
            r["weapon"],
            "" if r["source"] is None else r["source"]["id"],
        )
    )
    for n, record in enumerate(records, start=1):
        record["id"] = f"NEC-{year}-{n:05d}"
        record["mechanism"] = rng.choice(IMELCF_MECHANISM[record["weapon"]])
    imelcf_of = {id(r["source"]): r for r in records if r["source"] is not None}

    def seen(v: dict) -> dict:  # a victim as an observatory's file has it
        return {
            "observatory": v["observatory"],
            "observatory_id": v["id"],
            "date": v["date"].isoformat(),
            "sex": v["sex"],
            "age": v["age"],
        }

    differences = [
        {
            "kind": "ambiguous",
            "district": pair[0]["district"],
            "month": month(pair[0]),
            "observatory": pair[0]["observatory"],
            "observatory_ids": [v["id"] for v in pair],
            "observatory_ages": [v["age"] for v in pair],
            "imelcf_ids": [imelcf_of[id(v)]["id"] for v in pair],
            "imelcf_ages": [halfway, halfway],
            "date": pair[0]["date"].isoformat(),
            "sex": pair[0]["sex"],
        },
        *(
            {"kind": "only_observatory", "district": v["district"], "month": month(v), **seen(v)}
            for v in only_observatory
        ),
        {
            "kind": "recoded",
            "district": recoded["district"],
            "imelcf_district": "0804",
            "month": month(recoded),
            **seen(recoded),
            "imelcf_id": imelcf_of[id(recoded)]["id"],
        },
        *(
            {
                "kind": "only_imelcf",
                "district": r["district"],
                "month": month(r),
                "imelcf_id": r["id"],
                "date": r["date"].isoformat(),
                "sex": r["sex"],
                "age": r["age"],
            }
            for r in records
            if r["source"] is None
        ),
    ]
    for v in both:
        r = imelcf_of[id(v)]
        if id(v) in later:
            differences.append(
                {
                    "kind": "date_shift",
                    "district": v["district"],
                    "month": month(v),
                    **seen(v),
                    "imelcf_id": r["id"],
                    "imelcf_date": r["date"].isoformat(),
                }
            )
        if id(v) in off:
            differences.append(
                {
                    "kind": "age",
                    "district": v["district"],
                    "month": month(v),
                    **seen(v),
                    "imelcf_id": r["id"],
                    "imelcf_age": r["age"],
                }
            )
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for source, rows in (("observatory", victims), ("imelcf", records)):
        for r in rows:
            by_month = counts.setdefault(r["district"], {})
            by_month.setdefault(month(r), {"observatory": 0, "imelcf": 0})[source] += 1
    close = sorted(
        [v["id"], w["id"]]
        for i, v in enumerate(victims)
        for w in victims[i + 1 :]
        if _near(v, w, MATCH_DAYS, MATCH_YEARS) and {v["id"], w["id"]} != {x["id"] for x in pair}
    )
    manifest = {
        "year": year,
        "file": f"necropsias_homicidio_{year}.csv",
        "tolerance": {"days": MATCH_DAYS, "years": MATCH_YEARS},
        "victims": {"observatories": len(victims), "imelcf": len(records)},
        "differences": differences,
        "counts": {d: dict(sorted(m.items())) for d, m in sorted(counts.items())},
        "close_pairs": close,
    }
    return records, manifest


def forensic_differences(year: int = 2025, random_seed: int = 16_1_1) -> dict:
    """What IMELCF's demo file (seed_forensic) says differently from the observatories' files.

    ``differences``: one dict per planted difference, ``kind`` one of ambiguous,
    only_observatory, recoded, only_imelcf, date_shift, age; each with the district and month
    (YYYY-MM) of the observatory's record (of IMELCF's for only_imelcf), the observatory's and
    IMELCF's ids. ``counts[district][month]``: victims in each source. ``close_pairs``: pairs of
    observatory ids already within ``tolerance`` of each other in the observatories' own data
    (IMELCF has them unchanged): a matcher finds them ambiguous too, besides the planted pair.
    """
    return _forensic(year, random_seed)[1]


def forensic_csv(year: int = 2025, random_seed: int = 16_1_1) -> bytes:
    """IMELCF's export of its homicide necropsies of the year: latin-1, semicolons, CRLF."""
    records, _ = _forensic(year, random_seed)
    text = io.StringIO()
    writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
    writer.writerow(IMELCF_HEADERS)
    for r in records:
        office, province, district = IMELCF_PLACES[r["district"]]
        writer.writerow(
            [
                r["id"],
                r["date"].strftime("%d/%m/%Y"),
                office,
                province,
                district,
                IMELCF_SEX[r["sex"]],
                "Ignorada" if r["age"] is None else r["age"],
                "Homicidio",
                r["mechanism"],
            ]
        )
    return text.getvalue().encode("latin-1")


def seed_forensic(root: Path, year: int = 2025, random_seed: int = 16_1_1) -> Path:
    """Drop IMELCF's necropsy file for the year into its inbox (dropzone/pa_imelcf/inbox/);
    the same bytes on every call. What it says differently: forensic_differences(year)."""
    zone = Dropzone(root, observatories())
    zone.ensure_folders()
    name = f"necropsias_homicidio_{year}.csv"
    return _drop(zone, IMELCF, name, forensic_csv(year, random_seed), time.time() - 3600)
