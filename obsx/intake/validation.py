"""Validate a raw table against a contract: map headers, type the cells, run the pandera schema.

Pure: takes DataFrames and returns DataFrames and problems; no database, no Dagster.
"""

import dataclasses
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from obsx.intake.contract import (
    ACTION_FIELD,
    DELETE,
    FORMULA_START,
    INTEGER_MAX,
    PANDAS_DTYPES,
    Contract,
    Field,
    band_bounds,
    normalise_label,
    pad_digits,
    read_band,
)
from obsx.intake.problems import ERROR, Problem, problem
from obsx.intake.profiles import MONTHS, ROW_NUMBER, Derivation, Profile
from obsx.intake.reading import RawTable
from obsx.sourceyaml import ReferenceDataError
from obsx.warehouse.deployment import Level, current_deployment
from obsx.warehouse.places import Places

TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(:[0-5]\d)?$")
# The two date spellings the contract accepts; Excel dates arrive as ISO text, maybe with a time.
ISO_DATE_RE = r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?$"
DMY_DATE_RE = r"^\d{1,2}/\d{1,2}/\d{4}$"
# A row without a record id whose first cell reads like this is a total or a note, not data.
TRAILER_RE = r"^\s*(total|totales|subtotal|sub-total|fuente|nota|notas|elaborado|\*|\(\d+\)|\d+\))"
# Larger whole numbers lose precision as floats; no contract integer is anywhere near this.
MAX_WHOLE_NUMBER = 10**15
MAX_LISTED_CODES = 12
MAX_NAMED_COLUMNS = 50  # unknown columns named one by one; the rest are counted


@dataclass(frozen=True)
class Observatory:
    """A contributor as validation needs it: a municipal observatory, or a national institution
    whose units are every unit of the country."""

    code: str
    name: str
    districts: tuple[str, ...]  # the units (lowest level of the deployment) it may report for
    opened_on: dt.date | None = None
    # unit code -> (valid from, valid to or None): boundary changes keep history
    district_validity: dict[str, tuple[dt.date, dt.date | None]] = field(
        default_factory=dict, hash=False, compare=False
    )
    units_level: Level | None = field(default=None, compare=False)  # pads codes, names the level
    places: Places | None = field(default=None, compare=False, repr=False)
    kind: str = "observatory"
    complete_coverage: bool = False  # its files cover all its units for their months
    deployment: str = ""
    closed_on: dt.date | None = None  # left the exchange: its later files are refused


def at_level(observatory: Observatory, level: str | None) -> Observatory:
    """The contributor as a profile that places its records at ``level`` sees it: it may
    report for the areas of that level made only of its units, named and coded at that level."""
    if level is None or (observatory.units_level and observatory.units_level.code == level):
        return observatory
    if observatory.places is None:
        raise ValueError("records placed at a level need the deployment's geography")
    places = observatory.places.at(level)
    areas = places.areas_within(level, observatory.districts)
    return dataclasses.replace(
        observatory,
        districts=tuple(sorted(areas)),
        district_validity=areas,
        units_level=places.unit_level,
        places=places,
    )


@dataclass
class ValidationResult:
    """Accepted rows typed per the contract (index: source row), and every problem found."""

    accepted: pd.DataFrame
    rows_read: int
    problems: list[Problem] = field(default_factory=list)
    rejected_rows: set[int] = field(default_factory=set)
    # The rejected rows as written (contract columns only, headers as in the file), to be fixed
    # and sent again.
    rejected_cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    # How many rows were accepted, when they were handed on chunk by chunk instead of kept in
    # ``accepted`` (see FileValidation); None: ``accepted`` holds them all.
    accepted_rows: int | None = None

    def rejected_for_resending(self, lang: str = "es") -> pd.DataFrame:
        """The rejected rows with their source row and, last, why each was rejected."""
        if self.rejected_cells.empty:
            return self.rejected_cells
        reasons: dict[int, dict[str, None]] = {}
        errors = self.file_errors
        # A file refused whole says why once per row, briefly: the page has the details.
        whole_file = errors[0].message(lang) if errors else ""
        if len(errors) > 1:
            more = f" (+{len(errors) - 1} más)" if lang == "es" else f" (+{len(errors) - 1} more)"
            whole_file += more
        for p in self.problems:  # rows here are the observatory's (see rejected_cells)
            if p.row is not None and p.severity == ERROR:
                said = f"{p.column}: {p.message(lang)}" if p.column else p.message(lang)
                reasons.setdefault(p.row, {})[said] = None  # each reason once
        row, reason = ("fila", "motivo") if lang == "es" else ("row", "reason")
        frame = self.rejected_cells.copy()
        frame[reason] = [" | ".join(reasons.get(r, [whole_file])) for r in frame.index]
        return frame.rename_axis(row).reset_index()

    @property
    def rows_rejected(self) -> int:
        return len(self.rejected_rows)

    @property
    def rows_accepted(self) -> int:
        return len(self.accepted) if self.accepted_rows is None else self.accepted_rows

    @property
    def file_errors(self) -> list[Problem]:
        return [p for p in self.problems if p.row is None and p.severity == ERROR]

    @property
    def status(self) -> str:
        if self.file_errors or self.rows_accepted == 0:
            return "rejected"
        return "partly_accepted" if self.rejected_rows else "accepted"


