"""Profiles: how one contributor's export maps onto a dataset's contract, as data.

``<deployment>/profiles/<contributor>/*.yaml`` say which sheet and header row hold the table, which
of its columns is which contract field, which of its code values is which contract code, which
date spelling it uses, which rows are not data, and how fields the export does not hold as such
are derived (a constant, a date from parts, an id from several columns, a code from part of
another, a unit from its place name). A contributor may have several profiles for one dataset,
chosen by file-name pattern (``files``) or by headers. A new layout needs a profile, not code; a
contributor without a profile is read with the contract's own header names and labels.
"""

import fnmatch
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from obsx.config import REPO_ROOT
from obsx.intake.contract import Contract, band_bounds, band_text, normalise_label, read_band
from obsx.intake.reading import Layout
from obsx.sourceyaml import LineDict, SourceError, load_yaml
from obsx.warehouse.deployment import current_deployment

ROW_NUMBER = "$row"  # in derive.<field>.join: the row number in the file
MONTHS = {
    **dict.fromkeys(["enero", "ene", "january", "jan"], 1),
    **dict.fromkeys(["febrero", "feb", "february"], 2),
    **dict.fromkeys(["marzo", "mar", "march"], 3),
    **dict.fromkeys(["abril", "abr", "april", "apr"], 4),
    **dict.fromkeys(["mayo", "may"], 5),
    **dict.fromkeys(["junio", "jun", "june"], 6),
    **dict.fromkeys(["julio", "jul", "july"], 7),
    **dict.fromkeys(["agosto", "ago", "august", "aug"], 8),
    **dict.fromkeys(["septiembre", "setiembre", "sep", "set", "sept", "september"], 9),
    **dict.fromkeys(["octubre", "oct", "october"], 10),
    **dict.fromkeys(["noviembre", "nov", "november"], 11),
    **dict.fromkeys(["diciembre", "dic", "december", "dec"], 12),
}
DERIVE_KINDS = {
    "value": {"value"},
    "date": {"year", "month", "day"},
    "join": {"join", "hash_over"},
    "slice": {"column", "slice", "pad"},
    "place": {"place", "parent", "names"},
}
DERIVE_NEEDS = {
    "value": {"value"},
    "date": {"year", "month"},
    "join": {"join"},
    "slice": {"column"},
    "place": {"place"},
}
KNOWN_KEYS = {
    "files",
    "level",
    "covers",
    "derive",
    "complete_coverage",
    "value_labels",
    "blank_values",
    "unpivot",
    "observatory",
    "dataset",
    "sheet",
    "header_row",
    "encoding",
    "delimiter",
    "columns",
    "ignore_columns",
    "codes",
    "date_formats",
    "drop_rows",
    "language",
}


@dataclass(frozen=True)
class Unpivot:
    """A wide layout: one column per month, each non-blank cell a record of that month.

    A blank cell means "not reported" and makes no record; 0 is a reported zero.
    """

    months: dict[str, int]  # header of a month column -> month number
    date_field: str  # receives the first day of the month
    value_field: str  # receives the cell
    year: int | None = None
    year_column: str | None = None  # when the year is in a column of each row
    id_from: tuple[str, ...] = ()  # no id column: build each record's id from these columns


