"""Indicators, defined as data and computed in SQL inside the warehouse.

Rates use, as denominator, the population of the units that reported in the period, so that a
unit that sent nothing is "not reported", never "zero crimes" (unless a file declared it covered:
then it reported zero). ``REPORTING_COVERAGE`` says which share of each area's population that
is. Every level the deployment declares gets values, rolled up on the hierarchy valid in the
period.
"""

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from obsx.contract import ACTION_FIELD, DELETE, load_contract
from obsx.deployment import current_deployment
from obsx.warehouse import (
    DATASETS,
    geography_rollup,
    indicator,
    indicator_value,
    population,
    record_tables,
)

PERIOD_COLUMNS = {"month": "period_month", "year": "period_year"}
# Rows that count victims (not cases): what per-victim indicators add up.
VICTIMS = "coalesce(i.count_unit, 'VICTIMS') = 'VICTIMS'"
SEX_CODES = ("F", "M")


@dataclass(frozen=True)
class Indicator:
    code: str
    name_es: str
    name_en: str
    numerator: str
    denominator: str | None
    unit: str
    multiplier: int | None
    standard: str | None
    crime_prefix: str | None = None


SDG_16_1_1 = Indicator(
    code="SDG_16_1_1",
    name_es="Víctimas de homicidio intencional por 100.000 habitantes",
    name_en="Victims of intentional homicide per 100,000 population",
    numerator="Victims of intentional homicide (ICCS 0101 and its subcategories) in the period",
    denominator="Resident population of the reporting districts, same year (same sex when disaggregated)",
    unit="per 100,000",
    multiplier=100_000,
    standard="SDG 16.1.1 (VC_IHR_PSRC); monthly values are not annualized",
    crime_prefix="0101",
)
INCIDENT_COUNT = Indicator(
    code="INCIDENT_COUNT",
    name_es="Incidentes registrados por sección de la ICCS",
    name_en="Recorded incidents by ICCS section",
    numerator="Incident records (victims) in the period, total and by ICCS section (iccs_section=NN)",
    denominator=None,
    unit="count",
    multiplier=None,
    standard="UNODC ICCS v1.0 sections 01-11",
)
REPORTING_COVERAGE = Indicator(
    code="REPORTING_COVERAGE",
    name_es="Población cubierta por observatorios que reportaron",
    name_en="Population covered by reporting observatories",
    numerator="Population of the districts with at least one record in the period",
    denominator="Population of all districts of the area, same year",
    unit="%",
    multiplier=100,
    standard="Observatory Exchange completeness",
)
PLAN_EXECUTION = Indicator(
    code="PLAN_EXECUTION",
    name_es="Ejecución del plan local de prevención (actividades)",
    name_en="Local prevention plan execution (activities)",
    numerator="Activities executed in the period",
    denominator="Activities of the plan in the period (planned, executed or cancelled)",
    unit="%",
    multiplier=100,
    standard="Observatory Exchange; DOMAIN.md prevention-plan execution",
)
BUDGET_EXECUTION = Indicator(
    code="BUDGET_EXECUTION",
    name_es="Ejecución presupuestaria del plan de prevención",
    name_en="Prevention plan budget execution",
    numerator="Budget executed (B/.) of activities with a planned budget",
    denominator="Budget planned (B/.)",
    unit="%",
    multiplier=100,
    standard="Observatory Exchange",
)
PREVENTION_PARTICIPANTS = Indicator(
    code="PREVENTION_PARTICIPANTS",
    name_es="Participantes en actividades de prevención ejecutadas",
    name_en="Participants in executed prevention activities",
    numerator="Participants of executed activities (total, or women plus men); sex=F / sex=M",
    denominator=None,
    unit="count",
    multiplier=None,
    standard="Observatory Exchange",
)
VICTIMIZATION_PREVALENCE = Indicator(
    code="VICTIMIZATION_PREVALENCE",
    name_es="Prevalencia de victimización en los últimos 12 meses",
    name_en="Victimization prevalence in the last 12 months",
    numerator="Weighted respondents victimized in the last 12 months",
    denominator="Weighted respondents who answered yes or no",
    unit="%",
    multiplier=100,
    standard="Victimization survey (SDG 16.1.3 related); design-weighted, no variance yet",
)
FEELS_SAFE_NIGHT = Indicator(
    code="SDG_16_1_4",
    name_es="Personas que se sienten seguras caminando solas de noche",
    name_en="People who feel safe walking alone around their area after dark",
    numerator="Weighted respondents who feel safe",
    denominator="Weighted respondents who answered yes or no",
    unit="%",
    multiplier=100,
    standard="SDG 16.1.4 (VC_SNS_WALN)",
)
CRIME_REPORTING_RATE = Indicator(
    code="CRIME_REPORTING_RATE",
    name_es="Víctimas que denunciaron a la policía",
    name_en="Victims who reported to the police",
    numerator="Weighted victims who reported the crime to the police",
    denominator="Weighted victims who answered whether they reported it",
    unit="%",
    multiplier=100,
    standard="Victimization survey (dark figure of crime)",
)
ARRESTS_RATE = Indicator(
    code="ARRESTS_RATE",
    name_es="Personas detenidas por 100.000 habitantes, por grupo de delito",
    name_en="Persons arrested per 100,000 population, by offence group",
    numerator="Arrest records (one per person detained) in the period; offence_group=CODE",
    denominator="Resident population of the reporting units, same year (latest earlier census)",
    unit="per 100,000",
    multiplier=100_000,
    standard="IDB SES-style rate (events / population x 100,000)",
)
INDICATORS = (
    SDG_16_1_1,
    INCIDENT_COUNT,
    REPORTING_COVERAGE,
    PLAN_EXECUTION,
    BUDGET_EXECUTION,
    PREVENTION_PARTICIPANTS,
    VICTIMIZATION_PREVALENCE,
    FEELS_SAFE_NIGHT,
    CRIME_REPORTING_RATE,
    *((ARRESTS_RATE,) if "arrests" in DATASETS else ()),
)
ARREST_GROUPS = (
    tuple(load_contract("arrests").field("offence_group").codelist.labels)
    if "arrests" in DATASETS
    else ()
)


