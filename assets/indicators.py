"""Indicator asset: every indicator value recomputed in SQL inside the warehouse."""

import dagster as dg
import sqlalchemy as sa

from assets.reference import reference_geography, reference_population
from assets.submissions import submissions
from obsx.indicators import compute_indicators, unbalanced_aggregates
from obsx.warehouse import indicator_value as indicator_value_table
from pipelines.resources import WarehouseResource

ADD_UP_CHECK = "district_numerators_add_up"


@dg.asset(
    group_name="indicators",
    kinds={"sql"},
    deps=[submissions, reference_population, reference_geography],
    check_specs=[dg.AssetCheckSpec(ADD_UP_CHECK, asset="indicator_value")],
)
def indicator_value(warehouse: WarehouseResource):
    """Homicide rate (SDG 16.1.1), incident counts by ICCS section and reporting coverage."""
    engine = warehouse.engine()
    count = compute_indicators(engine)
    v = indicator_value_table
    with engine.connect() as conn:
        national = conn.execute(
            sa.select(v.c.period, v.c.numerator, v.c.denominator, v.c.value)
            .where(
                v.c.indicator_code == "SDG_16_1_1",
                v.c.geo_level == "national",
                v.c.period_type == "year",
                v.c.disaggregation == "",
            )
            .order_by(v.c.period)
        ).all()
        unbalanced = unbalanced_aggregates(conn)
    preview = "\n".join(
        ["| year | victims | population | rate per 100,000 |", "|---|---|---|---|"]
        + [
            f"| {p} | {n:.0f} | {d or 0:.0f} | {'' if r is None else f'{r:.2f}'} |"
            for p, n, d, r in national
        ]
    )
    yield dg.MaterializeResult(
        metadata={"indicator values": count, "national homicide rate": dg.MetadataValue.md(preview)}
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
