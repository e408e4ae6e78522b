"""Indicators, defined as data and computed in SQL inside the warehouse.

Rates use, as denominator, the population of the districts that reported in the period, so that
a district that sent nothing is "not reported", never "zero crimes". ``REPORTING_COVERAGE`` says
which share of each area's population that is.
"""

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from obsx.warehouse import indicator, indicator_value

PERIOD_COLUMNS = {"month": "period_month", "year": "period_year"}
# Level -> SQL expression of the unit a reporting district belongs to (d: district, p: province).
LEVEL_EXPRESSIONS = {
    "district": "d.geo_code",
    "province": "p.geo_code",
    "national": "p.parent_code",
}
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
)

# The records indicators count: the current ones, or the versions valid at a past moment.
# What indicators read of each dataset: the current records, or the versions valid at a past
# moment (as_of). Withdrawn records (record_action DELETE) are history, counted nowhere.
RECORD_COLUMNS = {
    "incidents": "district_code, crime_code, victim_sex, victim_count",
    "prevention_activities": "district_code, activity_status, participants_female, "
    "participants_male, participants_total, budget_planned, budget_executed",
    "survey_responses": "district_code, sex, weight, victimized_12m, reported_to_police, "
    "feels_safe_night",
}


def records_sql(dataset: str, as_of: bool) -> str:
    columns = f"{RECORD_COLUMNS[dataset]}, period_month, period_year"
    if not as_of:
        return f"SELECT {columns} FROM {dataset} WHERE record_action <> 'DELETE'"
    return (
        f"SELECT {columns} FROM {dataset}_revision WHERE valid_from <= :as_of"
        " AND (valid_to IS NULL OR valid_to > :as_of) AND record_action <> 'DELETE'"
    )


_REPORTING = """
records AS ({records}),
rep AS (SELECT DISTINCT district_code, {period} AS period, CAST(period_year AS INTEGER) AS year
        FROM records),
den AS (SELECT geo_code, year, sum(population) AS pop FROM population WHERE 1 = 1 {pop_sex}
        GROUP BY geo_code, year)"""

_DISTRICT_JOIN = """
JOIN geography d ON d.geo_code = {district} AND d.valid_to IS NULL AND d.geo_level = 'district'
JOIN geography p ON p.geo_code = d.parent_code AND p.valid_to IS NULL"""

_COLUMNS = (
    "indicator_code, geo_level, geo_code, period_type, period, disaggregation, numerator, "
    "denominator, value, unit, computed_at"
)

RATE_SQL = (
    f"INSERT INTO {{target}} ({_COLUMNS}) WITH {_REPORTING},"
    + """
num AS (SELECT district_code, {period} AS period, sum(victim_count) AS n FROM records
        WHERE crime_code LIKE :crime_prefix {victim_sex} GROUP BY district_code, {period}),
unit AS (SELECT {level} AS geo_code, rep.period, coalesce(num.n, 0) AS n, den.pop
         FROM rep"""
    + _DISTRICT_JOIN.format(district="rep.district_code")
    + """
         LEFT JOIN num ON num.district_code = rep.district_code AND num.period = rep.period
         LEFT JOIN den ON den.geo_code = rep.district_code AND den.year = rep.year)
SELECT :code, :geo_level, geo_code, :period_type, period, :disaggregation, sum(n),
       CASE WHEN count(pop) = count(*) THEN sum(pop) END,
       CASE WHEN count(pop) = count(*) AND sum(pop) > 0 THEN sum(n) * :multiplier / sum(pop) END,
       :unit, :computed_at
FROM unit GROUP BY geo_code, period"""
)

COUNT_SQL = (
    f"INSERT INTO {{target}} ({_COLUMNS}) WITH records AS ({{records}})"
    + """
SELECT :code, :geo_level, {level}, :period_type, i.{period},
       {disaggregation}, sum(i.victim_count), NULL, sum(i.victim_count), :unit, :computed_at
FROM records i"""
    + _DISTRICT_JOIN.format(district="i.district_code")
    + """
GROUP BY {level}, i.{period}{group_extra}"""
)

