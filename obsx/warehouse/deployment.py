"""A deployment: one country's installation, as data.

``deployments/<name>/deployment.yaml`` names the country, its geography levels (top to bottom, the
country first, the units records are placed in last) with each level's code pattern, its time zone,
currency and language, and where its reference files, contributor registry and profiles are.
``$OBSX_DEPLOYMENT`` chooses one (a folder name under ``deployments/`` or a path); the Panama demo
is the default. No country, level count or code length lives in code.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import os
import re
import sys
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from obsx.config import REPO_ROOT
from obsx.intake.contract import normalise_label, pad_digits
from obsx.sourceyaml import SourceError, load_yaml

if TYPE_CHECKING:  # pandas is imported where codes are padded, not by an idle run
    import pandas as pd

DEPLOYMENTS_DIR = REPO_ROOT / "deployments"
DEFAULT_DEPLOYMENT = "pa"
LEVEL_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
KNOWN_KEYS = {
    "country_code",
    "country_name",
    "m49",
    "iso_alpha2",
    "levels",
    "time_zone",
    "currency",
    "language",
    "reference",
    "contributors",
    "profiles",
    "reporting_calendar",
    "reconciliation",
    "disclosure",
    "indicators",
}
DISCLOSURE_KEYS = {"protection_width", "threshold", "headlines", "monthly_dimensions"}
CALENDAR_KEYS = {"every", "due_day", "since", "from"}
LEVEL_KEYS = {"code", "name", "pattern", "zero_pad", "aliases", "parent_prefix"}


@dataclass(frozen=True)
class Level:
    code: str  # as stored in geography.geo_level and indicator_value.geo_level
    name: dict[str, str]  # {"es": ..., "en": ...}
    pattern: str | None = None  # a unit code of this level matches it
    zero_pad: int | None = None  # codes stored as numbers lost their leading zeros: restore them
    aliases: tuple[str, ...] = ()  # how reference files may name the level (Provincia, Comarca)
    parent_prefix: int | None = None  # a unit's parent code is its code's first N characters

    def pad(self, codes: pd.Series) -> pd.Series:
        """Restore leading zeros of all-digit codes (Excel and SPSS keep codes as numbers)."""
        return pad_digits(codes.astype("str"), self.zero_pad) if self.zero_pad else codes

    def matches(self, code: str) -> bool:
        return self.pattern is None or re.fullmatch(self.pattern, code) is not None


@dataclass(frozen=True)
class Deployment:
    name: str
    root: Path
    country_code: str
    country_name: dict[str, str]
    levels: tuple[Level, ...]
    m49: str | None = None  # UN M49 area code: the SDG data structure's REF_AREA
    # ISO 3166-1 alpha-2 (PA): the prefix of sub-national SDMX area codes (PA_0804), so that no
    # reader takes a unit's code for an M49 country code. Default: country_code when it is two
    # capital letters; None otherwise (the SDMX export then asks for it).
    iso_alpha2: str | None = None
    time_zone: str = "UTC"
    currency: str | None = None
    language: str = "es"
    reference: dict[str, Path] = field(default_factory=dict)  # dataset -> file
    contributors_path: Path | None = None
    profiles_dir: Path | None = None
    # dataset -> what each contributor owes: every (month, quarter, year), due_day (of the month
    # after the period ends), since (YYYY-MM: the first period owed), from (observatory,
    # institution or all: which contributors owe it)
    reporting_calendar: dict[str, dict] = field(default_factory=dict)
    # concept -> the sources counting it (checked by obsx.indicators.reconcile.concepts, which names lines)
    reconciliation: dict = field(default_factory=dict)
    # disclosure control policy: threshold (a count from 1 to threshold - 1 is withheld; default
    # each indicator's suppress_below in the catalogue), protection_width (how wide an intruder's
    # interval for a withheld small count must stay; default the threshold: 0 .. threshold),
    # headlines (the indicators whose national and first-level totals are withheld last; default
    # all), monthly_dimensions (the dimensions published by month; default the catalogue's)
    disclosure: dict = field(default_factory=dict)
    # the deployment's own indicators beside the project's catalogue (obsx.indicators.catalogue): entries
    # added, switched off or renamed; None: the catalogue as it is
    indicators_path: Path | None = None

    @property
    def units_level(self) -> Level:
        """The level records are placed in (the lowest the deployment declares)."""
        return self.levels[-1]

    @property
    def level_codes(self) -> tuple[str, ...]:
        return tuple(level.code for level in self.levels)

    def level_code(self, written: str) -> str | None:
        """The level a reference file means by ``written`` (its code, name or an alias)."""
        label = normalise_label(written)
        for level in self.levels:
            names = (level.code, level.name["es"], level.name["en"], *level.aliases)
            if label in {normalise_label(n) for n in names}:
                return level.code
        return None

    def level(self, code: str) -> Level:
        for level in self.levels:
            if level.code == code:
                return level
        raise KeyError(code)

    def demo(self):
        """The deployment's demo generator (``demo/seed.py``: what ``obsx seed`` writes), loaded
        from the deployment's folder: demo data is the deployment's, not the product's."""
        path = self.root / "demo" / "seed.py"
        if not path.exists():
            raise SourceError(path, None, "this deployment has no demo to seed")
        name = f"obsx_demo_{self.root.name}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses look their module up while it loads
            spec.loader.exec_module(module)
        return sys.modules[name]

    def reference_file(self, dataset: str) -> Path:
        if dataset not in self.reference:
            raise SourceError(
                self.root / "deployment.yaml", None, f"reference.{dataset} is missing"
            )
        return self.reference[dataset]