def _allowed_codes(f: Field) -> str:
    codes = list(f.codelist.labels)
    listed = ", ".join(codes[:MAX_LISTED_CODES])
    return listed + (" …" if len(codes) > MAX_LISTED_CODES else "")


def _coerce(
    f: Field, raw: pd.Series, profile: Profile, units_level: Level | None = None
) -> tuple[pd.Series, pd.Series]:
    """Type one column. Returns ``(typed values, mask of non-blank cells that failed to type)``."""
    text = raw.astype("str").str.strip()
    blank = text.eq("")
    if f.type == "integer":
        if f.default is not None:
            text, blank = text.where(~blank, f.default), pd.Series(False, index=raw.index)
        integers = _plain_integers(text.where(~blank))
        if integers is not None:
            return integers, pd.Series(False, index=raw.index)
        number = pd.to_numeric(text.where(~blank), errors="coerce")
        whole = number.notna() & (number % 1 == 0) & (number.abs() < MAX_WHOLE_NUMBER)
        return number.where(whole).astype("Int64"), ~blank & ~whole
    if f.type == "number":
        # 1234.56 or 1234,56 (a lone decimal comma); thousands separators are not guessed.
        spelled = text.str.replace(r"^(-?\d+),(\d+)$", r"\1.\2", regex=True)
        number = pd.to_numeric(spelled.where(~blank), errors="coerce")
        return number.astype("Float64"), ~blank & number.isna()
    if f.type == "date":
        # Only whole dates in the accepted spellings: "2025" or "2025-03" would land in a period
        # the observatory never meant.
        iso_text = text.where(text.str.match(ISO_DATE_RE)).str.slice(0, 10)
        iso = pd.to_datetime(iso_text, format="%Y-%m-%d", errors="coerce")
        dmy_text = text.where(text.str.match(DMY_DATE_RE))
        dmy = pd.to_datetime(dmy_text, format="%d/%m/%Y", errors="coerce")
        parsed = iso.fillna(dmy)
        for spelling in profile.date_formats:  # the observatory's own, from its profile
            rest = text.where(~blank & parsed.isna())
            parsed = parsed.fillna(pd.to_datetime(rest, format=spelling, errors="coerce"))
        # A time part (Excel keeps one) is not part of a date.
        return parsed.dt.normalize().astype("datetime64[us]"), ~blank & parsed.isna()
    if f.type == "time":
        match = text.str.extract(TIME_RE)
        ok = match[0].notna()
        typed = (match[0].str.zfill(2) + ":" + match[1]).where(ok)
        return typed.astype("str"), ~blank & ~ok
    values = text.where(~blank)
    if f.codelist is not None:
        # Each distinct value is looked up once (a national file repeats a handful of labels).
        distinct = values.dropna().unique()
        canonical = {v: profile.code_for(f.name, v) or f.codelist.canonical(v) for v in distinct}
        values = values.map(canonical)
    if f.band is not None:
        # The profile's labels first (MENORES), then bands as written (18 a 24 años); anything
        # else stays as written, for the band check to name.
        distinct = values.dropna().unique()
        stored = {v: profile.code_for(f.name, v) or read_band(v) or v for v in distinct}
        values = values.map(stored)
    if f.default is not None:
        values = values.astype("str").fillna(f.default)
    if f.constraints.get("zero_pad"):
        values = pad_digits(values, f.constraints["zero_pad"])
    if units_level is not None:
        values = units_level.pad(values).where(values.notna())
    return values.astype("str"), pd.Series(False, index=raw.index)


def _plain_integers(text: pd.Series) -> pd.Series | None:
    """``text`` (blanks as missing) as Int64 when every cell is written as a whole number in
    range (the usual file: one vectorised cast, a tenth of the time); None when one is not
    ("12.0", "doce", too large), for the forgiving path to type and tell which."""
    try:
        cast = pc.cast(pyarrow.array(text), pyarrow.int64())
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, pyarrow.ArrowNotImplementedError):
        return None
    largest = pc.max(pc.abs(cast)).as_py()
    if largest is not None and largest >= MAX_WHOLE_NUMBER:
        return None
    typed = cast.to_pandas(types_mapper={pyarrow.int64(): pd.Int64Dtype()}.get)
    return pd.Series(typed.array, index=text.index)


def _checks(f: Field, observatory: Observatory, contract: Contract, today: dt.date) -> list:
    c = f.constraints
    checks = []
    if f.codelist is not None:
        codes = set(f.codelist.labels)
        checks.append(pa.Check(lambda s, codes=codes: s.isin(codes), name="codelist"))
    if "pattern" in c:
        checks.append(pa.Check(lambda s, p=c["pattern"]: s.str.match(p), name="pattern"))
    if f.band is not None:
        checks.append(pa.Check(lambda s, f=f: _is_band(s, *f.band), name="age-band"))
    if "max_length" in c:
        checks.append(pa.Check(lambda s, n=c["max_length"]: s.str.len() <= n, name="max-length"))
    if f.name in contract.identifier_fields:
        checks.append(
            pa.Check(lambda s: ~s.str.startswith(FORMULA_START), name="formula-identifier")
        )
    if f.type == "date":
        if "min" in c:
            low = pd.Timestamp(c["min"])
            checks.append(pa.Check(lambda s, low=low: s >= low, name="min"))
        if f.name == contract.period_field and observatory.opened_on:
            opened = pd.Timestamp(observatory.opened_on)
            checks.append(pa.Check(lambda s, o=opened: s >= o, name="before-observatory"))
        if c.get("not_in_future"):
            end = pd.Timestamp(today)
            checks.append(pa.Check(lambda s, end=end: s <= end, name="future-date"))
    else:
        if "min" in c:
            checks.append(pa.Check(lambda s, n=c["min"]: s >= n, name="min"))
        highest = _max(f)
        if highest is not None:
            checks.append(pa.Check(lambda s, n=highest: s <= n, name="max"))
    if f.name == contract.geography_field:
        owned = set(observatory.districts)
        checks.append(pa.Check(lambda s, owned=owned: s.isin(owned), name="geography-not-owned"))
    return checks