@dataclass(frozen=True)
class Derivation:
    """How one contract field is made from other cells (see DERIVE_KINDS)."""

    field: str
    kind: str
    value: str | None = None  # value: a constant
    year: str | int | None = None  # date: a column name, or a number
    month: str | int | None = None  # a column holding a number or a month name, or a number
    day: str | int | None = 1
    join: tuple[str, ...] = ()  # join: columns (or $row) joined with "-"
    hash_over: int | None = None  # join: longer ids than this become a stable hash
    column: str | None = None  # slice: the column cut
    start: int = 0
    end: int | None = None
    pad: int | None = None  # slice: restore leading zeros to this length first
    place: str | None = None  # place: the column with the unit's name
    parent: str | None = None  # place: the column with its parent's name or code
    names: dict[str, str] = field(default_factory=dict)  # place: spellings the geography lacks
    line: int | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The file columns this derivation reads."""
        parts = [self.year, self.month, self.day, self.column, self.place, self.parent]
        named = [p for p in parts if isinstance(p, str)]
        return (*named, *[c for c in self.join if c != ROW_NUMBER])


class ProfileError(SourceError):
    """A profile that cannot be used: said with the file, the line and the key at fault."""


@dataclass(frozen=True)
class Profile:
    observatory: str
    dataset: str
    path: Path | None = None  # None: no profile file, the contract alone
    sheet: str | int | None = None
    header_row: int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # file header -> contract field
    ignore_columns: tuple[str, ...] = ()
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # field -> value -> code
    date_formats: tuple[str, ...] = ()
    drop_rows: tuple[tuple[str, str], ...] = ()  # (column as in the file, regular expression)
    language: str = "es"
    unpivot: Unpivot | None = None
    files: tuple[str, ...] = ()  # file-name patterns this profile is for (empty: any)
    derive: tuple[Derivation, ...] = ()
    complete_coverage: bool = False  # a file covers all the contributor's units for its months
    # the codes a file covers of a field (crime_code: [0101] for a homicide register): its units
    # then count for no indicator of other codes (they are not reported, not zero)
    covers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    value_labels: bool = True  # SPSS: read value labels (False: the numeric codes)
    # cells that mean "no value" (Ignorado, n/d): column -> values ("*": every column)
    blank_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the level of the geography its records are placed at (a province's code or name): they
    # count for that level and those above, never below; None: the deployment's units
    level: str | None = None
    lines: dict = field(default_factory=dict, compare=False, repr=False)  # key -> line

    def covered(self, name: str) -> tuple[str, ...] | None:
        """The codes of ``name`` a file covers, if the profile says: ``covers:``, or the one
        code every row is given (``derive: {name: {value: X}}``); None: it does not say."""
        if name in self.covers:
            return self.covers[name]
        for d in self.derive:
            if d.field == name and d.kind == "value":
                return (str(d.value),)
        return None

    def line_of(self, *keys) -> str:
        """``path:line`` of a key of the profile, for messages."""
        line = None
        for key in keys:
            line = self.lines.get(key) or line
        return f"{self.where}:{line}" if line else self.where

    def matches_file(self, file_name: str) -> bool:
        return not self.files or any(
            fnmatch.fnmatch(file_name.lower(), pattern.lower()) for pattern in self.files
        )

    @property
    def where(self) -> str:
        """How to name this profile to an observatory."""
        if self.path is None:
            return f"profiles/{self.observatory}/{self.dataset}.yaml"
        try:
            return str(self.path.relative_to(REPO_ROOT))
        except ValueError:
            return str(self.path)

    def code_for(self, field_name: str, value: str) -> str | None:
        """The contract code the profile gives a file value (case, accents and spaces folded)."""
        table = self.codes.get(field_name)
        if not table:
            return None
        return table.get(value) or table.get(normalise_label(value))

    def layout(self, contract: Contract) -> Layout:
        def is_header(cells: list[str]) -> bool:
            mapping, _ = contract.match_headers([c for c in cells if c], extra=self.columns)
            derived_columns = {c for d in self.derive for c in d.columns}
            return len(mapping) + len(derived_columns & set(cells)) >= 2

        return Layout(
            sheet=self.sheet,
            header_row=self.header_row,
            encoding=self.encoding,
            delimiter=self.delimiter,
            is_header=is_header,
            value_labels=self.value_labels,
        )

    def rows_to_drop(self, frame) -> dict[int, str]:
        """Source rows the profile says are not data (a TOTAL row, notes), with the rule."""
        dropped = {}
        for column, pattern in self.drop_rows:
            if column in frame.columns:
                with warnings.catch_warnings():  # groups in a pattern are fine: we only test
                    warnings.simplefilter("ignore", UserWarning)
                    hits = frame[column].astype("str").str.contains(pattern, regex=True)
                dropped.update({int(row): f"{column} ~ {pattern}" for row in frame.index[hits]})
        return dropped


def _fail(spec, path, key, message):
    line = spec.line(key) if isinstance(spec, LineDict) else None
    raise ProfileError(path or "profile", line, message)


def _derivation(name: str, spec, path, contract: Contract) -> Derivation:
    if not isinstance(spec, dict):
        raise ProfileError(path or "profile", None, f"derive.{name}: a mapping is expected")
    keys = set(spec)
    kind = next((k for k, allowed in DERIVE_KINDS.items() if keys and keys <= allowed), None)
    if kind is None or DERIVE_NEEDS[kind] - keys:
        known = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in DERIVE_KINDS.items())
        _fail(
            spec,
            path,
            next(iter(spec), None),
            f"derive.{name}: keys {sorted(keys)} fit no kind ({known})",
        )
    line = spec.line(next(iter(spec))) if isinstance(spec, LineDict) else None
    f = contract.field(name)
    if kind == "value":
        return Derivation(name, kind, value=str(spec["value"]), line=line)
    if kind == "date":
        if f.type != "date":
            _fail(spec, path, "month", f"derive.{name}: year/month/day make a date field")
        for part, (low, high) in {"year": (1900, 2100), "month": (1, 12), "day": (1, 31)}.items():
            value = spec.get(part)
            if isinstance(value, bool) or (isinstance(value, int) and not low <= value <= high):
                _fail(spec, path, part, f"derive.{name}.{part}: {value!r} is not a {part}")
        if "year" not in spec:
            _fail(spec, path, "month", f"derive.{name}: year is missing")
        return Derivation(
            name,
            kind,
            year=spec["year"],
            month=spec["month"],
            day=spec.get("day", 1),
            line=line,
        )
    if kind == "join":
        columns = spec["join"]
        if not isinstance(columns, list) or not columns:
            _fail(spec, path, "join", f"derive.{name}.join: a list of columns (or {ROW_NUMBER})")
        hash_over = spec.get("hash_over", f.constraints.get("max_length"))
        return Derivation(
            name, kind, join=tuple(str(c) for c in columns), hash_over=hash_over, line=line
        )
    if kind == "slice":
        cut = spec.get("slice", [0, None])
        if not (isinstance(cut, list) and len(cut) == 2 and isinstance(cut[0], int)):
            _fail(spec, path, "slice", f"derive.{name}.slice: [start, end] (0 = first character)")
        return Derivation(
            name,
            kind,
            column=str(spec["column"]),
            start=cut[0],
            end=cut[1],
            pad=spec.get("pad"),
            line=line,
        )
    if name != contract.geography_field:
        _fail(
            spec, path, "place", f"derive.{name}: place names give only {contract.geography_field}"
        )
    parent = spec.get("parent")
    names = spec.get("names") or {}
    if not isinstance(names, dict):
        _fail(spec, path, "names", f"derive.{name}.names: a mapping of a spelling to a unit code")
    return Derivation(
        name,
        kind,
        place=str(spec["place"]),
        parent=None if parent is None else str(parent),
        names={normalise_label(k): str(v) for k, v in names.items()},
        line=line,
    )


def _check_month_headers(u, months: dict[str, int], path) -> None:
    """A month column written as a name must name the month it is given (a misspelt key)."""
    table = u.get("months") if isinstance(u, dict) else None
    for header, number in months.items():
        line = table.line(header) if isinstance(table, LineDict) else None
        if not 1 <= number <= 12:
            raise ProfileError(
                path or "profile", line, f"unpivot.months.{header}: {number} is not a month"
            )
        label = normalise_label(header)
        if re.fullmatch(r"[a-z ]+", label):
            known = MONTHS.get(label) or MONTHS.get(label.split(" ")[0])
            if known is None:
                raise ProfileError(
                    path or "profile", line, f"unpivot.months: {header!r} is not a month name"
                )
            if known != number:
                raise ProfileError(
                    path or "profile",
                    line,
                    f"unpivot.months: {header!r} is month {known}, not {number}",
                )


def parse_profile(spec: dict, contract: Contract, path: Path | None = None) -> Profile:
    """Check a profile against its contract, so that a mistake shows when it is loaded, with
    the file and line at fault, before any row is read."""
    where = str(path) if path else "profile"
    spec = spec if isinstance(spec, LineDict) else _as_line_dict(spec)
    unknown = set(spec) - KNOWN_KEYS
    if unknown:
        key = sorted(unknown)[0]
        _fail(spec, where, key, f"unknown key {key!r}; known: {sorted(KNOWN_KEYS)}")
    names = {f.name for f in contract.fields}
    columns_spec = spec.get("columns") or {}
    columns = {str(k): str(v) for k, v in columns_spec.items()}
    for header, name in columns.items():
        if name not in names:
            _fail(
                columns_spec,
                where,
                header,
                f"columns.{header!r} names no field of {contract.dataset}",
            )
    derive_spec = spec.get("derive") or {}
    derive = []
    for name, d in derive_spec.items():
        if name not in names:
            _fail(derive_spec, where, name, f"derive.{name}: no field of {contract.dataset}")
        if name in columns.values():
            _fail(derive_spec, where, name, f"derive.{name}: columns already gives that field")
        derive.append(_derivation(str(name), d, where, contract))
    codes: dict[str, dict[str, str]] = {}
    codes_spec = spec.get("codes") or {}
    for name, table in codes_spec.items():
        if name in names and contract.field(name).band is not None:
            codes[name] = _band_labels(name, table, contract.field(name).band, codes_spec, where)
            continue
        if name not in names or contract.field(name).codelist is None:
            _fail(codes_spec, where, name, f"codes.{name}: {name!r} is not a coded field")
        valid = contract.field(name).codelist
        mapped = {}
        for value, code in (table or {}).items():
            line_table = table if isinstance(table, LineDict) else codes_spec
            if isinstance(value, bool):  # YAML reads bare No/Yes/Si as booleans
                _fail(
                    line_table, where, value, f"codes.{name}: quote the value {value!r} ('No': …)"
                )
            code = valid.canonical(str(code))
            if code not in valid.labels:
                _fail(line_table, where, value, f"codes.{name}.{value!r} -> {code!r} is not a code")
            mapped[str(value)] = code
            mapped[normalise_label(str(value))] = code
        codes[name] = mapped
    drop_rows = []
    for rule in spec.get("drop_rows") or []:
        try:
            re.compile(rule["matches"])
        except (KeyError, TypeError, re.error) as exc:
            _fail(spec, where, "drop_rows", f"drop_rows needs column and a valid 'matches': {exc}")
        drop_rows.append((str(rule["column"]), rule["matches"]))
    header_row = spec.get("header_row", "auto")
    if header_row != "auto" and not (isinstance(header_row, int) and header_row >= 1):
        _fail(spec, where, "header_row", "header_row is 'auto' or a row number (1 = first)")
    unpivot = None
    if spec.get("unpivot"):
        u = spec["unpivot"]
        try:
            unpivot = Unpivot(
                months={str(k): int(v) for k, v in u["months"].items()},
                date_field=u["date_field"],
                value_field=u["value_field"],
                year=u.get("year"),
                year_column=u.get("year_column"),
                id_from=tuple(str(c) for c in u.get("id_from") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            _fail(
                spec,
                where,
                "unpivot",
                "unpivot needs months (header: month number), date_field, value_field"
                f" and year or year_column ({exc})",
            )
        _check_month_headers(u, unpivot.months, where)
        if unpivot.date_field not in names or contract.field(unpivot.date_field).type != "date":
            _fail(spec, where, "unpivot", "unpivot.date_field must be a date field")
        if unpivot.value_field not in names or contract.field(unpivot.value_field).type not in (
            "integer",
            "number",
        ):
            _fail(spec, where, "unpivot", "unpivot.value_field must be a numeric field")
        if (unpivot.year is None) == (unpivot.year_column is None):
            _fail(spec, where, "unpivot", "unpivot needs exactly one of year and year_column")
    language = spec.get("language", "es")
    if language not in ("es", "en"):
        _fail(spec, where, "language", "language is 'es' or 'en'")
    files = spec.get("files") or []
    files = [files] if isinstance(files, str) else files
    return Profile(
        observatory=spec.get("observatory", ""),
        dataset=spec.get("dataset", contract.dataset),
        path=path,
        sheet=spec.get("sheet"),
        header_row=None if header_row == "auto" else header_row,
        encoding=spec.get("encoding"),
        delimiter=spec.get("delimiter"),
        columns=columns,
        ignore_columns=tuple(str(c) for c in spec.get("ignore_columns") or []),
        codes=codes,
        date_formats=tuple(spec.get("date_formats") or []),
        drop_rows=tuple(drop_rows),
        language=language,
        unpivot=unpivot,
        files=tuple(str(p) for p in files),
        derive=tuple(derive),
        complete_coverage=bool(spec.get("complete_coverage", False)),
        covers=_covers(spec, where, names),
        value_labels=bool(spec.get("value_labels", True)),
        blank_values=_blank_values(spec, where),
        level=_level(spec, where),
        lines=dict(getattr(spec, "lines", {})),
    )


def _level(spec, where) -> str | None:
    """``level``: one of the deployment's levels, by its code, name or alias."""
    written = spec.get("level")
    if written is None:
        return None
    deployment = current_deployment()
    code = deployment.level_code(str(written))
    if code is None:
        known = ", ".join(deployment.level_codes)
        _fail(spec, where, "level", f"level: {written!r} is not a level of the geography ({known})")
    return None if code == deployment.units_level.code else code


