"""The indicator catalogue (``indicators/catalogue.yaml``): read, checked, and turned into SQL.

The catalogue is the only place an indicator is defined. Everything here is derived from it:
the conditions become SQL over a dataset's *facts* (its records summed by unit, month and the
columns the catalogue reads), the measures become sums, the dimensions become disaggregations.
Field names and codes are checked against the contracts when the catalogue is read, so a typo
is a load error with its line, never a silently empty indicator; values reach SQL only as
quoted literals of codes the contract declares or numbers the catalogue gives.
"""

import dataclasses
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from obsx.intake.contract import Contract, band_bounds_sql, load_contract
from obsx.sourceyaml import SourceError, load_yaml

# quality_flag of a cell the sources cannot support: no value, never 0
NOT_AVAILABLE = "not_available"
CATALOGUE = Path(__file__).resolve().parents[2] / "indicators" / "catalogue.yaml"
KINDS = ("rate", "count", "ratio", "survey", "coverage", "completeness", "timeliness")
PERIOD_TYPES = ("month", "quarter", "year")
# Dimensions whose values split the population (the rate's denominator follows them).
POPULATION_DIMENSIONS = ("sex", "age_group")
CODE = re.compile(r"^[A-Za-z0-9_.+\- ]{1,40}$")
# An SDMX code (SDG series, unit of measure, age): what SDMX's IDType allows, as the SDG codes use.
SDMX_CODE = re.compile(r"^[A-Za-z0-9_@$\-]{1,50}$")
SDMX_KEYS = {"series", "unit_measure", "age"}
SCOPE_DEFAULTS = ("all", "observed")
MAX_DECIMALS = 6


@dataclass(frozen=True)
class Dimension:
    name: str
    field: str
    values: tuple[str, ...] | None  # None: the values present in the data
    bands: dict[str, tuple[int, int | None]] | None = None
    prefix: int | None = None
    population: str | None = None  # the population column it splits: sex or age_group
    # bands: a field holding a band the source gave instead of a value (age_band, "18-24"),
    # read where ``field`` is blank: a record takes the band its band fits wholly inside.
    band_field: str | None = None

    def expression(self, alias: str = "r") -> str:
        """The SQL that gives a record's value of this dimension (NULL: none of its values; a
        source band that straddles two of them is none, never guessed)."""
        column = f"{alias}.{self.field}"
        if self.bands:
            cases = " ".join(
                f"WHEN {column} >= {low}"
                + (f" AND {column} <= {high}" if high is not None else "")
                + f" THEN '{code}'"
                for code, (low, high) in self.bands.items()
            )
            if not self.band_field:
                return f"CASE {cases} END"
            lowest, highest = band_bounds_sql(f"{alias}.{self.band_field}")
            nested = " ".join(
                f"WHEN {lowest} >= {low}"
                + (f" AND {highest} <= {high}" if high is not None else "")
                + f" THEN '{code}'"
                for code, (low, high) in self.bands.items()
            )
            return (
                f"CASE WHEN {column} IS NOT NULL THEN CASE {cases} END ELSE CASE {nested} END END"
            )
        if self.prefix:
            return f"substr({column}, 1, {self.prefix})"
        return column


@dataclass(frozen=True)
class Measure:
    name: str
    sum: str | None  # None: count the records
    else_sum_of: tuple[str, ...] = ()
    where: dict = field(default_factory=dict)

    def expression(self, alias: str = "r") -> str:
        if self.sum is None:
            return "count(*)"
        value = f"{alias}.{self.sum}"
        if self.else_sum_of:
            parts = " + ".join(f"coalesce({alias}.{f}, 0)" for f in self.else_sum_of)
            value = f"coalesce({value}, {parts})"
        return f"sum({value})"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    measures: dict[str, Measure]
    dimensions: dict[str, Dimension]
    # Fields whose codes a source covers as a whole (crime_code: a homicide register covers
    # 0101 and says nothing of robbery; count_unit: victims or cases), with what a file covers
    # when its profile does not say (``covers:``): "all" codes, or those "observed" in its rows.
    scope: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Need:
    """What the sources of a unit and month must supply for a cell to be a figure (rather
    than not available): ``covers``, for each scope field, the codes (or code prefixes) the
    source must cover, None for all of them; ``fields``, record fields it must supply (not
    absent, not all blank), each as the alternatives any of which will do."""

    dataset: str
    covers: tuple[tuple[str, tuple[str, ...] | None], ...]
    fields: tuple[tuple[str, ...], ...]

    def met_by(self, scope: dict, supplied: set[str]) -> bool:
        """Whether one source (its scope: field -> codes covered, absent: all; and the fields
        it supplied) supports the cell."""
        for name, codes in self.covers:
            have = scope.get(name)
            if have is None:
                continue
            if codes is None or not all(any(c.startswith(h) for h in have) for c in codes):
                return False
        return all(any(f in supplied for f in alternatives) for alternatives in self.fields)

    def missing(self, scope: dict, supplied: set[str]) -> list[str]:
        """The fields and codes one source lacks for the cell, in the catalogue's words."""
        lacking = []
        for name, codes in self.covers:
            have = scope.get(name)
            if have is not None and (
                codes is None or not all(any(c.startswith(h) for h in have) for c in codes)
            ):
                lacking.append(f"{name}: {', '.join(codes) if codes else '*'}")
        lacking += [
            " | ".join(alternatives)
            for alternatives in self.fields
            if not any(f in supplied for f in alternatives)
        ]
        return lacking