# What indicators read of each dataset: the current records, or the versions valid at a past
# moment (as_of). Withdrawn records (record_action DELETE) are history, counted nowhere. The
# contract's geography field is read as ``unit_code``.
def records_sql(dataset: str, as_of: bool) -> str:
    contract = load_contract(dataset)
    fields = [f for f in contract.record_fields if f != contract.geography_field]
    columns = ", ".join(
        [f"{contract.geography_field} AS unit_code", *fields, "period_month", "period_year"]
    )
    live = f" AND {ACTION_FIELD} <> '{DELETE}'" if contract.has_deletions else ""
    if not as_of:
        return f"SELECT {columns} FROM {dataset} WHERE 1 = 1{live}"
    return (
        f"SELECT {columns} FROM {dataset}_revision WHERE valid_from <= :as_of"
        f" AND (valid_to IS NULL OR valid_to > :as_of){live}"
    )


def population_sql(as_of: bool) -> str:
    """The population figures: today's, or those loaded by a past moment (before the first
    load, the first ones: a rate is better reproduced with them than left without)."""
    if not as_of:
        return "SELECT geo_code, year, sex, age_group, population FROM population"
    columns = "geo_code, year, sex, age_group, population"
    return (
        f"SELECT {columns} FROM population_revision"
        " WHERE loaded_at <= :as_of AND (replaced_at IS NULL OR replaced_at > :as_of)"
        f" UNION ALL SELECT {columns} FROM population_revision"
        " WHERE loaded_at = (SELECT min(loaded_at) FROM population_revision)"
        " AND NOT EXISTS (SELECT 1 FROM population_revision WHERE loaded_at <= :as_of)"
    )


def coverage_sql(as_of: bool) -> str:
    """Units declared covered by a file (their contributor's units, each month of the file)."""
    merged = (
        " JOIN submission s ON s.submission_id = c.submission_id AND s.merged_at <= :as_of"
        if as_of
        else ""
    )
    return (
        "SELECT u.geo_code AS unit_code, c.period_month, substr(c.period_month, 1, 4) AS period_year"
        f" FROM declared_coverage c{merged}"
        " JOIN observatory_unit u ON u.observatory_code = c.observatory_code"
        " WHERE c.dataset = :dataset"
    )


