"""National reference data of a deployment: contributors, geography and population.

The deployment's files are the source (``deployments/<name>/``); the loader is the same for demo
and official figures and for every country.
"""

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from obsx.config import SCHEMAS_DIR
from obsx.intake.contract import load_contract
from obsx.intake.profiles import load_reference_profile
from obsx.intake.reading import UnreadableFile, read_submission
from obsx.intake.validation import (
    Observatory,
    ReferenceDataError,
    apply_profile,
    validate_reference,
)
from obsx.sourceyaml import SourceError
from obsx.warehouse.contributors import ALL_UNITS, read_contributors
from obsx.warehouse.deployment import Deployment, current_deployment
from obsx.warehouse.places import Places
from obsx.warehouse.tables import (
    cooperation_contract,
    geography,
    geography_rollup,
    observatory,
    observatory_unit,
    population,
    population_revision,
    reference_load,
)


def resolve_units(
    registry: dict[str, dict], geography_frame: pd.DataFrame, deployment: Deployment
) -> dict[str, list[str]]:
    """Each contributor's units, checked against the geography: an unknown unit is an error
    naming it and the registry line. ``all`` becomes every unit of the lowest level."""
    level = deployment.units_level
    units_rows = geography_frame[geography_frame["geo_level"] == level.code]
    known = set(units_rows["geo_code"])
    listed = {c: e["units"] for c, e in registry.items() if e["units"] != ALL_UNITS}
    # Every contributor's units padded at once (one per contributor: 0.25 s for 340 of them).
    every = level.pad(pd.Series([u for units in listed.values() for u in units], dtype="str"))
    every, start = list(every), 0
    resolved = {}
    for code, entry in registry.items():
        if entry["units"] == ALL_UNITS:
            resolved[code] = sorted(known)
            continue
        padded = every[start : start + len(entry["units"])]
        start += len(entry["units"])
        unknown = [u for u in padded if u not in known]
        if unknown:
            raise SourceError(
                deployment.contributors_path,
                entry["units_line"],
                f"{code}: units {', '.join(unknown)} are not {level.name['en'].lower()} codes of"
                " the geography",
            )
        resolved[code] = padded
    return resolved


def observatories(
    deployment: Deployment | None = None, engine: sa.Engine | None = None
) -> dict[str, Observatory]:
    """The registry as validation needs it: units, opening date, units' validity, place names.

    With ``engine``, a geography file that cannot be loaded gives way to the last good geography
    the warehouse holds (the reference asset's check says what to fix)."""
    deployment = deployment or current_deployment()
    try:
        geography_frame = read_geography(deployment=deployment)
    except (ReferenceDataError, SourceError):
        if engine is None:
            raise
        with engine.connect() as conn:
            geography_frame = pd.read_sql(sa.select(geography), conn)
        if geography_frame.empty:
            raise
    registry = read_contributors(deployment)
    units = resolve_units(registry, geography_frame, deployment)
    level = deployment.units_level
    at_level = geography_frame[geography_frame["geo_level"] == level.code]
    validity = {r.geo_code: (r.valid_from, r.valid_to) for r in at_level.itertuples()}
    places = Places(geography_frame, deployment)
    return {
        code: Observatory(
            code=code,
            name=e["name"],
            districts=tuple(units[code]),
            opened_on=e["opened_on"],
            closed_on=e.get("closed_on"),
            district_validity={u: validity[u] for u in units[code] if u in validity},
            units_level=level,
            places=places,
            kind=e["kind"],
            complete_coverage=e["complete_coverage"],
            deployment=deployment.name,
        )
        for code, e in registry.items()
    }