@dataclass(frozen=True)
class Side:
    """A numerator or denominator: a measure of a dataset over the records matching ``where``."""

    dataset: str
    measure: str | None
    where: dict

    def describe(self, markdown: bool = False) -> str:
        """The side in words an analyst can check against the catalogue (the same text for the
        same count, whichever indicator publishes it)."""
        q = "`" if markdown else ""
        conditions = "; ".join(
            f"{q}{k}{q} {json.dumps(v, ensure_ascii=False)}" for k, v in self.where.items()
        )
        measure = f"{q}{self.dataset}.{self.measure or 'records'}{q}"
        return measure + (f" — {conditions}" if conditions else "")


@dataclass(frozen=True)
class SdmxSeries:
    """The SDG series an indicator reports, in the SDG data structure's codes (IAEG-SDGs
    SDG_DSD): SERIES, UNIT_MEASURE, and the AGE of the population it covers when the value is
    not split by age (``_T``: all ages)."""

    series: str
    unit_measure: str
    age: str = "_T"


@dataclass(frozen=True)
class Indicator:
    code: str
    name_es: str
    name_en: str
    definition_es: str
    definition_en: str
    standard: str
    kind: str
    numerator: Side
    denominator: Side | None
    population: dict
    multiplier: int | None
    unit: str
    disaggregations: tuple[str, ...]
    periods: tuple[str, ...]
    disaggregated_periods: tuple[str, ...]  # the periods published by dimension
    min_events: int | None
    suppress_below: int | None
    line: int
    sdmx: SdmxSeries | None = None  # the SDG series it is published as (SDMX-CSV), if any
    decimals: int = 0  # digits after the point a published value keeps (SDMX-CSV)
    # the deployment's policy (disclosure: in deployment.yaml): whether its national and
    # first-level totals are headlines (withheld last), and the dimensions published by month
    # (None: all it has)
    headline: bool = True
    monthly_dimensions: tuple[str, ...] | None = None

    @property
    def dataset(self) -> str:
        return self.numerator.dataset

    def dimensions_in(self, period_type: str) -> tuple[str, ...]:
        """The dimensions it is published by in periods of ``period_type``: by month, those the
        deployment lists when it does, else the catalogue's ``disaggregated_periods`` say."""
        if period_type == "month" and self.monthly_dimensions is not None:
            return tuple(d for d in self.disaggregations if d in self.monthly_dimensions)
        return self.disaggregations if period_type in self.disaggregated_periods else ()


