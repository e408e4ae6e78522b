"""Realistic synthetic incident files for the demo: a year of uploads from five observatories.

Each observatory exports in its own layout (CSV or Excel, UTF-8 or cp1252, comma or semicolon,
its own Spanish headers and labels), with a few bad rows, as real exports have; one file is
unreadable. Magnitudes follow ../shared/DOMAIN.md (Colón high, San Miguelito above the mean).
All people and events are invented.
"""

import csv
import datetime as dt
import io
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import openpyxl

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
class Layout:
    """How one observatory exports: file format, text encoding, delimiter, headers, labels."""

    prefix: str
    district: str
    population: int
    homicide_rate: float
    file_format: str  # csv or xlsx
    encoding: str
    delimiter: str
    headers: tuple[str, ...]  # id, date, time, district, crime, sex, age, weapon
    date_format: str
    sex_labels: dict[str, str]
    weapon_labels: dict[str, str]
    strip_leading_zeros: bool = False


LAYOUTS = {
    "pa_panama": Layout(
        "PAN",
        "0804",
        1_110_000,
        15.0,
        "csv",
        "utf-8",
        ",",
        (
            "Código incidente",
            "Fecha",
            "Hora",
            "Distrito",
            "Delito (ICCS)",
            "Sexo víctima",
            "Edad",
            "Arma",
        ),
        "%Y-%m-%d",
        {"F": "F", "M": "M", "NE": "NE"},
        {
            "FIREARM": "Arma de fuego",
            "SHARP": "Arma blanca",
            "BLUNT": "Objeto contundente",
            "OTHER": "Otro",
            "NONE": "Sin arma",
            "UNKNOWN": "Desconocido",
        },
    ),
    "pa_san_miguelito": Layout(
        "SMG",
        "0805",
        300_000,
        21.0,
        "csv",
        "cp1252",
        ";",
        (
            "id_incidente",
            "fecha_hecho",
            "hora_hecho",
            "cod_distrito",
            "codigo_delito",
            "sexo",
            "edad",
            "medio",
        ),
        "%d/%m/%Y",
        {"F": "Femenino", "M": "Masculino", "NE": "Sin dato"},
        {
            "FIREARM": "Arma de fuego",
            "SHARP": "Arma blanca",
            "BLUNT": "Contundente",
            "OTHER": "Otros",
            "NONE": "Ninguno",
            "UNKNOWN": "Sin dato",
        },
    ),
    "pa_colon": Layout(
        "COL",
        "0301",
        250_000,
        38.0,
        "xlsx",
        "",
        "",
        (
            "No. caso",
            "Fecha del hecho",
            "Hora del hecho",
            "Distrito",
            "ICCS",
            "Sexo de la víctima",
            "Edad",
            "Arma empleada",
        ),
        "",
        {"F": "Mujer", "M": "Hombre", "NE": "No especificado"},
        {
            "FIREARM": "AF",
            "SHARP": "AB",
            "BLUNT": "Contundente",
            "OTHER": "Otro",
            "NONE": "Ninguna",
            "UNKNOWN": "Desconocido",
        },
    ),
    "pa_arraijan": Layout(
        "ARR",
        "1301",
        310_000,
        12.0,
        "csv",
        "utf-8-sig",
        ";",
        (
            "Numero de caso",
            "Fecha",
            "Hora",
            "Código distrito",
            "Código delito",
            "Sexo",
            "Edad",
            "Medio empleado",
        ),
        "%d/%m/%Y",
        {"F": "F", "M": "M", "NE": "NE"},
        {
            "FIREARM": "FIREARM",
            "SHARP": "SHARP",
            "BLUNT": "BLUNT",
            "OTHER": "OTHER",
            "NONE": "NONE",
            "UNKNOWN": "UNKNOWN",
        },
        strip_leading_zeros=True,  # its spreadsheet stored codes as numbers
    ),
    "pa_la_chorrera": Layout(
        "LCH",
        "1304",
        215_000,
        10.0,
        "xlsx",
        "",
        "",
        (
            "Caso",
            "Fecha",
            "Hora",
            "Distrito",
            "Tipo delito",
            "Sexo víctima",
            "Edad víctima",
            "Arma",
        ),
        "",
        {"F": "Femenino", "M": "Masculino", "NE": "Desconocido"},
        {
            "FIREARM": "Arma de fuego",
            "SHARP": "Arma blanca",
            "BLUNT": "Contundente",
            "OTHER": "Otro",
            "NONE": "Ninguno",
            "UNKNOWN": "Desconocido",
        },
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
    layout = LAYOUTS[code]
    rates = {"0101": layout.homicide_rate, **OTHER_CRIME_RATES}
    days = (dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days
    rows = []
    for crime, rate in rates.items():
        for _ in range(_poisson(rng, rate * layout.population / 100_000)):
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
        row["id"] = f"{layout.prefix}-{year}-{n:05d}"
    return rows


def _cells(layout: Layout, row: dict) -> list:
    date = row["date"] if layout.file_format == "xlsx" else row["date"].strftime(layout.date_format)
    crime, district = row["crime"], layout.district
    if layout.strip_leading_zeros:
        crime, district = crime.lstrip("0"), district.lstrip("0")
    return [
        row["id"],
        date,
        row["time"],
        district,
        crime,
        layout.sex_labels[row["sex"]],
        "" if row["age"] is None else row["age"],
        layout.weapon_labels[row["weapon"]],
    ]


def _spoil(layout: Layout, cells: list[list], rng: random.Random) -> None:
    """Put in a few of the mistakes real files carry, each one a row an observatory must fix."""
    mistakes = [
        lambda c: c.__setitem__(1, "31/02/2025"),  # no such day
        lambda c: c.__setitem__(4, "9999"),  # not an ICCS code
        lambda c: c.__setitem__(6, 230),  # impossible age
        lambda c: c.__setitem__(3, "0808"),  # another municipality's district
        lambda c: c.__setitem__(0, ""),  # missing id
    ]
    for mistake in mistakes[: rng.randrange(1, len(mistakes) + 1)]:
        mistake(cells[rng.randrange(len(cells))])
    if len(cells) > 2:
        cells.append(list(cells[rng.randrange(len(cells) - 1)]))  # the same id twice


def render(
    layout: Layout, rows: list[dict], rng: random.Random, spoil: bool, extra_column=None
) -> bytes:
    headers = list(layout.headers)
    cells = [_cells(layout, r) for r in rows]
    if spoil:
        _spoil(layout, cells, rng)
    if extra_column:  # a column the contract does not have: dropped, and named in the feedback
        headers.append(extra_column[0])
        for c in cells:
            c.append(extra_column[1](rng))
    if layout.file_format == "xlsx":
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.title = "Incidentes"
        sheet.append(headers)
        for c in cells:
            sheet.append(c)
        buffer = io.BytesIO()
        book.save(buffer)
        return buffer.getvalue()
    text = io.StringIO()
    writer = csv.writer(text, delimiter=layout.delimiter, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(cells)
    return text.getvalue().encode(layout.encoding)


NAMES = ["Ana", "Luis", "María", "José", "Yaritza", "Edwin", "Itzel", "Ricardo"]


def seed_demo(root: Path, year: int = 2025, random_seed: int = 16_1_1) -> list[Path]:
    """Write a year of quarterly incident files into every demo observatory's inbox."""
    rng = random.Random(random_seed)
    zone = Dropzone(root, observatories())
    zone.ensure_folders()
    written = []
    base_time = time.time() - 3600
    for code, layout in LAYOUTS.items():
        rows = incidents_for_year(code, year, rng)
        for quarter in range(1, 5):
            months = range(3 * quarter - 2, 3 * quarter + 1)
            part = [r for r in rows if r["date"].month in months]
            extra = None
            if code == "pa_san_miguelito" and quarter == 2:
                extra = ("Nombre víctima", lambda r: rng.choice(NAMES))
            spoil = (quarter + len(code)) % 2 == 0
            data = render(layout, part, rng, spoil, extra)
            suffix = "xlsx" if layout.file_format == "xlsx" else "csv"
            written.append(
                _drop(zone, code, f"incidentes_{year}_T{quarter}.{suffix}", data, base_time)
            )
            base_time += 1
    # An upload that broke on the way: an Excel name over a truncated workbook.
    good = render(LAYOUTS["pa_colon"], incidents_for_year("pa_colon", year, rng)[:20], rng, False)
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