# The unit a record's unit belongs to at the level computed, in the record's month.
_ROLLUP_JOIN = """
JOIN geography_rollup g ON g.unit_code = {alias}.unit_code AND g.geo_level = :geo_level
 AND (g.from_month IS NULL OR g.from_month <= {alias}.period_month)
 AND (g.to_month IS NULL OR g.to_month > {alias}.period_month)"""

# Population of a unit and year: by sex where asked; totals from the finest rows given (a
# both-sexes all-ages figure, else the sum of its parts). A year without figures takes the
# latest earlier year's (a census), else the earliest later one's.
_POPULATION = """
pop AS (SELECT geo_code, year, coalesce(
          sum(CASE WHEN sex = :pop_sex AND age_group = 'T' THEN population END),
          sum(CASE WHEN sex = :pop_sex AND age_group <> 'T' THEN population END),
          sum(CASE WHEN :pop_sex = 'T' AND sex <> 'T' AND age_group = 'T' THEN population END),
          sum(CASE WHEN :pop_sex = 'T' AND sex <> 'T' AND age_group <> 'T' THEN population END)
        ) AS pop
        FROM ({{population}}) population_known GROUP BY geo_code, year),
wanted AS (SELECT DISTINCT unit_code, year FROM {units}),
pop_year AS (SELECT w.unit_code, w.year,
                    coalesce(max(CASE WHEN p.year <= w.year THEN p.year END), min(p.year)) AS py
             FROM wanted w JOIN pop p ON p.geo_code = w.unit_code AND p.pop IS NOT NULL
             GROUP BY w.unit_code, w.year),
den AS (SELECT y.unit_code, y.year, p.pop FROM pop_year y
        JOIN pop p ON p.geo_code = y.unit_code AND p.year = y.py)"""

# Units that reported in each period, rolled up to the level computed: a unit reported when it
# has a record in the period or a file declared it covered (then it reported zero).
_REPORTING = (
    """
records AS ({records}),
rep AS (SELECT unit_code, period_month, period_year FROM records
        UNION SELECT unit_code, period_month, period_year FROM ({coverage}) cov),
rep_l AS (SELECT DISTINCT g.geo_code, r.{period} AS period, r.unit_code,
                 CAST(r.period_year AS INTEGER) AS year
          FROM rep r"""
    + _ROLLUP_JOIN.format(alias="r")
    + ")"
)

_COLUMNS = (
    "indicator_code, geo_level, geo_code, period_type, period, disaggregation, numerator, "
    "denominator, value, unit, computed_at"
)

# A rate over the reporting units that have a population: a unit without one is named by a
# check and left out of the rate (its records still count in INCIDENT_COUNT), never a NULL for
# the whole area.
RATE_SQL = (
    f"INSERT INTO {{target}} ({_COLUMNS}) WITH {_REPORTING},{_POPULATION.format(units='rep_l')},"
    + """
num AS (SELECT g.geo_code, i.{period} AS period, i.unit_code, {count} AS n FROM records i"""
    + _ROLLUP_JOIN.format(alias="i")
    + """
        WHERE {where} GROUP BY g.geo_code, i.{period}, i.unit_code),
unit AS (SELECT rep_l.geo_code, rep_l.period, coalesce(num.n, 0) AS n, den.pop
         FROM rep_l
         JOIN den ON den.unit_code = rep_l.unit_code AND den.year = rep_l.year
         LEFT JOIN num ON num.geo_code = rep_l.geo_code AND num.period = rep_l.period
                      AND num.unit_code = rep_l.unit_code)
SELECT :code, :geo_level, geo_code, :period_type, period, :disaggregation, sum(n), sum(pop),
       CASE WHEN sum(pop) > 0 THEN sum(n) * :multiplier / sum(pop) END, :unit, :computed_at
FROM unit GROUP BY geo_code, period"""
)