@dataclass(frozen=True)
class Catalogue:
    datasets: dict[str, DatasetSpec]
    indicators: tuple[Indicator, ...]
    path: Path
    overlay: Path | None = None  # the deployment's own indicators file, if any

    def indicator(self, code: str) -> Indicator:
        for ind in self.indicators:
            if ind.code == code:
                return ind
        raise KeyError(code)

    def dimension(self, dataset: str, name: str) -> Dimension:
        return self.datasets[dataset].dimensions[name]

    def need(self, ind: Indicator, dim_name: str | None = None, side: Side | None = None) -> Need:
        """What ``ind``'s cells (split by ``dim_name``) need of their sources: the fields its
        conditions and the dimension read, and, of each scope field, the codes its conditions
        select (all of them when it selects none: a total of every crime).

        With ``side`` (its numerator or denominator): the part of that need that can change the
        side's count. A field the side itself selects values of is not in it: a unit-month
        without the field has no record with those values (its age bands count 0 either way),
        so two counts with the same conditions under such needs are one number."""
        spec = self.datasets[ind.dataset]
        covers: dict[str, set[str] | None] = {}
        fields: set[tuple[str, ...]] = set()

        def field_of(name: str) -> str:
            dim = spec.dimensions.get(name)
            return dim.field if dim else name

        def supplied_by(name: str) -> tuple[str, ...]:
            """The fields any of which gives ``name``: an age group, the age or the band."""
            dim = spec.dimensions.get(name)
            if dim is None:
                return (name,)
            return (dim.field, dim.band_field) if dim.band_field else (dim.field,)

        def walk(where: dict) -> None:
            for key, rule in where.items():
                if key == "any":
                    for alternative in rule:
                        walk(alternative)
                    continue
                name = field_of(key)
                if name not in spec.scope:
                    fields.add(supplied_by(key))
                    continue
                codes = rule if isinstance(rule, list) else rule.get("prefix")
                if codes is None or covers.get(name, set()) is None:
                    covers[name] = None
                else:
                    covers[name] = covers.get(name, set()) | set(codes)

        for counted in (ind.numerator, ind.denominator):
            if counted is not None:
                walk(side_where(self, counted))
        if ind.kind == "ratio":
            # A field the denominator selects on (victims of known age) is no need: a source
            # without it adds nothing to either side (the share is over records that have it).
            known = set()
            for key, rule in ind.denominator.where.items():
                if key != "any" and (isinstance(rule, list) or "prefix" in rule):
                    known.add(supplied_by(key))
            fields -= known
        for name in spec.scope:
            covers.setdefault(name, None)
        if dim_name:
            dim = spec.dimensions[dim_name]
            if dim.field in spec.scope:
                covers[dim.field] = None
            else:
                fields.add(supplied_by(dim_name))
        if side is not None:
            selected = {dim_name} if dim_name else set()
            for key, rule in side_where(self, side).items():
                if key != "any" and (isinstance(rule, list) or "prefix" in rule):
                    selected.add(key)
            fields = {f for f in fields if not set(f) & {field_of(k) for k in selected}}
        return Need(
            ind.dataset,
            tuple((k, None if v is None else tuple(sorted(v))) for k, v in sorted(covers.items())),
            tuple(sorted(fields)),
        )

    def columns(self, dataset: str) -> list[str]:
        """The columns a dataset's facts keep: every field or dimension a condition or a
        disaggregation reads (not-null conditions keep a 0/1 column ``<field>__known``)."""
        spec = self.datasets[dataset]
        wanted: list[str] = []
        for ind in self.indicators:
            for side in (ind.numerator, ind.denominator):
                if side is None or side.dataset != dataset:
                    continue
                measure = spec.measures.get(side.measure) if side.measure else None
                for where in (side.where, measure.where if measure else {}):
                    wanted += _condition_columns(where)
            if ind.dataset == dataset:
                wanted += list(ind.disaggregations)
        return list(dict.fromkeys(wanted))


def _condition_columns(where: dict) -> list[str]:
    columns = []
    for name, rule in where.items():
        if name == "any":
            for alternative in rule:
                columns += _condition_columns(alternative)
        elif isinstance(rule, dict) and "not_null" in rule:
            columns.append(f"{name}__known")
        else:
            columns.append(name)
    return columns


def fact_column(spec: DatasetSpec, name: str) -> str:
    """The SQL computing a facts column from a record (alias ``r``)."""
    if name.endswith("__known"):
        return f"CASE WHEN r.{name.removesuffix('__known')} IS NULL THEN 0 ELSE 1 END"
    if name in spec.dimensions:
        return spec.dimensions[name].expression("r")
    return f"r.{name}"


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def condition_sql(where: dict, alias: str = "i") -> str:
    """A catalogue condition as SQL over a facts table (codes were checked at load)."""
    parts = []
    for name, rule in where.items():
        if name == "any":
            parts.append("(" + " OR ".join(condition_sql(a, alias) for a in rule) + ")")
        elif isinstance(rule, list):
            parts.append(f"{alias}.{name} IN ({', '.join(_quote(v) for v in rule)})")
        elif "prefix" in rule:
            likes = " OR ".join(f"{alias}.{name} LIKE {_quote(p + '%')}" for p in rule["prefix"])
            parts.append(f"({likes})")
        elif "not" in rule:
            quoted = ", ".join(_quote(v) for v in rule["not"])
            parts.append(f"({alias}.{name} IS NULL OR {alias}.{name} NOT IN ({quoted}))")
        elif "not_null" in rule:
            parts.append(f"{alias}.{name}__known = {1 if rule['not_null'] else 0}")
    return " AND ".join(parts) or "1 = 1"


def side_where(catalogue: Catalogue, side: Side) -> dict:
    """A side's conditions with its measure's own (e.g. victims: rows that count victims)."""
    measure = catalogue.datasets[side.dataset].measures.get(side.measure or "")
    return {**(measure.where if measure else {}), **side.where}


