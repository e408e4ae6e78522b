"""Indicator asset: every indicator value recomputed in SQL inside the warehouse."""

import time

import dagster as dg
import sqlalchemy as sa

from assets.reference import reference_contracts, reference_geography, reference_population
from assets.submissions import submissions
from obsx.indicators.engine import (
    records_outside_geography,
    refresh_indicators,
    unbalanced_aggregates,
    units_without_population,
)
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.tables import indicator_value as indicator_value_table
from pipelines import stopping
from pipelines.resources import WarehouseResource

ADD_UP_CHECK = "numerators_add_up"
POPULATION_CHECK = "reporting_units_have_population"
GEOGRAPHY_CHECK = "records_placed_in_geography"


@dg.asset(
    group_name="indicators",
    kinds={"sql"},
    deps=[submissions, reference_population, reference_geography, reference_contracts],
    check_specs=[
        dg.AssetCheckSpec(
            ADD_UP_CHECK,
            asset="indicator_value",
            description="Each level's numerators add up to the level above's",
        ),
        dg.AssetCheckSpec(
            POPULATION_CHECK,
            asset="indicator_value",
            description="Units with records have a population (else they are left out of rates)",
        ),
        dg.AssetCheckSpec(
            GEOGRAPHY_CHECK,
            asset="indicator_value",
            description="Every record's unit is in the geography in its month",
        ),
    ],
)
def indicator_value(warehouse: WarehouseResource):
    """Every indicator of the catalogue (indicators/catalogue.yaml), recomputed for the years
    whose records changed since the last refresh (all years when a definition or reference
    changed), with survey precision and disclosure control."""
    signum = stopping.requested()
    if signum:  # `obsx run` was asked to stop: the next run recomputes what this one merged
        raise dg.Failure(
            description=f"stopped by {stopping.name(signum)} before the indicator refresh:"
            " the next run recomputes the indicators"
        )
    engine = warehouse.engine()
    started = time.perf_counter()
    refresh = refresh_indicators(engine)
    seconds = time.perf_counter() - started
    v = indicator_value_table
    with engine.connect() as conn:
        national = conn.execute(
            sa.select(v.c.period, v.c.numerator, v.c.denominator, v.c.value)
            .where(
                v.c.indicator_code == "SDG_16_1_1",
                v.c.geo_level == current_deployment().levels[0].code,
                v.c.period_type == "year",
                v.c.disaggregation == "",
            )
            .order_by(v.c.period)
        ).all()
        unbalanced = unbalanced_aggregates(conn)
        no_population = units_without_population(conn)
        outside = records_outside_geography(conn)
    preview = "\n".join(
        ["| year | victims | population | rate per 100,000 |", "|---|---|---|---|"]
        + [
            f"| {p} | {n:.0f} | {d or 0:.0f} | {'' if r is None else f'{r:.2f}'} |"
            for p, n, d, r in national
        ]
    )
    yield dg.MaterializeResult(
        metadata={
            "indicator values written": refresh["values"],
            "years recomputed": "all"
            if refresh["years"] is None
            else ", ".join(refresh["years"]) or "none (nothing changed)",
            "seconds indicators": round(seconds, 2),
            "national homicide rate": dg.MetadataValue.md(preview),
        }
    )
    yield dg.AssetCheckResult(
        check_name=ADD_UP_CHECK,
        passed=not unbalanced,
        metadata={
            "unbalanced": dg.MetadataValue.json(
                [{k: str(x) for k, x in u.items()} for u in unbalanced[:50]]
            )
        },
    )
    yield dg.AssetCheckResult(
        check_name=POPULATION_CHECK,
        passed=not no_population,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"units without population": dg.MetadataValue.json(no_population[:100])},
    )
    yield dg.AssetCheckResult(
        check_name=GEOGRAPHY_CHECK,
        passed=not outside,
        metadata={"records outside the geography": dg.MetadataValue.json(outside[:100])},
    )
