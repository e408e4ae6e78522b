"""Reference assets: national geography, population and the observatory registry."""

import dagster as dg

from obsx import reference
from pipelines.resources import WarehouseResource

GROUP = "reference"


@dg.asset(group_name=GROUP, kinds={"sql"})
def reference_geography(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The deployment's country and units at every level, with validity dates."""
    frame = reference.read_geography()
    rows = reference.load_geography(warehouse.engine(), frame)
    by_level = frame["geo_level"].value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={"rows": rows, **{f"{k} units": v for k, v in by_level.items()}}
    )


@dg.asset(group_name=GROUP, kinds={"sql"}, deps=[reference_geography])
def reference_population(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Population by unit, year and, where given, sex and age group (rates' denominators)."""
    frame = reference.read_population()
    rows = reference.load_population(warehouse.engine(), frame)
    totals = frame.groupby("year")["population"].sum()
    return dg.MaterializeResult(
        metadata={
            "rows": rows,
            "years": ", ".join(str(y) for y in totals.index),
            "national total (last year)": int(totals.iloc[-1]),
            "source": ", ".join(sorted(frame["source"].unique())),
        }
    )


@dg.asset(group_name=GROUP, kinds={"sql"}, deps=[reference_geography])
def reference_observatories(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The contributors taking part and the units each may report for."""
    count = reference.load_observatories(warehouse.engine())
    return dg.MaterializeResult(metadata={"observatories": count})