def _read_reference(path: Path, dataset: str, deployment: Deployment) -> pd.DataFrame:
    """A ministry reference file in any layout the readers know (CSV, Excel, SPSS; title rows,
    totals and notes; the contract's Spanish headers or the deployment's
    ``profiles/ministry/<dataset>.yaml``), checked against schemas/<dataset>.yaml: all or nothing."""
    contract = load_contract(dataset)
    profile = load_reference_profile(deployment, contract)
    try:
        table = read_submission(Path(path).read_bytes(), Path(path).name, profile.layout(contract))
    except UnreadableFile as exc:
        raise ReferenceDataError(f"{path}: {exc.problem.message('en')}") from exc
    except OSError as exc:
        raise ReferenceDataError(f"{path}: cannot be read ({exc.strerror})") from exc
    mapped = apply_profile(table, contract, profile, None)
    if mapped.file_errors:
        shown = "; ".join(p.message("en") for p in mapped.file_errors[:5])
        raise ReferenceDataError(f"{path}: {shown}")
    if mapped.cell_errors:
        shown = "; ".join(f"row {p.row}: {p.message('en')}" for p in mapped.cell_errors[:20])
        raise ReferenceDataError(f"{path}: {len(mapped.cell_errors)} problems: {shown}")
    frame = mapped.raw.rename(columns=mapped.mapping)[list(mapped.mapping.values())]
    for f in contract.fields:
        if f.name not in frame.columns and not f.required:
            frame[f.name] = ""
    if dataset == "population":
        frame["geo_code"] = deployment.units_level.pad(frame["geo_code"])
    problems = []
    if dataset == "geography":
        frame, problems = _geography_codes(frame, deployment)
    typed = validate_reference(frame, contract, str(path), problems)
    return typed.astype(object).where(typed.notna(), None)


def _geography_codes(frame: pd.DataFrame, deployment: Deployment) -> tuple[pd.DataFrame, list]:
    """Pad each unit's and parent's code as its level says, check level names and patterns,
    and add the country row (and make it the parent of top units) when the file lacks it."""
    levels = deployment.levels
    problems = []
    frame = frame.copy()
    written = frame["geo_level"]
    level_of = written.map({w: deployment.level_code(w) for w in written.unique()})
    frame["geo_level"] = level_of.fillna(written)
    for row in frame.index[level_of.isna()]:
        problems.append(
            f"row {row}: level {frame.at[row, 'geo_level']!r} is not one of"
            f" {', '.join(deployment.level_codes)} (deployment.yaml)"
        )
    country = deployment.country_code
    for i, level in enumerate(levels):
        mine = level_of == level.code
        frame.loc[mine, "geo_code"] = level.pad(frame.loc[mine, "geo_code"])
        if i > 0:
            given = frame.loc[mine, "parent_code"]
            implied = (
                frame.loc[mine, "geo_code"].str.slice(0, level.parent_prefix)
                if level.parent_prefix
                else pd.Series(country if i == 1 else "", index=given.index)
            )
            parents = given.where(given.ne(""), implied)
            for row in parents.index[parents.eq("")]:
                problems.append(
                    f"row {row}: {level.code} {frame.at[row, 'geo_code']} has no parent code"
                    " (give parent_code, or parent_prefix for its level in deployment.yaml)"
                )
            frame.loc[mine, "parent_code"] = levels[i - 1].pad(parents).where(parents.ne(""), "")
        for row in frame.index[mine]:
            code = frame.at[row, "geo_code"]
            if not level.matches(code):
                problems.append(
                    f"row {row}: {level.code} code {code!r} does not match {level.pattern}"
                )
    if not (level_of == levels[0].code).any():
        first = frame["valid_from"][frame["valid_from"].ne("")].min()
        source = frame["source"].iloc[0] if len(frame) else ""
        country_row = {
            "geo_code": country,
            "geo_level": levels[0].code,
            "name": deployment.country_name["es"],
            "parent_code": "",
            "valid_from": first or "1900-01-01",
            "valid_to": "",
            "source": source,
        }
        frame = pd.concat([pd.DataFrame([country_row], index=[0]), frame])
    return frame, problems


def read_geography(path: Path | None = None, deployment: Deployment | None = None) -> pd.DataFrame:
    deployment = deployment or current_deployment()
    frame = _read_reference(path or deployment.reference_file("geography"), "geography", deployment)
    for column in ("valid_from", "valid_to"):
        frame[column] = [None if v is None else v.date() for v in frame[column]]
    return frame.reset_index(drop=True)