# Prevention and survey indicators: one statement shape; the arithmetic is fixed SQL fragments
# (MEASURES below), never anything from file content.
RATIO_SQL = (
    f"INSERT INTO {{target}} ({_COLUMNS}) WITH records AS ({{records}})"
    + """
SELECT :code, :geo_level, {level}, :period_type, i.{period}, :disaggregation,
       {numerator}, {denominator}, {value}, :unit, :computed_at
FROM records i"""
    + _DISTRICT_JOIN.format(district="i.district_code")
    + """
WHERE {where}
GROUP BY {level}, i.{period}"""
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
periods AS (SELECT DISTINCT period, year FROM rep),
unit AS (SELECT {level} AS geo_code, periods.period, den.pop,
                CASE WHEN rep.district_code IS NULL THEN 0 ELSE den.pop END AS covered
         FROM periods CROSS JOIN geography d
         JOIN geography p ON p.geo_code = d.parent_code AND p.valid_to IS NULL
         JOIN den ON den.geo_code = d.geo_code AND den.year = periods.year
         LEFT JOIN rep ON rep.district_code = d.geo_code AND rep.period = periods.period
         WHERE d.geo_level = 'district' AND d.valid_to IS NULL)
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
            conn.exec_driver_sql(f"ANALYZE {', '.join(RECORD_COLUMNS)}, geography, population")
        conn.execute(indicator.delete())
        conn.execute(indicator.insert(), [_definition(ind) for ind in INDICATORS])
        conn.execute(indicator_value.delete())
        insert_indicator_values(conn, indicator_value.name, {"computed_at": now})
        return conn.scalar(sa.select(sa.func.count()).select_from(indicator_value))


def indicator_values_as_of(engine: sa.Engine, as_of: dt.datetime) -> pd.DataFrame:
    """Every indicator value as it stood at ``as_of``: computed from the record versions valid
    then, so a published figure can be reproduced. Writes nothing (a temporary table).

    Reference data (geography, population) are today's: a corrected population changes
    reproduced rates, which is then visible in their denominators.
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
    """Run every indicator statement into ``target``.

    ``fixed`` holds the timestamps bound in every statement that names them: computed_at, and
    as_of (then the records are the versions valid at that moment).
    """
    as_of = "as_of" in fixed

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
        records = records_sql(dataset, as_of)
        sql = template.format(
            target=target, records=records, level=LEVEL_EXPRESSIONS[level], **shape
        )
        used = {k: v for k, v in fixed.items() if f":{k}" in sql}
        timestamps = [sa.bindparam(k, type_=sa.DateTime(timezone=True)) for k in used]
        conn.execute(
            sa.text(sql).bindparams(*timestamps),
            {"code": ind.code, "geo_level": level, "period_type": period_type, "unit": ind.unit}
            | used
            | params,
        )

    sections = "'iccs_section=' || substr(i.crime_code, 1, 2)"
    for period_type, period in PERIOD_COLUMNS.items():
        for level in LEVEL_EXPRESSIONS:
            for sex in (None, *SEX_CODES):
                shape = {
                    "period": period,
                    "victim_sex": "AND victim_sex = :sex" if sex else "",
                    "pop_sex": "AND sex = :sex" if sex else "",
                }
                run(
                    RATE_SQL,
                    SDG_16_1_1,
                    level,
                    period_type,
                    shape,
                    crime_prefix=f"{SDG_16_1_1.crime_prefix}%",
                    multiplier=float(SDG_16_1_1.multiplier),
                    disaggregation=f"sex={sex}" if sex else "",
                    **({"sex": sex} if sex else {}),
                )
            for disaggregation, group_extra in (
                ("''", ""),
                (sections, ", substr(i.crime_code, 1, 2)"),
            ):
                shape = {
                    "period": period,
                    "disaggregation": disaggregation,
                    "group_extra": group_extra,
                }
                run(COUNT_SQL, INCIDENT_COUNT, level, period_type, shape)
            if level != "district":
                multiplier = float(REPORTING_COVERAGE.multiplier)
                shape = {"period": period, "pop_sex": ""}
                run(
                    COVERAGE_SQL,
                    REPORTING_COVERAGE,
                    level,
                    period_type,
                    shape,
                    multiplier=multiplier,
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
    """Indicator numerators of a province or the nation that differ from the sum of their parts.

    Empty when district numerators add up to province ones and province ones to national ones.
    """
    sql = sa.text(
        """
        SELECT parent.indicator_code, parent.geo_level, parent.geo_code, parent.period,
               parent.disaggregation, parent.numerator AS reported, coalesce(sum(child.numerator), 0) AS summed
        FROM indicator_value parent
        LEFT JOIN geography g ON g.parent_code = parent.geo_code AND g.valid_to IS NULL
        LEFT JOIN indicator_value child
          ON child.geo_code = g.geo_code AND child.indicator_code = parent.indicator_code
         AND child.period_type = parent.period_type AND child.period = parent.period
         AND child.disaggregation = parent.disaggregation
         AND child.geo_level = CASE parent.geo_level WHEN 'national' THEN 'province'
                                                     ELSE 'district' END
        WHERE parent.geo_level IN ('national', 'province') AND parent.indicator_code <> :coverage
        GROUP BY parent.indicator_code, parent.geo_level, parent.geo_code, parent.period_type,
                 parent.period, parent.disaggregation, parent.numerator
        HAVING abs(parent.numerator - coalesce(sum(child.numerator), 0)) > 1e-9
        """
    )
    return [dict(r) for r in conn.execute(sql, {"coverage": REPORTING_COVERAGE.code}).mappings()]
