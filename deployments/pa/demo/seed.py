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
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pandas as pd

from obsx.dropzone import Dropzone
from obsx.reference import observatories

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


def render(
    style: ExportStyle, rows: list[dict], rng: random.Random, spoil: bool, extra=()
) -> bytes:
    """The bytes of one export. ``extra``: more columns, as (header, value maker) pairs."""
    if style.aggregated:
        rows = _aggregate(style, rows)
    headers = list(style.headers)
    cells = [_cells(style, r) for r in rows]
    if spoil:
        _spoil(cells, rng)
    for header, make in [*((h, lambda: rng.choice(REMARKS)) for h in style.extra_columns), *extra]:
        headers.append(header)  # not in the contract: dropped (named in the feedback unless the
        for c in cells:  # profile says to ignore it)
            c.append(make())
    above = [[line] for line in style.title_rows]
    below = []
    if style.total_row:
        below = [["TOTAL", "", "", "", "", "", "", len(cells)], [], ["Fuente: Policía Nacional."]]
    if style.file_format == "xlsx":
        book = openpyxl.Workbook()
        sheet = book.active
        if style.cover_sheet:
            sheet.title = "Portada"
            sheet.append(["Informe mensual de incidentes"])
            sheet = book.create_sheet(style.sheet)
        sheet.title = style.sheet
        for line in [*above, headers, *cells, *below]:
            sheet.append(line)
        buffer = io.BytesIO()
        book.save(buffer)
        return buffer.getvalue()
    text = io.StringIO()
    writer = csv.writer(text, delimiter=style.delimiter, lineterminator="\r\n")
    writer.writerows([*above, headers, *cells, *below])
    return text.getvalue().encode(style.encoding)


NAMES = ["Ana", "Luis", "María", "José", "Yaritza", "Edwin", "Itzel", "Ricardo"]


def seed_demo(root: Path, year: int = 2025, random_seed: int = 16_1_1) -> list[Path]:
    """Write a year of quarterly incident files into every demo observatory's inbox, and the
    prevention-plan monitoring and victimization survey of three of them."""
    rng = random.Random(random_seed)
    zone = Dropzone(root, observatories())
    zone.ensure_folders()
    written = []
    base_time = time.time() - 3600
    for code, style in STYLES.items():
        rows = incidents_for_year(code, year, rng)
        for quarter in range(1, 5):
            months = range(3 * quarter - 2, 3 * quarter + 1)
            part = [r for r in rows if r["date"].month in months]
            extra = ()
            if code == "pa_san_miguelito" and quarter == 2:
                extra = (("Nombre víctima", lambda: rng.choice(NAMES)),)
            spoil = (quarter + len(code)) % 2 == 0
            data = render(style, part, rng, spoil, extra)
            name = f"incidentes_{year}_T{quarter}.{style.file_format}"
            written.append(_drop(zone, code, name, data, base_time))
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
        from obsx.contract import load_contract

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
    return name, buffer.getvalue()


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
            return "encuesta_victimizacion_2025.sav", path.read_bytes()
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
    return "encuesta_2025.xlsx", buffer.getvalue()