def _covers(spec, where, names: set[str]) -> dict[str, tuple[str, ...]]:
    """``covers``: a mapping of a field to the codes (or code prefixes) its files cover."""
    given = spec.get("covers") or {}
    if not isinstance(given, dict):
        _fail(
            spec, where, "covers", "covers: a mapping of a field to its codes (crime_code: [0101])"
        )
    covers = {}
    for name, codes in given.items():
        if name not in names:
            _fail(given, where, name, f"covers.{name}: no field of this dataset")
        codes = [codes] if isinstance(codes, str) else codes
        if not isinstance(codes, list) or not codes or not all(isinstance(c, str) for c in codes):
            _fail(given, where, name, f'covers.{name}: a list of codes, quoted ("0101")')
        covers[str(name)] = tuple(codes)
    return covers


def _band_labels(name: str, table, limits: tuple[int, int], codes_spec, where) -> dict:
    """``codes.<band field>``: a source's labels and the band each stands for, written
    ``[lowest, highest]`` (``[18, null]``: 18 and over) or as a band (``18-24``, ``60+``)."""
    mapped = {}
    for value, band in (table or {}).items():
        line_table = table if isinstance(table, LineDict) else codes_spec
        if isinstance(value, bool):
            _fail(line_table, where, value, f"codes.{name}: quote the value {value!r}")
        stored = None
        if isinstance(band, list) and len(band) == 2 and isinstance(band[0], int):
            high = band[1]
            if high is None or (isinstance(high, int) and not isinstance(high, bool)):
                stored = band_text(band[0], high)
        elif isinstance(band, str):
            stored = read_band(band)
        bounds = band_bounds(stored) if stored else None
        if bounds is None or bounds[0] < limits[0] or (bounds[1] or 0) > limits[1]:
            _fail(
                line_table,
                where,
                value,
                f"codes.{name}.{value!r}: {band!r} is not a band: [lowest, highest] from"
                f" {limits[0]} to {limits[1]} ([18, null]: 18 and over)",
            )
        mapped[str(value)] = stored
        mapped[normalise_label(str(value))] = stored
    return mapped


