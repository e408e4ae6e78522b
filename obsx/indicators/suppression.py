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
import logging
from collections import defaultdict

import numpy as np
import pandas as pd
import sqlalchemy as sa

from obsx.indicators.catalogue import (
    NOT_AVAILABLE,
    Catalogue,
    Indicator,
    load_catalogue,
    side_where,
)
from obsx.indicators.protection import protect_intervals

log = logging.getLogger(__name__)
KEY = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]


def _signature(
    cat: Catalogue, ind: Indicator, side, disaggregation: str, bases: dict | None = None
) -> tuple:
    """What an atom counts, independent of the indicator that publishes it: the records of
    a dataset's measure matching its conditions, in the unit-months its indicator counts where
    that changes the count (``bases``: per need, from ``insert_indicator_values``; 0 every
    unit-month that reported; a count over other unit-months is another number, and adds up
    only with counts over the same)."""
    where = dict(side_where(cat, side))
    if disaggregation:
        name, value = disaggregation.split("=", 1)
        dim = cat.dimension(ind.dataset, name)
        key = dim.field if not (dim.bands or dim.prefix) else dim.name
        where[key] = [value]
    rules = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in where.items()))
    dim = disaggregation.split("=", 1)[0] or None
    base = (bases or {}).get(cat.need(ind, dim, side), 0)
    return (side.dataset, side.measure, rules, base)


def _split(signature: tuple) -> list[list[tuple]]:
    """Partitions of an atom's records: a condition ``field: [A, B]`` is the sum of the atoms
    ``field: [A]`` and ``field: [B]`` under the other conditions."""
    dataset, measure, rules, base = signature
    partitions = []
    for i, (key, rule) in enumerate(rules):
        values = json.loads(rule)
        if key == "any" or not isinstance(values, list) or len(values) < 2:
            continue
        partitions.append(
            [
                (dataset, measure, rules[:i] + ((key, json.dumps([v])),) + rules[i + 1 :], base)
                for v in values
            ]
        )
    return partitions


def _atoms(conn: sa.Connection, target: str, cat: Catalogue, years: list[str] | None, bases=None):
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
            f"SELECT {', '.join(KEY)}, coalesce(numerator, 0) AS numerator,"
            f" coalesce(denominator, 0) AS denominator, conf_status, quality_flag, coverage"
            f" FROM {target}"
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
                        "signature": [_signature(cat, ind, side, disaggregation, bases)]
                        * len(group),
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
    # a headline: the total of an indicator the deployment leads with (all, unless it lists them)
    leads = [code for code, ind in suppressible.items() if ind.headline]
    link["headline"] = (
        link["total"] & rows.loc[link["row"], "indicator_code"].isin(leads).to_numpy()
    )
    coverage = pd.to_numeric(rows.loc[link["row"], "coverage"], errors="coerce")
    link["coverage"] = coverage.round(1).fillna(-1.0).to_numpy()  # -1: no population
    place = ["signature", "geo_level", "geo_code", "period_type", "period"]
    link["atom"] = link.groupby(place, sort=False).ngroup()
    return rows, link


