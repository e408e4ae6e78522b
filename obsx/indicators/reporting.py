"""Completeness and timeliness, from when files arrived.

The deployment's ``reporting_calendar`` says what each contributor owes: for a dataset, one
delivery per month (or quarter, or year) from ``since``, due by ``due_day`` of the month after
the period ends. A period is *received* when an accepted submission of that contributor holds
records of it (or declared it covered); it is *on time* when the first such submission arrived
(``submission.received_at``, in the deployment's time zone) by the due date, *late* after it,
*missing* when the due date has passed without one, and *not due* before. Nobody ticks
"complete": the status follows from the files.
"""

import datetime as dt
import zoneinfo

import pandas as pd
import sqlalchemy as sa

from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.tables import DATASETS, reporting_status

ACCEPTED = ("accepted", "partly_accepted")
NOTHING = pd.Series([], index=pd.Index([], dtype=object), dtype=object)  # no arrival yet


def _periods(every: str, since: str, until: dt.date) -> list[tuple[str, str, str]]:
    """(period, first month, last month) from ``since`` to the period holding ``until``."""
    year, month = int(since[:4]), int(since[5:7])
    step = {"month": 1, "quarter": 3, "year": 12}[every]
    if every == "quarter":
        month = 3 * ((month - 1) // 3) + 1
    elif every == "year":
        month = 1
    periods = []
    while (year, month) <= (until.year, until.month):
        last_index = year * 12 + month - 1 + step - 1
        last = f"{last_index // 12:04d}-{last_index % 12 + 1:02d}"
        label = {
            "month": f"{year:04d}-{month:02d}",
            "quarter": f"{year:04d}-Q{(month + 2) // 3}",
            "year": f"{year:04d}",
        }[every]
        periods.append((label, f"{year:04d}-{month:02d}", last))
        index = year * 12 + month - 1 + step
        year, month = index // 12, index % 12 + 1
    return periods


def _due_on(last_month: str, due_day: int) -> dt.date:
    index = int(last_month[:4]) * 12 + int(last_month[5:7])  # the month after, 0-based
    return dt.date(index // 12, index % 12 + 1, due_day)


def reporting_frame(conn: sa.Connection, today: dt.date) -> pd.DataFrame:
    """Every period each contributor owes, with its status (see the module's docstring)."""
    deployment = current_deployment()
    zone = zoneinfo.ZoneInfo(deployment.time_zone)
    contributors = pd.read_sql(
        sa.text("SELECT observatory_code, kind, opened_on, closed_on FROM observatory"), conn
    )
    rows = []
    for dataset, calendar in deployment.reporting_calendar.items():
        if dataset not in DATASETS:
            continue
        owed_by = contributors
        if calendar["from"] != "all":
            owed_by = contributors[contributors["kind"] == calendar["from"]]
        arrivals = pd.read_sql(
            sa.text(
                f"SELECT DISTINCT s.observatory_code, r.period_month, s.received_at"
                f" FROM {dataset}_revision r JOIN submission s ON s.submission_id = r.submission_id"
                f" WHERE s.status IN ({', '.join(repr(a) for a in ACCEPTED)})"
                " UNION SELECT s.observatory_code, c.period_month, s.received_at"
                " FROM declared_coverage c JOIN submission s ON s.submission_id = c.submission_id"
                " WHERE c.dataset = :dataset"
            ),
            conn,
            params={"dataset": dataset},
        )
        arrivals["received_at"] = pd.to_datetime(arrivals["received_at"], utc=True)
        first = arrivals.groupby(["observatory_code", "period_month"])["received_at"].min()
        by_contributor = {
            code: group.droplevel(0) for code, group in first.groupby(level="observatory_code")
        }
        for c in owed_by.itertuples():
            held = by_contributor.get(c.observatory_code, NOTHING)
            since = calendar["since"]
            if c.opened_on is not None and str(c.opened_on)[:7] > since:
                since = str(c.opened_on)[:7]
            for period, start, last in _periods(calendar["every"], since, today):
                if pd.notna(c.closed_on) and start > str(c.closed_on)[:7]:
                    break  # it left before the period began: nothing owed
                due = _due_on(last, calendar["due_day"])
                inside = held[(held.index >= start) & (held.index <= last)]
                received = inside.min() if len(inside) else None
                if received is not None:
                    local = received.tz_convert(zone).date()
                    status = "on_time" if local <= due else "late"
                else:
                    status = "missing" if today > due else "not_due"
                rows.append(
                    {
                        "observatory_code": c.observatory_code,
                        "dataset": dataset,
                        "period_type": calendar["every"],
                        "period": period,
                        "due_on": due,
                        "received_at": None if received is None else received.to_pydatetime(),
                        "status": status,
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "observatory_code", "dataset", "period_type", "period", "due_on", "received_at",
            "status",
        ],
    )  # fmt: skip


def refresh_reporting(conn: sa.Connection, now: dt.datetime) -> pd.DataFrame:
    """Replace ``reporting_status`` with today's view; returns it."""
    today = now.astimezone(zoneinfo.ZoneInfo(current_deployment().time_zone)).date()
    frame = reporting_frame(conn, today)
    conn.execute(reporting_status.delete())
    if len(frame):
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        conn.execute(reporting_status.insert(), [r | {"computed_at": now} for r in records])
    return frame


def reporting_values(conn: sa.Connection, frame: pd.DataFrame, ind, now: dt.datetime) -> list:
    """COMPLETENESS (received / owed) or TIMELINESS (on time / owed) of the periods already due,
    for every area holding a contributor's units, by the calendar's period and by year."""
    due = frame[(frame["status"] != "not_due") & (frame["dataset"] == ind.dataset)]
    if due.empty:
        return []
    areas = pd.read_sql(
        sa.text(
            "SELECT DISTINCT u.observatory_code, g.geo_level, g.geo_code FROM observatory_unit u"
            " JOIN geography_rollup g ON g.unit_code = u.geo_code WHERE g.to_month IS NULL"
        ),
        conn,
    )
    placed = due.merge(areas, on="observatory_code")
    good = ("on_time", "late") if ind.kind == "completeness" else ("on_time",)
    placed = placed.assign(
        counted=placed["status"].isin(good).astype(int), year=placed["period"].str[:4]
    )
    values = []
    for period_type in ind.periods:
        if period_type == "year":
            key = placed.assign(p=placed["year"], pt="year")
        else:
            key = placed[placed["period_type"] == period_type].assign(
                p=lambda f: f["period"], pt=period_type
            )
        # one contributor-period counts once in an area, however many of its units lie there
        key = key.drop_duplicates(["observatory_code", "period", "geo_level", "geo_code"])
        grouped = key.groupby(["geo_level", "geo_code", "pt", "p"])["counted"].agg(["sum", "count"])
        for (level, geo, pt, p), r in grouped.iterrows():
            values.append(
                {
                    "indicator_code": ind.code,
                    "geo_level": level,
                    "geo_code": geo,
                    "period_type": pt,
                    "period": p,
                    "disaggregation": "",
                    "numerator": float(r["sum"]),
                    "denominator": float(r["count"]),
                    "value": 100.0 * r["sum"] / r["count"],
                    "unit": ind.unit,
                    "conf_status": "F",
                    "quality_flag": "",
                    "computed_at": now,
                }
            )
    return values


def refresh_contract_execution(conn: sa.Connection, now: dt.datetime) -> pd.DataFrame:
    """Per cooperation contract and quarter of its term (up to today): activities planned and
    executed, budget planned and executed, participants by sex and 15-29, and whether its
    municipality sent any prevention activity for the quarter (``flag`` no_report when not)."""
    from obsx.warehouse.tables import contract_execution

    contracts = pd.read_sql(sa.text("SELECT * FROM cooperation_contract"), conn)
    conn.execute(contract_execution.delete())
    if contracts.empty or "prevention_activities" not in DATASETS:
        return pd.DataFrame()
    activities = pd.read_sql(
        sa.text(
            "SELECT contract_code, district_code AS geo_code, period_month, activity_status,"
            " budget_planned, budget_executed, participants_total, participants_female,"
            " participants_male, participants_youth FROM prevention_activities"
            " WHERE record_action <> 'DELETE'"
        ),
        conn,
    )
    month = activities["period_month"]
    activities["period"] = (
        month.str[:4] + "-Q" + ((month.str[5:7].astype(int) + 2) // 3).astype(str)
    )
    executed = activities["activity_status"] == "EXECUTED"
    people = activities["participants_total"].fillna(
        activities["participants_female"].fillna(0) + activities["participants_male"].fillna(0)
    )
    activities = activities.assign(
        executed=executed.astype(int),
        budget_executed=activities["budget_executed"].where(executed),
        participants=people.where(executed),
        participants_female=activities["participants_female"].where(executed),
        participants_male=activities["participants_male"].where(executed),
        participants_youth=activities["participants_youth"].where(executed),
    )
    sent = set(zip(activities["geo_code"], activities["period"], strict=True))
    today = now.astimezone(zoneinfo.ZoneInfo(current_deployment().time_zone)).date()
    rows = []
    for c in contracts.itertuples():
        start = pd.Timestamp(c.starts_on).date()
        end = min(pd.Timestamp(c.ends_on).date(), today)
        for period, _, _ in _periods("quarter", f"{start:%Y-%m}", end):
            mine = activities[
                (activities["contract_code"] == c.contract_code) & (activities["period"] == period)
            ]
            reported = (c.geo_code, period) in sent
            rows.append(
                {
                    "contract_code": c.contract_code,
                    "period": period,
                    "geo_code": c.geo_code,
                    "activities": len(mine),
                    "executed": int(mine["executed"].sum()),
                    "budget_planned": float(mine["budget_planned"].sum()),
                    "budget_executed": float(mine["budget_executed"].sum()),
                    "participants": float(mine["participants"].sum()),
                    "participants_female": float(mine["participants_female"].sum()),
                    "participants_male": float(mine["participants_male"].sum()),
                    "participants_youth": float(mine["participants_youth"].sum()),
                    "municipality_reported": reported,
                    "flag": "" if reported else "no_report",
                    "computed_at": now,
                }
            )
    if rows:
        conn.execute(contract_execution.insert(), rows)
    return pd.DataFrame(rows)