# --- Reading and checking -------------------------------------------------------------------


def _fail(path: Path, line: int | None, message: str):
    raise SourceError(path, line, message)


def _codes(contract: Contract, field_name: str) -> set[str] | None:
    f = contract.field(field_name)
    return set(f.codelist.labels) if f.codelist is not None else None


def _check_where(path, line, where, contract: Contract, dims: dict[str, Dimension]) -> None:
    if not isinstance(where, dict):
        _fail(path, line, f"'where' must be a mapping of field to condition, not {where!r}")
    for name, rule in where.items():
        if name == "any":
            if not isinstance(rule, list) or not rule:
                _fail(path, line, "'any' takes a list of conditions")
            for alternative in rule:
                _check_where(path, line, alternative, contract, dims)
            continue
        if name in dims:
            known = set(dims[name].values or ()) or None
        elif name in set(contract.record_fields):
            known = _codes(contract, name)
        else:
            _fail(path, line, f"{contract.dataset} has no field or dimension {name!r}")
        if isinstance(rule, dict):
            [(op, values)] = rule.items() if len(rule) == 1 else _fail(path, line, f"{rule!r}")
            if op == "not_null":
                continue
            if op not in ("prefix", "not"):
                _fail(path, line, f"{name}: unknown condition {op!r} (use prefix, not, not_null)")
            rule = values
        if not isinstance(rule, list) or not rule:
            _fail(path, line, f"{name}: give a list of codes")
        if known is not None:
            prefixes = isinstance(where[name], dict) and "prefix" in where[name]
            for value in rule:
                ok = any(k.startswith(str(value)) for k in known) if prefixes else value in known
                if not ok:
                    _fail(path, line, f"{name}: {value!r} is not a code of {contract.dataset}")


def _dataset_spec(path, name: str, raw: dict, line: int | None) -> DatasetSpec:
    contract = load_contract(name)
    measures = {}
    for m, spec in (raw.get("measures") or {}).items():
        summed = spec.get("sum")
        for f in [summed, *spec.get("else_sum_of", [])]:
            if f is not None and f not in set(contract.record_fields):
                _fail(path, line, f"measure {m}: {name} has no field {f!r}")
        if summed is None and spec.get("count") != "records":
            _fail(path, line, f"measure {m}: give sum: FIELD or count: records")
        measures[m] = Measure(m, summed, tuple(spec.get("else_sum_of", [])), spec.get("where", {}))
    dims = {}
    for d, spec in (raw.get("dimensions") or {}).items():
        f = spec.get("field")
        if f not in set(contract.record_fields):
            _fail(path, line, f"dimension {d}: {name} has no field {f!r}")
        values = spec.get("values")
        bands = spec.get("bands")
        if values == "codelist":
            if _codes(contract, f) is None:
                _fail(path, line, f"dimension {d}: {f} has no code list")
            values = list(contract.field(f).codelist.labels)
        if bands:
            values = list(bands)
            bands = {k: (int(v[0]), None if v[1] is None else int(v[1])) for k, v in bands.items()}
        elif values is not None and spec.get("prefix") is None:
            known = _codes(contract, f)
            for v in values:
                if known is not None and v not in known:
                    _fail(path, line, f"dimension {d}: {v!r} is not a code of {f}")
        population = spec.get("population")
        if population not in (None, *POPULATION_DIMENSIONS):
            _fail(path, line, f"dimension {d}: population is sex or age_group")
        band_field = spec.get("band_field")
        if band_field is not None and not (
            bands
            and band_field in set(contract.record_fields)
            and contract.field(band_field).band is not None
        ):
            _fail(path, line, f"dimension {d}: band_field names a band field of {name} (bands)")
        dims[d] = Dimension(
            d,
            f,
            tuple(values) if values else None,
            bands,
            spec.get("prefix"),
            population,
            band_field,
        )
    for m in measures.values():
        _check_where(path, line, m.where, contract, dims)
    scope = dict(raw.get("scope") or {})
    for f, default in scope.items():
        if f not in set(contract.record_fields):
            _fail(path, line, f"scope: {name} has no field {f!r}")
        if default not in SCOPE_DEFAULTS:
            _fail(path, line, f"scope: {f}: {default!r} is one of {', '.join(SCOPE_DEFAULTS)}")
    return DatasetSpec(name, measures, dims, scope)


