"""Reference assets: the deployment's geography, population and contributor registry.

A broken reference file never stops the run: the warehouse keeps the last good version, every
contributor's files are still processed against it, and a failed check says what to fix.
"""

from collections.abc import Callable

import dagster as dg
import sqlalchemy as sa

from obsx.sourceyaml import ReferenceDataError, SourceError
from obsx.warehouse import reference
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.tables import cooperation_contract, geography, observatory, population
from pipelines.resources import WarehouseResource

GROUP = "reference"
VALID_CHECK = "reference_file_valid"


def _reference_asset(
    name: str, table: sa.Table, load: Callable[[sa.Engine], dict], deps=(), doc: str = ""
):
    """An asset that loads one reference file with ``load`` (returning its metadata); when the
    file cannot be loaded the warehouse keeps what it had and the check fails with the message
    (file, row or line, what to fix)."""

    @dg.asset(
        name=name,
        group_name=GROUP,
        kinds={"sql"},
        deps=list(deps),
        description=doc,
        check_specs=[
            dg.AssetCheckSpec(VALID_CHECK, asset=name, description="The file loaded whole")
        ],
    )
    def _asset(warehouse: WarehouseResource):
        engine = warehouse.engine()
        try:
            metadata = load(engine)
        except (ReferenceDataError, SourceError) as exc:
            with engine.connect() as conn:
                kept = conn.scalar(sa.select(sa.func.count()).select_from(table))
            yield dg.MaterializeResult(metadata={"error": str(exc), "kept rows (last good)": kept})
            yield dg.AssetCheckResult(
                check_name=VALID_CHECK, passed=False, metadata={"error": str(exc)}
            )
            return
        yield dg.MaterializeResult(metadata=metadata)
        yield dg.AssetCheckResult(check_name=VALID_CHECK, passed=True)

    return _asset


def _unchanged(engine: sa.Engine, dataset: str, table: sa.Table) -> tuple[str, dict | None]:
    """The file's digest, and the metadata to report when the warehouse already holds exactly
    what it would load (the geography, population and contributors read, validated and
    replaced again: 2.5 s of a one-file run on a national deployment)."""
    digest = reference.source_digest(dataset)
    loaded_at = reference.loaded_unchanged(engine, dataset, digest)
    if loaded_at is None:
        return digest, None
    with engine.connect() as conn:
        rows = conn.scalar(sa.select(sa.func.count()).select_from(table))
    return digest, {
        "rows": rows,
        "unchanged since": str(loaded_at),
        "deployment": current_deployment().name,
    }


def _geography(engine: sa.Engine) -> dict:
    digest, unchanged = _unchanged(engine, "geography", geography)
    if unchanged:
        return unchanged
    frame = reference.read_geography()
    rows = reference.load_geography(engine, frame, digest=digest)
    by_level = frame["geo_level"].value_counts().to_dict()
    units = {f"{level} units": count for level, count in by_level.items()}
    return {"rows": rows, "deployment": current_deployment().name, **units}


def _population(engine: sa.Engine) -> dict:
    digest, unchanged = _unchanged(engine, "population", population)
    if unchanged:
        return unchanged
    frame = reference.read_population()
    rows = reference.load_population(engine, frame, digest=digest)
    years = sorted(frame["year"].unique())
    sources = ", ".join(sorted(frame["source"].unique()))[:500]
    return {"rows": rows, "years": ", ".join(str(y) for y in years), "source": sources}


def _contracts(engine: sa.Engine) -> dict:
    frame = reference.read_contracts()
    rows = reference.load_contracts(engine, frame)
    if not rows:
        return {"contracts": 0, "note": "no register declared (reference.cooperation_contracts)"}
    return {"contracts": rows, "amount": float(frame["amount"].sum())}


def _contributors(engine: sa.Engine) -> dict:
    digest, unchanged = _unchanged(engine, "observatories", observatory)
    if unchanged:
        return unchanged
    return {"contributors": reference.load_observatories(engine, digest=digest)}


reference_geography = _reference_asset(
    "reference_geography",
    geography,
    _geography,
    doc="The deployment's country and units at every level, with validity dates.",
)
reference_population = _reference_asset(
    "reference_population",
    population,
    _population,
    deps=[reference_geography],
    doc="Population by unit, year and, where given, sex and age group (rates' denominators).",
)
reference_observatories = _reference_asset(
    "reference_observatories",
    observatory,
    _contributors,
    deps=[reference_geography],
    doc="The contributors taking part and the units each may report for.",
)
reference_contracts = _reference_asset(
    "reference_contracts",
    cooperation_contract,
    _contracts,
    deps=[reference_geography],
    doc="The grant fund's cooperation contracts financing local prevention plans.",
)
