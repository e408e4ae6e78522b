"""Indicators: every entry of the catalogue (``indicators/catalogue.yaml``) computed in SQL
inside the warehouse, at every level the deployment declares and for every period it lists.

Rates use, as denominator, the population of the units that reported in the period, so that a
unit that sent nothing is "not reported" (no value), never "zero crimes"; a unit that reported
without events — or that a file declared covered — counts zero. Every level rolls up on the
hierarchy valid in the period. Survey shares carry their design-based precision; counts of
persons carry their disclosure status (see ``obsx.indicators.suppression``).

Recomputing is by period: a submission recomputes the months its records touch, their quarters
and their years (at every level), redoes the disclosure status and changes of those years, and
leaves every other year — and its ``computed_at`` — as it was. The values are those a full
recompute gives (tests/test_incremental.py).
"""

import datetime as dt
import json
import re
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from obsx.indicators.catalogue import (
    NOT_AVAILABLE,
    Catalogue,
    Indicator,
    Need,
    condition_mask,
    condition_sql,
    fact_column,
    load_catalogue,
    side_where,
)
from obsx.indicators.sources import (
    coverage_sql,
    lowest_units,
    population_sql,
    records_sql,
    shadow_sql,
    valid_in,
)
from obsx.intake.contract import load_contract
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.tables import (
    DATASETS,
    geography_rollup,
    indicator,
    indicator_refresh,
    indicator_value,
    population,
    record_tables,
    submission_scope,
)

# The period a record falls in, by period type, as columns of the facts tables.
PERIOD_COLUMNS = {"month": "period_month", "quarter": "period_quarter", "year": "period_year"}
QUARTER_SQL = (
    "{a}period_year || '-Q' || "
    "CAST((CAST(substr({a}period_month, 6, 2) AS INTEGER) + 2) / 3 AS VARCHAR(1))"
)
VALUE_COLUMNS = (
    "indicator_code, geo_level, geo_code, period_type, period, disaggregation, numerator, "
    "denominator, value, unit, conf_status, quality_flag, coverage, population_year, computed_at"
)


def catalogue() -> Catalogue:
    return load_catalogue()


def indicators() -> tuple[Indicator, ...]:
    return catalogue().indicators


# The area a record's unit belongs to at the level computed, in the record's month (a record a
# source placed at a level above the units: its area, at that level and above). __SHADOW__: not
# where a source reported for an area holding it as a whole that month (``_build_shadows``).
_ROLLUP_JOIN = """
JOIN geography_rollup g ON g.unit_code = {alias}.unit_code AND g.geo_level IN (__LEVELS__)
 AND (g.from_month IS NULL OR g.from_month <= {alias}.period_month)
 AND (g.to_month IS NULL OR g.to_month > {alias}.period_month) __SHADOW_{alias}__"""