def _blank_values(spec, where) -> dict[str, tuple[str, ...]]:
    """``blank_values``: a list (every column) or a mapping of column to values."""
    given = spec.get("blank_values") or {}
    if isinstance(given, list):
        given = {"*": given}
    if not isinstance(given, dict) or not all(isinstance(v, list) for v in given.values()):
        _fail(spec, where, "blank_values", "blank_values: a list, or column: [values]")
    return {str(k): tuple(str(v) for v in values) for k, values in given.items()}


def _as_line_dict(spec: dict) -> LineDict:
    """A plain dict (a test's profile) as a mapping without lines."""
    out = LineDict(spec)
    out.lines = {}
    return out


def contributor_profiles(
    observatory: str, contracts: dict[str, Contract], profiles_dir: Path
) -> list[Profile]:
    """Every profile of a contributor (``<profiles>/<contributor>/*.yaml``), checked.

    A file names its dataset (``dataset:``), else its name does (``incidents.yaml``). Read
    once per process while the files stay as they are: a run of 340 files from one national
    institution parses its profiles once, and an edited profile is read again."""
    folder = profiles_dir / observatory
    paths = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    state = (
        str(folder),
        tuple(sorted(contracts)),
        tuple((p.name, p.stat().st_mtime_ns) for p in paths),
    )
    if state not in _READ:
        if len(_READ) > 1000:  # a long-lived process: forget old states rather than grow
            _READ.clear()
        _READ[state] = _read_profiles(observatory, contracts, paths)
    return _READ[state]