COUNT_SQL = (
    f"INSERT INTO {{target}} ({_COLUMNS}) WITH records AS ({{records}})"
    + """
SELECT :code, :geo_level, g.geo_code, :period_type, i.{period},
       {disaggregation}, {count}, NULL, {count}, :unit, :computed_at
FROM records i"""
    + _ROLLUP_JOIN.format(alias="i")
    + """
WHERE {where}
GROUP BY g.geo_code, i.{period}{group_extra}"""
)

# Prevention and survey indicators: one statement shape; the arithmetic is fixed SQL fragments
# (MEASURES below), never anything from file content.
RATIO_SQL = (
    f"INSERT INTO {{target}} ({_COLUMNS}) WITH records AS ({{records}})"
    + """
SELECT :code, :geo_level, g.geo_code, :period_type, i.{period}, :disaggregation,
       {numerator}, {denominator}, {value}, :unit, :computed_at
FROM records i"""
    + _ROLLUP_JOIN.format(alias="i")
    + """
WHERE {where}
GROUP BY g.geo_code, i.{period}"""
)
EXECUTED = "i.activity_status = 'EXECUTED'"
PARTICIPANTS = (
    "coalesce(i.participants_total, coalesce(i.participants_female, 0)"
    " + coalesce(i.participants_male, 0))"
)
ANSWERED = "IN ('YES', 'NO')"


def _weighted(condition: str) -> str:
    return f"sum(CASE WHEN {condition} THEN i.weight ELSE 0 END)"


def _survey_measures() -> list[tuple]:
    """Weighted shares, in total and by sex (the sex filter narrows the rows, not the sum)."""
    shares = [
        (VICTIMIZATION_PREVALENCE, "i.victimized_12m = 'YES'", f"i.victimized_12m {ANSWERED}"),
        (FEELS_SAFE_NIGHT, "i.feels_safe_night = 'YES'", f"i.feels_safe_night {ANSWERED}"),
        (
            CRIME_REPORTING_RATE,
            "i.victimized_12m = 'YES' AND i.reported_to_police = 'YES'",
            f"i.victimized_12m = 'YES' AND i.reported_to_police {ANSWERED}",
        ),
    ]
    return [
        (
            "survey_responses",
            ind,
            f"sex={sex}" if sex else "",
            _weighted(yes),
            _weighted(asked),
            f"i.sex = '{sex}'" if sex else "1 = 1",
        )
        for ind, yes, asked in shares
        for sex in (None, *SEX_CODES)
    ]


def _executed(amount: str) -> str:
    return f"sum(CASE WHEN {EXECUTED} THEN {amount} ELSE 0 END)"


MEASURES = [
    # dataset, indicator, disaggregation, numerator, denominator (None: a count), row filter
    ("prevention_activities", PLAN_EXECUTION, "", _executed("1"), "count(*)", "1 = 1"),
    (
        "prevention_activities",
        BUDGET_EXECUTION,
        "",
        "sum(CASE WHEN i.budget_planned IS NOT NULL THEN coalesce(i.budget_executed, 0) ELSE 0 END)",
        "sum(i.budget_planned)",
        "1 = 1",
    ),
    ("prevention_activities", PREVENTION_PARTICIPANTS, "", _executed(PARTICIPANTS), None, "1 = 1"),
    (
        "prevention_activities",
        PREVENTION_PARTICIPANTS,
        "sex=F",
        _executed("coalesce(i.participants_female, 0)"),
        None,
        "1 = 1",
    ),
    (
        "prevention_activities",
        PREVENTION_PARTICIPANTS,
        "sex=M",
        _executed("coalesce(i.participants_male, 0)"),
        None,
        "1 = 1",
    ),
    *_survey_measures(),
]