def _is_band(values: pd.Series, lowest: int, highest: int) -> pd.Series:
    """Which values are bands within ``lowest``..``highest`` (each distinct value once)."""
    ok = {}
    for v in values.dropna().unique():
        bounds = band_bounds(v)
        ok[v] = bounds is not None and lowest <= bounds[0] and (bounds[1] or 0) <= highest
    return values.map(ok).fillna(True).astype(bool)


def _max(f: Field):
    """A numeric field's largest value: its own max, else, for an integer, the warehouse's."""
    return f.constraints.get("max", INTEGER_MAX if f.type == "integer" else None)


def pandera_schema(contract: Contract, observatory: Observatory, today: dt.date):
    """The pandera schema for typed rows of ``contract`` sent by ``observatory``."""
    dtypes = PANDAS_DTYPES
    key_fields = contract.primary_key[1:]
    if len(key_fields) != 1:
        raise NotImplementedError("contracts with a composite record key are not supported yet")
    columns = {
        f.name: pa.Column(
            dtypes[f.type],
            _checks(f, observatory, contract, today),
            nullable=not f.required,
            unique=f.name in key_fields,
            report_duplicates="exclude_first",
        )
        for f in contract.fields
    }
    return pa.DataFrameSchema(columns)


PANDERA_CHECK_CODES = {"not_nullable": "required", "field_uniqueness": "duplicate-key"}
MAX_LISTED_UNITS = 5


def _owned_hint(observatory: Observatory) -> dict:
    """A short hint of the units a contributor may report for: a few codes, or how many."""
    units = observatory.districts
    level = observatory.units_level
    name_es = level.name["es"].lower() if level else "unidades"
    name_en = level.name["en"].lower() if level else "units"
    if not units:
        return {"hint_es": "", "hint_en": ""}
    if len(units) <= MAX_LISTED_UNITS:
        return {
            "hint_es": f" (puede reportar: {', '.join(units)})",
            "hint_en": f" (it may report: {', '.join(units)})",
        }
    return {
        "hint_es": f" (puede reportar {len(units)} unidades de nivel {name_es})",
        "hint_en": f" (it may report {len(units)} units of level {name_en})",
    }


def _problem_params(
    code: str, f: Field, observatory: Observatory, profile: Profile, value: str = ""
) -> dict:
    params = {"title_es": f.title["es"], "title_en": f.title["en"]}
    if code == "codelist":
        params["allowed"] = _allowed_codes(f)
        params["field"] = f.name
        params["where"] = profile.where
    elif code == "geography-not-owned":
        params |= _owned_hint(observatory)
    elif code == "before-observatory":
        params["opened"] = observatory.opened_on.isoformat()
    elif code == "formula-identifier":
        params["first"] = {"\t": "\\t", "\r": "\\r"}.get(value[:1], value[:1])
    elif code == "age-band":
        params |= {"field": f.name, "where": profile.where, "low": f.band[0], "high": f.band[1]}
    elif code == "max":
        params["limit"] = _max(f)
    elif code in ("min", "max-length"):
        key = {"max-length": "max_length"}.get(code, code)
        params["limit"] = f.constraints[key]
    return params


def _rule_problems(typed: pd.DataFrame, contract: Contract, header_of: dict) -> list[Problem]:
    """The contract's cross-field rules, on rows where every field involved has a value."""
    found = []
    for rule in contract.rules:
        involved = [*rule.fields, rule.other]
        present = typed[involved].notna().all(axis=1)
        total, other = typed[list(rule.fields)].sum(axis=1), typed[rule.other]
        broken = total.ne(other) if rule.relation == "equals" else total.gt(other)
        for row in typed.index[(present & broken).fillna(False)]:
            shown = {name: f"{typed.at[row, name]:g}" for name in involved}
            found.append(
                problem(
                    rule.code,
                    row=int(row),
                    column=header_of.get(rule.other, rule.other),
                    value=shown[rule.other],
                    **shown,
                )
            )
    return found


def _outside_validity(typed, contract, observatory, header_of, originals) -> list[Problem]:
    """Rows placed in a unit that did not exist on their date (e.g. a district created later)."""
    if not observatory.district_validity:
        return []
    geo, when = typed[contract.geography_field], typed[contract.period_field]
    validity = observatory.district_validity
    starts = pd.to_datetime(geo.map({c: v[0] for c, v in validity.items()}))
    ends = pd.to_datetime(geo.map({c: v[1] for c, v in validity.items()}))
    outside = when.notna() & ((starts.notna() & (when < starts)) | (ends.notna() & (when >= ends)))
    header = header_of.get(contract.geography_field)
    return [
        problem(
            "geography-not-valid-on-date",
            row=int(row),
            column=header,
            value=originals[contract.geography_field][row],
            date=when[row].date().isoformat(),
            valid_from=starts[row].date().isoformat(),
            valid_to="" if pd.isna(ends[row]) else ends[row].date().isoformat(),
        )
        for row in typed.index[outside]
    ]


