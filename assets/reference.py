"""Reference assets: the deployment's geography, population and contributor registry.

A broken reference file never stops the run: the warehouse keeps the last good version, every
contributor's files are still processed against it, and a failed check says what to fix.
"""

import dagster as dg
import sqlalchemy as sa

from obsx import reference
from obsx.deployment import current_deployment
from obsx.sourceyaml import SourceError
from obsx.validation import ReferenceDataError
from obsx.warehouse import geography, observatory, population
from pipelines.resources import WarehouseResource

GROUP = "reference"
VALID_CHECK = "reference_file_valid"
BROKEN = (ReferenceDataError, SourceError)


def _kept(engine: sa.Engine, table: sa.Table, error: Exception):
    """The result of a reference asset whose file could not be loaded: the warehouse keeps
    what it had, and the check fails with the message (file, row or line, what to fix)."""
    with engine.connect() as conn:
        rows = conn.scalar(sa.select(sa.func.count()).select_from(table))
    message = str(error)
    yield dg.MaterializeResult(metadata={"error": message, "kept rows (last good)": rows})
    yield dg.AssetCheckResult(check_name=VALID_CHECK, passed=False, metadata={"error": message})


def _loaded(metadata: dict):
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(check_name=VALID_CHECK, passed=True)


@dg.asset(
    group_name=GROUP,
    kinds={"sql"},
    check_specs=[
        dg.AssetCheckSpec(
            VALID_CHECK, asset="reference_geography", description="The file loaded whole"
        )
    ],
)
def reference_geography(warehouse: WarehouseResource):
    """The deployment's country and units at every level, with validity dates."""
    engine = warehouse.engine()
    try:
        frame = reference.read_geography()
        rows = reference.load_geography(engine, frame)
    except BROKEN as exc:
        yield from _kept(engine, geography, exc)
        return
    by_level = frame["geo_level"].value_counts().to_dict()
    yield from _loaded(
        {
            "rows": rows,
            "deployment": current_deployment().name,
            **{f"{k} units": v for k, v in by_level.items()},
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"sql"},
    deps=[reference_geography],
    check_specs=[
        dg.AssetCheckSpec(
            VALID_CHECK, asset="reference_population", description="The file loaded whole"
        )
    ],
)
def reference_population(warehouse: WarehouseResource):
    """Population by unit, year and, where given, sex and age group (rates' denominators)."""
    engine = warehouse.engine()
    try:
        frame = reference.read_population()
        rows = reference.load_population(engine, frame)
    except BROKEN as exc:
        yield from _kept(engine, population, exc)
        return
    totals = frame[frame["sex"].isin(["T", "F", "M"])].groupby("year")["population"].sum()
    yield from _loaded(
        {
            "rows": rows,
            "years": ", ".join(str(y) for y in totals.index),
            "source": ", ".join(sorted(frame["source"].unique()))[:500],
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"sql"},
    deps=[reference_geography],
    check_specs=[
        dg.AssetCheckSpec(
            VALID_CHECK, asset="reference_observatories", description="The file loaded whole"
        )
    ],
)
def reference_observatories(warehouse: WarehouseResource):
    """The contributors taking part and the units each may report for."""
    engine = warehouse.engine()
    try:
        count = reference.load_observatories(engine)
    except BROKEN as exc:
        yield from _kept(engine, observatory, exc)
        return
    yield from _loaded({"contributors": count})