COVERAGE_SQL = (
    f"INSERT INTO {{target}} ({_COLUMNS}) WITH {_REPORTING},"
    + """
periods AS (SELECT r.{period} AS period, CAST(r.period_year AS INTEGER) AS year,
                   max(r.period_month) AS month
            FROM rep r GROUP BY r.{period}, r.period_year),
all_l AS (SELECT DISTINCT g.geo_code, pr.period, g.unit_code, pr.year
          FROM periods pr JOIN geography_rollup g ON g.geo_level = :geo_level
           AND (g.from_month IS NULL OR g.from_month <= pr.month)
           AND (g.to_month IS NULL OR g.to_month > pr.month)),"""
    + _POPULATION.format(units="all_l")
    + """,
unit AS (SELECT a.geo_code, a.period, den.pop,
                CASE WHEN rep_l.unit_code IS NULL THEN 0 ELSE den.pop END AS covered
         FROM all_l a
         JOIN den ON den.unit_code = a.unit_code AND den.year = a.year
         LEFT JOIN rep_l ON rep_l.geo_code = a.geo_code AND rep_l.period = a.period
                        AND rep_l.unit_code = a.unit_code)
SELECT :code, :geo_level, geo_code, :period_type, period, '', sum(covered), sum(pop),
       sum(covered) * :multiplier / sum(pop), :unit, :computed_at
FROM unit GROUP BY geo_code, period HAVING sum(pop) > 0"""
)


def compute_indicators(engine: sa.Engine, now: dt.datetime | None = None) -> int:
    """Recompute every indicator value in one transaction; returns the number of values."""
    now = now or dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Tables that just grew by a merge still carry the planner's empty-table estimates,
            # which pick nested loops (measured: 0.5 s instead of 7 ms per statement on 10k rows).
            tables = ", ".join([*DATASETS, "geography_rollup", "declared_coverage", "population"])
            conn.exec_driver_sql(f"ANALYZE {tables}")
        conn.execute(indicator.delete())
        conn.execute(indicator.insert(), [_definition(ind) for ind in INDICATORS])
        conn.execute(indicator_value.delete())
        insert_indicator_values(conn, indicator_value.name, {"computed_at": now})
        return conn.scalar(sa.select(sa.func.count()).select_from(indicator_value))


def indicator_values_as_of(engine: sa.Engine, as_of: dt.datetime) -> pd.DataFrame:
    """Every indicator value as it stood at ``as_of``: computed from the record versions valid
    then, so a published figure can be reproduced. Writes nothing (a temporary table).

    Population figures are those loaded by then (each load is a version); the geography is
    today's, whose validity dates already keep its history.
    """
    columns = [
        sa.Column(c.name, c.type, primary_key=c.primary_key) for c in indicator_value.columns
    ]
    scratch = sa.Table("indicator_value_as_of", sa.MetaData(), *columns, prefixes=["TEMPORARY"])
    with engine.begin() as conn:
        scratch.drop(conn, checkfirst=True)
        scratch.create(conn)
        insert_indicator_values(conn, scratch.name, {"computed_at": as_of, "as_of": as_of})
        frame = pd.read_sql(sa.select(scratch).order_by(*scratch.primary_key.columns), conn)
        scratch.drop(conn)
    return frame