def deployment_name(value: str | None = None) -> str:
    return value or os.environ.get("OBSX_DEPLOYMENT") or DEFAULT_DEPLOYMENT


def _text(spec, path, key) -> dict[str, str]:
    value = spec.get(key)
    if isinstance(value, str):
        return {"es": value, "en": value}
    if not isinstance(value, dict) or "es" not in value:
        raise SourceError(path, spec.line(key), f"{key} needs es (and en) names")
    return {"es": str(value["es"]), "en": str(value.get("en", value["es"]))}


def _m49(spec, path: Path) -> str | None:
    value = spec.get("m49")
    if value is None:
        return None
    text = f"{int(value):03d}" if isinstance(value, int) else str(value)
    if not re.fullmatch(r"\d{3}", text):
        raise SourceError(path, spec.line("m49"), f"m49: {value!r} is not a 3-digit UN M49 code")
    return text


def _iso_alpha2(spec, path: Path) -> str | None:
    value = spec.get("iso_alpha2")
    if value is None:  # PA and GT are already their ISO codes
        code = str(spec.get("country_code", ""))
        return code if re.fullmatch(r"[A-Z]{2}", code) else None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{2}", value):
        raise SourceError(
            path,
            spec.line("iso_alpha2"),
            f"iso_alpha2: {value!r} is not an ISO 3166-1 alpha-2 code (two capitals, e.g. PA)",
        )
    return value


def _disclosure(spec, path: Path) -> dict:
    policy = spec.get("disclosure") or {}
    if not isinstance(policy, dict):
        raise SourceError(path, spec.line("disclosure"), "disclosure: a mapping")
    for key in set(policy) - DISCLOSURE_KEYS:
        line = policy.line(key) if hasattr(policy, "line") else spec.line("disclosure")
        known = ", ".join(sorted(DISCLOSURE_KEYS))
        raise SourceError(path, line, f"disclosure: unknown key {key!r}; known: {known}")
    for key, least in (("protection_width", 1), ("threshold", 2)):
        value = policy.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < least
        ):
            line = policy.line(key) if hasattr(policy, "line") else None
            raise SourceError(path, line, f"disclosure.{key}: a whole number, {least} or more")
    for key in ("headlines", "monthly_dimensions"):  # checked against the catalogue when read
        value = policy.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) and v for v in value)
        ):
            line = policy.line(key) if hasattr(policy, "line") else None
            raise SourceError(path, line, f"disclosure.{key}: a list of codes ([] for none)")
    return policy  # with its lines: the catalogue checks the codes against its own


