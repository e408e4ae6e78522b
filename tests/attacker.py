"""An intruder who has only what the ministry publishes, and a linear program.

Written apart from ``obsx`` on purpose (it imports nothing from it): it reads the published
table as open data has it, the indicator catalogue (published as documentation) and the geography
(a public code list), writes every relation the table implies, and bounds each withheld count by
minimising and maximising it (scipy ``linprog``, HiGHS). What it knows:

- one unknown per distinct count: the same records counted in two indicators (the firearm
  homicides of a rate and of a share) are one unknown;
- an area is the sum of its areas one level down present in the table; a quarter the sum of its
  months, a year of its quarters (when all are published; else at least the sum of those present);
- a total is at least the sum of its published categories (sex, age group, weapon, section);
- a count is at most any count whose conditions its own imply (firearm homicides <= homicides,
  homicides <= section 01), where both cover the same share of the area (the published
  ``coverage``: counts over different units, a homicide register's and an all-crimes register's,
  do not nest);
- counts are not negative, and a cell flagged C (primary) holds 1 to threshold - 1.

``attack`` returns, per withheld count, the interval the intruder derives.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import highspy
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml
from scipy.sparse.csgraph import connected_components

WITHHELD = {"C", "D"}


def _conditions(catalogue: dict, side: dict, disaggregation: str) -> frozenset:
    """What a count counts: (field, kind, values) conditions, a dimension by its field."""
    dataset = catalogue["datasets"][side["dataset"]]
    where = dict(dataset["measures"][side["measure"]].get("where", {}))
    where.update(side.get("where", {}))
    out = set()
    for name, rule in where.items():
        if isinstance(rule, dict) and "prefix" in rule:
            out.add((name, "prefix", tuple(sorted(rule["prefix"]))))
        elif isinstance(rule, list) and all(isinstance(v, str) for v in rule):
            out.add((name, "in", json.dumps(sorted(rule))))
        else:  # not, any: kept as written (equal only to itself)
            out.add((name, "other", json.dumps(rule, sort_keys=True)))
    if disaggregation:
        name, value = disaggregation.split("=", 1)
        dim = dataset["dimensions"][name]
        if "prefix" in dim:
            out.add((dim["field"], "prefix", (value,)))
        elif "bands" in dim:
            out.add((dim["field"] + "#band", "in", json.dumps([value])))
        else:
            out.add((dim["field"], "in", json.dumps([value])))
    # one condition per (field, kind): a disaggregation narrows the indicator's own
    merged: dict = {}
    for field, kind, values in sorted(out):
        merged.setdefault((field, kind), []).append(values)
    final = set()
    for (field, kind), values in merged.items():
        if kind == "prefix":  # the longest prefixes: the narrowest condition
            flat = [p for v in values for p in v]
            kept = [p for p in flat if not any(q != p and q.startswith(p) for q in flat)]
            final.add((field, kind, tuple(sorted(set(kept)))))
        elif kind == "in":
            sets = [set(json.loads(v)) for v in values]
            final.add((field, kind, json.dumps(sorted(set.intersection(*sets)))))
        else:
            final.update((field, kind, v) for v in values)
    return (side["dataset"], side["measure"], frozenset(final))


def _implies(a: frozenset, b: frozenset) -> bool:
    """Every record meeting conditions ``a`` meets ``b``."""
    for field, kind, values in b:
        mine = [c for c in a if c[0] == field]
        if not mine:
            return False
        ok = False
        for _, k, v in mine:
            if kind == "prefix" and k == "prefix":
                ok |= all(any(x.startswith(p) for p in values) for x in v)
            elif kind == "in" and k == "in":
                ok |= set(json.loads(v)) <= set(json.loads(values))
            elif (k, v) == (kind, values):
                ok = True
        if not ok:
            return False
    return True


@dataclass
class Interval:
    low: float
    high: float
    status: str  # C or D
    threshold: int


def counts_of(table: pd.DataFrame, catalogue: dict) -> pd.DataFrame:
    """One row per published count: its identity, place, period, value (NaN when withheld)."""
    by_code = {i["code"]: i for i in catalogue["indicators"]}
    rows = []
    for r in table.itertuples(index=False):
        ind = by_code.get(r.indicator_code)
        if ind is None or not ind.get("suppress_below"):
            continue
        disaggregation = "" if pd.isna(r.disaggregation) else str(r.disaggregation)
        sides = [("numerator", ind["numerator"])]
        if ind["kind"] == "ratio":
            sides.append(("denominator", ind["denominator"]))
        for column, side in sides:
            value = getattr(r, column)
            if pd.isna(value) and r.conf_status not in WITHHELD:
                continue  # not reported or not available: no count
            rows.append(
                {
                    "count": _conditions(catalogue, side, disaggregation),
                    "geo_code": str(r.geo_code),
                    "period_type": r.period_type,
                    "period": str(r.period),
                    "value": float(value) if r.conf_status not in WITHHELD else np.nan,
                    # a withheld share says one of its two counts is small, not which
                    "status": "D"
                    if ind["kind"] == "ratio" and r.conf_status == "C"
                    else r.conf_status,
                    "threshold": int(ind["suppress_below"]),
                    "disaggregation": disaggregation,
                    "indicator_code": r.indicator_code,
                    "coverage": getattr(r, "coverage", np.nan),
                }
            )
    return pd.DataFrame(rows)


def attack(
    table: pd.DataFrame, catalogue: dict, parents: dict[str, str], need: dict | None = None
) -> dict:
    """The interval the intruder derives for each withheld count (key: count, place, period).
    With ``need`` (key -> width; others: any width > 0), an interval is only made as exact as it
    takes to tell whether it is that wide (the others' may be narrower than the intruder's)."""
    counts = counts_of(table, catalogue)
    place = ["count", "geo_code", "period_type", "period"]
    cells = (
        counts.groupby(place, sort=False)
        .agg(
            value=("value", "max"),
            status=(
                "status",
                lambda s: "C" if (s == "C").any() else ("D" if (s == "D").any() else "F"),
            ),
            threshold=("threshold", "min"),
            coverage=("coverage", "first"),
        )
        .reset_index()
    )
    coverage = cells["coverage"].to_numpy(float)

    def same_units(i: int, j: int) -> bool:
        a, b = coverage[i], coverage[j]
        return (np.isnan(a) and np.isnan(b)) or abs(a - b) < 0.05

    index = {tuple(k): i for i, k in enumerate(cells[place].itertuples(index=False, name=None))}
    n = len(cells)
    eq: list[list[tuple[int, float]]] = []
    ge: list[list[tuple[int, float]]] = []  # sum(c * x) >= 0

    def ident(total, parts, exact):
        (eq if exact else ge).append([(total, 1.0)] + [(p, -1.0) for p in parts])

    # areas
    children = defaultdict(list)
    for child, parent in parents.items():
        children[parent].append(child)
    for (count, geo, ptype, period), i in index.items():
        kids = [index.get((count, c, ptype, period)) for c in children.get(geo, [])]
        kids = [k for k in kids if k is not None]
        if kids:
            ident(i, kids, True)
    # periods
    for (count, geo, ptype, period), i in index.items():
        if ptype == "year":
            subs = [f"{period}-Q{q}" for q in range(1, 5)]
            sub_type = "quarter"
        elif ptype == "quarter":
            q = int(period[-1])
            subs = [f"{period[:4]}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)]
            sub_type = "month"
        else:
            continue
        found = [index.get((count, geo, sub_type, s)) for s in subs]
        present = [k for k in found if k is not None]
        if present:
            ident(i, present, len(present) == len(found))
    # categories and subsets: one count within another
    keys = list({k[0] for k in index})
    within = defaultdict(list)  # big -> smaller counts
    for a in keys:
        for b in keys:
            if a != b and a[:2] == b[:2] and _implies(a[2], b[2]):
                within[b].append(a)
    by_place = defaultdict(dict)
    for (count, geo, ptype, period), i in index.items():
        by_place[(geo, ptype, period)][count] = i
    for there in by_place.values():
        for big, smalls in within.items():
            if big not in there:
                continue
            present = [s for s in smalls if s in there and same_units(there[big], there[s])]
            for s in present:
                ident(there[big], [there[s]], False)
            # categories of one dimension: disjoint values of one field beyond the big's
            groups = defaultdict(list)
            for s in present:
                extra = s[2] - big[2]
                if len(extra) == 1 and len(s[2]) == len(big[2]) + 1:
                    ((field, kind, values),) = extra
                    groups[(field, kind)].append((values, there[s]))
            for (_field, kind), parts in groups.items():
                if len(parts) > 1 and kind == "in":
                    flat = [json.loads(v) for v, _ in parts]
                    if all(set(x).isdisjoint(y) for i, x in enumerate(flat) for y in flat[i + 1 :]):
                        ident(there[big], [p for _, p in parts], False)
                if len(parts) > 1 and kind == "prefix":
                    flat = [v for v, _ in parts]
                    if all(
                        not any(p.startswith(q) or q.startswith(p) for p in x for q in y)
                        for i, x in enumerate(flat)
                        for y in flat[i + 1 :]
                    ):
                        ident(there[big], [p for _, p in parts], False)

    value = cells["value"].to_numpy(float)
    # Flags that tell a small count (C) from a cell withheld to protect one (D) tell the intruder
    # that each C holds 1 .. threshold - 1; one flag for both tells nothing about any one cell.
    told = bool((table["conf_status"] == "D").any())
    small = (cells["status"] == "C").to_numpy() & told
    low = np.where(small, 1.0, 0.0)
    high = np.where(small, cells["threshold"] - 1.0, np.inf)

    def matrix(rels):
        r, c, d = [], [], []
        for k, terms in enumerate(rels):
            for j, coef in terms:
                r.append(k)
                c.append(j)
                d.append(coef)
        return sp.coo_array((d, (r, c)), shape=(len(rels), n)).tocsr()

    E, G = matrix(eq), matrix(ge)
    keys_of = list(index)
    want = None
    if need is not None:
        want = np.array([need.get(k, MOVES) for k in keys_of])
    lo, hi = intervals(E, G, value, low, high, want)
    return {
        keys_of[c]: Interval(lo[c], hi[c], cells["status"].iloc[c], int(cells["threshold"].iloc[c]))
        for c in np.flatnonzero(np.isnan(value))
    }


TOL = 1e-6
MOVES = 1e-3  # a withheld cell whose tables differ this much is not pinned


def intervals(E, G, value, low, high, need=None):
    """The intruder's bounds for each unknown cell (``value`` NaN) under ``E x = 0`` and
    ``G x >= 0`` with ``low <= x <= high``. With ``need`` (per cell, a width), a cell's bounds
    are exact only where needed: a cell whose feasible points found so far already lie that far
    apart is not solved for (every LP's solution is such a point)."""
    unknown = np.isnan(value)
    known = np.where(unknown, 0.0, value)
    # the published part of each relation is a constant; keep those with an unknown
    Eu, Gu = E[:, unknown], G[:, unknown]
    e_rows = np.flatnonzero(np.diff(Eu.indptr))
    g_rows = np.flatnonzero(np.diff(Gu.indptr))
    full_e = np.setdiff1d(np.arange(E.shape[0]), e_rows)
    bad = np.abs(E[full_e] @ known) > 1e-6
    assert not bad.any(), f"{int(bad.sum())} published identities do not hold: the model is wrong"
    Eu, Gu = Eu[e_rows], Gu[g_rows]
    b_eq = -(E[e_rows] @ known)
    b_ge = -(G[g_rows] @ known)  # Gu x >= b_ge
    cols = np.flatnonzero(unknown)
    graph = sp.vstack([abs(Eu), abs(Gu)]).tocsr()
    _, label = connected_components((graph.T @ graph).tocsr(), directed=False)
    A = sp.vstack([Eu, Gu]).tocsc()
    inf = highspy.kHighsInf
    row_low = np.concatenate([b_eq, b_ge])
    row_high = np.concatenate([b_eq, np.full(Gu.shape[0], inf)])
    lo = np.full(value.size, np.nan)
    hi = np.full(value.size, np.nan)
    for comp in np.unique(label):
        members = np.flatnonzero(label == comp)
        sub = A[:, members].tocsr()
        rows = np.flatnonzero(np.diff(sub.indptr))
        sub = sub[rows].tocsc()
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("presolve", "off")  # each solve starts from the last basis
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = members.size, rows.size
        lp.col_cost_ = np.zeros(members.size)
        lp.col_lower_ = low[cols[members]]
        lp.col_upper_ = np.where(np.isinf(high[cols[members]]), inf, high[cols[members]])
        lp.row_lower_ = row_low[rows]
        lp.row_upper_ = row_high[rows]
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = sub.indptr
        lp.a_matrix_.index_ = sub.indices
        lp.a_matrix_.value_ = sub.data
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = members.size, rows.size
        h.passModel(lp)
        seen_lo = np.full(members.size, np.inf)
        seen_hi = np.full(members.size, -np.inf)

        def solve(sense, h=h, seen_lo=seen_lo, seen_hi=seen_hi):
            h.changeObjectiveSense(sense)
            h.run()
            status = h.getModelStatus()
            if status == highspy.HighsModelStatus.kUnbounded:
                return np.inf
            assert status == highspy.HighsModelStatus.kOptimal, (
                f"the published table is inconsistent: {h.modelStatusToString(status)}"
            )
            point = np.asarray(h.getSolution().col_value)
            np.minimum(seen_lo, point, out=seen_lo)
            np.maximum(seen_hi, point, out=seen_hi)
            return h.getInfo().objective_function_value

        for k in range(members.size):
            width = None if need is None else need[cols[members[k]]]
            if width is not None and seen_hi[k] - seen_lo[k] >= width - TOL:
                continue  # two tables the intruder cannot tell apart already differ this much
            h.changeColCost(k, 1.0)
            seen_lo[k] = solve(highspy.ObjSense.kMinimize)
            if width is None or seen_hi[k] - seen_lo[k] < width - TOL:
                seen_hi[k] = solve(highspy.ObjSense.kMaximize)
            h.changeColCost(k, 0.0)
        lo[cols[members]] = seen_lo
        hi[cols[members]] = seen_hi
    return lo, hi


def breaches(intervals: dict, small: dict, width: dict | None = None, tol: float = 1e-6) -> dict:
    """Withheld counts the intruder pins, and small ones (``small``: key -> (value, threshold),
    from the ministry's own unsuppressed table) whose interval is narrower than the requirement
    (``width``: key -> width; default the threshold, the whole range 0 .. threshold) or is
    missing (published)."""
    pinned = [key for key, iv in intervals.items() if iv.high - iv.low <= tol]
    narrow, published = [], []
    for key, (_value, threshold) in small.items():
        iv = intervals.get(key)
        if iv is None:
            published.append(key)
            continue
        need = threshold if width is None else width[key]
        if iv.high - iv.low < need - tol:
            narrow.append(key)
    return {"pinned": pinned, "narrow": narrow, "published": published}


def small_counts(computed: pd.DataFrame, catalogue: dict) -> dict:
    """The counts of 1 .. threshold - 1 in the ministry's computed (unsuppressed) table."""
    counts = counts_of(computed.assign(conf_status="F"), catalogue)
    small = counts[(counts["value"] > 0) & (counts["value"] < counts["threshold"])]
    place = ["count", "geo_code", "period_type", "period"]
    return {
        tuple(r[:4]): (r[4], r[5])
        for r in small[[*place, "value", "threshold"]].itertuples(index=False, name=None)
    }


def load_catalogue(path) -> dict:
    return yaml.safe_load(open(path, encoding="utf-8"))


def withstands(engine, catalogue_path) -> dict:
    """Attack a warehouse's published table (the analysts' view, which open data, SDMX and the
    bulletin read): the breaches found (empty lists: none) and how many cells were withheld."""
    import sqlalchemy as sa

    view = (
        "analytics.indicator_value"
        if engine.dialect.name == "postgresql"
        else "analytics_indicator_value"
    )
    with engine.connect() as conn:
        published = pd.read_sql(sa.text(f"SELECT * FROM {view}"), conn)
        computed = pd.read_sql(sa.text("SELECT * FROM indicator_value"), conn)
        parents = dict(
            conn.execute(
                sa.text("SELECT geo_code, parent_code FROM geography WHERE parent_code IS NOT NULL")
            ).all()
        )
    catalogue = load_catalogue(catalogue_path)
    small = small_counts(computed, catalogue)
    found = attack(published, catalogue, parents, need={k: t for k, (_, t) in small.items()})
    return breaches(found, small) | {"withheld": len(found), "small": len(small)}
