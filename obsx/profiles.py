"""Profiles: how one observatory's export maps onto a dataset's contract, as data.

``profiles/<observatory>/<dataset>.yaml`` says which sheet and header row hold the table, which
of its columns is which contract field, which of its code values is which contract code, which
date spelling it uses and which rows are not data. A new layout needs a profile, not code; an
observatory without a profile is read with the contract's own header names and labels.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from obsx.config import REPO_ROOT
from obsx.contract import Contract, normalise_label
from obsx.reading import Layout

PROFILES_DIR = REPO_ROOT / "profiles"
KNOWN_KEYS = {
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


class ProfileError(ValueError):
    """A profile that cannot be used: said with the file and the key at fault."""


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
            return len(mapping) >= 2

        return Layout(
            sheet=self.sheet,
            header_row=self.header_row,
            encoding=self.encoding,
            delimiter=self.delimiter,
            is_header=is_header,
        )

    def rows_to_drop(self, frame) -> dict[int, str]:
        """Source rows the profile says are not data (a TOTAL row, notes), with the rule."""
        dropped = {}
        for column, pattern in self.drop_rows:
            if column in frame.columns:
                rule = re.compile(pattern)
                hits = frame[column].map(lambda v, rule=rule: bool(rule.search(str(v))))
                dropped.update({int(row): f"{column} ~ {pattern}" for row in frame.index[hits]})
        return dropped


def parse_profile(spec: dict, contract: Contract, path: Path | None = None) -> Profile:
    """Check a profile against its contract, so that a mistake shows when it is loaded."""
    where = str(path) if path else "profile"
    unknown = set(spec) - KNOWN_KEYS
    if unknown:
        raise ProfileError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
    names = {f.name for f in contract.fields}
    columns = {str(k): str(v) for k, v in (spec.get("columns") or {}).items()}
    for header, name in columns.items():
        if name not in names:
            raise ProfileError(f"{where}: columns.{header!r} names no field of {contract.dataset}")
    codes: dict[str, dict[str, str]] = {}
    for name, table in (spec.get("codes") or {}).items():
        if name not in names or contract.field(name).codelist is None:
            raise ProfileError(f"{where}: codes.{name}: {name!r} is not a coded field")
        valid = contract.field(name).codelist
        mapped = {}
        for value, code in (table or {}).items():
            if isinstance(value, bool):  # YAML reads bare No/Yes/Si as booleans
                raise ProfileError(f"{where}: codes.{name}: quote the value {value!r} ('No': …)")
            code = valid.canonical(str(code))
            if code not in valid.labels:
                raise ProfileError(f"{where}: codes.{name}.{value!r} -> {code!r} is not a code")
            mapped[str(value)] = code
            mapped[normalise_label(str(value))] = code
        codes[name] = mapped
    drop_rows = []
    for rule in spec.get("drop_rows") or []:
        try:
            re.compile(rule["matches"])
        except (KeyError, TypeError, re.error) as exc:
            raise ProfileError(
                f"{where}: drop_rows needs column and a valid 'matches': {exc}"
            ) from exc
        drop_rows.append((str(rule["column"]), rule["matches"]))
    header_row = spec.get("header_row", "auto")
    if header_row != "auto" and not (isinstance(header_row, int) and header_row >= 1):
        raise ProfileError(f"{where}: header_row is 'auto' or a row number (1 = first)")
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
            raise ProfileError(
                f"{where}: unpivot needs months (header: month number), date_field, value_field"
                f" and year or year_column ({exc})"
            ) from exc
        if unpivot.date_field not in names or contract.field(unpivot.date_field).type != "date":
            raise ProfileError(f"{where}: unpivot.date_field must be a date field")
        if unpivot.value_field not in names or contract.field(unpivot.value_field).type not in (
            "integer",
            "number",
        ):
            raise ProfileError(f"{where}: unpivot.value_field must be a numeric field")
        if (unpivot.year is None) == (unpivot.year_column is None):
            raise ProfileError(f"{where}: unpivot needs exactly one of year and year_column")
    language = spec.get("language", "es")
    if language not in ("es", "en"):
        raise ProfileError(f"{where}: language is 'es' or 'en'")
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
    )


def load_profile(
    observatory: str, contract: Contract, profiles_dir: Path = PROFILES_DIR
) -> Profile:
    """The observatory's profile for the contract's dataset, or an empty one if it has none."""
    path = profiles_dir / observatory / f"{contract.dataset}.yaml"
    if not path.exists():
        return Profile(observatory=observatory, dataset=contract.dataset)
    with open(path, encoding="utf-8") as fh:
        spec = yaml.safe_load(fh) or {}
    profile = parse_profile(spec, contract, path)
    if profile.observatory not in ("", observatory):
        raise ProfileError(f"{path}: written for {profile.observatory!r}, not {observatory!r}")
    return profile