def _margins(conn: sa.Connection, atoms: pd.DataFrame, cat: Catalogue):
    """The relations among the atoms an intruder can write: the additive identities that hold
    exactly in the data, and the inequalities (a total at least the sum of parts that do not
    cover it, a set at least any subset of its records)."""
    place = ["geo_level", "geo_code", "period_type", "period"]
    sig, signatures = pd.factorize(atoms["signature"])
    cells = atoms[["atom", *place, "coverage"]].assign(sig=sig, value=atoms["value"].astype(float))
    sig_of = {s: i for i, s in enumerate(signatures)}
    by_sig = {i: frame for i, frame in cells.groupby("sig")}
    pairs = []  # (relation, total, part): one relation per kind of margin and total

    # Parts of a condition (a total over sex or weapon is the sum of its values, a share's
    # denominator "known age" the sum of the age groups), in every area and period.
    refinements = defaultdict(lambda: defaultdict(list))  # signature -> key -> one-value sigs
    for signature in signatures:
        dataset, measure, rules, base = signature
        for key, rule in rules:
            if key != "any" and len(json.loads(rule)) == 1:
                reduced = (dataset, measure, tuple(r for r in rules if r[0] != key), base)
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
        return [], _subsets(cells, signatures, cat)
    value = cells.set_index("atom")["value"]
    pairs["v"] = value.reindex(pairs["part"]).to_numpy()
    keys = [pairs["relation"], pairs["total"]]
    sums = pairs["v"].groupby(keys).sum()
    sums = sums.where(~pairs["v"].isna().groupby(keys).any())  # a part unknown: no identity
    totals = value.reindex(sums.index.get_level_values("total")).to_numpy()
    gap = totals - sums.to_numpy()
    where = pd.MultiIndex.from_frame(pairs[["relation", "total"]])
    exact = pd.Series(np.abs(gap) < 1e-9, index=sums.index).reindex(where).to_numpy()
    # Parts that do not add up to their total (records with no sex, no weapon): the total is
    # still at least their sum, and an intruder uses that too.
    short = pd.Series(gap > 1e-9, index=sums.index).reindex(where).to_numpy()
    subsets = _subsets(cells, signatures, cat)
    return _grouped(pairs[exact]), _grouped(pairs[short]) + subsets


def _grouped(pairs: pd.DataFrame) -> list[tuple[int, tuple[int, ...]]]:
    """(total, parts) per relation and total, in a fixed order."""
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


def _conditions(cat: Catalogue, signature: tuple) -> dict:
    """An atom's conditions as field -> ("in", values) or ("prefix", prefixes); a dimension
    published by code prefix (ICCS section) is its field's prefix."""
    dataset, _, rules, _ = signature
    out = {}
    for key, rule in rules:
        value = json.loads(rule)
        if isinstance(value, list):
            dim = cat.datasets[dataset].dimensions.get(key)
            dim = dim if dim is not None and dim.prefix else None
            out[dim.field if dim else key] = ("prefix" if dim else "in", tuple(value))
        elif isinstance(value, dict) and set(value) == {"prefix"}:
            out[key] = ("prefix", tuple(value["prefix"]))
        else:
            out[key] = ("other", rule)
    return out


def _narrower(a: tuple, b: tuple) -> bool:
    """Whether every record matching condition ``a`` matches ``b``."""
    if a == b:
        return True
    (ka, va), (kb, vb) = a, b
    if kb == "prefix" and ka in ("in", "prefix"):
        return all(any(str(x).startswith(p) for p in vb) for x in va)
    if kb == "in" and ka == "in":
        return set(va) <= set(vb)
    return False


def _subsets(cells: pd.DataFrame, signatures, cat: Catalogue) -> list:
    """``set >= subset`` between atoms of the same place whose records nest (the firearm
    homicides within the homicides, the homicides within section 01)."""
    conditions = [_conditions(cat, s) for s in signatures]
    nested = []
    for i, (si, ci) in enumerate(zip(signatures, conditions, strict=True)):
        for j, (sj, cj) in enumerate(zip(signatures, conditions, strict=True)):
            if i == j or si[:2] != sj[:2] or not set(cj) <= set(ci):
                continue
            if all(_narrower(ci[k], cj[k]) for k in cj) and ci != cj:
                nested.append((j, i))  # j's records include i's
    if not nested:
        return []
    place = ["geo_level", "geo_code", "period_type", "period"]
    found = []
    for big, small in nested:
        a = cells[cells["sig"] == big][["atom", *place, "coverage", "value"]]
        b = cells[cells["sig"] == small][["atom", *place, "coverage", "value"]]
        pair = a.merge(b, on=place, suffixes=("", "_part"))
        if signatures[big][3] not in (0, signatures[small][3]):
            # counts over other unit-months (a homicide register's, an all-crimes one's) nest
            # where they cover the same share of the area, as a reader of coverage would assume
            same = (pair["coverage"] == pair["coverage_part"]) & (
                pair["value"] >= pair["value_part"]
            )
            pair = pair[same]
        found.append(pair[["atom", "atom_part"]])
    found = pd.concat(found, ignore_index=True)
    return sorted(
        (t, (p,)) for t, p in zip(found["atom"].tolist(), found["atom_part"].tolist(), strict=True)
    )