def _build_shadows(conn: sa.Connection, dataset: str) -> bool:
    """``shadow_<dataset>``: the unit-months not counted again at some levels, where a source
    reported for an area holding them as a whole (``sources.shadow_sql``). Returns whether any
    is."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS shadow_{dataset}")
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE shadow_{dataset} AS {shadow_sql(f'reporting_{dataset}')}"
    )
    found = conn.exec_driver_sql(f"SELECT count(*) FROM shadow_{dataset}").scalar()
    if found:
        conn.exec_driver_sql(
            f"CREATE INDEX ix_shadow_{dataset} ON shadow_{dataset} (unit_code, period_month)"
        )
    return bool(found)


def _shadow_sql(dataset: str, alias: str) -> str:
    return (
        f" AND NOT EXISTS (SELECT 1 FROM shadow_{dataset} s WHERE s.unit_code = {alias}.unit_code"
        f" AND s.period_month = {alias}.period_month AND s.geo_level = g.geo_level)"
    )


def _timestamps(sql: str, fixed: dict) -> tuple[sa.TextClause, dict]:
    used = {k: v for k, v in fixed.items() if f":{k}" in sql}
    stamps = [sa.bindparam(k, type_=sa.DateTime(timezone=True)) for k in used]
    return sa.text(sql).bindparams(*stamps), used


def _years_clause(years: list[str] | None, alias: str = "") -> str:
    if years is None:
        return ""
    quoted = ", ".join(f"'{int(y):04d}'" for y in years) or "''"
    return f" AND {alias}period_year IN ({quoted})"


def _quoted(codes) -> str:
    return ", ".join(f"'{c}'" for c in codes)  # level codes: checked lowercase identifiers


def _build_facts(
    conn: sa.Connection,
    fixed: dict,
    years: list[str] | None,
    reconciled: dict | None = None,
    by_period: bool = False,
) -> dict[Need, int]:
    """Per dataset, a temporary table ``facts_<dataset>`` of its records summed by unit, month
    and every column the catalogue reads (so the several hundred indicator statements read
    thousands of sums, not millions of records), and ``reporting_<dataset>``: the units that
    reported in each month (a record, or a file that declared them covered). ``by_period``:
    both indexed by month and quarter, for a refresh of some months (each of its month and
    quarter statements then reads those rows, not the year's). Returns the number under which
    ``available_<dataset>`` holds the unit-months meeting each need (``_build_availability``)."""
    from obsx.indicators.reconcile import build_exclusions, exclusion_sql

    cat = catalogue()
    as_of = "as_of" in fixed
    # Records counted by several sources (reconciliation concepts): only the chosen source's.
    reconciled = build_exclusions(conn, fixed.get("as_of"), reconciled)
    signatures: dict[Need, int] = {}
    for dataset, spec in cat.datasets.items():
        if dataset == "survey_responses":
            continue  # read as microdata: its precision needs every respondent
        columns = cat.columns(dataset)
        measures = [f"{m.expression('r')} AS m_{m.name}" for m in spec.measures.values()]
        select = ", ".join(
            [
                "r.unit_code",
                "r.period_month",
                "r.period_year",
                QUARTER_SQL.format(a="r.") + " AS period_quarter",
                *(f"{fact_column(spec, c)} AS {c}" for c in columns),
                *measures,
            ]
        )
        group = ", ".join(str(i) for i in range(1, 5 + len(columns)))
        for name in (f"facts_{dataset}", f"reporting_{dataset}"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        sql = (
            f"CREATE TEMPORARY TABLE facts_{dataset} AS SELECT {select}"
            f" FROM ({records_sql(dataset, as_of)}) r WHERE 1 = 1{_years_clause(years, 'r.')}"
            f"{exclusion_sql(dataset, reconciled)} GROUP BY {group}"
        )
        statement, used = _timestamps(sql, fixed)
        conn.execute(statement, used)
        quarter = QUARTER_SQL.format(a="c.")
        sql = (
            f"CREATE TEMPORARY TABLE reporting_{dataset} AS"
            f" SELECT unit_code, period_month, period_quarter, period_year FROM facts_{dataset}"
            f" UNION SELECT c.unit_code, c.period_month, {quarter}, c.period_year"
            f" FROM ({coverage_sql(as_of)}) c WHERE 1 = 1{_years_clause(years, 'c.')}"
        )
        statement, used = _timestamps(sql, fixed)
        conn.execute(statement, used | {"dataset": dataset})
        signatures |= _build_availability(conn, dataset, fixed, years)
        if by_period:
            for name in (f"facts_{dataset}", f"reporting_{dataset}", f"available_{dataset}"):
                for column in ("period_month", "period_quarter"):
                    conn.exec_driver_sql(f"CREATE INDEX ix_{name}_{column} ON {name} ({column})")
        _analyze(conn, f"facts_{dataset}", f"reporting_{dataset}", f"available_{dataset}")
    return signatures


def _build_availability(
    conn: sa.Connection, dataset: str, fixed: dict, years: list[str] | None
) -> dict[Need, int]:
    """``available_<dataset>``: the unit-months of ``reporting_<dataset>`` whose sources meet
    each need of the dataset's indicators (``Catalogue.need``) that some reporting unit-month
    does not meet, under a number of its own; a need every one meets reads
    ``reporting_<dataset>`` itself (number 0). A unit-month meets a need when one of the files
    that reported it (a record of it, or a declaration that it is covered) supplied the fields
    and covers the codes (``submission_scope``); files merged before scopes were kept supply
    everything they ever filled (migration 0021)."""
    cat = catalogue()
    needs = sorted(
        {
            cat.need(ind, dim, side)
            for ind in indicators()
            if ind.dataset == dataset and ind.kind in ("rate", "count", "ratio")
            for dim in (None, *ind.disaggregations)
            for side in (None, ind.numerator, ind.denominator)
        },
        key=repr,
    )
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS available_{dataset}")
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE available_{dataset} (sig INTEGER, unit_code VARCHAR(16),"
        " period_month VARCHAR(7), period_quarter VARCHAR(7), period_year VARCHAR(4))"
    )
    if not needs:
        return {}
    as_of = "as_of" in fixed
    sql = (
        "SELECT DISTINCT unit_code, period_month, submission_id FROM"
        f" ({records_sql(dataset, as_of, with_submission=True)}) r"
        f" WHERE 1 = 1{_years_clause(years, 'r.')}"
        " UNION SELECT unit_code, period_month, submission_id FROM"
        f" ({coverage_sql(as_of)}) c WHERE 1 = 1{_years_clause(years, 'c.')}"
    )
    statement, used = _timestamps(sql, fixed)
    sources = pd.DataFrame(
        conn.execute(statement, used | {"dataset": dataset}).all(),
        columns=["unit_code", "period_month", "submission_id"],
    )
    scopes = {
        row.submission_id: (json.loads(row.covers), set(json.loads(row.supplied)))
        for row in conn.execute(
            sa.select(submission_scope).where(submission_scope.c.dataset == dataset)
        )
    }
    reporting = pd.DataFrame(
        conn.exec_driver_sql(
            f"SELECT unit_code, period_month, period_quarter, period_year FROM reporting_{dataset}"
        ).all(),
        columns=["unit_code", "period_month", "period_quarter", "period_year"],
    )
    numbers: dict[Need, int] = {}
    rows = []
    sets: dict[tuple, int] = {}  # the unit-months of each number: needs met alike share one
    submissions = sources["submission_id"].unique()
    for need in needs:
        meeting = [s for s in submissions if s not in scopes or need.met_by(*scopes[s])]
        met = sources.loc[sources["submission_id"].isin(meeting), ["unit_code", "period_month"]]
        available = reporting.merge(met.drop_duplicates(), on=["unit_code", "period_month"])
        if len(available) == len(reporting):
            numbers[need] = 0
            continue
        unit_months = tuple(
            sorted(zip(available["unit_code"], available["period_month"], strict=True))
        )
        if unit_months not in sets:
            sets[unit_months] = len(rows) + 1
            rows.append(available.assign(sig=sets[unit_months]))
        numbers[need] = sets[unit_months]
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if not frame.empty:
        conn.execute(
            sa.text(
                f"INSERT INTO available_{dataset} VALUES (:sig, :unit_code, :period_month,"
                " :period_quarter, :period_year)"
            ),
            frame[["sig", "unit_code", "period_month", "period_quarter", "period_year"]].to_dict(
                "records"
            ),
        )
    conn.exec_driver_sql(f"CREATE INDEX ix_available_{dataset}_sig ON available_{dataset} (sig)")
    return numbers


def _analyze(conn: sa.Connection, *tables: str) -> None:
    """Give PostgreSQL's planner the size of temporary tables just filled: autovacuum never
    analyzes them, and its guess for an unanalyzed table chose nested loops over the roll-up
    (a national year of 100,000 incidents: each indicator statement 10 s and more)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {', '.join(tables)}")


def _build_population(conn: sa.Connection, fixed: dict) -> None:
    """``pop_cube``: the population of every unit and year by sex (T, F, M…) and age group (T
    and the groups given), from the finest figures published (a total, else the sum of its
    parts). A year without figures takes the latest earlier year's (a census), else the
    earliest later one's; years run to the latest year with records."""
    statement, used = _timestamps(population_sql("as_of" in fixed), fixed)
    known = pd.DataFrame(
        conn.execute(statement, used).all(),
        columns=["geo_code", "year", "sex", "age_group", "population"],
    )
    conn.exec_driver_sql("DROP TABLE IF EXISTS pop_cube")
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE pop_cube (geo_code VARCHAR(16), year INTEGER, sex VARCHAR(2),"
        " age_group VARCHAR(16), pop FLOAT, src_year INTEGER, is_unit INTEGER)"
    )
    units = current_deployment().units_level.code
    lowest = set(conn.scalars(lowest_units().distinct()))
    known = known[known["geo_code"].isin(lowest)]  # an area's own figure: see below
    if known.empty:
        return
    known["year"] = known["year"].astype(int)
    known["population"] = known["population"].astype(float)
    cells = []
    for sex_wanted in ("T", *sorted(set(known["sex"]) - {"T"})):
        for age_wanted in ("T", *sorted(set(known["age_group"]) - {"T"})):
            cells.append(_population_cell(known, sex_wanted, age_wanted))
    cube = pd.concat(cells, ignore_index=True).dropna(subset=["pop"])
    spans = [int(y) for y in conn.execute(sa.text(_record_years_sql())).scalars() if y]
    first = min([int(cube["year"].min()), *spans])
    last = max([int(cube["year"].max()), *spans])
    wide = cube.pivot_table(
        index=["geo_code", "sex", "age_group"], columns="year", values="pop", aggfunc="first"
    )
    wide = wide.reindex(columns=range(first, last + 1))
    # the year whose figures each cell holds (a census carried forward keeps its own year)
    source = wide.notna().mul(wide.columns.to_numpy()).where(wide.notna())
    wide, source = (w.ffill(axis=1).bfill(axis=1) for w in (wide, source))
    cube = pd.concat(
        [wide.stack().rename("pop"), source.stack().rename("src_year")], axis=1
    ).reset_index()
    cube["src_year"] = cube["src_year"].astype(int)
    conn.execute(
        sa.text(
            "INSERT INTO pop_cube VALUES (:geo_code, :year, :sex, :age_group, :pop, :src_year, 1)"
        ),
        cube.to_dict("records"),
    )
    # An area above the units, for records a source placed at its level: the sum of the units
    # it held at the end of each year (so its rate divides by what its units' rates do).
    december = "CAST(p.year AS VARCHAR(4)) || '-12'"
    conn.exec_driver_sql(
        "INSERT INTO pop_cube SELECT g.geo_code, p.year, p.sex, p.age_group, sum(p.pop),"
        " max(p.src_year), 0 FROM pop_cube p JOIN geography_rollup g ON g.unit_code = p.geo_code"
        f" AND g.geo_level <> '{units}'{valid_in('g', december)}"
        " GROUP BY g.geo_code, p.year, p.sex, p.age_group"
    )
    _analyze(conn, "pop_cube")


def _build_area_population(conn: sa.Connection, levels: list[str]) -> None:
    """``area_pop``: each area's population-months in every month, quarter and year that some
    dataset reported in (the population of the units it held each month, summed over the
    period's months): the whole against which a value's ``coverage`` is measured."""
    conn.exec_driver_sql("DROP TABLE IF EXISTS members")
    units = current_deployment().units_level.code
    conn.exec_driver_sql(  # each area's units, itself for a unit (reporting coverage)
        "CREATE TEMPORARY TABLE members AS SELECT DISTINCT g.geo_code AS area_code, g.unit_code"
        " FROM geography_rollup g WHERE g.unit_code IN (SELECT unit_code FROM geography_rollup"
        f" WHERE geo_level = '{units}')"
    )
    conn.exec_driver_sql("DROP TABLE IF EXISTS area_pop")
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE area_pop (geo_level VARCHAR(16), geo_code VARCHAR(16),"
        " period_type VARCHAR(8), period VARCHAR(10), pop FLOAT)"
    )
    reported = " UNION ".join(
        f"SELECT DISTINCT period_year FROM reporting_{d}"
        for d in catalogue().datasets
        if d != "survey_responses"
    )
    years = sorted({int(y) for y in conn.exec_driver_sql(reported).scalars() if y})
    if not years:
        return
    months = " UNION ALL ".join(
        f"SELECT '{y:04d}-{m:02d}' AS period_month, '{y:04d}-Q{(m + 2) // 3}' AS period_quarter,"
        f" '{y:04d}' AS period_year"
        for y in years
        for m in range(1, 13)
    )
    for period_type, column in PERIOD_COLUMNS.items():
        conn.exec_driver_sql(
            "INSERT INTO area_pop SELECT g.geo_level, g.geo_code,"
            f" '{period_type}', c.{column}, sum(p.pop) FROM ({months}) c"
            f" JOIN geography_rollup g ON g.geo_level IN ({_quoted(levels)})"
            " AND (g.from_month IS NULL OR g.from_month <= c.period_month)"
            " AND (g.to_month IS NULL OR g.to_month > c.period_month)"
            " JOIN pop_cube p ON p.geo_code = g.unit_code AND p.is_unit = 1"
            " AND p.year = CAST(c.period_year AS INTEGER) AND p.sex = 'T' AND p.age_group = 'T'"
            f" GROUP BY g.geo_level, g.geo_code, c.{column}"
        )
    conn.exec_driver_sql("CREATE INDEX ix_area_pop ON area_pop (geo_code, period)")
    _analyze(conn, "area_pop")


def _record_years_sql() -> str:
    return " UNION ".join(
        f"SELECT {f}(period_year) FROM {d}" for d in DATASETS for f in ("min", "max")
    )


def _population_cell(known: pd.DataFrame, sex: str, age: str) -> pd.DataFrame:
    """The population of one sex and age group (either may be T) from the finest rows given."""
    keys = ["geo_code", "year"]
    candidates = []
    for s_rows, a_rows in (
        (known["sex"] == sex, known["age_group"] == age),
        (known["sex"] == sex, known["age_group"] != "T") if age == "T" else (None, None),
        (known["sex"] != "T", known["age_group"] == age) if sex == "T" else (None, None),
        (known["sex"] != "T", known["age_group"] != "T") if sex == age == "T" else (None, None),
    ):
        if s_rows is None:
            continue
        rows = known[s_rows & a_rows]
        candidates.append(rows.groupby(keys)["population"].sum().rename("pop"))
    combined = candidates[0]
    for other in candidates[1:]:
        combined = combined.combine_first(other)
    frame = combined.reset_index()
    frame["sex"], frame["age_group"] = sex, age
    return frame


# Areas at the level computed that reported in each period (a unit reported when it has a
# record in the period or a file declared it covered), with the year of their population.
# ``source``/``only``: the unit-months that meet an indicator's need (``available_<dataset>``,
# one number), or all that reported. ``months``: how many months of the period the unit has.
_REPORTING = (
    """rep_l AS (SELECT g.geo_level, g.geo_code, r.{period} AS period, r.unit_code,
                   CAST(r.period_year AS INTEGER) AS year, count(DISTINCT r.period_month) AS months
            FROM {source} r"""
    + _ROLLUP_JOIN.format(alias="r")
    + """{only} __PERIODS_r__
            GROUP BY g.geo_level, g.geo_code, r.{period}, r.unit_code, r.period_year)"""
)
# Areas that reported in the period, for the cells of those where no unit met the need.
_REPORTED_AREAS = (
    """SELECT DISTINCT g.geo_level, g.geo_code, r.{period} AS period FROM reporting_{dataset} r"""
    + _ROLLUP_JOIN.format(alias="r")
    + " __PERIODS_r__"
)
_SIDE = (
    """{name} AS (SELECT g.geo_level, g.geo_code, i.{period} AS period, i.unit_code, {dim} AS dim,
                     sum(i.m_{measure}) AS n
              FROM facts_{dataset} i"""
    + _ROLLUP_JOIN.format(alias="i")
    + """
              WHERE {where} __PERIODS_i__ GROUP BY g.geo_level, g.geo_code, i.{period}, i.unit_code{dim_group})"""
)


def _statement(
    ind: Indicator, period_type: str, dim_name: str | None, target: str, sig: int = 0
) -> str:
    """One INSERT computing ``ind`` at one level and period type, in total (``dim_name`` None)
    or by one dimension; every unit that reported and whose sources supply what the cell reads
    (``sig``: its unit-months in ``available_<dataset>``, 0: all that reported) gets a cell,
    zero when it had no event. An area that reported but where no unit did gets a cell with no
    value, flagged ``not_available``. ``coverage``: the share of the area's population-months
    (``area_pop``) in the units counted."""
    cat = catalogue()
    dataset = ind.dataset
    dim = cat.dimension(dataset, dim_name) if dim_name else None
    period = PERIOD_COLUMNS[period_type]
    dim_sql, dim_group = (f"i.{dim_name}", f", i.{dim_name}") if dim else ("''", "")
    source = f"available_{dataset}" if sig else f"reporting_{dataset}"
    only = f" AND r.sig = {int(sig)}" if sig else ""
    ctes = [_REPORTING.format(period=period, source=source, only=only)]
    sides = [("num", ind.numerator)] + ([("den", ind.denominator)] if ind.denominator else [])
    for name, side in sides:
        ctes.append(
            _SIDE.format(
                name=name,
                period=period,
                dataset=dataset,
                dim=dim_sql,
                dim_group=dim_group,
                measure=side.measure,
                where=condition_sql(side_where(cat, side)),
            )
        )
    dims = "SELECT '' AS dim"
    if dim is None:
        cells = "SELECT rep_l.*, '' AS dim FROM rep_l"
    elif dim.values:
        dims = " UNION ALL ".join(f"SELECT '{v}' AS dim" for v in dim.values)
        cells = f"SELECT rep_l.*, d.dim FROM rep_l CROSS JOIN ({dims}) d"
    else:  # values present in the data (cooperation contracts): no cell where none was
        source = "den" if ind.denominator else "num"
        cells = (
            f"SELECT DISTINCT rep_l.*, s.dim FROM rep_l JOIN {source} s ON s.geo_level ="
            " rep_l.geo_level AND s.geo_code = rep_l.geo_code AND s.period = rep_l.period"
            " AND s.unit_code = rep_l.unit_code"
            " WHERE s.dim IS NOT NULL"
        )
    ctes.append(f"cells AS ({cells})")
    on = (
        "ON {x}.geo_level = c.geo_level AND {x}.geo_code = c.geo_code AND {x}.period = c.period"
        " AND {x}.unit_code = c.unit_code AND {x}.dim = c.dim"
    )
    joins = [
        f"LEFT JOIN num {on.format(x='num')}",
        "LEFT JOIN pop_cube pt ON pt.geo_code = c.unit_code AND pt.year = c.year"
        " AND pt.sex = 'T' AND pt.age_group = 'T'",
    ]
    source_year = "CAST(NULL AS INTEGER)"
    if ind.kind == "rate":
        sex = "c.dim" if dim and dim.population == "sex" else f"'{ind.population.get('sex', 'T')}'"
        age = (
            "c.dim"
            if dim and dim.population == "age_group"
            else f"'{ind.population.get('age_group', 'T')}'"
        )
        joins.insert(
            0,
            "JOIN pop_cube p ON p.geo_code = c.unit_code AND p.year = c.year"
            f" AND p.sex = {sex} AND p.age_group = {age}",
        )
        den, source_year = "p.pop", "p.src_year"
    elif ind.denominator:
        joins.append(f"LEFT JOIN den {on.format(x='den')}")
        den = "coalesce(den.n, 0)"
    else:
        den = "CAST(NULL AS FLOAT)"
    ctes.append(
        "unit AS (SELECT c.geo_level, c.geo_code, c.period, c.dim, coalesce(num.n, 0) AS n,"
        f" {den} AS d, pt.pop * c.months AS cov, {source_year} AS py"
        f" FROM cells c {' '.join(joins)})"
    )
    having = " HAVING sum(d) > 0" if ind.kind == "ratio" else ""
    ctes.append(
        "agg AS (SELECT geo_level, geo_code, period, dim, sum(n) AS n, sum(d) AS d,"
        f" sum(cov) AS cov, max(py) AS py FROM unit GROUP BY geo_level, geo_code, period, dim"
        f"{having})"
    )
    value = "a.n" if ind.kind == "count" else "CASE WHEN a.d > 0 THEN a.n * :multiplier / a.d END"
    label = f"'{dim_name}=' || {{x}}.dim" if dim else "''"
    conf = "'F'"
    if ind.suppress_below:
        small = f"a.n > 0 AND a.n < {int(ind.suppress_below)}"
        if ind.kind == "ratio":
            small += f" OR a.d > 0 AND a.d < {int(ind.suppress_below)}"
        conf = f"CASE WHEN {small} THEN 'C' ELSE 'F' END"
    flag = (
        f"CASE WHEN a.n < {int(ind.min_events)} THEN 'unstable' ELSE '' END"
        if ind.min_events and ind.kind == "rate"
        else "''"
    )
    sql = (
        f"INSERT INTO {target} ({VALUE_COLUMNS}) WITH {', '.join(ctes)}"
        f" SELECT :code, a.geo_level, a.geo_code, :period_type, a.period, {label.format(x='a')},"
        f" a.n, {'a.d' if ind.kind != 'count' else 'CAST(NULL AS FLOAT)'}, {value}, :unit, {conf}, {flag},"
        " CASE WHEN ap.pop > 0 THEN 100.0 * a.cov / ap.pop END, a.py, :computed_at FROM agg a"
        " LEFT JOIN area_pop ap ON ap.geo_level = a.geo_level AND ap.geo_code = a.geo_code"
        " AND ap.period_type = :period_type AND ap.period = a.period"
    )
    if sig and (dim is None or dim.values):
        areas = _REPORTED_AREAS.format(period=period, dataset=dataset)
        sql += (
            f" UNION ALL SELECT :code, x.geo_level, x.geo_code, :period_type, x.period,"
            f" {label.format(x='d')}, {NULLS}, :unit, 'F', '{NOT_AVAILABLE}', 0,"
            " CAST(NULL AS INTEGER),"
            f" :computed_at FROM ({areas}) x CROSS JOIN ({dims}) d WHERE NOT EXISTS"
            " (SELECT 1 FROM rep_l WHERE rep_l.geo_level = x.geo_level"
            " AND rep_l.geo_code = x.geo_code AND rep_l.period = x.period)"
        )
    return sql


NULLS = ", ".join(["CAST(NULL AS FLOAT)"] * 3)  # its numerator, denominator and value

# Reporting coverage: the population of the units that reported (they, or an area holding them
# that a source reported for as a whole) over that of all units of the area valid in the period.
_COVERAGE = (
    "INSERT INTO {target} ("
    + VALUE_COLUMNS
    + """) WITH """
    + _REPORTING
    + """,
periods AS (SELECT r.{period} AS period, CAST(r.period_year AS INTEGER) AS year,
                   max(r.period_month) AS month
            FROM reporting_{dataset} r WHERE 1 = 1 __PERIODS_r__
            GROUP BY r.{period}, r.period_year),
all_l AS (SELECT DISTINCT g.geo_level, g.geo_code, pr.period, g.unit_code, pr.year
          FROM periods pr JOIN geography_rollup g ON g.geo_level IN (__LEVELS__)
           AND (g.from_month IS NULL OR g.from_month <= pr.month)
           AND (g.to_month IS NULL OR g.to_month > pr.month)),
unit AS (SELECT a.geo_level, a.geo_code, a.period, p.pop,
                CASE WHEN rep.unit_code IS NULL THEN 0 ELSE p.pop END AS covered
         FROM all_l a
         JOIN pop_cube p ON p.geo_code = a.unit_code AND p.year = a.year
          AND p.sex = 'T' AND p.age_group = 'T' AND p.is_unit = 1
         LEFT JOIN (SELECT DISTINCT rep_l.geo_level, rep_l.geo_code, rep_l.period, m.unit_code
                    FROM rep_l JOIN members m ON m.area_code = rep_l.unit_code) rep
                ON rep.geo_level = a.geo_level AND rep.geo_code = a.geo_code
               AND rep.period = a.period AND rep.unit_code = a.unit_code)
SELECT :code, geo_level, geo_code, :period_type, period, '', sum(covered), sum(pop),
       sum(covered) * :multiplier / sum(pop), :unit, 'F', '', NULL, NULL, :computed_at
FROM unit GROUP BY geo_level, geo_code, period HAVING sum(pop) > 0"""
)


def periods_of(months: Iterable[str]) -> dict[str, list[str]]:
    """The periods whose values read the records of ``months``: each month, its quarter, its
    year (by period type)."""
    months = sorted(set(months))
    bad = [m for m in months if not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", m)]
    if bad:
        raise ValueError(f"not a month (YYYY-MM): {bad[:3]}")
    quarters = {f"{m[:4]}-Q{(int(m[5:7]) + 2) // 3}" for m in months}
    return {"month": months, "quarter": sorted(quarters), "year": sorted({m[:4] for m in months})}


def _periods_filter(periods: dict[str, list[str]] | None, period_type: str, alias: str) -> str:
    if periods is None:
        return ""
    quoted = ", ".join(f"'{p}'" for p in periods[period_type]) or "''"  # from periods_of
    return f" AND {alias}.{PERIOD_COLUMNS[period_type]} IN ({quoted})"


def insert_indicator_values(
    conn: sa.Connection,
    target: str,
    fixed: dict,
    years: Iterable[str] | None = None,
    periods: dict[str, list[str]] | None = None,
    reconciled: dict | None = None,
) -> dict[Need, int]:
    """Compute every catalogue entry into ``target``, at every level the deployment declares.

    ``fixed`` holds the timestamps bound in every statement that names them: computed_at, and
    as_of (then the records are the versions valid at that moment). ``years``: only the periods
    of these years (None: all). ``periods`` (with ``years`` their years; see ``periods_of``):
    only these months, quarters and years — each is computed exactly as in a whole-year run
    (the facts are still built for the whole years), the others are not written.
    ``reconciled``: the reconciliation items just refreshed (``refresh_reconciliation``), so
    that the sources indicators count are not worked out a second time.

    Returns the number of the unit-months each need is met in (0: every one that reported; see
    ``_build_availability``), per need of a cell and of each side's count (``Catalogue.need``):
    counts over different unit-months are different numbers, which disclosure control must know.
    """
    years = None if years is None else sorted({str(y) for y in years})
    if periods is not None:
        assert years is not None and set(periods["year"]) <= set(years)
    levels = current_deployment().level_codes
    cat = catalogue()
    signatures = _build_facts(conn, fixed, years, reconciled, by_period=periods is not None)
    shadowed = {d: _build_shadows(conn, d) for d in cat.datasets if d != "survey_responses"}
    _build_population(conn, fixed)
    _build_area_population(conn, levels)
    designs: dict[str, dict[str, pd.DataFrame]] = {}  # survey dataset -> level -> respondents
    for ind in indicators():
        if ind.kind == "survey":
            if ind.dataset not in designs:  # read once for all the dataset's indicators
                designs[ind.dataset] = _survey_design(conn, ind.dataset, fixed, years)
            _insert_survey(conn, target, ind, fixed, designs[ind.dataset], periods)
            continue
        if ind.kind not in ("rate", "count", "ratio", "coverage"):
            continue
        bound = {"code": ind.code, "unit": ind.unit, "multiplier": float(ind.multiplier or 1)}
        for period_type in ind.periods:
            params = bound | {"period_type": period_type}
            if ind.kind == "coverage":
                # above the units only: a unit either reported or did not, 0 or 100 says nothing
                shape = {"levels": _quoted(levels[:-1])}
                statements = [
                    _COVERAGE.format(
                        target=target,
                        period=PERIOD_COLUMNS[period_type],
                        dataset=ind.dataset,
                        source=f"reporting_{ind.dataset}",
                        only="",
                    )
                ]
            else:
                shape = {"levels": _quoted(levels)}
                statements = [
                    _statement(ind, period_type, dim, target, signatures[cat.need(ind, dim)])
                    for dim in (None, *ind.dimensions_in(period_type))
                ]
            for sql in statements:  # every level at once: the roll-up joins each unit to each
                sql = sql.replace("__LEVELS__", shape["levels"])
                for alias in ("r", "i"):
                    sql = sql.replace(
                        f"__PERIODS_{alias}__", _periods_filter(periods, period_type, alias)
                    )
                    shadow = _shadow_sql(ind.dataset, alias) if shadowed[ind.dataset] else ""
                    sql = sql.replace(f"__SHADOW_{alias}__", shadow)
                statement, used = _timestamps(sql, fixed)
                conn.execute(statement, {k: v for k, v in params.items() if f":{k}" in sql} | used)
    for dataset in catalogue().datasets:
        for name in ("facts", "reporting", "available", "shadow"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}_{dataset}")
    for name in ("pop_cube", "area_pop", "members"):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    return signatures


def _survey_design(
    conn: sa.Connection, dataset: str, fixed: dict, years: list[str] | None
) -> dict[str, pd.DataFrame]:
    """The respondents of ``years``, placed in their area at each level (in their month), with
    strata and PSUs made unique per observatory and survey; empty when there are none."""
    sql = records_sql(dataset, "as_of" in fixed) + _years_clause(years)
    statement, used = _timestamps(sql, fixed)
    sample = pd.DataFrame(conn.execute(statement, used).mappings().all())
    if sample.empty:
        return {}
    design = sample["observatory_code"] + "|" + sample["survey_code"]
    sample["stratum"] = design + "|" + sample["stratum"].astype(str)
    sample["psu"] = sample["stratum"] + "|" + sample["psu"].astype(str)
    sample["weight"] = sample["weight"].astype(float)
    rollup = pd.read_sql(sa.select(geography_rollup), conn)
    placed_by_level = {}
    for level in current_deployment().level_codes:
        placed = sample.merge(rollup[rollup["geo_level"] == level], on="unit_code")
        placed_by_level[level] = placed[
            (placed["from_month"].isna() | (placed["from_month"] <= placed["period_month"]))
            & (placed["to_month"].isna() | (placed["to_month"] > placed["period_month"]))
        ]
    return placed_by_level


def _insert_survey(
    conn: sa.Connection,
    target: str,
    ind: Indicator,
    fixed: dict,
    design: dict,
    periods: dict[str, list[str]] | None = None,
) -> None:
    """A weighted share for every area, year and disaggregation, with its standard error,
    95% confidence interval and coefficient of variation from the survey design (strata and
    PSUs of each observatory's survey, Taylor linearisation; see ``obsx.indicators.survey``)."""
    if not design:
        return
    from obsx.indicators.survey import (
        estimate_shares,  # the survey stack loads only when there are surveys
    )

    cat = catalogue()
    rows = []
    for level, respondents in design.items():
        placed = _with_conditions(cat, ind, respondents)
        for period_type in ind.periods:
            placed["period"] = placed[PERIOD_COLUMNS[period_type]]
            for dim_name in (None, *ind.dimensions_in(period_type)):
                domains = ["geo_code", "period"]
                frame = placed
                if dim_name:
                    dim = cat.dimension(ind.dataset, dim_name)
                    frame = placed.assign(dim=placed[dim.field])
                    domains.append("dim")
                shares = estimate_shares(frame, yes="_yes", asked="_asked", domains=domains)
                if periods is not None:  # every respondent estimates, some periods are kept
                    shares = shares[shares["period"].isin(periods[period_type])]
                if dim_name:
                    shares = shares[shares["dim"].isin(dim.values or shares["dim"])]
                    labels = f"{dim_name}=" + shares["dim"].astype(str)
                else:
                    labels = ""
                rows.append(
                    pd.DataFrame(
                        {
                            "indicator_code": ind.code,
                            "geo_level": level,
                            "geo_code": shares["geo_code"],
                            "period_type": period_type,
                            "period": shares["period"],
                            "disaggregation": labels,
                            "numerator": shares["numerator"],
                            "denominator": shares["denominator"],
                            "value": shares["estimate"] * ind.multiplier,
                            "unit": ind.unit,
                            "conf_status": "F",
                            "quality_flag": shares["flag"],
                            "standard_error": shares["se"] * ind.multiplier,
                            "ci_low": shares["ci_low"] * ind.multiplier,
                            "ci_high": shares["ci_high"] * ind.multiplier,
                            "cv": shares["cv"],
                            "computed_at": fixed["computed_at"],
                        }
                    )
                )
    values = pd.concat(rows, ignore_index=True)
    values = values[values["denominator"] > 0]
    if values.empty:
        return
    values = values.astype(object).where(values.notna(), None)
    columns = list(values.columns)
    conn.execute(
        sa.text(
            f"INSERT INTO {target} ({', '.join(columns)})"
            f" VALUES ({', '.join(':' + c for c in columns)})"
        ).bindparams(sa.bindparam("computed_at", type_=sa.DateTime(timezone=True))),
        values.to_dict("records"),
    )


def _with_conditions(cat: Catalogue, ind: Indicator, sample: pd.DataFrame) -> pd.DataFrame:
    """The sample with 0/1 columns ``_yes`` (numerator) and ``_asked`` (denominator)."""
    return sample.assign(
        _yes=condition_mask(side_where(cat, ind.numerator), sample).astype(int),
        _asked=condition_mask(side_where(cat, ind.denominator), sample).astype(int),
    )


def _previous(period_type: str, expr: str, year_ago: bool) -> str:
    """SQL for the period before ``expr`` (or the same period a year before)."""
    year = f"CAST(CAST(substr({expr}, 1, 4) AS INTEGER) - 1 AS VARCHAR(4))"
    if period_type == "year":
        return year
    if year_ago:
        return f"{year} || substr({expr}, 5)"
    if period_type == "month":
        months = " ".join(f"WHEN '{m:02d}' THEN '{m - 1:02d}'" for m in range(2, 13))
        return (
            f"CASE WHEN substr({expr}, 6, 2) = '01' THEN {year} || '-12'"
            f" ELSE substr({expr}, 1, 5) || CASE substr({expr}, 6, 2) {months} END END"
        )
    quarters = " ".join(f"WHEN '{q}' THEN '{q - 1}'" for q in range(2, 5))
    return (
        f"CASE WHEN substr({expr}, 7, 1) = '1' THEN {year} || '-Q4'"
        f" ELSE substr({expr}, 1, 6) || CASE substr({expr}, 7, 1) {quarters} END END"
    )


def _update_changes(conn: sa.Connection, target: str, years: list[str] | None) -> None:
    """Percent change of each published value against the previous period and the same period
    a year before (NULL when either is withheld, missing or zero, or when the two cover
    different shares of the population-months: a year of January only is no year)."""
    scope = ""
    if years is not None:
        later = sorted({*years, *(str(int(y) + 1) for y in years)})
        scope = " AND substr(period, 1, 4) IN (" + ", ".join(f"'{y}'" for y in later) + ")"
    for column, year_ago in (("change_previous", False), ("change_year_ago", True)):
        for period_type in PERIOD_COLUMNS:
            before = _previous(period_type, f"{target}.period", year_ago)
            conn.exec_driver_sql(
                f"UPDATE {target} SET {column} = (SELECT CASE WHEN p.value <> 0"
                f" AND {target}.conf_status = 'F' AND {target}.value IS NOT NULL"
                f" THEN 100.0 * ({target}.value - p.value) / p.value END"
                f" FROM {target} p WHERE p.indicator_code = {target}.indicator_code"
                f" AND p.geo_level = {target}.geo_level AND p.geo_code = {target}.geo_code"
                f" AND p.period_type = {target}.period_type"
                f" AND p.disaggregation = {target}.disaggregation"
                f" AND p.conf_status = 'F' AND p.period = {before}"
                f" AND abs(coalesce(p.coverage, 100) - coalesce({target}.coverage, 100)) < 0.5)"
                f" WHERE period_type = '{period_type}'{scope}"
            )


def compute_indicators(
    engine: sa.Engine,
    now: dt.datetime | None = None,
    years: Iterable[str] | None = None,
    months: Iterable[str] | None = None,
) -> int:
    """Recompute the indicator values of ``years`` (None: all) in one transaction, with their
    disclosure status and changes; values of other years are left untouched. Returns the
    number of values written.

    ``months`` (instead of ``years``): only the values that read records of these months —
    the months, their quarters and their years, at every level — are recomputed; the other
    values of those years keep their numbers, and their disclosure status and changes are
    redone with the year (a withheld cell in one month can make a cell of another withheld)."""
    now = now or dt.datetime.now(dt.UTC)
    periods = None
    if months is not None:
        periods = periods_of(str(m) for m in months)
        years = periods["year"]
    years = None if years is None else sorted({str(y) for y in years})
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Tables that just grew by a merge still carry the planner's empty-table estimates,
            # which pick nested loops (measured: 0.5 s instead of 7 ms per statement on 10k rows).
            tables = ", ".join([*DATASETS, "geography_rollup", "declared_coverage", "population"])
            conn.exec_driver_sql(f"ANALYZE {tables}")
        conn.execute(indicator.delete())
        conn.execute(indicator.insert(), [_definition(ind) for ind in indicators()])
        delete = indicator_value.delete()
        if periods is not None:
            delete = delete.where(indicator_value.c.period.in_(sum(periods.values(), [])))
        elif years is not None:
            delete = delete.where(sa.func.substr(indicator_value.c.period, 1, 4).in_(years))
        conn.execute(delete)
        from obsx.indicators.reconcile import mark_indicator_values, refresh_reconciliation
        from obsx.indicators.suppression import apply_secondary_suppression

        items = refresh_reconciliation(conn, now)  # closes the decisions a new count reopened
        bases = insert_indicator_values(
            conn, indicator_value.name, {"computed_at": now}, years, periods, reconciled=items
        )
        mark_indicator_values(conn, indicator_value.name)

        apply_secondary_suppression(conn, indicator_value.name, years, catalogue(), bases)
        _update_changes(conn, indicator_value.name, years)
        if periods is not None:
            # the whole year was refreshed (its disclosure status and changes): one stamp
            conn.execute(
                indicator_value.update()
                .where(sa.func.substr(indicator_value.c.period, 1, 4).in_(years))
                .values(computed_at=now)
            )
        refresh_reporting_values(conn, now)
        # The checks after a refresh and the analysts' queries read the values just rewritten:
        # PostgreSQL's planner would see them only after autovacuum's next pass (the balance
        # check, unbalanced_aggregates: 17 s on a national month of 300,000 rows without).
        _analyze(conn, indicator_value.name)
        written = sa.select(sa.func.count()).where(indicator_value.c.computed_at == now)
        return conn.scalar(written)


REPORTING_KINDS = ("completeness", "timeliness")


def refresh_reporting_values(conn: sa.Connection, now: dt.datetime) -> pd.DataFrame:
    """The reporting status of every contributor and the completeness and timeliness values:
    recomputed at every refresh, since a period falls due with the calendar, not with a file."""
    from obsx.indicators.reporting import (
        refresh_contract_execution,
        refresh_reporting,
        reporting_values,
    )

    status = refresh_reporting(conn, now)
    refresh_contract_execution(conn, now)
    codes = [i.code for i in indicators() if i.kind in REPORTING_KINDS]
    if codes:
        conn.execute(indicator_value.delete().where(indicator_value.c.indicator_code.in_(codes)))
    values = [
        v
        for ind in indicators()
        if ind.kind in REPORTING_KINDS
        for v in reporting_values(conn, status, ind, now)
    ]
    if values:
        conn.execute(indicator_value.insert(), values)
    return status


def indicator_values_as_of(engine: sa.Engine, as_of: dt.datetime) -> pd.DataFrame:
    """Every indicator value as it stood at ``as_of``: computed from the record versions valid
    then, with the disclosure status they had, so a published figure can be reproduced. Writes
    nothing (a temporary table).

    Population figures are those loaded by then (each load is a version); the geography is
    today's, whose validity dates already keep its history.
    """
    scratch = scratch_values_table("indicator_value_as_of")
    with engine.begin() as conn:
        scratch.drop(conn, checkfirst=True)
        scratch.create(conn)
        bases = insert_indicator_values(conn, scratch.name, {"computed_at": as_of, "as_of": as_of})
        from obsx.indicators.suppression import apply_secondary_suppression

        apply_secondary_suppression(conn, scratch.name, None, catalogue(), bases, as_of)  # as then
        frame = pd.read_sql(sa.select(scratch).order_by(*scratch.primary_key.columns), conn)
        scratch.drop(conn)
    return frame


def scratch_values_table(name: str) -> sa.Table:
    """A temporary table shaped like ``indicator_value``."""
    columns = [
        sa.Column(c.name, c.type, primary_key=c.primary_key, server_default=c.server_default)
        for c in indicator_value.columns
    ]
    return sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])


