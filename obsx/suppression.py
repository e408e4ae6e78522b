"""Disclosure control of the published indicator values: which cells are withheld.

A count of persons from 1 to the catalogue's ``suppress_below`` minus one is withheld (primary,
``conf_status`` C). Every other published cell that would let it be recovered by adding or
subtracting published cells is withheld too (secondary, D): the margins are the sums the tables
themselves make — a total over sex, age group or weapon; an area over its parts one level down;
a year over its quarters, a quarter over its months — and the same count published by two
indicators (the firearm homicides of a rate and of a share). The choice is made by
``obsx.disclosure``; this module builds the cells and margins from the warehouse and writes the
status back.

A cell here is an *atom*: one count of one set of records (a dataset's measure under one set of
conditions) in one area and period. Indicator rows point at atoms — one (numerator), or two for
a share (numerator and denominator: a share's denominator is a count too).
"""

import datetime as dt
import json
from collections import defaultdict

import numpy as np
import pandas as pd
import sqlalchemy as sa

from obsx.catalogue import Catalogue, Indicator, load_catalogue, side_where
from obsx.disclosure import Relation, secondary_suppression
from obsx.warehouse import dialect_insert, disclosure_memo

KEY = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]


def _signature(cat: Catalogue, ind: Indicator, side, disaggregation: str) -> tuple:
    """What an atom counts, independent of the indicator that publishes it."""
    where = dict(side_where(cat, side))
    if disaggregation:
        name, value = disaggregation.split("=", 1)
        dim = cat.dimension(ind.dataset, name)
        key = dim.field if not (dim.bands or dim.prefix) else dim.name
        where[key] = [value]
    rules = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in where.items()))
    return (side.dataset, side.measure, rules)


def _split(signature: tuple) -> list[list[tuple]]:
    """Partitions of an atom's records: a condition ``field: [A, B]`` is the sum of the atoms
    ``field: [A]`` and ``field: [B]`` under the other conditions."""
    dataset, measure, rules = signature
    partitions = []
    for i, (key, rule) in enumerate(rules):
        values = json.loads(rule)
        if key == "any" or not isinstance(values, list) or len(values) < 2:
            continue
        partitions.append(
            [
                (dataset, measure, rules[:i] + ((key, json.dumps([v])),) + rules[i + 1 :])
                for v in values
            ]
        )
    return partitions


def _atoms(conn: sa.Connection, target: str, cat: Catalogue, years: list[str] | None):
    """The rows subject to disclosure control and the atoms they show."""
    suppressible = {i.code: i for i in cat.indicators if i.suppress_below}
    if not suppressible:
        return pd.DataFrame(), pd.DataFrame()
    codes = ", ".join(f"'{c}'" for c in suppressible)
    scope = ""
    if years is not None:
        scope = " AND substr(period, 1, 4) IN (" + ", ".join(f"'{y}'" for y in years) + ")"
    rows = pd.read_sql(
        sa.text(
            f"SELECT {', '.join(KEY)}, numerator, denominator, conf_status FROM {target}"
            f" WHERE indicator_code IN ({codes}){scope} ORDER BY {', '.join(KEY)}"
        ),  # in a fixed order: the choice breaks ties by position
        conn,
    )
    if rows.empty:
        return rows, pd.DataFrame()
    links = []
    for (code, disaggregation), group in rows.groupby(["indicator_code", "disaggregation"]):
        ind = suppressible[code]
        sides = [("numerator", ind.numerator)]
        if ind.kind == "ratio":
            sides.append(("denominator", ind.denominator))
        for column, side in sides:
            links.append(
                pd.DataFrame(
                    {
                        "row": group.index,
                        "signature": [_signature(cat, ind, side, disaggregation)] * len(group),
                        "value": group[column].to_numpy(),
                        "threshold": ind.suppress_below,
                    }
                )
            )
    link = pd.concat(links, ignore_index=True)
    for c in ("geo_level", "geo_code", "period_type", "period"):
        link[c] = rows.loc[link["row"], c].to_numpy()
    # A total: some indicator publishes the atom without disaggregation (its own total).
    link["total"] = (rows.loc[link["row"], "disaggregation"] == "").to_numpy()
    place = ["signature", "geo_level", "geo_code", "period_type", "period"]
    link["atom"] = link.groupby(place, sort=False).ngroup()
    return rows, link