def _text(path, line, raw: dict, key: str) -> tuple[str, str]:
    """A name or definition: exactly es and en, each text. In a flow mapping
    (``{es: ..., en: ...}``) a comma ends the text: ``per 100,000 population`` reads as
    ``per 100`` and a stray key ``000 population``; that is refused here, never published."""
    code = raw.get("code")
    value = raw.get(key)
    line = raw.line(key) if hasattr(raw, "line") and raw.line(key) else line
    if not isinstance(value, dict) or not value.get("es") or not value.get("en"):
        _fail(path, line, f"{code}: {key}: give es and en")
    stray = [k for k in value if k not in ("es", "en")]
    if stray:
        at = value.line(stray[0]) if hasattr(value, "line") else None
        _fail(
            path,
            at or line,
            f"{code}: {key} has {stray[0]!r} besides es and en: a comma inside {{es: ..., en: ...}}"
            " ends the text there; quote the text or write es: and en: on lines of their own",
        )
    for lang in ("es", "en"):
        if not isinstance(value[lang], str):
            at = value.line(lang) if hasattr(value, "line") else None
            _fail(path, at or line, f"{code}: {key}.{lang} is not text ({value[lang]!r}); quote it")
    return value["es"], value["en"]


def _side(path, line, raw, datasets: dict[str, DatasetSpec], available: set[str]) -> Side | None:
    if raw is None:
        return None
    dataset = raw.get("dataset")
    if dataset not in datasets:
        _fail(path, line, f"dataset {dataset!r} is not described under datasets:")
    measure = raw.get("measure")
    if measure is not None and measure not in datasets[dataset].measures:
        _fail(path, line, f"{dataset} has no measure {measure!r}")
    where = raw.get("where") or {}
    if dataset in available:
        _check_where(path, line, where, load_contract(dataset), datasets[dataset].dimensions)
    return Side(dataset, measure, where)


def _sdmx(path, entry, code: str, taken: dict[str, str]) -> SdmxSeries | None:
    """An indicator's ``sdmx`` block, checked: each SDG series is reported by one indicator."""
    raw = entry.get("sdmx")
    if raw is None:
        return None
    line = entry.line("sdmx")
    if not isinstance(raw, dict):
        _fail(path, line, f"{code}: sdmx is {{series: ..., unit_measure: ...}}")
    unknown = set(raw) - SDMX_KEYS
    if unknown:
        _fail(path, line, f"{code}: sdmx: unknown key(s) {sorted(unknown)}")
    values = {}
    for key in ("series", "unit_measure", "age"):
        value = raw.get(key, "_T" if key == "age" else None)
        if value is None:
            _fail(path, line, f"{code}: sdmx needs {key} (a code of the SDG data structure)")
        if not isinstance(value, str) or not SDMX_CODE.match(value):
            _fail(path, line, f"{code}: sdmx {key} {value!r} is not an SDMX code")
        values[key] = value
    if values["series"] in taken:
        _fail(path, line, f"{code}: SDG series {values['series']} is {taken[values['series']]}'s")
    taken[values["series"]] = code
    return SdmxSeries(**values)


def default_decimals(kind: str, unit: str) -> int:
    """Digits a value keeps when the catalogue does not say: a count none (it is a whole
    number), a share one (52.3 %), a rate two (12.35 per 100,000: a small area's rate on one
    or two events moves in the first decimal)."""
    if kind == "count":
        return 0
    return 1 if unit == "%" else 2


def _decimals(path, entry, code: str, kind: str, unit: str) -> int:
    raw = entry.get("decimals")
    if raw is None:
        return default_decimals(kind, unit)
    line = entry.line("decimals")
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_DECIMALS:
        _fail(path, line, f"{code}: decimals is a whole number from 0 to {MAX_DECIMALS}")
    if kind == "count" and raw != 0:
        _fail(path, line, f"{code}: a count is a whole number: decimals 0 (or leave it out)")
    return raw


DEPLOYMENT = "deployment"
OVERLAY_KEYS = {"indicators", "switch_off", "rename"}


def load_catalogue(path: Path = CATALOGUE, overlay: Path | str | None = DEPLOYMENT) -> Catalogue:
    """Read and check the catalogue, with the current deployment's own indicators
    (``deployment.yaml`` key ``indicators``; ``overlay``: another such file, or None for the
    project's catalogue alone); an entry about a dataset this installation's contracts lack is
    skipped (a deployment without arrests has no arrest rate)."""
    policy = {}
    if overlay == DEPLOYMENT:
        from obsx.warehouse.deployment import current_deployment

        deployment = current_deployment()
        overlay = deployment.indicators_path
        policy = deployment.disclosure
    cat = _load_catalogue(path, None if overlay is None else Path(overlay))
    if not policy:
        return cat
    return dataclasses.replace(cat, indicators=_with_policy(cat, policy, deployment))