_READ: dict[tuple, list[Profile]] = {}


def _read_profiles(observatory: str, contracts: dict[str, Contract], paths: list[Path]):
    found = []
    for path in paths:
        spec = load_yaml(path)
        dataset = str(spec.get("dataset", path.stem))
        if dataset not in contracts:
            raise ProfileError(
                path, spec.line("dataset"), f"dataset {dataset!r} is not one of {sorted(contracts)}"
            )
        profile = parse_profile(spec, contracts[dataset], path)
        if profile.observatory not in ("", observatory):
            raise ProfileError(
                path,
                spec.line("observatory"),
                f"written for {profile.observatory!r}, not {observatory!r}",
            )
        found.append(profile)
    return found


def load_profile(observatory: str, contract: Contract, profiles_dir: Path | None = None) -> Profile:
    """The profile ``<profiles>/<observatory>/<dataset>.yaml``, or an empty one if there is none
    (``profiles_dir``: the current deployment's)."""
    profiles_dir = profiles_dir or current_deployment().profiles_dir
    path = profiles_dir / observatory / f"{contract.dataset}.yaml"
    if not path.exists():
        return Profile(observatory=observatory, dataset=contract.dataset)
    spec = load_yaml(path)
    profile = parse_profile(spec, contract, path)
    if profile.observatory not in ("", observatory):
        raise ProfileError(
            path,
            spec.line("observatory"),
            f"written for {profile.observatory!r}, not {observatory!r}",
        )
    return profile


def load_reference_profile(deployment, contract: Contract) -> Profile:
    """The ministry's profile for a reference file of the deployment, or an empty one."""
    return load_profile("ministry", contract, deployment.profiles_dir)