def _margins(conn: sa.Connection, atoms: pd.DataFrame) -> list[tuple[int, list[int]]]:
    """Every additive identity among the atoms that holds exactly in the data."""
    place = ["geo_level", "geo_code", "period_type", "period"]
    sig, signatures = pd.factorize(atoms["signature"])
    cells = atoms[["atom", *place]].assign(sig=sig, value=atoms["value"].astype(float))
    sig_of = {s: i for i, s in enumerate(signatures)}
    by_sig = {i: frame for i, frame in cells.groupby("sig")}
    pairs = []  # (relation, total, part): one relation per kind of margin and total

    # Parts of a condition (a total over sex or weapon is the sum of its values, a share's
    # denominator "known age" the sum of the age groups), in every area and period.
    refinements = defaultdict(lambda: defaultdict(list))  # signature -> key -> one-value sigs
    for signature in signatures:
        dataset, measure, rules = signature
        for key, rule in rules:
            if key != "any" and len(json.loads(rule)) == 1:
                reduced = (dataset, measure, tuple(r for r in rules if r[0] != key))
                refinements[reduced][key].append(signature)
    partitions = [
        (i, parts)
        for i, signature in enumerate(signatures)
        for parts in [
            *_split(signature),
            *(sigs for sigs in refinements.get(signature, {}).values() if len(sigs) > 1),
        ]
    ]
    for relation, (total_sig, parts) in enumerate(partitions):
        if any(p not in sig_of for p in parts):
            continue  # a part nobody publishes: no identity
        totals = by_sig[total_sig][["atom", *place]].rename(columns={"atom": "total"})
        found = [
            totals.merge(by_sig[sig_of[p]][["atom", *place]], on=place)[["total", "atom"]]
            for p in parts
        ]
        found = pd.concat(found, ignore_index=True).rename(columns={"atom": "part"})
        complete = found.groupby("total")["part"].transform("size") == len(parts)
        pairs.append(found[complete].assign(relation=relation))
    # Areas over their parts one level down.
    parents = dict(
        conn.execute(
            sa.text(
                "SELECT DISTINCT geo_code, parent_code FROM geography WHERE parent_code IS NOT NULL"
            )
        ).all()
    )
    children = cells.assign(geo_code=cells["geo_code"].map(parents)).dropna(subset=["geo_code"])
    key = ["sig", "geo_code", "period_type", "period"]
    found = cells[["atom", *key]].merge(children[["atom", *key]], on=key, suffixes=("", "_part"))
    pairs.append(pd.DataFrame({"relation": -1, "total": found["atom"], "part": found["atom_part"]}))
    # Years over quarters, quarters over months.
    period = cells["period"].astype(str)
    month = pd.to_numeric(period.str[5:7], errors="coerce")
    up = np.select(
        [cells["period_type"] == "month", cells["period_type"] == "quarter"],
        [period.str[:4] + "-Q" + ((month + 2) // 3).astype("Int64").astype(str), period.str[:4]],
        default=None,
    )
    key = ["sig", "geo_level", "geo_code"]
    within = cells[["atom", *key]].assign(period=up).dropna(subset=["period"])
    totals = cells[cells["period_type"].isin(["quarter", "year"])][["atom", *key, "period"]]
    found = totals.merge(within, on=[*key, "period"], suffixes=("", "_part"))
    pairs.append(pd.DataFrame({"relation": -2, "total": found["atom"], "part": found["atom_part"]}))

    pairs = pd.concat(pairs, ignore_index=True).drop_duplicates()
    if pairs.empty:
        return []
    value = cells.set_index("atom")["value"]
    pairs["v"] = value.reindex(pairs["part"]).to_numpy()
    keys = [pairs["relation"], pairs["total"]]
    sums = pairs["v"].groupby(keys).sum()
    sums = sums.where(~pairs["v"].isna().groupby(keys).any())  # a part unknown: no identity
    totals = value.reindex(sums.index.get_level_values("total")).to_numpy()
    holds = pd.Series(np.abs(totals - sums.to_numpy()) < 1e-9, index=sums.index)
    pairs = pairs[holds.reindex(pd.MultiIndex.from_frame(pairs[["relation", "total"]])).to_numpy()]
    if pairs.empty:
        return []
    pairs = pairs.sort_values(["relation", "total", "part"])
    rel, total, part = (pairs[c].to_numpy(np.int64) for c in ("relation", "total", "part"))
    starts = np.flatnonzero(np.r_[True, (rel[1:] != rel[:-1]) | (total[1:] != total[:-1])])
    ends, part = [*starts[1:].tolist(), len(part)], part.tolist()
    relations = {
        (t, tuple(part[a:b]))
        for t, a, b in zip(total[starts].tolist(), starts.tolist(), ends, strict=True)
    }
    return sorted(relations)


def _cost(atoms: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """What withholding a cell costs the readers: its count, times how far it is from the
    finest cell — a national or yearly figure, or a total, is worth far more published than a
    district-month part (without this the choice fell on a national share of 414 victims)."""
    from obsx.deployment import current_deployment

    levels = current_deployment().level_codes
    depth = atoms["geo_level"].map({lv: len(levels) - 1 - i for i, lv in enumerate(levels)})
    period = atoms["period_type"].map({"month": 0, "quarter": 1, "year": 2})
    weight = 10.0 ** (depth.fillna(0) + period.fillna(0) + atoms["total"]).to_numpy()
    return np.maximum(values, 1.0) * weight


def _headline(atoms: pd.DataFrame) -> np.ndarray:
    """The national totals (an indicator's figure without disaggregation): the figures a
    bulletin leads with. Secondary suppression takes one of them only where no finer cell
    protects (a national month of 40 victims was withheld to protect one province's 3)."""
    from obsx.deployment import current_deployment

    top = current_deployment().level_codes[0]
    return ((atoms["geo_level"] == top) & atoms["total"]).to_numpy()


MEMO_KEPT_DAYS = 90  # an answer no refresh asked for in this long is forgotten


class StoredMemo:
    """The audit's answers per group of equations (``disclosure._determined_cells``), kept in
    ``disclosure_memo`` from one refresh to the next: one new file changes a few of a year's
    cells, and most groups the next refresh meets were solved by the one before."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn
        # The digests only: an answer is read when asked for (a refresh asks for about a hundred).
        self.known = set(conn.scalars(sa.select(disclosure_memo.c.digest)))
        self.new: dict[str, np.ndarray] = {}
        self.used: set[str] = set()

    def get(self, key: str):
        if key in self.new:
            return self.new[key]
        if key not in self.known:
            return None
        m = disclosure_memo.c
        cells = self.conn.scalar(sa.select(m.cells).where(m.digest == key))
        self.used.add(key)
        return np.frombuffer(cells, dtype=np.int32)

    def __setitem__(self, key: str, cells: np.ndarray) -> None:
        self.new[key] = cells

    def save(self, today: dt.date) -> None:
        m = disclosure_memo.c
        if self.used:
            keys = sorted(self.used)
            for i in range(0, len(keys), 1000):
                self.conn.execute(
                    disclosure_memo.update()
                    .where(m.digest.in_(keys[i : i + 1000]))
                    .values(used_on=today)
                )
        if self.new:  # another refresh may have just remembered the same answer: keep one
            insert = dialect_insert(self.conn)(disclosure_memo).on_conflict_do_nothing()
            self.conn.execute(
                insert,
                [
                    {"digest": k, "cells": v.astype(np.int32).tobytes(), "used_on": today}
                    for k, v in self.new.items()
                ],
            )
        forgotten = today - dt.timedelta(days=MEMO_KEPT_DAYS)
        self.conn.execute(disclosure_memo.delete().where(m.used_on < forgotten))


def apply_secondary_suppression(
    conn: sa.Connection, target: str, years: list[str] | None, cat: Catalogue | None = None
) -> int:
    """Set ``conf_status`` of the rows of ``years`` (None: all) in ``target``: C for small
    counts, D for the cells withheld so that none of them can be recovered. Returns the number
    of rows withheld. ``cat``: the catalogue the values were computed from (default: the file's)."""
    cat = cat or load_catalogue()
    rows, link = _atoms(conn, target, cat, years)
    if link.empty:
        return 0
    atoms = (
        link.groupby("atom", sort=True)
        .agg(
            signature=("signature", "first"),
            geo_level=("geo_level", "first"),
            geo_code=("geo_code", "first"),
            period_type=("period_type", "first"),
            period=("period", "first"),
            value=("value", "first"),
            threshold=("threshold", "min"),
            total=("total", "any"),
        )
        .reset_index()
    )
    values = atoms["value"].fillna(0).to_numpy(dtype=float)
    primary = (values > 0) & (values < atoms["threshold"].to_numpy())
    relations = _margins(conn, atoms)
    # No margin links two years: each year is chosen alone, so that refreshing one year (or
    # some of its periods) withholds exactly what a refresh of every year would.
    withheld = primary.copy()
    cost, headline = _cost(atoms, values), _headline(atoms)
    year = atoms["period"].str[:4].to_numpy()
    local = np.zeros(len(atoms), dtype=np.int64)  # an atom's index among its year's
    by_year = defaultdict(list)
    for y in np.unique(year):
        cells = np.flatnonzero(year == y)
        local[cells] = np.arange(len(cells))
    index = local.tolist()
    for t, parts in relations:
        assert all(year[p] == year[t] for p in parts), "a margin across years"
        by_year[year[t]].append(Relation(index[t], tuple(index[p] for p in parts)))
    memo = StoredMemo(conn)
    for y in np.unique(year):
        cells = np.flatnonzero(year == y)
        mine = by_year.get(y, [])
        withheld[cells] = secondary_suppression(
            values[cells],
            primary[cells],
            mine,
            cost=cost[cells],
            protected=headline[cells],
            memo=memo,
        )
    memo.save(dt.date.today())
    link["primary"] = primary[link["atom"].to_numpy()]
    link["withheld"] = withheld[link["atom"].to_numpy()]
    per_row = link.groupby("row").agg(primary=("primary", "any"), withheld=("withheld", "any"))
    status = np.where(per_row["primary"], "C", np.where(per_row["withheld"], "D", "F"))
    rows.loc[per_row.index, "new_status"] = status
    changed = rows[rows["new_status"] != rows["conf_status"]]
    if not changed.empty:
        conn.execute(
            sa.text(
                f"UPDATE {target} SET conf_status = :new_status WHERE "
                + " AND ".join(f"{k} = :{k}" for k in KEY)
            ),
            changed[[*KEY, "new_status"]].to_dict("records"),
        )
    return int((rows["new_status"] != "F").sum())
