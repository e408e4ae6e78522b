"""What flows back each month: the bulletin, every contributor's pack and the open-data files.

One partition per month (the month reported, in the deployment's time zone); the schedule in
pipelines/schedules.py builds last month's on the 5th, and any month can be (re)built from the
UI or with ``obsx report --period YYYY-MM``.
"""

import dagster as dg

from assets.indicators import indicator_value
from obsx.publication.bulletin import build_report
from obsx.warehouse.deployment import current_deployment
from pipelines.resources import DropzoneResource, WarehouseResource

REPORT_MONTHS = dg.MonthlyPartitionsDefinition(
    start_date="2020-01-01", timezone=current_deployment().time_zone
)


@dg.asset(
    group_name="publication",
    kinds={"html", "pdf"},
    deps=[indicator_value],
    partitions_def=REPORT_MONTHS,
)
def monthly_bulletin(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    dropzone: DropzoneResource,
) -> dg.MaterializeResult:
    """The ministry's monthly bulletin (HTML, PDF), each contributor's one-page pack in its
    ``reportes/`` folder, and SDMX-CSV / CSV / Parquet exports of the published indicators."""
    period = context.partition_key[:7]
    language = current_deployment().language
    built = build_report(warehouse.engine(), dropzone.root(), period, lang=language)
    packs = "\n".join(f"- `{p}`" for p in built.packs if p.suffix == ".pdf")
    return dg.MaterializeResult(
        metadata={
            "bulletin (HTML)": dg.MetadataValue.path(str(built.bulletin_html)),
            "bulletin (PDF)": dg.MetadataValue.path(str(built.bulletin_pdf)),
            "figures revised since the previous bulletin": built.revised,
            "contributors' packs": dg.MetadataValue.md(packs or "none"),
            **{
                f"open data: {name}": dg.MetadataValue.path(str(path))
                for name, path in built.open_data.items()
            },
        }
    )
