"""National reference data: observatories, geography and population, loaded by the ministry.

The files in ``reference/`` are the source; the loader is the same for demo and official figures.
"""

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import yaml

from obsx.config import REFERENCE_DIR
from obsx.contract import load_contract
from obsx.profiles import load_profile
from obsx.reading import UnreadableFile, read_submission
from obsx.validation import Observatory, ReferenceDataError, not_data_rows, validate_reference
from obsx.warehouse import geography, observatory, observatory_unit, population

OBSERVATORY_CODE_RE = re.compile(r"^[a-z0-9_]{1,40}$")
NATIONAL_CODE = "PA"


def read_observatories(path: Path = REFERENCE_DIR / "observatories.yaml") -> dict[str, dict]:
    """The observatory registry, keyed by code; codes are checked against the safe alphabet."""
    with open(path, encoding="utf-8") as fh:
        entries = yaml.safe_load(fh)["observatories"]
    registry = {}
    for entry in entries:
        code = entry["code"]
        if not OBSERVATORY_CODE_RE.match(code) or "__" in code:
            raise ValueError(f"observatory code {code!r}: use lowercase letters, digits and '_'")
        entry["units"] = [str(u) for u in entry["units"]]
        registry[code] = entry
    return registry


def observatories(path: Path = REFERENCE_DIR / "observatories.yaml") -> dict[str, Observatory]:
    """The registry as validation needs it: units, opening date, units' validity periods."""
    geography = read_geography()
    validity = {
        r.geo_code: (r.valid_from, r.valid_to)
        for r in geography.itertuples()
        if r.geo_level == "district"
    }
    return {
        code: Observatory(
            code=code,
            name=e["name"],
            districts=tuple(e["units"]),
            opened_on=e.get("opened_on"),
            district_validity={u: validity[u] for u in e["units"] if u in validity},
        )
        for code, e in read_observatories(path).items()
    }


def _read_reference(path: Path, dataset: str) -> pd.DataFrame:
    """A ministry reference file in any layout the readers know (CSV, Excel, SPSS; title rows,
    totals and notes; the contract's Spanish headers or profiles/ministry/<dataset>.yaml),
    checked against schemas/<dataset>.yaml: all or nothing."""
    contract = load_contract(dataset)
    profile = load_profile("ministry", contract)
    try:
        table = read_submission(Path(path).read_bytes(), Path(path).name, profile.layout(contract))
    except UnreadableFile as exc:
        raise ReferenceDataError(f"{path}: {exc.problem.message('en')}") from exc
    mapping, _ = contract.match_headers(list(table.frame.columns), extra=profile.columns)
    key_header = next((h for h, name in mapping.items() if name == contract.primary_key[0]), None)
    raw = table.frame.drop(index=list(not_data_rows(table.frame, key_header, profile)))
    frame = raw.rename(columns=mapping)[list(mapping.values())]
    for f in contract.fields:
        if f.name not in frame.columns and not f.required:
            frame[f.name] = ""
    typed = validate_reference(frame, contract, str(path))
    return typed.astype(object).where(typed.notna(), None)


def read_geography(path: Path = REFERENCE_DIR / "pa" / "geography.csv") -> pd.DataFrame:
    frame = _read_reference(path, "geography")
    for column in ("valid_from", "valid_to"):
        frame[column] = [None if v is None else v.date() for v in frame[column]]
    return frame.reset_index(drop=True)


def read_population(path: Path = REFERENCE_DIR / "pa" / "population.csv") -> pd.DataFrame:
    frame = _read_reference(path, "population")
    frame["year"] = frame["year"].astype(int)
    frame["population"] = frame["population"].astype(int)
    return frame.reset_index(drop=True)


def _replace(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    conn.execute(table.delete())
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    if records:
        conn.execute(table.insert(), records)
    return len(records)


def load_geography(engine: sa.Engine, frame: pd.DataFrame) -> int:
    """Replace the geography in one transaction; every parent must exist."""
    unknown = set(frame["parent_code"].dropna()) - set(frame["geo_code"])
    if unknown:
        raise ValueError(f"geography: parents without a row: {sorted(unknown)}")
    with engine.begin() as conn:
        return _replace(conn, geography, frame)


def load_population(engine: sa.Engine, frame: pd.DataFrame) -> int:
    """Replace the population table in one transaction; every unit must be in the geography."""
    with engine.begin() as conn:
        known = set(conn.scalars(sa.select(geography.c.geo_code)))
        unknown = set(frame["geo_code"]) - known
        if unknown:
            raise ValueError(f"population: units missing from the geography: {sorted(unknown)}")
        return _replace(conn, population, frame)


def load_observatories(engine: sa.Engine, registry: dict[str, dict]) -> int:
    with engine.begin() as conn:
        conn.execute(observatory_unit.delete())
        conn.execute(observatory.delete())
        for code, e in registry.items():
            opened = e.get("opened_on")
            conn.execute(
                observatory.insert().values(
                    observatory_code=code,
                    name=e["name"],
                    country_code=e["country_code"],
                    opened_on=opened if isinstance(opened, dt.date) else None,
                )
            )
            conn.execute(
                observatory_unit.insert(),
                [{"observatory_code": code, "geo_code": u} for u in e["units"]],
            )
    return len(registry)
