"""The contributor registry of a deployment (``contributors.yaml``): who may send files, for which
units. Light to import: an idle ``obsx run`` reads it before anything heavy."""

import datetime as dt
import re

from obsx.sourceyaml import SourceError, load_yaml
from obsx.warehouse.deployment import Deployment, current_deployment

CONTRIBUTOR_CODE_RE = re.compile(r"^[a-z0-9_]{1,40}$")
CONTRIBUTOR_KINDS = ("observatory", "institution")
ALL_UNITS = "all"  # a national institution may report for every unit of the country
CONTRIBUTOR_KEYS = {"code", "name", "kind", "opened_on", "closed_on", "units", "complete_coverage"}


def read_contributors(deployment: Deployment | None = None) -> dict[str, dict]:
    """The contributor registry, keyed by code; a mistake names the file and line."""
    deployment = deployment or current_deployment()
    path = deployment.contributors_path
    spec = load_yaml(path)
    entries = spec.get("contributors")
    if not isinstance(entries, list):
        raise SourceError(path, None, "needs a list under 'contributors:'")
    registry = {}
    for entry in entries:
        line = entry.line("code") if hasattr(entry, "line") else None
        unknown = set(entry) - CONTRIBUTOR_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise SourceError(path, entry.line(key), f"unknown key {key!r}")
        code = str(entry.get("code", ""))
        if not CONTRIBUTOR_CODE_RE.match(code) or "__" in code:
            raise SourceError(path, line, f"code {code!r}: use lowercase letters, digits and '_'")
        if code in registry:
            raise SourceError(path, line, f"code {code!r} is registered twice")
        if "name" not in entry:
            raise SourceError(path, line, f"{code}: name is missing")
        kind = entry.get("kind", "observatory")
        if kind not in CONTRIBUTOR_KINDS:
            raise SourceError(
                path, entry.line("kind"), f"{code}: kind is one of {CONTRIBUTOR_KINDS}"
            )
        units = entry.get("units")
        if units != ALL_UNITS and not (isinstance(units, list) and units):
            raise SourceError(path, line, f"{code}: units is a list of unit codes or '{ALL_UNITS}'")
        opened = entry.get("opened_on")
        if opened is not None and not isinstance(opened, dt.date):
            raise SourceError(path, entry.line("opened_on"), f"{code}: opened_on is YYYY-MM-DD")
        closed = entry.get("closed_on")
        if closed is not None and (
            not isinstance(closed, dt.date) or (opened is not None and closed < opened)
        ):
            raise SourceError(
                path, entry.line("closed_on"), f"{code}: closed_on is YYYY-MM-DD, after opened_on"
            )
        registry[code] = {
            "code": code,
            "name": str(entry["name"]),
            "kind": kind,
            "opened_on": opened,
            "closed_on": closed,
            "units": units if units == ALL_UNITS else [str(u) for u in units],
            "complete_coverage": bool(entry.get("complete_coverage", False)),
            "line": line,
            "units_line": entry.line("units"),
        }
    return registry