def read_population(path: Path | None = None, deployment: Deployment | None = None) -> pd.DataFrame:
    deployment = deployment or current_deployment()
    path = path or deployment.reference_file("population")
    frame = _read_reference(path, "population", deployment)
    frame["year"] = frame["year"].astype(int)
    frame["population"] = frame["population"].astype(int)
    return frame.reset_index(drop=True)


def read_contracts(path: Path | None = None, deployment: Deployment | None = None) -> pd.DataFrame:
    """The grant fund's cooperation contracts (``reference.cooperation_contracts``); empty when
    the deployment declares no register."""
    deployment = deployment or current_deployment()
    if path is None and "cooperation_contracts" not in deployment.reference:
        return pd.DataFrame()
    path = path or deployment.reference_file("cooperation_contracts")
    frame = _read_reference(path, "cooperation_contracts", deployment)
    frame["geo_code"] = deployment.units_level.pad(frame["geo_code"])
    for column in ("starts_on", "ends_on"):
        frame[column] = [v.date() for v in frame[column]]
    wrong = frame[frame["ends_on"] < frame["starts_on"]]
    if len(wrong):
        raise ReferenceDataError(
            f"{path}: contracts ending before they start: {wrong['contract_code'].tolist()[:10]}"
        )
    return frame.reset_index(drop=True)


# The code that turns a reference file into rows: a change to it loads every file again.
_LOADING_CODE = (  # under obsx/
    "warehouse/reference.py",
    "intake/reading.py",
    "intake/profiles.py",
    "intake/validation.py",
    "intake/contract.py",
    "warehouse/contributors.py",
)


def source_digest(dataset: str, deployment: Deployment | None = None) -> str:
    """A digest of everything a load of the reference ``dataset`` reads: the file, its contract
    and the ministry's profile for it, the deployment's declaration, the loading code. (The
    geography the others are checked against is not in it: ``loaded_unchanged`` asks that it was
    loaded before them.)"""
    deployment = deployment or current_deployment()
    digest = hashlib.sha256(dataset.encode())
    profiles = deployment.profiles_dir
    here = Path(__file__).resolve().parents[1]
    if dataset == "observatories":
        source = deployment.contributors_path
    else:
        source = deployment.reference_file(dataset)
    for path in (
        source,
        SCHEMAS_DIR / f"{dataset}.yaml",
        profiles / "ministry" / f"{dataset}.yaml" if profiles else None,
        deployment.root / "deployment.yaml",
        *(here / name for name in _LOADING_CODE),
    ):
        content = path.read_bytes() if path is not None and path.is_file() else b""
        digest.update(len(content).to_bytes(8, "big") + content)
    return digest.hexdigest()


def loaded_unchanged(engine: sa.Engine, dataset: str, digest: str) -> dt.datetime | None:
    """When the warehouse last loaded ``dataset`` from exactly what ``digest`` describes (None:
    never, or its table was replaced since by other means; or, for a file checked against the
    geography, the geography was loaded after it)."""
    r = reference_load.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(r.dataset, r.digest, r.loaded_at).where(r.dataset.in_([dataset, "geography"]))
        )
        held = {row.dataset: row for row in rows}
    mine, geo = held.get(dataset), held.get("geography")
    if mine is None or mine.digest != digest or geo is None or geo.loaded_at > mine.loaded_at:
        return None
    return mine.loaded_at


def _record_load(conn: sa.Connection, dataset: str, digest: str | None) -> None:
    """Remember what ``dataset``'s table was loaded from (``digest``; None: from a frame the
    caller built, which no file describes: the next load from the file reads it again)."""
    conn.execute(reference_load.delete().where(reference_load.c.dataset == dataset))
    if digest is not None:
        now = dt.datetime.now(dt.UTC)
        conn.execute(reference_load.insert().values(dataset=dataset, digest=digest, loaded_at=now))