def _headline(atoms: pd.DataFrame) -> np.ndarray:
    """The totals a bulletin leads with (an indicator's figure without disaggregation), by tier:
    2 national, 1 first level, 0 the rest; withheld only when nothing finer protects, the
    national ones last."""
    from obsx.warehouse.deployment import current_deployment

    levels = current_deployment().level_codes
    total = atoms["headline"].to_numpy()
    tier = np.zeros(len(atoms), dtype=np.int64)
    if len(levels) > 2:
        tier[total & (atoms["geo_level"] == levels[1]).to_numpy()] = 1
    tier[total & (atoms["geo_level"] == levels[0]).to_numpy()] = 2
    return tier


def _printed(conn: sa.Connection, rows: pd.DataFrame, as_of: dt.datetime | None) -> pd.Series:
    """Per row of ``rows``: whether a bulletin or pack built before ``as_of`` printed its value
    (``publication_figure``, obsx/publication/bulletin.py): readers hold it, so it is withdrawn last."""
    query = (
        f"SELECT DISTINCT {', '.join('f.' + k for k in KEY)} FROM publication_figure f"
        " JOIN publication p ON p.publication_id = f.publication_id"
        " WHERE f.conf_status = 'F' AND f.value IS NOT NULL"
    )
    params = {}
    if as_of is not None:
        query += " AND p.built_at <= :as_of"
        params["as_of"] = as_of
    seen = pd.read_sql(sa.text(query), conn, params=params)
    if seen.empty:
        return pd.Series(False, index=rows.index)
    found = rows[KEY].merge(seen.assign(printed=True), on=KEY, how="left")["printed"]
    return pd.Series(found.fillna(False).astype(bool).to_numpy(), index=rows.index)


def _price(atoms: pd.DataFrame) -> np.ndarray:
    """What withholding a cell costs the readers, per unit an intruder's table may move it: a
    district-month part costs 1, each level, period length and total above it ten times more,
    so protection is taken from the finest cells; a headline (``_headline``) 10^4 times more."""
    from obsx.warehouse.deployment import current_deployment

    levels = current_deployment().level_codes
    depth = atoms["geo_level"].map({lv: len(levels) - 1 - i for i, lv in enumerate(levels)})
    period = atoms["period_type"].map({"month": 0, "quarter": 1, "year": 2})
    price = 10.0 ** (depth.fillna(0) + period.fillna(0) + atoms["total"]).to_numpy()
    price[_headline(atoms) > 0] *= 1e4
    return price


def protection_width(threshold: np.ndarray) -> np.ndarray:
    """How wide an intruder's interval for a small count must stay: the deployment's
    ``disclosure.protection_width``, else the threshold (the whole range 0 .. threshold)."""
    from obsx.warehouse.deployment import current_deployment

    width = current_deployment().disclosure.get("protection_width")
    return np.full_like(threshold, float(width)) if width is not None else threshold.copy()