def insert_indicator_values(conn: sa.Connection, target: str, fixed: dict) -> None:
    """Run every indicator statement into ``target``, at every level the deployment declares.

    ``fixed`` holds the timestamps bound in every statement that names them: computed_at, and
    as_of (then the records are the versions valid at that moment).
    """
    as_of = "as_of" in fixed
    levels = current_deployment().level_codes
    summed = _sum_records(conn, fixed)

    def run(
        template: str,
        ind: Indicator,
        level: str,
        period_type: str,
        shape: dict,
        dataset: str = "incidents",
        **params,
    ):
        """One statement: ``shape`` fills the SQL template, ``params`` are bound values."""
        sql = template.format(
            target=target,
            records=f"SELECT * FROM {summed[dataset]}"
            if dataset in summed
            else records_sql(dataset, as_of),
            coverage=coverage_sql(as_of),
            population=population_sql(as_of),
            **shape,
        )
        used = {k: v for k, v in fixed.items() if f":{k}" in sql}
        timestamps = [sa.bindparam(k, type_=sa.DateTime(timezone=True)) for k in used]
        bound = {
            "code": ind.code,
            "geo_level": level,
            "period_type": period_type,
            "unit": ind.unit,
            "dataset": dataset,
            "pop_sex": "T",
        }
        conn.execute(
            sa.text(sql).bindparams(*timestamps),
            {k: v for k, v in (bound | used | params).items() if f":{k}" in sql},
        )

    victims = "sum(i.victim_count)"
    sections = "'iccs_section=' || substr(i.crime_code, 1, 2)"
    arrests = "arrests" in DATASETS
    for period_type, period in PERIOD_COLUMNS.items():
        for level in levels:
            for sex in (None, *SEX_CODES):
                where = f"{VICTIMS} AND i.crime_code LIKE :crime_prefix" + (
                    " AND i.victim_sex = :sex" if sex else ""
                )
                run(
                    RATE_SQL,
                    SDG_16_1_1,
                    level,
                    period_type,
                    {"period": period, "count": victims, "where": where},
                    crime_prefix=f"{SDG_16_1_1.crime_prefix}%",
                    multiplier=float(SDG_16_1_1.multiplier),
                    disaggregation=f"sex={sex}" if sex else "",
                    **({"sex": sex, "pop_sex": sex} if sex else {}),
                )
            for disaggregation, group_extra in (
                ("''", ""),
                (sections, ", substr(i.crime_code, 1, 2)"),
            ):
                shape = {
                    "period": period,
                    "disaggregation": disaggregation,
                    "group_extra": group_extra,
                    "count": victims,
                    "where": VICTIMS,
                }
                run(COUNT_SQL, INCIDENT_COUNT, level, period_type, shape)
            if level != levels[-1]:
                run(
                    COVERAGE_SQL,
                    REPORTING_COVERAGE,
                    level,
                    period_type,
                    {"period": period},
                    multiplier=float(REPORTING_COVERAGE.multiplier),
                )
            for group in (None, *ARREST_GROUPS) if arrests else ():
                run(
                    RATE_SQL,
                    ARRESTS_RATE,
                    level,
                    period_type,
                    {
                        "period": period,
                        "count": "sum(i.arrests)",
                        "where": "i.offence_group = :group" if group else "1 = 1",
                    },
                    dataset="arrests",
                    multiplier=float(ARRESTS_RATE.multiplier),
                    disaggregation=f"offence_group={group}" if group else "",
                    **({"group": group} if group else {}),
                )
            for dataset, ind, disaggregation, numerator, denominator, where in MEASURES:
                if denominator is None:
                    value, denominator = numerator, "NULL"
                else:
                    value = (
                        f"CASE WHEN {denominator} > 0"
                        f" THEN {numerator} * :multiplier / {denominator} END"
                    )
                shape = {
                    "period": period,
                    "numerator": numerator,
                    "denominator": denominator,
                    "value": value,
                    "where": where,
                }
                extra = {"multiplier": float(ind.multiplier)} if ind.multiplier else {}
                run(
                    RATIO_SQL,
                    ind,
                    level,
                    period_type,
                    shape,
                    dataset=dataset,
                    disaggregation=disaggregation,
                    **extra,
                )
    for name in summed.values():  # temporary tables outlive the transaction in a pooled connection
        conn.exec_driver_sql(f"DROP TABLE {name}")


# The datasets that come by the million: summed once per unit, month and the columns their
# indicators read, so that each of the hundred-odd indicator statements reads thousands of sums,
# not every record (PostgreSQL, 300k records: indicators 59 s before).
SUMMED = {
    "incidents": (
        "unit_code, period_month, period_year, crime_code, victim_sex, count_unit",
        "sum(victim_count) AS victim_count",
    ),
    "arrests": ("unit_code, period_month, period_year, offence_group", "count(*) AS arrests"),
}


def _sum_records(conn: sa.Connection, fixed: dict) -> dict[str, str]:
    """Temporary tables of summed records (see SUMMED); returns dataset -> table name."""
    as_of = "as_of" in fixed
    tables = {}
    for dataset, (columns, total) in SUMMED.items():
        if dataset not in DATASETS:
            continue
        name = f"summed_{dataset}"
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        sql = (
            f"CREATE TEMPORARY TABLE {name} AS SELECT {columns}, {total}"
            f" FROM ({records_sql(dataset, as_of)}) r GROUP BY {columns}"
        )
        timestamps = [sa.bindparam("as_of", type_=sa.DateTime(timezone=True))] if as_of else []
        conn.execute(
            sa.text(sql).bindparams(*timestamps), {"as_of": fixed["as_of"]} if as_of else {}
        )
        tables[dataset] = name
    return tables