def _field_of(p: Problem, header_of: dict[str, str]) -> str | None:
    """The contract field a problem's column (a header as written) stands for."""
    return next((name for name, header in header_of.items() if header == p.column), p.column)


def _unpivot(raw: pd.DataFrame, spec, key_header: str, first_row: int = 1):
    """One record per non-blank month cell; returns the long table (internal row numbers from
    ``first_row``: a file read in chunks numbers on) and, per internal row, its source row and
    its month column. Ids get the year and month added."""
    # A month column as the profile names it, whatever its case and accents (SEPTIEMBRE).
    by_label = {normalise_label(h): n for h, n in spec.months.items()}
    months = {
        c: by_label[normalise_label(c)] for c in raw.columns if normalise_label(c) in by_label
    }
    month_headers = list(months)
    kept = [c for c in raw.columns if c not in month_headers]
    order = {h: i for i, h in enumerate(month_headers)}
    long = (
        raw.rename_axis("__source_row")
        .reset_index()
        .melt(
            id_vars=["__source_row", *kept],
            value_vars=month_headers,
            var_name="__month_header",
            value_name="__cell",
        )
    )
    long = long[long["__cell"].ne("")]  # a blank is "not reported": no record, never a zero
    long = long.assign(__order=long["__month_header"].map(order)).sort_values(
        ["__source_row", "__order"], kind="stable"
    )
    year = (
        long[spec.year_column] if spec.year_column else pd.Series(str(spec.year), index=long.index)
    )
    year = year.astype("str")
    month = long["__month_header"].map(months).astype("int64").astype("str").str.zfill(2)
    frame = long[kept].copy()
    frame[spec.date_field] = year + "-" + month + "-01"
    frame[spec.value_field] = long["__cell"]
    if spec.id_from:
        base = (
            long[spec.id_from[0]]
            .astype("str")
            .str.cat([long[c].astype("str") for c in spec.id_from[1:]], sep="-")
        )
    else:
        base = long[key_header] if key_header in long.columns else pd.Series("", index=long.index)
    frame[key_header] = (base + "-" + year + month).where(base.ne(""), base)
    columns = [*kept, *([key_header] if key_header not in kept else []), spec.date_field]
    columns.append(spec.value_field)
    frame = frame[columns]
    frame.index = pd.RangeIndex(first_row, first_row + len(frame))
    source_of = dict(zip(frame.index, long["__source_row"].astype(int), strict=True))
    month_of = dict(zip(frame.index, long["__month_header"], strict=True))
    return frame.fillna(""), source_of, month_of


def not_data_rows(raw: pd.DataFrame, key_header: str | None, profile: Profile) -> dict[int, tuple]:
    """Rows that hold no record: the profile's drop rules, and totals or notes without an id.

    Returns source row -> (reason in Spanish, in English)."""
    dropped = {
        row: (f"regla del perfil: {rule}", f"profile rule: {rule}")
        for row, rule in profile.rows_to_drop(raw).items()
    }
    if key_header is not None and len(raw.columns):
        filled_cells = raw.ne("")
        # The first non-blank cell of each row: the column of its first True.
        first_column = filled_cells.to_numpy().argmax(axis=1)
        first_cell = pd.Series(raw.to_numpy()[range(len(raw)), first_column], index=raw.index)
        filled = filled_cells.sum(axis=1)
        # "Fuente: …" may stand in the id column itself; a record fills more than two cells.
        reads_like_note = first_cell.astype("str").str.match(TRAILER_RE, case=False)
        trailer = reads_like_note & (raw[key_header].eq("") | filled.le(2))
        for row in raw.index[trailer]:
            dropped.setdefault(int(row), ("total o nota", "a total or a note"))
    return dropped


@dataclass
class Mapped:
    """A raw table read through a profile: rows to type (with headers as written, plus one
    column per derived field), the header -> field mapping, and what was found on the way."""

    raw: pd.DataFrame
    mapping: dict[str, str]
    problems: list[Problem]
    failed: set[tuple[int, str]] = field(default_factory=set)  # (row, field) already reported
    source_of: dict[int, int] | None = None  # unpivoted: internal row -> source row
    month_of: dict[int, str] | None = None  # unpivoted: internal row -> month header
    before_unpivot: int = 0
    read_errors: set[int] = field(default_factory=set)

    @property
    def header_of(self) -> dict[str, str]:
        return {name: header for header, name in self.mapping.items()}

    @property
    def file_errors(self) -> list[Problem]:
        return [p for p in self.problems if p.row is None and p.severity == ERROR]

    @property
    def cell_errors(self) -> list[Problem]:
        return [p for p in self.problems if p.row is not None and p.severity == ERROR]


