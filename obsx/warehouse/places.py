"""Place names onto unit codes: real exports name municipios instead of coding them.

Names are compared case-, accent- and space-insensitively. Several units share a name (there are
many ``San José``), so a name is resolved within its parent when the file gives the parent
(``Guatemala`` / ``Palencia``); a name that still fits several units is ambiguous, never guessed.

Names are matched at one level: the deployment's units, or the level a profile places its records
at (``level: province``: a source that reports by province counts for provinces and above, never
for the districts inside them). A file that names places of another level without their parent
(provinces where the level is districts) is not read as the districts that happen to share their
names (Panamá, Colón): when its names are of the other level and none is one of the level's alone,
every name is reported as a place of that other level; a name that is only another level's always
is. A name found within the parent the file gives is that parent's place.
"""

from dataclasses import dataclass

import pandas as pd

from obsx.intake.contract import normalise_label

UNKNOWN, AMBIGUOUS, UNKNOWN_PARENT = "unknown-place", "ambiguous-place", "unknown-parent-place"
OTHER_LEVEL = "place-at-other-level"


@dataclass(frozen=True)
class Resolved:
    codes: pd.Series  # unit code, or None where it failed
    failures: pd.Series  # None, or UNKNOWN / AMBIGUOUS / UNKNOWN_PARENT / OTHER_LEVEL
    elsewhere: dict  # name -> (level, code) of the place of another level it names


class Places:
    """The gazetteer of a deployment's geography (every version of every area), matching names
    at one level (``level``: its code; the deployment's units by default)."""

    def __init__(self, geography: pd.DataFrame, deployment, level: str | None = None):
        levels = deployment.levels
        at = [lv.code for lv in levels].index(level) if level else len(levels) - 1
        self._geography, self._deployment = geography, deployment
        self.unit_level = levels[at]
        self.parent_level = levels[at - 1] if at > 0 else None
        by_level = {lv.code: geography[geography["geo_level"] == lv.code] for lv in levels}
        self._parent = {}  # normalised name or code -> parent codes
        if self.parent_level is not None:
            for r in by_level[self.parent_level.code].itertuples():
                for label in (r.name, r.geo_code):
                    self._parent.setdefault(normalise_label(label), set()).add(r.geo_code)
        self._units = {}  # normalised name -> codes at the level
        self._units_in = {}  # (parent code, normalised name) -> codes at the level
        self._codes = set(by_level[self.unit_level.code]["geo_code"])
        for r in by_level[self.unit_level.code].itertuples():
            label = normalise_label(r.name)
            self._units.setdefault(label, set()).add(r.geo_code)
            self._units_in.setdefault((r.parent_code, label), set()).add(r.geo_code)
        self._elsewhere = {}  # normalised name -> (level, code) at the nearest other level
        for lv in sorted(levels, key=lambda lv: abs(levels.index(lv) - at)):
            if lv is self.unit_level:
                continue
            for r in by_level[lv.code].itertuples():
                self._elsewhere.setdefault(normalise_label(r.name), (lv, r.geo_code))

    def at(self, level: str) -> "Places":
        """The same gazetteer matching names at ``level``."""
        if level == self.unit_level.code:
            return self
        return Places(self._geography, self._deployment, level)

    def areas_within(self, level: str, units) -> dict[str, tuple]:
        """The areas of ``level`` made only of ``units`` (every unit any version of the area
        ever held), with the validity of each: (valid from, valid to or None)."""
        geography = self._geography
        parent: dict[str, set] = {}  # code -> its parents over every version
        for r in geography.itertuples():
            if isinstance(r.parent_code, str) and r.parent_code:
                parent.setdefault(r.geo_code, set()).add(r.parent_code)
        lowest = self._deployment.units_level.code
        held: dict[str, set] = {}  # area code -> the units it ever held
        for unit in geography.loc[geography["geo_level"] == lowest, "geo_code"].unique():
            seen, todo = set(), [unit]
            while todo:
                code = todo.pop()
                if code not in seen:
                    seen.add(code)
                    todo.extend(parent.get(code, ()))
            for area in seen:
                held.setdefault(area, set()).add(unit)
        units = set(units)
        rows = geography[geography["geo_level"] == level]
        return {
            r.geo_code: (r.valid_from, r.valid_to)
            for r in rows.itertuples()
            if held.get(r.geo_code) and held[r.geo_code] <= units
        }

    def _one(
        self, name: str, parent: str | None, spellings: dict[str, str]
    ) -> tuple[str | None, str | None]:
        label = normalise_label(name)
        if label in spellings:  # the profile's word for a spelling the geography lacks
            code = spellings[label]
            return (code, None) if code in self._codes else (None, UNKNOWN)
        if parent is None or self.parent_level is None:
            found = self._units.get(label, set())
        else:
            parents = self._parent.get(
                normalise_label(self.parent_level.pad(pd.Series([parent]))[0])
            )
            parents = parents or self._parent.get(normalise_label(parent))
            if not parents:
                return None, UNKNOWN_PARENT
            found = set().union(*(self._units_in.get((p, label), set()) for p in parents))
        if len(found) == 1:
            return next(iter(found)), None
        return None, AMBIGUOUS if found else UNKNOWN

    def resolve(
        self,
        names: pd.Series,
        parents: pd.Series | None = None,
        spellings: dict[str, str] | None = None,
    ) -> Resolved:
        """Codes for ``names`` (blank stays blank); each distinct pair is looked up once.
        ``spellings``: normalised name -> code, for names the geography spells otherwise."""
        pairs = pd.DataFrame(
            {"name": names, "parent": parents if parents is not None else None}, index=names.index
        )
        pairs = pairs.fillna("")
        lookups = {}
        for name, parent in pairs.drop_duplicates().itertuples(index=False):
            if name == "":
                lookups[(name, parent)] = (None, None)
            else:
                lookups[(name, parent)] = self._one(name, parent or None, spellings or {})
        # Names given without their parent: is the file of units, or of another level?
        elsewhere = {}  # the names that are places of another level
        alone = False  # some name is a unit's and no other level's
        for (name, parent), (code, failure) in lookups.items():
            other = self._elsewhere.get(normalise_label(name)) if name else None
            unit = code is not None or failure == AMBIGUOUS
            if other is not None and not parent:
                elsewhere[name] = other
            elif unit:
                alone = True
        for key, (code, failure) in lookups.items():
            name, parent = key
            if parent or name not in elsewhere:
                continue  # a name found within its parent is that parent's unit
            if failure == UNKNOWN or (code is not None and not alone):
                lookups[key] = (None, OTHER_LEVEL)
        keys = list(zip(pairs["name"], pairs["parent"], strict=True))
        return Resolved(
            codes=pd.Series([lookups[k][0] for k in keys], index=names.index, dtype="object"),
            failures=pd.Series([lookups[k][1] for k in keys], index=names.index, dtype="object"),
            elsewhere=elsewhere,
        )
