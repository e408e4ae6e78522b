"""Validate a raw table against a contract: map headers, type the cells, run the pandera schema.

Pure: takes DataFrames and returns DataFrames and problems; no database, no Dagster.
"""

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa

from obsx.contract import ACTION_FIELD, DELETE, PANDAS_DTYPES, Contract, Field
from obsx.problems import ERROR, Problem, problem
from obsx.profiles import Profile
from obsx.reading import RawTable

TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(:[0-5]\d)?$")
# The two date spellings the contract accepts; Excel dates arrive as ISO text, maybe with a time.
ISO_DATE_RE = r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?$"
DMY_DATE_RE = r"^\d{1,2}/\d{1,2}/\d{4}$"
# A row without a record id whose first cell reads like this is a total or a note, not data.
TRAILER_RE = r"^\s*(total|totales|subtotal|sub-total|fuente|nota|notas|elaborado|\*|\(\d+\)|\d+\))"
# Larger whole numbers lose precision as floats; no contract integer is anywhere near this.
MAX_WHOLE_NUMBER = 10**15
MAX_LISTED_CODES = 12


@dataclass(frozen=True)
class Observatory:
    code: str
    name: str
    districts: tuple[str, ...]
    opened_on: dt.date | None = None
    # district code -> (valid from, valid to or None): boundary changes keep history
    district_validity: dict[str, tuple[dt.date, dt.date | None]] = field(
        default_factory=dict, hash=False, compare=False
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

    def rejected_for_resending(self, lang: str = "es") -> pd.DataFrame:
        """The rejected rows with their source row and, last, why each was rejected."""
        if self.rejected_cells.empty:
            return self.rejected_cells
        reasons: dict[int, list[str]] = {}
        whole_file = [p.message(lang) for p in self.file_errors]
        for p in self.problems:  # rows here are the observatory's (see rejected_cells)
            if p.row is not None and p.severity == ERROR:
                reasons.setdefault(p.row, []).append(p.message(lang))
        row, reason = ("fila", "motivo") if lang == "es" else ("row", "reason")
        frame = self.rejected_cells.copy()
        frame[reason] = [" | ".join(reasons.get(r, whole_file)) for r in frame.index]
        return frame.rename_axis(row).reset_index()

    @property
    def rows_rejected(self) -> int:
        return len(self.rejected_rows)

    @property
    def file_errors(self) -> list[Problem]:
        return [p for p in self.problems if p.row is None and p.severity == ERROR]

    @property
    def status(self) -> str:
        if self.file_errors or len(self.accepted) == 0:
            return "rejected"
        return "partly_accepted" if self.rejected_rows else "accepted"


def _allowed_codes(f: Field) -> str:
    codes = list(f.codelist.labels)
    listed = ", ".join(codes[:MAX_LISTED_CODES])
    return listed + (" …" if len(codes) > MAX_LISTED_CODES else "")


def _coerce(f: Field, raw: pd.Series, profile: Profile) -> tuple[pd.Series, pd.Series]:
    """Type one column. Returns ``(typed values, mask of non-blank cells that failed to type)``."""
    text = raw.astype("str").str.strip()
    blank = text.eq("")
    if f.type == "integer":
        if f.default is not None:
            text, blank = text.where(~blank, f.default), pd.Series(False, index=raw.index)
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
        values = values.map(
            lambda v: profile.code_for(f.name, v) or f.codelist.canonical(v), na_action="ignore"
        )
    if f.default is not None:
        values = values.astype("str").fillna(f.default)
    pad = f.constraints.get("zero_pad")
    if pad:
        values = values.where(~values.str.fullmatch(r"\d+").fillna(False), values.str.zfill(pad))
    return values.astype("str"), pd.Series(False, index=raw.index)


def _checks(f: Field, observatory: Observatory, contract: Contract, today: dt.date) -> list:
    c = f.constraints
    checks = []
    if f.codelist is not None:
        codes = set(f.codelist.labels)
        checks.append(pa.Check(lambda s, codes=codes: s.isin(codes), name="codelist"))
    if "pattern" in c:
        checks.append(pa.Check(lambda s, p=c["pattern"]: s.str.match(p), name="pattern"))
    if "max_length" in c:
        checks.append(pa.Check(lambda s, n=c["max_length"]: s.str.len() <= n, name="max-length"))
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
        if "max" in c:
            checks.append(pa.Check(lambda s, n=c["max"]: s <= n, name="max"))
    if f.name == contract.geography_field:
        owned = set(observatory.districts)
        checks.append(pa.Check(lambda s, owned=owned: s.isin(owned), name="geography-not-owned"))
    return checks


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


def _problem_params(code: str, f: Field, observatory: Observatory, profile: Profile) -> dict:
    params = {"title_es": f.title["es"], "title_en": f.title["en"]}
    if code == "codelist":
        params["allowed"] = _allowed_codes(f)
        params["field"] = f.name
        params["where"] = profile.where
    elif code == "geography-not-owned":
        params["owned"] = ", ".join(observatory.districts)
    elif code == "before-observatory":
        params["opened"] = observatory.opened_on.isoformat()
    elif code in ("min", "max", "max-length"):
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
    starts = geo.map(lambda c: observatory.district_validity.get(c, (None, None))[0])
    ends = geo.map(lambda c: observatory.district_validity.get(c, (None, None))[1])
    starts, ends = pd.to_datetime(starts), pd.to_datetime(ends)
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


def _unpivot(raw: pd.DataFrame, spec, key_header: str):
    """One record per non-blank month cell; returns the long table (internal row numbers) and,
    per internal row, its source row and its month column. Ids get the year and month added."""
    month_headers = [h for h in spec.months if h in raw.columns]
    kept = [c for c in raw.columns if c not in month_headers]
    records, source_of, month_of = [], {}, {}
    for source_row, cells in raw.iterrows():
        year = spec.year or cells.get(spec.year_column, "")
        for header in month_headers:
            if cells[header] == "":  # not reported: no record, never a zero
                continue
            record = {c: cells[c] for c in kept}
            month = spec.months[header]
            record[spec.date_field] = f"{year}-{month:02d}-01"
            record[spec.value_field] = cells[header]
            base = (
                "-".join(cells[c] for c in spec.id_from) if spec.id_from else record.get(key_header)
            )
            if base:
                record[key_header] = f"{base}-{year}{month:02d}"
            records.append(record)
            internal = len(records)
            source_of[internal], month_of[internal] = int(source_row), header
    columns = [*kept, *([key_header] if key_header not in kept else []), spec.date_field]
    columns.append(spec.value_field)
    frame = pd.DataFrame(records, columns=columns, index=pd.RangeIndex(1, len(records) + 1))
    return frame.fillna(""), source_of, month_of


def not_data_rows(raw: pd.DataFrame, key_header: str | None, profile: Profile) -> dict[int, tuple]:
    """Rows that hold no record: the profile's drop rules, and totals or notes without an id.

    Returns source row -> (reason in Spanish, in English)."""
    dropped = {
        row: (f"regla del perfil: {rule}", f"profile rule: {rule}")
        for row, rule in profile.rows_to_drop(raw).items()
    }
    if key_header is not None:
        first_cell = raw.apply(lambda r: next((c for c in r if c), ""), axis=1)
        filled = raw.ne("").sum(axis=1)
        # "Fuente: …" may stand in the id column itself; a record fills more than two cells.
        reads_like_note = first_cell.str.match(TRAILER_RE, case=False)
        trailer = reads_like_note & (raw[key_header].eq("") | filled.le(2))
        for row in raw.index[trailer]:
            dropped.setdefault(int(row), ("total o nota", "a total or a note"))
    return dropped


class ReferenceDataError(ValueError):
    """Reference data (ministry files) that break their contract: fix the file, then reload."""


def validate_reference(frame: pd.DataFrame, contract: Contract, where: str) -> pd.DataFrame:
    """Type and check a reference file (all cells text) against its contract; all or nothing.

    Raises ReferenceDataError listing the problems; returns the typed frame otherwise.
    """
    ministry = Observatory(code="ministry", name="ministry", districts=())
    profile = Profile(observatory="ministry", dataset=contract.dataset)
    missing = [f.name for f in contract.fields if f.name not in frame.columns]
    if missing:
        raise ReferenceDataError(f"{where}: columns missing: {missing}")
    typed, problems, untyped = pd.DataFrame(index=frame.index), [], set()
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
    profile = profile or Profile(observatory=observatory.code, dataset=contract.dataset)
    raw = table.frame.drop(columns=[c for c in profile.ignore_columns if c in table.frame.columns])
    problems = list(table.problems)
    mapping, unknown = contract.match_headers(list(raw.columns), extra=profile.columns)
    problems += [problem("unknown-column", column=h) for h in unknown]
    header_of = {name: header for header, name in mapping.items()}
    (key_field,) = contract.primary_key[1:]
    not_data = not_data_rows(raw, header_of.get(key_field), profile)
    problems += [
        problem("row-dropped", row=row, reason_es=es, reason_en=en)
        for row, (es, en) in not_data.items()
    ]
    raw = raw.drop(index=list(not_data))
    source_of = None  # internal row -> source row, once month cells have become rows
    if profile.unpivot:
        problems = [p for p in problems if p.code != "unknown-column"]
        key_header = header_of.get(key_field, key_field)
        raw, source_of, month_of = _unpivot(raw, profile.unpivot, key_header)
        mapping, unknown = contract.match_headers(list(raw.columns), extra=profile.columns)
        problems += [problem("unknown-column", column=h) for h in unknown]
        header_of = {name: header for header, name in mapping.items()}
        read_errors = {p.row for p in problems if p.row is not None and p.severity == ERROR}
        before_unpivot = len(problems)
    for f in contract.fields:
        if f.required and f.name not in header_of:
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
    result = ValidationResult(accepted=raw.iloc[0:0], rows_read=len(raw), problems=problems)
    contract_columns = [h for h in raw.columns if h in mapping]  # never the dropped ones
    if result.file_errors:
        result.rejected_rows = set(raw.index)
        result.rejected_cells = raw[contract_columns]
        return result

    typed = pd.DataFrame(index=raw.index)
    originals = {}
    failed_cells: set[tuple[int, str]] = set()
    for f in contract.fields:
        header = header_of.get(f.name)
        original = raw[header] if header else pd.Series("", index=raw.index, dtype="str")
        originals[f.name] = original
        typed[f.name], failed = _coerce(f, original, profile)
        for row in failed[failed].index:
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

    try:
        pandera_schema(contract, observatory, today).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        for column, check, row in zip(cases["column"], cases["check"], cases["index"], strict=True):
            if column not in originals or pd.isna(row):
                raise  # a schema-level failure we did not expect is a bug, not bad input
            row = int(row)
            if (row, column) in failed_cells:
                continue
            code = PANDERA_CHECK_CODES.get(check, check)
            f = contract.field(column)
            problems.append(
                problem(
                    code,
                    row=row,
                    column=header_of.get(column, column),
                    value=originals[column][row],
                    **_problem_params(code, f, observatory, profile),
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
        result.rejected_cells.index = [source_of[i] for i in result.rejected_cells.index]
        result.accepted.index = pd.Index(
            [source_of[i] for i in result.accepted.index], name="source_row"
        )
    result.problems = sorted(problems, key=lambda p: (p.row or 0, p.column or ""))
    return result