def _blank_values(raw: pd.DataFrame, values: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Cells the profile says mean "no value" (``Ignorado``, ``n/d``) become blank."""
    if not values:
        return raw
    raw = raw.copy()
    for column in raw.columns:
        blanks = {normalise_label(v) for v in (*values.get("*", ()), *values.get(column, ()))}
        if not blanks:
            continue
        hits = [v for v in raw[column].unique() if normalise_label(v) in blanks]
        if hits:
            raw[column] = raw[column].where(~raw[column].isin(hits), "")
    return raw


def _month_numbers(cells: pd.Series) -> pd.Series:
    """Month numbers from numbers or month names (Spanish or English, full or short)."""
    distinct = {}
    for v in cells.unique():
        label = normalise_label(v)
        if label.isdigit() and 1 <= int(label) <= 12:
            distinct[v] = int(label)
        else:
            distinct[v] = MONTHS.get(label)
    return cells.map(distinct)


def _date_part(raw: pd.DataFrame, part, low: int, high: int) -> tuple[pd.Series, pd.Series]:
    """A date part from a column (numbers; month names too) or a constant; returns the number
    (NA where invalid or blank) and the mask of non-blank cells that are not a valid part."""
    if not isinstance(part, str):
        return pd.Series(part, index=raw.index, dtype="Int64"), pd.Series(False, index=raw.index)
    cells = raw[part].astype("str").str.strip()
    if high == 12:
        number = _month_numbers(cells).astype("Int64")
    else:
        number = pd.to_numeric(cells.str.replace(r"\.0$", "", regex=True), errors="coerce")
        number = number.where((number % 1 == 0) & number.between(low, high)).astype("Int64")
    return number, cells.ne("") & number.isna()


def _shorten(ids: pd.Series, longest: int) -> pd.Series:
    """Ids longer than ``longest``: their start, ``~`` and 16 hex digits of their SHA-256, so
    that they stay readable, distinct and the same every time the file is sent."""
    ids = ids.astype("str")
    long = ids.str.len() > longest
    if long.any():
        keep = max(longest - 17, 0)
        ids = ids.copy()
        ids[long] = [f"{v[:keep]}~{hashlib.sha256(v.encode()).hexdigest()[:16]}" for v in ids[long]]
    return ids


def _derive(
    d: Derivation, raw: pd.DataFrame, contract: Contract, observatory, source_of
) -> tuple[pd.Series, list[Problem], set[int]]:
    """The values of one derived field, the problems met, and the rows whose cell failed."""
    f = contract.field(d.field)
    index = raw.index
    if d.kind == "value":
        return pd.Series(d.value, index=index, dtype="str"), [], set()
    if d.kind == "date":
        found, failed = [], set()
        parts = {}
        for name, low, high, es, en in (
            ("year", 1900, 2100, "año", "year"),
            ("month", 1, 12, "mes", "month"),
            ("day", 1, 31, "día", "day"),
        ):
            part = getattr(d, name)
            parts[name], bad = _date_part(raw, part, low, high)
            for row in index[bad]:
                failed.add(row)
                found.append(
                    problem(
                        "bad-date-part",
                        row=int(row),
                        column=part,
                        value=raw.at[row, part],
                        part_es=es,
                        part_en=en,
                        title_es=f.title["es"],
                        title_en=f.title["en"],
                    )
                )
        text = (
            parts["year"].astype("str")
            + "-"
            + parts["month"].astype("str").str.zfill(2)
            + "-"
            + parts["day"].astype("str").str.zfill(2)
        )
        ok = parts["year"].notna() & parts["month"].notna() & parts["day"].notna()
        dates = pd.to_datetime(text.where(ok), format="%Y-%m-%d", errors="coerce")
        impossible = ok & dates.isna()  # 31 February
        for row in index[impossible]:
            failed.add(row)
            column = d.day if isinstance(d.day, str) else d.month
            found.append(
                problem(
                    "bad-date-part",
                    row=int(row),
                    column=column if isinstance(column, str) else None,
                    value=text[row],
                    part_es="día",
                    part_en="day",
                    title_es=f.title["es"],
                    title_en=f.title["en"],
                )
            )
        return dates.dt.strftime("%Y-%m-%d").fillna("").astype("str"), found, failed
    if d.kind == "join":
        pieces = []
        for column in d.join:
            if column == ROW_NUMBER:
                rows = [source_of[i] for i in index] if source_of else list(index)
                pieces.append(pd.Series(rows, index=index).astype("str"))
            else:
                pieces.append(raw[column].astype("str").str.strip())
        joined = pieces[0].str.cat(pieces[1:], sep="-") if len(pieces) > 1 else pieces[0]
        incomplete = pd.concat([p.eq("") for p in pieces], axis=1).any(axis=1)
        joined = joined.where(~incomplete, "")
        if d.hash_over:
            joined = _shorten(joined, d.hash_over)
        return joined.astype("str"), [], set()
    if d.kind == "slice":
        cells = raw[d.column].astype("str").str.strip()
        if d.pad:
            cells = pad_digits(cells, d.pad)
        return cells.str.slice(d.start, d.end).astype("str"), [], set()
    places = observatory.places if observatory is not None else None
    if places is None:
        raise ValueError("place names need the deployment's geography")
    names = raw[d.place].astype("str").str.strip()
    parents = raw[d.parent].astype("str").str.strip() if d.parent else None
    resolved = places.resolve(names, parents, d.names)
    found, failed = [], set()
    parent = places.parent_level or places.unit_level  # the country has no parent
    parent_es, parent_en = parent.name["es"].lower(), parent.name["en"].lower()
    for row in index[resolved.failures.notna()]:
        code = resolved.failures[row]
        failed.add(row)
        # An unknown parent is the parent's cell at fault; otherwise the place's.
        column, value = (
            (d.parent, parents[row]) if code == "unknown-parent-place" else (d.place, names[row])
        )
        within = f" ({parents[row]})" if parents is not None and parents[row] else ""
        level, other = resolved.elsewhere.get(names[row], (places.unit_level, ""))
        found.append(
            problem(
                code,
                row=int(row),
                column=column,
                value=value,
                within_es=within,
                within_en=within,
                parent_es=parent_es,
                parent_en=parent_en,
                level_es=_article(level.name["es"]),
                level_en=level.name["en"].lower(),
                place_code=other,
                unit_a_es=_article(places.unit_level.name["es"]),
                unit_es=places.unit_level.name["es"].lower(),
                unit_en=places.unit_level.name["en"].lower(),
            )
        )
    return resolved.codes.fillna("").astype("str"), found, failed


def _article(noun: str) -> str:
    """«una provincia», «un municipio»: a level's name with its indefinite article."""
    noun = noun.lower()
    return ("una " if noun.split()[0].endswith("a") else "un ") + noun


def apply_profile(
    table: RawTable,
    contract: Contract,
    profile: Profile,
    observatory: "Observatory | None",
    first_internal_row: int = 1,
) -> Mapped:
    """Read a raw table through a profile: drop what is not data, unpivot month columns (their
    records numbered from ``first_internal_row``), derive fields, and map headers onto the
    contract. Nothing is typed yet."""
    raw = table.frame.drop(columns=[c for c in profile.ignore_columns if c in table.frame.columns])
    raw = _blank_values(raw, profile.blank_values)
    problems = list(table.problems)
    derived = {d.field for d in profile.derive}
    consumed = {c for d in profile.derive for c in d.columns}
    missing = [(c, d.line) for d in profile.derive for c in d.columns if c not in raw.columns]
    if profile.unpivot:
        used = [*profile.unpivot.id_from, profile.unpivot.year_column]
        consumed |= {c for c in used if c}
        line = profile.lines.get("unpivot")
        missing += [(c, line) for c in used if c and c not in raw.columns]
    for column, line in dict(missing).items():
        where = f"{profile.where}:{line}" if line else profile.where
        problems.append(problem("profile-column-missing", value=column, where=where))
    for header in profile.columns:
        if header not in raw.columns and normalise_label(header) not in {
            normalise_label(c) for c in raw.columns
        }:
            problems.append(
                problem("profile-column-unused", value=header, where=profile.line_of("columns"))
            )
    mapped = Mapped(raw=raw, mapping={}, problems=problems)
    if mapped.file_errors:
        mapped.mapping, _ = contract.match_headers(list(raw.columns), extra=profile.columns)
        return mapped

    mapping, _ = contract.match_headers(list(raw.columns), extra=profile.columns)
    # A derived field is the profile's word: a column of the file with that name is not used.
    mapping = {h: name for h, name in mapping.items() if name not in derived}
    header_of = {name: header for header, name in mapping.items()}
    # The record's id (reference files: the first key field, e.g. the unit's code).
    key_field = (
        contract.primary_key[1] if contract.kind == "observatory" else contract.primary_key[0]
    )
    key_header = header_of.get(key_field)
    not_data = not_data_rows(raw, key_header, profile)
    problems += [
        problem("row-dropped", row=row, reason_es=es, reason_en=en)
        for row, (es, en) in not_data.items()
    ]
    raw = raw.drop(index=list(not_data))
    if profile.unpivot:
        unpivot_key = header_of.get(key_field, key_field)
        raw, mapped.source_of, mapped.month_of = _unpivot(
            raw, profile.unpivot, unpivot_key, first_internal_row
        )
        longest = contract.field(key_field).constraints.get("max_length")
        if longest and unpivot_key in raw.columns:  # ids built from long names: a stable hash
            raw[unpivot_key] = _shorten(raw[unpivot_key], longest)
        mapped.read_errors = {p.row for p in problems if p.row is not None and p.severity == ERROR}
        mapped.before_unpivot = len(problems)
    for d in profile.derive:
        values, found, failed = _derive(d, raw, contract, observatory, mapped.source_of)
        raw = raw.assign(**{d.field: values})
        problems += found
        mapped.failed |= {(row, d.field) for row in failed}
    columns = [c for c in raw.columns if c not in derived]
    mapping, unknown = contract.match_headers(columns, extra=profile.columns)
    mapping = {h: name for h, name in mapping.items() if name not in derived}
    mapping |= {name: name for name in derived}
    dropped = [h for h in unknown if h not in consumed and h not in derived]
    problems += [problem("unknown-column", column=h) for h in dropped[:MAX_NAMED_COLUMNS]]
    if len(dropped) > MAX_NAMED_COLUMNS:  # 100,000 columns must not make 100,000 warnings
        problems.append(problem("more-unknown-columns", count=len(dropped) - MAX_NAMED_COLUMNS))
    for f in contract.fields:
        if f.required and f.name not in mapping.values():
            aliases = ", ".join(dict.fromkeys([f.title["es"], *f.aliases]))
            problems.append(
                problem(
                    "missing-column",
                    column=f.name,
                    field=f.name,
                    title_es=f.title["es"],
                    title_en=f.title["en"],
                    aliases=aliases,
                )
            )
    mapped.raw, mapped.mapping, mapped.problems = raw, mapping, problems
    return mapped


def validate_reference(
    frame: pd.DataFrame, contract: Contract, where: str, found: list[str] | None = None
) -> pd.DataFrame:
    """Type and check a reference file (all cells text) against its contract; all or nothing.

    Raises ReferenceDataError listing the problems; returns the typed frame otherwise.
    """
    ministry = Observatory(code="ministry", name="ministry", districts=())
    profile = Profile(observatory="ministry", dataset=contract.dataset)
    missing = [f.name for f in contract.fields if f.name not in frame.columns]
    if missing:
        raise ReferenceDataError(f"{where}: columns missing: {missing}")
    typed, problems, untyped = pd.DataFrame(index=frame.index), list(found or []), set()
    for f in contract.fields:
        typed[f.name], failed = _coerce(f, frame[f.name], profile)
        untyped |= {(row, f.name) for row in frame.index[failed]}
        problems += [
            f"row {row}: {f.name} {frame.at[row, f.name]!r} is not a {f.type}"
            for row in frame.index[failed]
        ]
    schema = pa.DataFrameSchema(
        {
            f.name: pa.Column(
                PANDAS_DTYPES[f.type],
                _checks(f, ministry, contract, dt.date.max),
                nullable=not f.required,
            )
            for f in contract.fields
        }
    )
    try:
        schema.validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        problems += [
            f"row {row}: {column} {frame.at[row, column]!r} fails {check}"
            for column, check, row in zip(
                cases["column"], cases["check"], cases["index"], strict=True
            )
            if (row, column) not in untyped
        ]
    duplicated = typed.duplicated(subset=list(contract.primary_key), keep="first")
    problems += [
        f"row {row}: the key {list(contract.primary_key)} repeats"
        for row in typed.index[duplicated]
    ]
    if problems:
        shown = "; ".join(problems[:20])
        raise ReferenceDataError(f"{where}: {len(problems)} problems: {shown}")
    return typed


def validate(
    table: RawTable,
    contract: Contract,
    observatory: Observatory,
    today: dt.date,
    profile: Profile | None = None,
) -> ValidationResult:
    """Validate every row of ``table`` lazily: all failures are collected, none stops the rest."""
    checking = FileValidation(contract, observatory, today, profile)
    return checking.result(checking.check(table))


class FileValidation:
    """The validation of one file fed chunk by chunk (obsx.intake.reading.Source.chunks), each chunk
    checked as ``validate`` checks a whole table; what holds across chunks lives here: a record
    id is used once per file, file-level problems are said once, records made from month columns
    are numbered on. The whole file's problems and rejected rows are tallied; accepted rows are
    handed back chunk by chunk (a split file ends as it would whole)."""

    def __init__(
        self,
        contract: Contract,
        observatory: Observatory,
        today: dt.date,
        profile: Profile | None = None,
    ):
        self.profile = profile or Profile(observatory=observatory.code, dataset=contract.dataset)
        observatory = at_level(observatory, self.profile.level)
        self.contract, self.observatory, self.today = contract, observatory, today
        self.schema = pandera_schema(contract, observatory, today)
        self.seen_ids: set = set()  # record ids of the chunks checked so far
        self.internal_rows = 0  # records made from month columns so far
        self.chunks = 0
        self.rows_read = self.rows_accepted = 0
        self.problems: list[Problem] = []
        self.rejected_rows: set[int] = set()
        self.rejected_cells: list[pd.DataFrame] = []

    def check(self, table: RawTable) -> pd.DataFrame:
        """Validate one chunk; returns its accepted rows, typed (index: source row)."""
        piece, internal = _validate_chunk(
            table,
            self.contract,
            self.observatory,
            self.today,
            self.profile,
            self.schema,
            self.seen_ids,
            self.internal_rows + 1,
        )
        problems = piece.problems
        if self.chunks:  # a header's problems (a missing column…) are the same in every chunk
            problems = [p for p in problems if p.row is not None]
        self.chunks += 1
        self.internal_rows += internal
        self.rows_read += piece.rows_read
        self.rows_accepted += len(piece.accepted)
        self.problems += problems
        self.rejected_rows |= piece.rejected_rows
        self.rejected_cells.append(piece.rejected_cells)
        return piece.accepted

    def result(self, accepted: pd.DataFrame | None = None) -> ValidationResult:
        """The whole file's result; ``accepted``: every accepted row, when they were kept (else
        only their count is known)."""
        found = [c for c in self.rejected_cells if not c.empty]
        if len(found) > 1:
            cells = pd.concat(found)
        elif found or self.rejected_cells:
            cells = (found or self.rejected_cells)[0]
        else:
            cells = pd.DataFrame()
        return ValidationResult(
            accepted=accepted if accepted is not None else pd.DataFrame(),
            rows_read=self.rows_read,
            problems=self.problems,
            rejected_rows=self.rejected_rows,
            rejected_cells=cells,
            accepted_rows=None if accepted is not None else self.rows_accepted,
        )


def _validate_chunk(
    table: RawTable,
    contract: Contract,
    observatory: Observatory,
    today: dt.date,
    profile: Profile,
    schema,
    seen_ids: set,
    first_internal_row: int,
) -> tuple[ValidationResult, int]:
    """Validate one chunk of a file (see FileValidation); returns its result and how many
    records it made from month columns. Adds the chunk's record ids to ``seen_ids``."""
    mapped = apply_profile(table, contract, profile, observatory, first_internal_row)
    raw, mapping, problems = mapped.raw, mapped.mapping, mapped.problems
    header_of = mapped.header_of
    source_of, month_of = mapped.source_of, mapped.month_of  # set once month cells became rows
    read_errors, before_unpivot = mapped.read_errors, mapped.before_unpivot
    internal = len(raw) if source_of is not None else 0
    result = ValidationResult(accepted=raw.iloc[0:0], rows_read=len(raw), problems=problems)
    contract_columns = [h for h in raw.columns if h in mapping]  # never the dropped ones
    if result.file_errors:
        result.rejected_rows = set(raw.index)
        result.rejected_cells = raw[contract_columns]
        return result, internal

    typed = pd.DataFrame(index=raw.index)
    originals = {}
    failed_cells: set[tuple[int, str]] = set(mapped.failed)
    for f in contract.fields:
        header = header_of.get(f.name)
        original = raw[header] if header else pd.Series("", index=raw.index, dtype="str")
        originals[f.name] = original
        pad = None
        if f.name == contract.geography_field:
            pad = observatory.units_level or current_deployment().units_level
        if header:
            typed[f.name], failed = _coerce(f, original, profile, pad)
        else:  # not in the file: every cell is blank, typed once (3 ms a column and chunk)
            one, bad = _coerce(f, pd.Series([""], dtype="str"), profile, pad)
            typed[f.name] = pd.Series(one.iloc[[0] * len(raw)].array, index=raw.index)
            failed = pd.Series(bool(bad.iloc[0]), index=raw.index)
        for row in failed[failed].index:
            if (row, f.name) in failed_cells:
                continue
            failed_cells.add((row, f.name))
            problems.append(
                problem(
                    f"type-{f.type}",
                    row=row,
                    column=header,
                    value=original[row],
                    title_es=f.title["es"],
                    title_en=f.title["en"],
                )
            )

    # A record id an earlier chunk used: reported as pandera reports a repeat within the chunk
    # (before the field's other checks: one error per cell, the first found).
    (key_field,) = contract.primary_key[1:]
    ids = typed[key_field].tolist()
    failures = []
    if seen_ids:
        failures = [
            (key_field, "field_uniqueness", row)
            for row, value in zip(typed.index, ids, strict=True)
            if value in seen_ids
        ]
    seen_ids.update(v for v in ids if pd.notna(v))
    unexpected = None
    try:
        schema.validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases, unexpected = exc.failure_cases, exc
        failures += zip(cases["column"], cases["check"], cases["index"], strict=True)
    for column, check, row in failures:
        if column not in originals or pd.isna(row):
            raise unexpected  # a schema-level failure we did not expect is a bug, not bad input
        row = int(row)
        if (row, column) in failed_cells:
            continue  # one error per cell: the first found
        failed_cells.add((row, column))
        code = PANDERA_CHECK_CODES.get(check, check)
        f = contract.field(column)
        params = _problem_params(code, f, observatory, profile, str(typed.at[row, column]))
        if code == "geography-not-owned":
            params["read"] = typed.at[row, column]
        problems.append(
            problem(
                code,
                row=row,
                column=header_of.get(column, column),
                value=originals[column][row],
                **params,
            )
        )

    problems += _outside_validity(typed, contract, observatory, header_of, originals)
    problems += _rule_problems(typed, contract, header_of)

    if contract.has_deletions:
        # A withdrawal needs only the record's key: blank required cells are no error there.
        deletions = set(typed.index[typed[ACTION_FIELD].eq(DELETE).fillna(False)])
        key = set(contract.primary_key)
        problems = [
            p
            for p in problems
            if not (
                p.code == "required" and p.row in deletions and _field_of(p, header_of) not in key
            )
        ]

    rejected = {p.row for p in problems if p.row is not None and p.severity == ERROR}
    if source_of is not None:  # internal rows back to the rows the observatory sees
        rejected = {p.row for p in problems[before_unpivot:] if p.severity == ERROR and p.row}
        rejected |= {i for i, src in source_of.items() if src in read_errors}
        problems = problems[:before_unpivot] + [
            dataclasses.replace(
                p,
                row=source_of.get(p.row, p.row),
                column=month_of.get(p.row) if p.column == profile.unpivot.value_field else p.column,
            )
            for p in problems[before_unpivot:]
        ]
    result.rejected_rows = rejected
    result.rejected_cells = raw.loc[sorted(rejected), contract_columns]
    result.accepted = typed.loc[~typed.index.isin(rejected)]
    if source_of is not None:
        # The rows as the observatory wrote them (months as columns), each once, to fix and resend.
        rows = sorted({source_of[i] for i in rejected})
        written = table.frame.drop(columns=[c for c in profile.ignore_columns if c in table.frame])
        result.rejected_cells = written.loc[rows]
        result.accepted.index = pd.Index(
            [source_of[i] for i in result.accepted.index], name="source_row"
        )
    result.problems = sorted(problems, key=lambda p: (p.row or 0, p.column or ""))
    return result, internal