def _definition(ind: Indicator) -> dict:
    denominator = (ind.denominator.describe() if ind.denominator else "") or (
        "population" + (f" ({ind.population})" if ind.population else "")
        if ind.kind in ("rate", "coverage")
        else None
    )
    return {
        "indicator_code": ind.code,
        "name_es": ind.name_es,
        "name_en": ind.name_en,
        "definition_es": ind.definition_es,
        "definition_en": ind.definition_en,
        "kind": ind.kind,
        "numerator": ind.numerator.describe(),
        "denominator": denominator,
        "multiplier": ind.multiplier,
        "unit": ind.unit,
        "standard": ind.standard,
        "disaggregations": ", ".join(ind.disaggregations),
        "periods": ", ".join(ind.periods),
        "min_events": ind.min_events,
        "suppress_below": ind.suppress_below,
    }


def unbalanced_aggregates(conn: sa.Connection) -> list[dict]:
    """Indicator numerators of an area that differ from the sum of its parts one level down
    (the parts valid in the period).

    Empty when every level's numerators add up to the next one's.
    """
    levels = current_deployment().level_codes
    below = " ".join(f"WHEN '{a}' THEN '{b}'" for a, b in zip(levels, levels[1:], strict=False))
    upper = ", ".join(f"'{level}'" for level in levels[:-1])
    start = (  # the last month of the period: the parts valid then
        "CASE parent.period_type WHEN 'month' THEN parent.period"
        " WHEN 'quarter' THEN substr(parent.period, 1, 5) || CASE substr(parent.period, 7, 1)"
        " WHEN '1' THEN '03' WHEN '2' THEN '06' WHEN '3' THEN '09' ELSE '12' END"
        " ELSE parent.period || '-12' END"
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
        WHERE parent.geo_level IN ({upper}) AND parent.indicator_code IN (SELECT indicator_code FROM indicator WHERE kind <> :coverage)
        GROUP BY parent.indicator_code, parent.geo_level, parent.geo_code, parent.period_type,
                 parent.period, parent.disaggregation, parent.numerator
        HAVING abs(parent.numerator - coalesce(sum(child.numerator), 0)) > 1e-9
        """
    )
    return [dict(r) for r in conn.execute(sql, {"coverage": "coverage"}).mappings()]


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


# --- Refreshing only what changed -------------------------------------------------------------

_DEFINITION_FILES = ("engine.py", "suppression.py", "catalogue.py", "reconcile.py", "sources.py")


def _fingerprint(conn: sa.Connection) -> str:
    """What every value depends on besides the records: the catalogue and the code computing
    it, the geography and its levels, the population loads, the contributors' units."""
    import hashlib
    from pathlib import Path

    cat = catalogue()
    digest = hashlib.sha256(cat.path.read_bytes())
    if cat.overlay is not None:
        digest.update(cat.overlay.read_bytes())
    here = Path(__file__).resolve().parent
    for name in _DEFINITION_FILES:
        digest.update((here / name).read_bytes())
    deployment = current_deployment()
    digest.update(
        repr(
            (
                deployment.level_codes,
                deployment.reporting_calendar,
                deployment.reconciliation,
                sorted(deployment.disclosure.items()),  # a new threshold withholds other cells
            )
        ).encode()
    )
    for sql in (
        "SELECT geo_code, valid_from, valid_to, geo_level, parent_code FROM geography"
        " ORDER BY geo_code, valid_from",
        "SELECT max(loaded_at), max(replaced_at), count(*) FROM population_revision",
        "SELECT observatory_code, geo_code FROM observatory_unit ORDER BY 1, 2",
        "SELECT * FROM cooperation_contract ORDER BY contract_code",
    ):
        digest.update(repr(conn.execute(sa.text(sql)).all()).encode())
    return digest.hexdigest()


def years_to_refresh(conn: sa.Connection) -> tuple[list[str] | None, str]:
    """The years whose values are stale, and the fingerprint to record: every year (None)
    when nothing was computed yet or a definition or reference changed; else the years of the
    record versions merged or replaced since the last refresh, and of the files that declared
    coverage since (an empty list: nothing to do)."""
    months, fingerprint = months_to_refresh(conn)
    return (None if months is None else sorted({m[:4] for m in months})), fingerprint


def months_to_refresh(conn: sa.Connection) -> tuple[list[str] | None, str]:
    """As ``years_to_refresh``, by month: the months of the record versions merged or replaced
    since the last refresh (the old version's month and the new one's), of the files that
    declared coverage since, and of the reconciliation decisions taken or closed since."""
    fingerprint = _fingerprint(conn)
    last = conn.execute(
        sa.select(indicator_refresh.c.refreshed_at, indicator_refresh.c.fingerprint)
        .order_by(indicator_refresh.c.refreshed_at.desc())
        .limit(1)
    ).first()
    if last is None or last.fingerprint != fingerprint:
        return None, fingerprint
    since = sa.bindparam("since", last.refreshed_at, type_=sa.DateTime(timezone=True))
    changed = [
        f"SELECT DISTINCT period_month FROM {d}_revision"
        " WHERE valid_from > :since OR valid_to > :since"
        for d in DATASETS
    ] + [
        "SELECT DISTINCT c.period_month FROM declared_coverage c"
        " JOIN submission s ON s.submission_id = c.submission_id WHERE s.merged_at > :since",
        # a reconciliation decision (of a unit and month) taken, superseded or reopened since
        "SELECT DISTINCT period FROM reconciliation_decision"
        " WHERE decided_at > :since OR closed_at > :since",
    ]
    months = conn.execute(sa.text(" UNION ".join(changed)).bindparams(since)).scalars()
    return sorted({str(m) for m in months if m}), fingerprint


def refresh_indicators(engine: sa.Engine, now: dt.datetime | None = None) -> dict:
    """Recompute the years that changed since the last refresh (see ``years_to_refresh``);
    returns what was done: years (None: all), values written, seconds."""
    import time

    now = now or dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    with engine.connect() as conn:
        months, fingerprint = months_to_refresh(conn)
    years = None if months is None else sorted({m[:4] for m in months})
    written = 0
    if months is None:
        written = compute_indicators(engine, now)
    elif months:
        written = compute_indicators(engine, now, months=months)
    else:
        with engine.begin() as conn:
            refresh_reporting_values(conn, now)
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(
            indicator_refresh.insert().values(
                refreshed_at=now,
                years=None if years is None else ",".join(years),
                fingerprint=fingerprint,
                values_written=written,
                seconds=seconds,
            )
        )
    return {"years": years, "values": written, "seconds": seconds}