def _with_policy(cat: Catalogue, policy: dict, deployment) -> tuple[Indicator, ...]:
    """The catalogue's entries under a deployment's statistical law (``disclosure:``): one
    threshold for every count the catalogue protects; the indicators whose national and
    first-level totals are headlines; the dimensions published by month. A code the catalogue
    does not have is an error at its line of deployment.yaml."""
    path = deployment.root / "deployment.yaml"

    def line(key):
        return policy.line(key) if hasattr(policy, "line") else None

    codes = {i.code for i in cat.indicators}
    dimensions = {d for i in cat.indicators for d in i.disaggregations}
    headlines, monthly = policy.get("headlines"), policy.get("monthly_dimensions")
    for key, given, known in (
        ("headlines", headlines, codes),
        ("monthly_dimensions", monthly, dimensions),
    ):
        unknown = sorted(set(given or ()) - known)
        if unknown:
            raise SourceError(path, line(key), f"disclosure.{key}: unknown {', '.join(unknown)}")
    threshold = policy.get("threshold")
    return tuple(
        dataclasses.replace(
            i,
            suppress_below=threshold if threshold and i.suppress_below else i.suppress_below,
            headline=headlines is None or i.code in headlines,
            monthly_dimensions=None if monthly is None else tuple(monthly),
        )
        for i in cat.indicators
    )


def _overlay(path: Path, entries: list, catalogue_path: Path) -> list:
    """The catalogue's entries as a deployment's file changes them: ``switch_off`` (codes it
    does not publish), ``rename`` (code -> {es, en}: its own words for a name) and
    ``indicators`` (entries of its own, checked like the catalogue's, lines of this file)."""
    raw = load_yaml(path) or {}
    unknown = set(raw) - OVERLAY_KEYS
    if unknown:
        key = sorted(unknown)[0]
        _fail(path, raw.line(key), f"unknown key {key!r}; known: {sorted(OVERLAY_KEYS)}")
    codes = {entry.get("code") for entry in entries}
    off = raw.get("switch_off") or []
    if not isinstance(off, list):
        _fail(path, raw.line("switch_off"), "switch_off: a list of indicator codes")
    for code in off:
        if code not in codes:
            _fail(path, raw.line("switch_off"), f"switch_off: no indicator {code!r}")
    renamed = raw.get("rename") or {}
    if not isinstance(renamed, dict):
        _fail(path, raw.line("rename"), "rename: indicator code -> {es: ..., en: ...}")
    for code, name in renamed.items():
        if code not in codes:
            _fail(path, renamed.line(code), f"rename: no indicator {code!r}")
        if not isinstance(name, dict) or set(name) != {"es", "en"} or not all(name.values()):
            _fail(path, renamed.line(code), f"rename: {code}: give es and en")
    kept = []
    for entry in entries:
        if entry.get("code") in off:
            continue
        if entry.get("code") in renamed:
            entry = _Renamed(entry, renamed[entry.get("code")], renamed.line(entry.get("code")))
        kept.append((entry, catalogue_path))
    own = raw.get("indicators") or []
    if not isinstance(own, list):
        _fail(path, raw.line("indicators"), "indicators: a list of entries like the catalogue's")
    return kept + [(entry, path) for entry in own]


class _Renamed(dict):
    """A catalogue entry under a deployment's name (its lines: the rename's, for the name)."""

    def __init__(self, entry, name, line):
        super().__init__(entry)
        self["name"] = name
        self._entry, self._line = entry, line

    def line(self, key):
        return self._line if key == "name" else self._entry.line(key)


