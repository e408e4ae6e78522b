"""The national data contract: datasets described once in ``schemas/*.yaml``.

Everything else (pandera schema, warehouse tables, feedback wording) is derived from these objects.
"""

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from obsx.config import SCHEMAS_DIR
from obsx.intake.problems import register_rule

FIELD_TYPES = {"string", "integer", "number", "date", "time"}
NUMERIC_TYPES = {"integer", "number"}
# A count above this share of its unit's population in one month is said to its contributor (a
# warning: the row is kept), once reference population exists: see obsx.intake.submission.
POPULATION_SHARE = "warn_above_population_share"
# A band of ages (or any whole numbers) as the warehouse keeps it: "18-24" (18 to 24, both
# included) or "60+" (60 and over). A field with the constraint ``band: [lowest, highest]`` holds
# one; sources write "18 a 24 años", "60 y más" too, and a profile maps labels of its own
# (MENORES: [0, 17]). SQL reads the bounds back with band_bounds_sql.
BAND_RE = re.compile(r"^(\d{1,3})(?:-(\d{1,3})|\+)$")
BAND_PATTERN = r"^\d{1,3}(?:-\d{1,3}|\+)$"  # the same, without groups (Great Expectations)
_SPELT_RANGE = re.compile(r"^(?:de )?(\d{1,3}) (?:a |al |hasta )?(\d{1,3})(?: anos?)?$")
_SPELT_OPEN = re.compile(r"^(?:de )?(\d{1,3})(?: anos?)? (?:y|o) mas(?: anos?)?$")
# The largest whole number the warehouse stores (an INTEGER column: 4 bytes on PostgreSQL). An
# integer field without a max of its own is held to it, so that a figure beyond it is a row's
# problem, not a merge that fails; a contract may not ask for more.
INTEGER_MAX = 2**31 - 1
# How each field type is held in pandas (pandera validates these; pyarrow-backed strings).
PANDAS_DTYPES = {
    "string": "str",
    "integer": "Int64",
    "number": "Float64",
    "date": "datetime64[us]",
    "time": "str",
}
# Columns the warehouse adds to every dataset's tables: no contract field may take these names.
RESERVED_NAMES = {
    "observatory_code",
    "period_month",
    "period_year",
    "row_hash",
    "revision",
    "submission_id",
    "valid_from",
    "valid_to",
    "source_row",
    "correction_id",
    "status",
    "created_at",
    "decided_at",
    "decided_by",
    "reason",
}
# A contract with this field lets a row withdraw a record explicitly ("DELETE"): see warehouse.
ACTION_FIELD = "record_action"
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when PyYAML has it
DELETE = "DELETE"


def pad_digits(values, width: int):
    """Restore the leading zeros of all-digit codes stored as numbers (101 -> 0101); other
    values, and blanks, unchanged. ``values``: a pandas Series of text."""
    digits = values.str.fullmatch(r"\d+").fillna(False)
    return values.where(~digits, values.str.zfill(width))


def band_text(low: int, high: int | None) -> str:
    """The stored spelling of a band: ``18-24``, or ``60+`` when it has no upper bound."""
    return f"{low}+" if high is None else f"{low}-{high}"


def band_bounds(text: str) -> tuple[int, int | None] | None:
    """A stored band's lowest and highest value (None: open); None if ``text`` is not one."""
    match = BAND_RE.match(str(text))
    if not match:
        return None
    low, high = int(match[1]), None if match[2] is None else int(match[2])
    return (low, high) if high is None or low <= high else None


def read_band(value: str) -> str | None:
    """A band as a source writes it (``18-24``, ``18 a 24 años``, ``60+``, ``60 y más``) in its
    stored spelling; None when it is not written as a band (a label a profile may map)."""
    text = str(value).strip()
    if band_bounds(text.replace(" ", "")):
        return text.replace(" ", "")
    folded = normalise_label(text.replace("+", " y mas"))
    if match := _SPELT_RANGE.match(folded):
        return band_text(int(match[1]), int(match[2]))
    if match := _SPELT_OPEN.match(folded):
        return band_text(int(match[1]), None)
    return None


def band_bounds_sql(column: str) -> tuple[str, str]:
    """SQL for the lowest and highest value of a band column (NULL when open or not a band),
    with functions SQLite and PostgreSQL share: ``18-24`` trimmed of its digits from the right is
    ``18-``, then of the dash, ``18``."""
    dashed = f"replace({column}, '+', '-')"
    digits = "'0123456789'"
    low = f"CAST(NULLIF(rtrim(rtrim({dashed}, {digits}), '-'), '') AS INTEGER)"
    high = f"CAST(NULLIF(ltrim(ltrim({dashed}, {digits}), '-'), '') AS INTEGER)"
    return low, high