def parse_deployment(spec, path: Path, name: str) -> Deployment:
    root = path.parent
    unknown = set(spec) - KNOWN_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise SourceError(path, spec.line(key), f"unknown key {key!r}; known: {sorted(KNOWN_KEYS)}")
    for key in ("country_code", "levels", "reference"):
        if key not in spec:
            raise SourceError(path, None, f"{key} is missing")
    levels = []
    for i, entry in enumerate(spec["levels"] or []):
        line = entry.line("code") if hasattr(entry, "line") else spec.line("levels")
        code = str(entry.get("code", "")) if isinstance(entry, dict) else ""
        unknown = set(entry) - LEVEL_KEYS if isinstance(entry, dict) else set()
        if unknown:
            key = sorted(unknown)[0]
            raise SourceError(path, entry.line(key), f"levels[{i}]: unknown key {key!r}")
        if not LEVEL_CODE_RE.match(code):
            raise SourceError(path, line, f"levels[{i}].code: lowercase letters, digits, '_'")
        pattern = entry.get("pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise SourceError(path, entry.line("pattern"), f"pattern: {exc}") from exc
        pad = entry.get("zero_pad")
        if pad is not None and not (isinstance(pad, int) and 0 < pad <= 16):
            raise SourceError(path, entry.line("zero_pad"), "zero_pad is a number of digits")
        aliases = tuple(str(a) for a in entry.get("aliases") or ())
        prefix = entry.get("parent_prefix")
        if prefix is not None and not (isinstance(prefix, int) and prefix > 0):
            raise SourceError(path, entry.line("parent_prefix"), "parent_prefix is a length")
        levels.append(Level(code, _text(entry, path, "name"), pattern, pad, aliases, prefix))
    if len(levels) < 2:
        raise SourceError(path, spec.line("levels"), "levels: the country and at least one more")
    if len({lv.code for lv in levels}) != len(levels):
        raise SourceError(path, spec.line("levels"), "levels: each code once")
    time_zone = str(spec.get("time_zone", "UTC"))
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise SourceError(path, spec.line("time_zone"), f"unknown time zone {time_zone!r}") from exc
    reference = {str(k): root / str(v) for k, v in (spec["reference"] or {}).items()}
    for dataset, file in reference.items():
        if not file.exists():
            line = spec["reference"].line(dataset)
            raise SourceError(path, line, f"reference.{dataset}: {file} does not exist")
    language = str(spec.get("language", "es"))
    if language not in ("es", "en"):
        raise SourceError(path, spec.line("language"), "language is es or en")
    calendar = {}
    for dataset, entry in (spec.get("reporting_calendar") or {}).items():
        line = spec["reporting_calendar"].line(dataset)
        unknown = set(entry) - CALENDAR_KEYS
        if unknown:
            raise SourceError(
                path, line, f"reporting_calendar.{dataset}: unknown {sorted(unknown)}"
            )
        every = entry.get("every", "month")
        due = entry.get("due_day", 10)
        since = str(entry.get("since", ""))
        owed_by = entry.get("from", "observatory")
        if every not in ("month", "quarter", "year"):
            raise SourceError(
                path, line, f"reporting_calendar.{dataset}: every is month, quarter or year"
            )
        if not (isinstance(due, int) and 1 <= due <= 28):
            raise SourceError(path, line, f"reporting_calendar.{dataset}: due_day is 1 to 28")
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", since):
            raise SourceError(path, line, f"reporting_calendar.{dataset}: since is YYYY-MM")
        if owed_by not in ("observatory", "institution", "all"):
            raise SourceError(
                path, line, f"reporting_calendar.{dataset}: from is observatory, institution or all"
            )
        calendar[str(dataset)] = {"every": every, "due_day": due, "since": since, "from": owed_by}
    return Deployment(
        name=name,
        root=root,
        country_code=str(spec["country_code"]),
        country_name=_text(spec, path, "country_name"),
        levels=tuple(levels),
        m49=_m49(spec, path),
        iso_alpha2=_iso_alpha2(spec, path),
        time_zone=time_zone,
        currency=spec.get("currency"),
        language=language,
        reference=reference,
        contributors_path=root / str(spec.get("contributors", "contributors.yaml")),
        profiles_dir=root / str(spec.get("profiles", "profiles")),
        reporting_calendar=calendar,
        reconciliation=spec.get("reconciliation") or {},
        disclosure=_disclosure(spec, path),
        indicators_path=_indicators(spec, path, root),
    )


def _indicators(spec, path: Path, root: Path) -> Path | None:
    name = spec.get("indicators")
    if name is None:
        return None
    found = root / str(name)
    if not isinstance(name, str) or not found.is_file():
        raise SourceError(path, spec.line("indicators"), f"indicators: no file {name!r} here")
    return found


@functools.cache
def load_deployment(name: str) -> Deployment:
    """The deployment ``name``: a folder of ``deployments/``, or a path to a deployment folder."""
    folder = Path(name) if ("/" in name or Path(name).is_absolute()) else DEPLOYMENTS_DIR / name
    path = folder / "deployment.yaml"
    if not path.exists():
        known = sorted(p.parent.name for p in DEPLOYMENTS_DIR.glob("*/deployment.yaml"))
        raise SourceError(path, None, f"no such deployment (known: {', '.join(known)})")
    return parse_deployment(load_yaml(path), path, name)  # the name it is found again by


def current_deployment(name: str | None = None) -> Deployment:
    """The deployment chosen by ``name``, else ``$OBSX_DEPLOYMENT``, else the Panama demo."""
    return load_deployment(deployment_name(name))


ZONE_NOTE = {"es": "hora de {zone}", "en": "{zone} time"}


def local_time(moment, lang: str, note: bool = True) -> str:
    """A moment (ISO text or datetime; UTC when it gives no offset) as a person in the
    deployment's time zone reads it: 05/12/2026 00:13 (hora de America/Panama); ``note``: False
    where a table's heading names the zone once. The text as it is when it is not a moment."""
    if moment is None or str(moment) in ("", "NaT", "nan", "None"):
        return ""
    try:
        when = moment if isinstance(moment, dt.datetime) else dt.datetime.fromisoformat(str(moment))
    except ValueError:
        return str(moment)
    zone = current_deployment().time_zone
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    local = when.astimezone(zoneinfo.ZoneInfo(zone))
    shown = local.strftime("%d/%m/%Y %H:%M") if lang == "es" else local.strftime("%Y-%m-%d %H:%M")
    return f"{shown} ({ZONE_NOTE.get(lang, ZONE_NOTE['en']).format(zone=zone)})" if note else shown