@functools.cache
def _load_catalogue(path: Path, overlay: Path | None) -> Catalogue:
    from obsx.intake.contract import observatory_datasets

    available = set(observatory_datasets())
    raw = load_yaml(path)
    described = raw.get("datasets") or {}
    datasets = {
        name: _dataset_spec(path, name, spec or {}, described.line(name))
        for name, spec in described.items()
        if name in available
    }
    indicators, seen = [], set()
    sdmx_series: dict[str, str] = {}  # SDG series -> the indicator reporting it
    entries = [(entry, path) for entry in raw.get("indicators") or []]
    if overlay is not None:
        entries = _overlay(overlay, [e for e, _ in entries], path)
    catalogue_path = path
    for entry, path in entries:
        line = entry.line("code")
        code = entry.get("code")
        if not isinstance(code, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]{1,39}", code):
            _fail(path, line, f"code {code!r}: capitals, digits and '_' (at most 40)")
        if code in seen:
            _fail(path, line, f"{code} is defined twice")
        seen.add(code)
        unknown = set(entry) - {
            "code", "name", "definition", "standard", "kind", "numerator", "denominator",
            "population", "multiplier", "unit", "disaggregations", "periods", "min_events",
            "suppress_below", "calendar", "disaggregated_periods", "sdmx", "decimals",
        }  # fmt: skip
        if unknown:
            _fail(path, line, f"{code}: unknown key(s) {sorted(unknown)}")
        kind = entry.get("kind")
        if kind not in KINDS:
            _fail(path, line, f"{code}: kind is one of {', '.join(KINDS)}")
        dataset = (entry.get("numerator") or {}).get("dataset")
        if dataset not in available:
            continue
        numerator = _side(path, line, entry.get("numerator"), datasets, available)
        denominator = _side(path, line, entry.get("denominator"), datasets, available)
        if kind in ("ratio", "survey") and denominator is None:
            _fail(path, line, f"{code}: a {kind} needs a denominator")
        if denominator and denominator.dataset != numerator.dataset:
            _fail(path, line, f"{code}: numerator and denominator read different datasets")
        dims = tuple(entry.get("disaggregations") or ())
        for d in dims:
            if d not in datasets[dataset].dimensions:
                _fail(path, line, f"{code}: {dataset} has no dimension {d!r}")
        periods = tuple(entry.get("periods") or PERIOD_TYPES)
        if set(periods) - set(PERIOD_TYPES):
            _fail(path, line, f"{code}: periods are {', '.join(PERIOD_TYPES)}")
        split = tuple(entry.get("disaggregated_periods") or periods)
        if set(split) - set(periods):
            _fail(path, line, f"{code}: disaggregated_periods must be among its periods")
        population = entry.get("population") or {}
        if set(population) - set(POPULATION_DIMENSIONS):
            _fail(path, line, f"{code}: population narrows by sex or age_group only")
        name_es, name_en = _text(path, line, entry, "name")
        definition_es, definition_en = _text(path, line, entry, "definition")
        multiplier = entry.get("multiplier")
        if kind in ("rate", "ratio", "survey", "coverage") and not multiplier:
            _fail(path, line, f"{code}: a {kind} needs a multiplier (100 or 100000)")
        sdmx = _sdmx(path, entry, code, sdmx_series)
        unit = str(entry.get("unit") or _fail(path, line, f"{code}: give a unit"))
        indicators.append(
            Indicator(
                code=code,
                name_es=name_es,
                name_en=name_en,
                definition_es=definition_es,
                definition_en=definition_en,
                standard=str(entry.get("standard") or ""),
                kind=kind,
                numerator=numerator,
                denominator=denominator,
                population=population,
                multiplier=multiplier,
                unit=unit,
                disaggregations=dims,
                periods=periods,
                disaggregated_periods=split,
                min_events=entry.get("min_events"),
                suppress_below=entry.get("suppress_below"),
                line=line or 0,
                sdmx=sdmx,
                decimals=_decimals(path, entry, code, kind, unit),
            )
        )
    return Catalogue(datasets, tuple(indicators), catalogue_path, overlay)


def condition_mask(where: dict, frame: pd.DataFrame) -> pd.Series:
    """The same condition as ``condition_sql``, over a DataFrame of records (survey microdata)."""
    mask = pd.Series(True, index=frame.index)
    for name, rule in where.items():
        if name == "any":
            alternatives = [condition_mask(a, frame) for a in rule]
            mask &= pd.concat(alternatives, axis=1).any(axis=1)
            continue
        column = frame[name]
        if isinstance(rule, list):
            mask &= column.isin(rule)
        elif "prefix" in rule:
            mask &= column.astype("string").str.startswith(tuple(rule["prefix"])).fillna(False)
        elif "not" in rule:
            mask &= ~column.isin(rule["not"])
        elif "not_null" in rule:
            mask &= column.notna() if rule["not_null"] else column.isna()
    return mask.astype(bool)


# --- The catalogue for analysts (docs/indicators*.md) ---------------------------------------