@functools.lru_cache(maxsize=65536)  # headers, aliases and code labels repeat file after file
def normalise_label(text: str) -> str:
    """Fold a header or code label for comparison: case, accents, spaces and punctuation."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9()]+", " ", text.lower()).strip()


@dataclass(frozen=True)
class CodeList:
    name: str
    title: dict[str, str]
    labels: dict[str, dict[str, str]]  # code -> {"es": ..., "en": ...}
    restore_leading_zero: bool = False
    # normalised label or alias -> code
    lookup: dict[str, str] = field(default_factory=dict, repr=False)

    def canonical(self, value: str) -> str:
        """The contract code for ``value`` (a code, a label or an alias); unchanged if unknown."""
        if value in self.labels:
            return value
        if self.restore_leading_zero and value.isdigit() and "0" + value in self.labels:
            return "0" + value
        return self.lookup.get(normalise_label(value), value)


# What a spreadsheet reads as the start of a formula (OWASP CSV injection): an identifier may
# not start so (obsx.intake.validation, problem formula-identifier); other text is written defused
# (obsx.intake.feedback.defuse_formulas).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    title: dict[str, str]
    description: dict[str, str]
    aliases: tuple[str, ...] = ()
    constraints: dict = field(default_factory=dict)
    codelist: CodeList | None = None
    default: str | None = None  # the value of a blank cell
    # The contract version that added the field: records hashed before it keep their hashes
    # (the field counts in a record's content hash only where it has a value).
    added_in: int | None = None

    @property
    def band(self) -> tuple[int, int] | None:
        """For a band field, the lowest and highest value a band may reach."""
        limits = self.constraints.get("band")
        return (int(limits[0]), int(limits[1])) if limits else None


@dataclass(frozen=True)
class Rule:
    """A rule across fields of one row: ``sum(fields)`` equals, or is at most, another field.

    Checked only where every field involved has a value. Errors reject the row; warnings keep it.
    """

    code: str
    severity: str  # error or warning
    fields: tuple[str, ...]
    other: str
    relation: str  # equals or at_most
    message: dict[str, str]


@dataclass(frozen=True)
class Contract:
    dataset: str
    version: int
    title: dict[str, str]
    description: dict[str, str]
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...]
    geography_field: str | None  # None for reference data (kind: reference)
    period_field: str | None
    codelists: dict[str, CodeList]
    rules: tuple[Rule, ...] = ()
    kind: str = "observatory"  # what observatories send; "reference": what the ministry loads

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def defaults(self) -> dict[str, str]:
        return {f.name: f.default for f in self.fields if f.default is not None}

    @property
    def hash_defaults(self) -> dict[str, str | None]:
        """Fields that count in a record's content hash only where they differ from this
        (warehouse.row_hashes): those with a default, and, where given, fields added later."""
        later = {f.name: None for f in self.fields if f.added_in and f.default is None}
        return {**later, **self.defaults}

    @property
    def population_shares(self) -> dict[str, float]:
        """Count fields with a plausibility check against population: field -> share."""
        return {
            f.name: float(f.constraints[POPULATION_SHARE])
            for f in self.fields
            if POPULATION_SHARE in f.constraints
        }

    @property
    def has_deletions(self) -> bool:
        return any(f.name == ACTION_FIELD for f in self.fields)

    @property
    def identifier_fields(self) -> tuple[str, ...]:
        """The fields that identify a record (its key, without the contributor): text that a
        spreadsheet must never mistake for a formula (see FORMULA_START)."""
        key = self.primary_key[1:] if self.kind == "observatory" else self.primary_key
        return tuple(name for name in key if self.field(name).type == "string")

    @property
    def record_fields(self) -> tuple[str, ...]:
        """Fields a file supplies (the observatory code comes from the drop folder)."""
        return tuple(f.name for f in self.fields)

    def match_headers(
        self, headers: list[str], extra: dict[str, str] | None = None
    ) -> tuple[dict[str, str], list[str]]:
        """Map a file's headers onto contract fields.

        ``extra`` (a profile's columns: header -> field) is consulted before the contract's own
        names and aliases. Returns ``(header -> field name, unknown headers)``. The first header
        that matches a field wins; a second header for the same field counts as unknown.
        """
        by_label: dict[str, str] = {normalise_label(h): name for h, name in (extra or {}).items()}
        for f in self.fields:
            for label in (f.name, f.title["es"], f.title["en"], *f.aliases):
                by_label.setdefault(normalise_label(label), f.name)
        mapping: dict[str, str] = {}
        unknown: list[str] = []
        for header in headers:
            name = by_label.get(normalise_label(header))
            if name is None or name in mapping.values():
                unknown.append(header)
            else:
                mapping[header] = name
        return mapping, unknown


def _codelist(name: str, spec: dict) -> CodeList:
    labels: dict[str, dict[str, str]] = {}
    lookup: dict[str, str] = {}
    for code, entry in spec["codes"].items():
        code = str(code)
        labels[code] = {"es": entry["es"], "en": entry["en"]}
        for label in (code, entry["es"], entry["en"], *entry.get("aliases", [])):
            lookup.setdefault(normalise_label(label), code)
    return CodeList(
        name=name,
        title=spec["title"],
        labels=labels,
        restore_leading_zero=bool(spec.get("restore_leading_zero", False)),
        lookup=lookup,
    )


def parse_contract(spec: dict) -> Contract:
    """Build a contract from its YAML document, refusing what the code could not honour."""
    codelists = {name: _codelist(name, c) for name, c in spec.get("codelists", {}).items()}
    fields = []
    for f in spec["fields"]:
        if f["name"] in RESERVED_NAMES and spec.get("kind", "observatory") == "observatory":
            raise ValueError(f"{spec['dataset']}.{f['name']}: the warehouse reserves that name")
        if f["type"] not in FIELD_TYPES:
            raise ValueError(f"{spec['dataset']}.{f['name']}: unknown type {f['type']!r}")
        if f["type"] == "integer" and f.get("constraints", {}).get("max", 0) > INTEGER_MAX:
            raise ValueError(f"{spec['dataset']}.{f['name']}: max beyond {INTEGER_MAX:,}")
        share = f.get("constraints", {}).get(POPULATION_SHARE)
        if share is not None and not (f["type"] in NUMERIC_TYPES and 0 < share <= 1):
            raise ValueError(f"{spec['dataset']}.{f['name']}: {POPULATION_SHARE} is a share of 1")
        band = f.get("constraints", {}).get("band")
        if band is not None and not (
            f["type"] == "string"
            and isinstance(band, list)
            and len(band) == 2
            and all(isinstance(v, int) for v in band)
            and 0 <= band[0] <= band[1] <= 999
        ):
            raise ValueError(f"{spec['dataset']}.{f['name']}: band is [lowest, highest] of text")
        added_in = f.get("added_in")
        if added_in is not None and not (
            isinstance(added_in, int) and 1 < added_in <= int(spec["version"])
        ):
            raise ValueError(f"{spec['dataset']}.{f['name']}: added_in is a later version")
        if f.get("codelist") and f["codelist"] not in codelists:
            raise ValueError(f"{spec['dataset']}.{f['name']}: unknown code list {f['codelist']!r}")
        fields.append(
            Field(
                name=f["name"],
                type=f["type"],
                required=bool(f.get("required", False)),
                title=f["title"],
                description=f["description"],
                aliases=tuple(f.get("aliases", [])),
                constraints=dict(f.get("constraints", {})),
                codelist=codelists.get(f.get("codelist")),
                default=f.get("default"),
                added_in=f.get("added_in"),
            )
        )
    names = {f.name for f in fields}
    numeric = {f.name for f in fields if f.type in NUMERIC_TYPES}
    rules = []
    for r in spec.get("rules", []):
        relation = "equals" if "equals" in r else "at_most"
        involved = [*r["sum"], r[relation]]
        if not set(involved) <= numeric:
            raise ValueError(f"{spec['dataset']}: rule {r['code']}: fields must be numeric fields")
        if r["severity"] not in ("error", "warning"):
            raise ValueError(f"{spec['dataset']}: rule {r['code']}: severity is error or warning")
        rules.append(
            Rule(r["code"], r["severity"], tuple(r["sum"]), r[relation], relation, r["message"])
        )
        register_rule(
            r["code"], r["severity"], r["message"]["es"], r["message"]["en"], r.get("label")
        )
    contract = Contract(
        dataset=spec["dataset"],
        version=int(spec["version"]),
        title=spec["title"],
        description=spec["description"],
        fields=tuple(fields),
        primary_key=tuple(spec["primary_key"]),
        geography_field=spec.get("geography_field"),
        period_field=spec.get("period_field"),
        codelists=codelists,
        rules=tuple(rules),
        kind=spec.get("kind", "observatory"),
    )
    if contract.kind == "observatory":
        if contract.primary_key[0] != "observatory_code":
            raise ValueError(f"{contract.dataset}: the key starts with observatory_code")
        needed = (*contract.primary_key[1:], contract.geography_field, contract.period_field)
    else:
        needed = contract.primary_key
    for name in needed:
        if name not in names:
            raise ValueError(f"{contract.dataset}: {name!r} is not a field")
    return contract


@functools.cache
def load_contract(dataset: str, schemas_dir: Path = SCHEMAS_DIR) -> Contract:
    """The contract for ``dataset`` from ``schemas/<dataset>.yaml``."""
    with open(schemas_dir / f"{dataset}.yaml", encoding="utf-8") as fh:
        return parse_contract(yaml.load(fh, Loader=SAFE_LOADER))


@functools.cache
def observatory_datasets(schemas_dir: Path = SCHEMAS_DIR) -> tuple[str, ...]:
    """The datasets contributors send: every contract in ``schemas/`` that is not reference data.

    The first is the default when a file's headers fit none (incidents, where it exists)."""
    names = []
    for path in sorted(schemas_dir.glob("*.yaml")):
        with open(path, encoding="utf-8") as fh:
            spec = yaml.load(fh, Loader=SAFE_LOADER)
        if spec.get("kind", "observatory") == "observatory":
            names.append(spec["dataset"])
    return tuple(sorted(names, key=lambda n: (n != "incidents", n)))