def _definition(ind: Indicator) -> dict:
    return {
        "indicator_code": ind.code,
        "name_es": ind.name_es,
        "name_en": ind.name_en,
        "numerator": ind.numerator,
        "denominator": ind.denominator,
        "multiplier": ind.multiplier,
        "unit": ind.unit,
        "standard": ind.standard,
    }


def unbalanced_aggregates(conn: sa.Connection) -> list[dict]:
    """Indicator numerators of an area that differ from the sum of its parts one level down
    (the parts valid in the period).

    Empty when every level's numerators add up to the next one's.
    """
    levels = current_deployment().level_codes
    below = " ".join(f"WHEN '{a}' THEN '{b}'" for a, b in zip(levels, levels[1:], strict=False))
    upper = ", ".join(f"'{level}'" for level in levels[:-1])
    start = (
        "CASE parent.period_type WHEN 'month' THEN parent.period ELSE parent.period || '-12' END"
    )
    sql = sa.text(
        f"""
        SELECT parent.indicator_code, parent.geo_level, parent.geo_code, parent.period,
               parent.disaggregation, parent.numerator AS reported,
               coalesce(sum(child.numerator), 0) AS summed
        FROM indicator_value parent
        LEFT JOIN geography g ON g.parent_code = parent.geo_code
         AND substr(CAST(g.valid_from AS TEXT), 1, 7) <= {start}
         AND (g.valid_to IS NULL OR substr(CAST(g.valid_to AS TEXT), 1, 7) > {start})
        LEFT JOIN indicator_value child
          ON child.geo_code = g.geo_code AND child.indicator_code = parent.indicator_code
         AND child.period_type = parent.period_type AND child.period = parent.period
         AND child.disaggregation = parent.disaggregation
         AND child.geo_level = CASE parent.geo_level {below} END
        WHERE parent.geo_level IN ({upper}) AND parent.indicator_code <> :coverage
        GROUP BY parent.indicator_code, parent.geo_level, parent.geo_code, parent.period_type,
                 parent.period, parent.disaggregation, parent.numerator
        HAVING abs(parent.numerator - coalesce(sum(child.numerator), 0)) > 1e-9
        """
    )
    return [dict(r) for r in conn.execute(sql, {"coverage": REPORTING_COVERAGE.code}).mappings()]


def units_without_population(conn: sa.Connection) -> list[dict]:
    """Units holding records of any dataset but no population at all: their records count in
    totals, not in rates, until the ministry loads their population."""
    found = []
    for dataset in DATASETS:
        geo = load_contract(dataset).geography_field
        table = record_tables(dataset).current
        missing = (
            sa.select(table.c[geo].label("unit_code"), sa.func.count().label("records"))
            .where(~table.c[geo].in_(sa.select(population.c.geo_code)))
            .group_by(table.c[geo])
        )
        found += [dict(r, dataset=dataset) for r in conn.execute(missing).mappings()]
    return found


def records_outside_geography(conn: sa.Connection) -> list[dict]:
    """Records whose unit is not in the geography in their month: accepted, but no indicator
    can place them until the geography is corrected."""
    found = []
    r = geography_rollup.c
    for dataset in DATASETS:
        geo = load_contract(dataset).geography_field
        table = record_tables(dataset).current
        placed = sa.select(sa.literal(1)).where(
            r.unit_code == table.c[geo],
            sa.or_(r.from_month.is_(None), r.from_month <= table.c.period_month),
            sa.or_(r.to_month.is_(None), r.to_month > table.c.period_month),
        )
        outside = (
            sa.select(
                table.c[geo].label("unit_code"),
                table.c.period_month,
                sa.func.count().label("records"),
            )
            .where(~placed.exists())
            .group_by(table.c[geo], table.c.period_month)
        )
        found += [dict(x, dataset=dataset) for x in conn.execute(outside).mappings()]
    return found