DOC_WORDS = {
    "es": {
        "title": "Catálogo de indicadores",
        "intro": (
            "Generado a partir de `indicators/catalogue.yaml`; no lo edite a mano. Cada indicador"
            " se calcula en SQL dentro del almacén para cada nivel geográfico del despliegue."
            " Una unidad que reportó sin hechos cuenta cero; una que no reportó no tiene valor."
        ),
        "code": "Código", "kind": "Tipo", "unit": "Unidad", "standard": "Norma",
        "numerator": "Numerador", "denominator": "Denominador", "dis": "Desagregaciones",
        "periods": "Períodos", "split": "Períodos desagregados", "min": "Eventos mínimos para una tasa estable",
        "suppress": "Conteos retenidos", "population": "población de las unidades que reportaron",
        "sdmx": "Serie ODS (SDMX-CSV)", "decimals": "{n} decimales",
        "below": "de 1 a {n} (supresión primaria y secundaria)", "none": "—",
        "kinds": {"rate": "tasa", "count": "conteo", "ratio": "proporción", "survey": "encuesta",
                  "coverage": "cobertura", "completeness": "completitud", "timeliness": "oportunidad"},
        "survey": "con error estándar, IC 95 %, CV y alerta (CV > 15 % precaución, > 30 % no confiable)",
    },
    "en": {
        "title": "Indicator catalogue",
        "intro": (
            "Generated from `indicators/catalogue.yaml`; do not edit by hand. Every indicator is"
            " computed in SQL inside the warehouse at every geographic level of the deployment."
            " A unit that reported without events counts zero; one that did not report has no value."
        ),
        "code": "Code", "kind": "Kind", "unit": "Unit", "standard": "Standard",
        "numerator": "Numerator", "denominator": "Denominator", "dis": "Disaggregations",
        "periods": "Periods", "split": "Periods disaggregated", "min": "Minimum events for a stable rate",
        "suppress": "Counts withheld", "population": "population of the reporting units",
        "sdmx": "SDG series (SDMX-CSV)", "decimals": "{n} decimals",
        "below": "1 to {n} (primary and secondary suppression)", "none": "—",
        "kinds": {"rate": "rate", "count": "count", "ratio": "share", "survey": "survey",
                  "coverage": "coverage", "completeness": "completeness", "timeliness": "timeliness"},
        "survey": "with standard error, 95% CI, CV and a flag (CV > 15% caution, > 30% unreliable)",
    },
}  # fmt: skip


def catalogue_markdown(cat: Catalogue, lang: str) -> str:
    """The catalogue as an analyst reads it, one section per indicator."""
    w = DOC_WORDS[lang]
    lines = [f"# {w['title']}", "", w["intro"], ""]
    lines += [f"| {w['code']} | {w['kind']} | {w['unit']} |", "|---|---|---|"]
    for ind in cat.indicators:
        name = ind.name_es if lang == "es" else ind.name_en
        lines.append(
            f"| [`{ind.code}`](#{ind.code.lower()}) {name} | {w['kinds'][ind.kind]} | {ind.unit} |"
        )
    for ind in cat.indicators:
        name = ind.name_es if lang == "es" else ind.name_en
        definition = ind.definition_es if lang == "es" else ind.definition_en
        denominator = ind.denominator.describe(markdown=True) if ind.denominator else ""
        if ind.kind == "rate":
            denominator = w["population"] + (
                f" ({json.dumps(ind.population)})" if ind.population else ""
            )
        if ind.kind == "survey":
            definition += f" ({w['survey']})"
        rows = [
            (w["kind"], w["kinds"][ind.kind]),
            (w["standard"], ind.standard),
            (w["numerator"], ind.numerator.describe(markdown=True)),
            (w["denominator"], denominator or w["none"]),
            (w["unit"], f"{ind.unit}" + (f" (× {ind.multiplier:,})" if ind.multiplier else "")),
            (w["dis"], ", ".join(f"`{d}`" for d in ind.disaggregations) or w["none"]),
            (w["periods"], ", ".join(ind.periods)),
            (
                w["split"],
                ", ".join(ind.disaggregated_periods) if ind.disaggregations else w["none"],
            ),
            (w["min"], str(ind.min_events or w["none"])),
            (
                w["suppress"],
                w["below"].format(n=ind.suppress_below - 1) if ind.suppress_below else w["none"],
            ),
        ]
        if ind.sdmx:
            s = ind.sdmx
            age = f", AGE `{s.age}`" if s.age != "_T" else ""
            rows.append(
                (
                    w["sdmx"],
                    f"`{s.series}` (UNIT_MEASURE `{s.unit_measure}`{age}; "
                    + w["decimals"].format(n=ind.decimals)
                    + ")",
                )
            )
        lines += ["", f"## {ind.code}", "", f"**{name}**. {definition}", ""]
        lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines) + "\n"


def write_catalogue_docs(cat: Catalogue, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for lang, suffix in (("es", ""), ("en", ".en")):
        path = out / f"indicators{suffix}.md"
        path.write_text(catalogue_markdown(cat, lang), encoding="utf-8")
        written.append(path)
    return written