def load_contracts(engine: sa.Engine, frame: pd.DataFrame) -> int:
    """Replace the contract register; every contract's unit must be in the geography."""
    with engine.begin() as conn:
        known = set(conn.scalars(sa.select(geography.c.geo_code)))
        unknown = set(frame.get("geo_code", [])) - known
        if unknown:
            raise ReferenceDataError(
                f"cooperation contracts: units missing from the geography: {sorted(unknown)[:20]}"
            )
        return _replace(conn, cooperation_contract, frame)


def _replace(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    conn.execute(table.delete())
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    if records:
        conn.execute(table.insert(), records)
    return len(records)


def rollup(frame: pd.DataFrame, deployment: Deployment) -> pd.DataFrame:
    """For every area (units of the lowest level, and the areas above that a source may report
    for as a whole), the area it belongs to at its own level and each level above, with the
    period (months, ``YYYY-MM``) in which that chain holds: boundary changes keep history, so
    each period's figures roll up on the hierarchy valid then. A unit's rows are those whose
    ``unit_code`` has a row at the lowest level."""
    rows_by_code: dict[str, list] = {}
    for r in frame.itertuples():
        rows_by_code.setdefault(r.geo_code, []).append(r)

    def month(d: dt.date | None) -> str | None:
        return None if d is None else d.strftime("%Y-%m")

    def chains(r, start, end):
        """(ancestor codes from r upwards, start, end) for every stretch of r's parent history."""
        if start is not None and end is not None and start >= end:
            return
        if not isinstance(r.parent_code, str) or not r.parent_code:  # None, NaN or blank
            yield [r.geo_code], start, end
            return
        for parent in rows_by_code.get(r.parent_code, []):
            lo = max(d for d in (start, parent.valid_from) if d is not None)
            his = [d for d in (end, parent.valid_to) if d is not None]
            hi = min(his) if his else None
            if hi is not None and lo >= hi:
                continue
            for codes, s, e in chains(parent, lo, hi):
                yield [r.geo_code, *codes], s, e

    records = []
    depth = {level.code: i + 1 for i, level in enumerate(deployment.levels)}
    for r in frame.itertuples():
        if r.geo_level not in depth:
            continue
        for codes, start, end in chains(r, r.valid_from, r.valid_to):
            if len(codes) != depth[r.geo_level]:
                continue  # a chain that does not reach the country: no figure rolls up there
            for level, ancestor in zip(deployment.levels, reversed(codes), strict=False):
                records.append(
                    {
                        "unit_code": r.geo_code,
                        "geo_level": level.code,
                        "geo_code": ancestor,
                        "from_month": month(start),
                        "to_month": month(end),
                    }
                )
    return pd.DataFrame(
        records, columns=["unit_code", "geo_level", "geo_code", "from_month", "to_month"]
    )


def load_geography(
    engine: sa.Engine,
    frame: pd.DataFrame,
    deployment: Deployment | None = None,
    digest: str | None = None,
) -> int:
    """Replace the geography and its roll-up in one transaction; every parent must exist.
    ``digest``: the ``source_digest`` of the file the frame was read from (see ``_record_load``)."""
    deployment = deployment or current_deployment()
    unknown = set(frame["parent_code"].dropna()) - set(frame["geo_code"])
    if unknown:
        raise ReferenceDataError(f"geography: parents without a row: {sorted(unknown)}")
    with engine.begin() as conn:
        count = _replace(conn, geography, frame)
        _replace(conn, geography_rollup, rollup(frame, deployment))
        _record_load(conn, "geography", digest)
        return count


POPULATION_KEY = ["geo_code", "year", "sex", "age_group"]


def load_population(
    engine: sa.Engine,
    frame: pd.DataFrame,
    now: dt.datetime | None = None,
    digest: str | None = None,
) -> int:
    """Replace the population table in one transaction; every unit must be in the geography.
    ``digest``: as for ``load_geography``.

    Each load is a version: figures that changed or went are closed in ``population_revision``
    and the new ones added, so indicators as of a past moment use the denominators known then."""
    now = now or dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        known = set(conn.scalars(sa.select(geography.c.geo_code)))
        unknown = set(frame["geo_code"]) - known
        if unknown:
            raise ReferenceDataError(
                f"population: units missing from the geography: {sorted(unknown)[:20]}"
            )
        _version_population(conn, frame, now)
        _record_load(conn, "population", digest)
        return _replace(conn, population, frame)


def _version_population(conn: sa.Connection, frame: pd.DataFrame, now: dt.datetime) -> None:
    r = population_revision.c
    held = pd.read_sql(
        sa.select(*[r[c] for c in (*POPULATION_KEY, "population", "source")]).where(
            r.replaced_at.is_(None)
        ),
        conn,
    )
    new = frame[[*POPULATION_KEY, "population", "source"]].astype(object)
    both = held.astype(object).merge(new, on=POPULATION_KEY, how="outer", suffixes=("_old", "_new"))
    same = (both["population_old"] == both["population_new"]) & (
        both["source_old"] == both["source_new"]
    )
    gone = both[both["population_old"].notna() & ~same]
    for row in gone[POPULATION_KEY].to_dict("records"):
        conn.execute(
            population_revision.update()
            .where(r.replaced_at.is_(None), *[r[k] == v for k, v in row.items()])
            .values(replaced_at=now)
        )
    added = both[both["population_new"].notna() & ~same]
    if len(added):
        conn.execute(
            population_revision.insert(),
            [
                {
                    **{k: row[k] for k in POPULATION_KEY},
                    "population": int(row["population_new"]),
                    "source": row["source_new"],
                    "loaded_at": now,
                }
                for row in added.to_dict("records")
            ],
        )


def _none_left_silently(conn: sa.Connection, registry: dict, deployment: Deployment) -> None:
    """A contributor whose files the warehouse holds leaves with an end date, never by being
    deleted from the registry: without it its records would count nowhere (or as another
    source's) and published years would change without anyone deciding it."""
    held = conn.execute(
        sa.text(
            "SELECT observatory_code, count(*) FROM submission"
            " WHERE merged_at IS NOT NULL AND status <> 'rejected' GROUP BY observatory_code"
        )
    ).all()
    gone = sorted((code, n) for code, n in held if code not in registry)
    if gone:
        code, n = gone[0]
        raise SourceError(
            deployment.contributors_path,
            None,
            f"{code} is no longer registered, but the warehouse holds {n} file(s) it sent:"
            f" keep its entry and add 'closed_on: YYYY-MM-DD' (its records stay counted for the"
            f" periods it covered; it owes nothing after and later files are refused)"
            + (f"; also {', '.join(c for c, _ in gone[1:])}" if len(gone) > 1 else ""),
        )


def load_observatories(
    engine: sa.Engine,
    registry: dict[str, dict] | None = None,
    deployment: Deployment | None = None,
    digest: str | None = None,
) -> int:
    """Replace the contributor registry (and each one's units) in the warehouse. ``digest``:
    the registry file's ``source_digest``, when ``registry`` is read from it."""
    deployment = deployment or current_deployment()
    registry = registry if registry is not None else read_contributors(deployment)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(geography), conn)
    units = resolve_units(registry, frame, deployment)
    with engine.begin() as conn:
        _none_left_silently(conn, registry, deployment)
        conn.execute(observatory_unit.delete())
        conn.execute(observatory.delete())
        for code, e in registry.items():
            conn.execute(
                observatory.insert().values(
                    observatory_code=code,
                    name=e["name"],
                    country_code=deployment.country_code,
                    opened_on=e["opened_on"],
                    closed_on=e.get("closed_on"),
                    kind=e["kind"],
                )
            )
            conn.execute(
                observatory_unit.insert(),
                [{"observatory_code": code, "geo_code": u} for u in units[code]],
            )
        _record_load(conn, "observatories", digest)
    return len(registry)