def apply_secondary_suppression(
    conn: sa.Connection,
    target: str,
    years: list[str] | None,
    cat: Catalogue | None = None,
    bases: dict | None = None,
    as_of: dt.datetime | None = None,
) -> int:
    """Set ``conf_status`` of the rows of ``years`` (None: all) in ``target``: C for small
    counts, D for the cells withheld so that none of them can be recovered. Returns the number
    of rows withheld. ``cat``: the catalogue the values were computed from (default: the file's).

    A figure a bulletin or pack built before ``as_of`` (None: ever) printed is priced as a
    headline (``_printed``): a certificate uses it only when no cheaper cell it reaches does."""
    cat = cat or load_catalogue()
    rows, link = _atoms(conn, target, cat, years, bases)
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
            coverage=("coverage", "first"),
            threshold=("threshold", "min"),
            total=("total", "any"),
            headline=("headline", "any"),
        )
        .reset_index()
    )
    values = atoms["value"].fillna(0).to_numpy(dtype=float)
    primary = (values > 0) & (values < atoms["threshold"].to_numpy())
    equalities, inequalities = _margins(conn, atoms, cat)
    # No relation links two years: each year is chosen alone, so that refreshing one year (or
    # some of its periods) withholds exactly what a refresh of every year would.
    withheld = primary.copy()
    price, headline = _price(atoms), _headline(atoms)
    # A figure readers already hold costs what a headline does; its tier stays (making it a
    # headline's tier reorders the passes: on the demo that withdrew three printed national
    # figures of November that the same data publish otherwise).
    printed = np.zeros(len(atoms), dtype=bool)
    printed[link.loc[_printed(conn, rows, as_of)[link["row"]].to_numpy(), "atom"]] = True
    price[printed & (headline == 0)] *= 1e4
    threshold = atoms["threshold"].to_numpy(dtype=float)
    # What an intruder knows of a withheld count: not negative. The published table flags every
    # withheld cell alike (docs/analytics.md), so the rule that small counts are withheld tells
    # nothing about any one of them.
    known_low, known_high = np.zeros(len(atoms)), np.full(len(atoms), np.inf)
    width = protection_width(threshold)
    target_low = np.maximum(0.0, np.minimum(values, threshold - width))
    target_high = target_low + width
    year = atoms["period"].str[:4].to_numpy()
    local = np.zeros(len(atoms), dtype=np.int64)  # an atom's index among its year's
    for y in np.unique(year):
        cells = np.flatnonzero(year == y)
        local[cells] = np.arange(len(cells))
    index = local.tolist()
    by_year: dict = {y: ([], []) for y in np.unique(year)}
    for kind, relations in enumerate((equalities, inequalities)):
        for t, parts in relations:
            assert all(year[p] == year[t] for p in parts), "a relation across years"
            by_year[year[t]][kind].append((index[t], tuple(index[p] for p in parts)))
    # The published rows and the atoms each shows (a share: its numerator and denominator).
    shown: dict = defaultdict(list)
    for atoms_of_row in link.groupby("row")["atom"].agg(list):
        shown[year[atoms_of_row[0]]].append([index[a] for a in atoms_of_row])
    for y in np.unique(year):
        cells = np.flatnonzero(year == y)
        if not primary[cells].any():
            continue
        eq, ineq = by_year[y]
        found = protect_intervals(
            values[cells],
            primary[cells],
            eq,
            ineq,
            known_low=known_low[cells],
            known_high=known_high[cells],
            target_low=target_low[cells],
            target_high=target_high[cells],
            price=price[cells],
            rows=shown[y],
            protected=headline[cells],
        )
        withheld[cells] = found.chosen
        for cell, why in found.unprotected.items():
            log.warning("disclosure: %s %s", atoms.iloc[cells[cell]].to_dict(), why)
    link["primary"] = primary[link["atom"].to_numpy()]
    link["withheld"] = withheld[link["atom"].to_numpy()]
    per_row = link.groupby("row").agg(primary=("primary", "any"), withheld=("withheld", "any"))
    status = np.where(per_row["primary"], "C", np.where(per_row["withheld"], "D", "F"))
    rows.loc[per_row.index, "new_status"] = status
    # A value the sources cannot support enters the LP as a count of 0 that the intruder knows
    # (no less than it knows: conservative); it has no value to withhold, whatever was chosen.
    rows.loc[rows["quality_flag"] == NOT_AVAILABLE, "new_status"] = "F"
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


def as_published(frame: pd.DataFrame, cat: Catalogue | None = None) -> pd.DataFrame:
    """Rows of ``indicator_value`` as the analysts' view publishes them (migration 0020): a
    withheld row flagged ``C`` whatever its reason, its numerator, value and changes empty, and
    a share's denominator (a count) too; a rate's denominator is the population and stays."""
    cat = cat or load_catalogue()
    kinds = {i.code: i.kind for i in cat.indicators}
    out = frame.copy()
    withheld = out["conf_status"] != "F"
    for column in ("numerator", "value", "change_previous", "change_year_ago"):
        if column in out:
            out[column] = out[column].astype("float64").mask(withheld)
    not_rate = out["indicator_code"].map(kinds) != "rate"
    out["denominator"] = out["denominator"].astype("float64").mask(withheld & not_rate)
    out["conf_status"] = out["conf_status"].replace({"D": "C"})
    return out
