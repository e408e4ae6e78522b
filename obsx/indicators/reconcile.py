"""Reconciling sources that count the same thing: one homicide figure police, forensic medicine
and observatories agree on.

A deployment declares, under ``reconciliation:`` in its ``deployment.yaml``, each *concept*
several sources count (homicide victims first): the dataset and condition that select it, the
sources (contributors by kind or by code), the default source, the tolerance within which two
counts agree, and how close two records must be to be the same victim::

    reconciliation:
      homicide_victims:
        name: {es: Víctimas de homicidio intencional, en: Victims of intentional homicide}
        dataset: incidents
        measure: victims
        where: {crime_code: {prefix: ["0101"]}}
        sources:
          observatory: {kind: observatory}
          forensic: {contributors: [pa_imelcf]}   # counts_only: true for a file of counts;
                                                  # name: {es: …, en: …}: what people read
        default: observatory
        tolerance: {absolute: 0, relative: 0.0}
        match: {days: 1, age_years: 2}
        indicators: [SDG_16_1_1, HOMICIDE_COUNT]

Per unit (the lowest level) and month, every source that reported (records of the dataset, or a
file declaring the unit covered) has a count; the item *agrees*, is *within tolerance* or is *to
reconcile*. Records are matched across sources on date (± days), unit, sex and age (± years) —
never on names or identifiers, which the warehouse does not hold — so that a difference is
explained: found by both, by one only, in a neighbouring unit (recoded), or ambiguous (two
candidates: shown, not guessed).

A decision (``obsx reconcile decide``) says which source the item follows, who decided, when and
why; the counts it saw are kept, and a later submission that changes any of them reopens it.
Indicators count, for a concept's records in each unit and month, only the chosen source: the
decision's, else the default source when it reported, else the first source (in declared order)
that did. Contributors outside every source are counted as usual.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from obsx.sourceyaml import SourceError
from obsx.warehouse.contributors import read_contributors
from obsx.warehouse.deployment import Deployment, current_deployment

STATUSES = ("agree", "within_tolerance", "to_reconcile", "decided", "reopened", "single_source")
NEEDS_DECISION = ("to_reconcile", "reopened")
CONCEPT_KEYS = {
    "name",
    "dataset",
    "measure",
    "where",
    "sources",
    "default",
    "tolerance",
    "match",
    "indicators",
}


@dataclass(frozen=True)
class Source:
    name: str  # the deployment's key for it (forensic): what decisions store
    kind: str | None
    contributors: tuple[str, ...]
    counts_only: bool = False  # it sends counts (per unit, month, sex…), not one row per victim
    # what people read ({es, en}): the deployment's name:, else its contributors' names, else
    # the kind in words
    label: dict = field(default_factory=dict, compare=False)

    def said(self, lang: str) -> str:
        return self.label.get(lang) or self.label.get("es") or self.name


KIND_WORDS = {
    "observatory": {"es": "observatorios municipales", "en": "municipal observatories"},
    "institution": {"es": "instituciones nacionales", "en": "national institutions"},
}


@dataclass(frozen=True)
class Concept:
    code: str
    name: dict[str, str]
    dataset: str
    measure: str
    where: dict
    sources: tuple[Source, ...]
    default: str
    tolerance_absolute: float
    tolerance_relative: float
    match_days: int
    match_age_years: int
    indicators: tuple[str, ...]

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    def agree_within(self, low: float, high: float) -> bool:
        return high - low <= max(self.tolerance_absolute, self.tolerance_relative * high)


def concepts(deployment: Deployment | None = None) -> tuple[Concept, ...]:
    """The deployment's concepts, checked against the catalogue (a mistake names its line)."""
    from obsx.indicators.catalogue import load_catalogue as catalogue

    deployment = deployment or current_deployment()
    spec = deployment.reconciliation
    path = deployment.root / "deployment.yaml"
    cat = catalogue()
    known_indicators = {i.code for i in cat.indicators}
    registry = read_contributors(deployment) if spec else {}
    found = []
    for code, raw in spec.items():
        line = spec.line(code) if hasattr(spec, "line") else None

        def fail(message, line=line, code=code):
            raise SourceError(path, line, f"reconciliation.{code}: {message}")

        if not isinstance(raw, dict):
            fail("expected a mapping")
        unknown = set(raw) - CONCEPT_KEYS
        if unknown:
            fail(f"unknown key(s) {sorted(unknown)}")
        dataset = raw.get("dataset")
        if dataset not in cat.datasets:
            fail(f"dataset {dataset!r} is not one the catalogue reads")
        measure = raw.get("measure")
        if measure not in cat.datasets[dataset].measures:
            known = sorted(cat.datasets[dataset].measures)
            fail(f"measure {measure!r} unknown for {dataset} (known: {known})")
        sources = []
        for name, entry in (raw.get("sources") or {}).items():
            entry = entry or {}
            unknown = set(entry) - {"kind", "contributors", "counts_only", "name"}
            if unknown:
                fail(f"source {name}: unknown {sorted(unknown)}")
            kind, codes = entry.get("kind"), tuple(entry.get("contributors") or ())
            if bool(kind) == bool(codes):
                fail(f"source {name}: give kind or contributors, not both")
            label = entry.get("name")
            if label is not None and not (
                isinstance(label, dict) and set(label) <= {"es", "en"} and label.get("es")
            ):
                fail(f"source {name}: name is {{es: …, en: …}}")
            if label is None:
                named = [registry[c]["name"] for c in codes if c in registry]
                label = KIND_WORDS.get(kind) or {"es": "; ".join(named), "en": "; ".join(named)}
            counts_only = bool(entry.get("counts_only", False))
            sources.append(Source(str(name), kind, codes, counts_only, dict(label)))
        if len(sources) < 2:
            fail("needs at least two sources")
        default = raw.get("default")
        if default not in {s.name for s in sources}:
            fail(f"default {default!r} is not one of its sources")
        indicators = tuple(raw.get("indicators") or ())
        if set(indicators) - known_indicators:
            fail(f"unknown indicator(s) {sorted(set(indicators) - known_indicators)}")
        tolerance, match = raw.get("tolerance") or {}, raw.get("match") or {}
        found.append(
            Concept(
                code=str(code),
                name={"es": str(code), "en": str(code)} | dict(raw.get("name") or {}),
                dataset=dataset,
                measure=measure,
                where=dict(raw.get("where") or {}),
                sources=tuple(sources),
                default=default,
                tolerance_absolute=float(tolerance.get("absolute", 0)),
                tolerance_relative=float(tolerance.get("relative", 0)),
                match_days=int(match.get("days", 1)),
                match_age_years=int(match.get("age_years", 2)),
                indicators=indicators,
            )
        )
    return tuple(found)


def _sources_of(conn: sa.Connection, concept: Concept) -> dict[str, str]:
    """Contributor code -> the source it belongs to (the first that names it)."""
    rows = conn.execute(sa.text("SELECT observatory_code, kind FROM observatory")).all()
    out: dict[str, str] = {}
    for source in concept.sources:
        for code, kind in rows:
            if code in out:
                continue
            if code in source.contributors or (source.kind and kind == source.kind):
                out[code] = source.name
    return out


def _records(conn: sa.Connection, concept: Concept, as_of: dt.datetime | None) -> pd.DataFrame:
    """The concept's records of every source's contributors, one row per record."""
    from obsx.indicators.catalogue import condition_sql
    from obsx.indicators.catalogue import load_catalogue as catalogue
    from obsx.indicators.sources import records_sql

    measure = catalogue().datasets[concept.dataset].measures[concept.measure]
    where = condition_sql({**measure.where, **concept.where}, alias="r")
    value = measure.expression("r")[len("sum(") : -1] if measure.sum else "1"
    sql = (
        f"SELECT r.*, {value} AS n FROM ({records_sql(concept.dataset, as_of is not None)}) r"
        f" WHERE {where}"
    )
    statement = sa.text(sql)
    params = {}
    if as_of is not None:
        statement = statement.bindparams(sa.bindparam("as_of", type_=sa.DateTime(timezone=True)))
        params["as_of"] = as_of
    frame = pd.read_sql(statement, conn, params=params)
    frame["source"] = frame["observatory_code"].map(_sources_of(conn, concept))
    return frame[frame["source"].notna()].reset_index(drop=True)


def _reported(conn: sa.Connection, concept: Concept, as_of: dt.datetime | None) -> pd.DataFrame:
    """(unit, month, source) where the source reported: any record of the dataset there, or a
    file of it declaring the unit covered that month."""
    from obsx.indicators.sources import coverage_sql, records_sql

    sql = (
        "SELECT DISTINCT unit_code, period_month, observatory_code FROM"
        f" ({records_sql(concept.dataset, as_of is not None)}) r"
    )
    cover = coverage_sql(as_of is not None, with_observatory=True)
    sql += f" UNION SELECT unit_code, period_month, observatory_code FROM ({cover}) c"
    statement = sa.text(sql)
    params = {"dataset": concept.dataset}
    if as_of is not None:
        statement = statement.bindparams(sa.bindparam("as_of", type_=sa.DateTime(timezone=True)))
        params["as_of"] = as_of
    frame = pd.read_sql(statement, conn, params=params)
    frame["source"] = frame["observatory_code"].map(_sources_of(conn, concept))
    return frame[frame["source"].notna()][["unit_code", "period_month", "source"]].drop_duplicates()


def _decisions(conn: sa.Connection, concept: Concept, as_of: dt.datetime | None) -> pd.DataFrame:
    from obsx.warehouse.tables import reconciliation_decision as d

    query = sa.select(d).where(d.c.concept == concept.code)
    if as_of is None:
        query = query.where(d.c.closed_at.is_(None))
    else:
        query = query.where(
            d.c.decided_at <= as_of, sa.or_(d.c.closed_at.is_(None), d.c.closed_at > as_of)
        )
    return pd.read_sql(query, conn)


def _reopened(conn: sa.Connection, concept: Concept) -> set[tuple[str, str]]:
    """Items whose latest decision was closed because the counts changed, with none since."""
    from obsx.warehouse.tables import reconciliation_decision as d

    frame = pd.read_sql(
        sa.select(d.c.geo_code, d.c.period, d.c.closed_reason, d.c.decided_at)
        .where(d.c.concept == concept.code)
        .order_by(d.c.decided_at),
        conn,
    )
    latest = frame.groupby(["geo_code", "period"]).tail(1)
    reopened = latest["closed_reason"].fillna("").str.startswith("reopened")
    return set(zip(latest.loc[reopened, "geo_code"], latest.loc[reopened, "period"], strict=True))


def items(conn: sa.Connection, concept: Concept, as_of: dt.datetime | None = None) -> pd.DataFrame:
    """One row per unit and month some source reported: each source's count (columns
    ``n_<source>``, NaN where it did not report), the status and the chosen source."""
    records = _records(conn, concept, as_of)
    reported = _reported(conn, concept, as_of)
    counts = (
        records.groupby(["unit_code", "period_month", "source"])["n"]
        .sum()
        .rename("n")
        .reset_index()
    )
    grid = reported.merge(counts, on=["unit_code", "period_month", "source"], how="left")
    grid["n"] = grid["n"].fillna(0.0)
    wide = grid.pivot_table(
        index=["unit_code", "period_month"], columns="source", values="n", aggfunc="sum"
    )
    names = [s.name for s in concept.sources]
    wide = wide.reindex(columns=names).add_prefix("n_").reset_index()
    n_cols = [f"n_{s}" for s in names]
    present = wide[n_cols].notna()
    wide["sources_reporting"] = present.sum(axis=1)
    wide["low"] = wide[n_cols].min(axis=1)
    wide["high"] = wide[n_cols].max(axis=1)
    wide["difference"] = wide["high"] - wide["low"]
    within = [
        concept.agree_within(lo, hi) for lo, hi in zip(wide["low"], wide["high"], strict=True)
    ]
    wide["status"] = "to_reconcile"
    wide.loc[within, "status"] = "within_tolerance"
    wide.loc[wide["difference"] == 0, "status"] = "agree"
    wide.loc[wide["sources_reporting"] < 2, "status"] = "single_source"
    # The default source where it reported, else the first that did.
    chosen = pd.Series(None, index=wide.index, dtype=object)
    for name in [concept.default, *[n for n in names if n != concept.default]]:
        chosen = chosen.where(
            chosen.notna(), pd.Series(name, index=wide.index).where(present[f"n_{name}"])
        )
    wide["chosen_source"] = chosen
    wide["decision_id"] = pd.NA
    wide["reopened_decision"] = pd.NA
    if as_of is None:  # an item whose last decision a new count reopened stays marked so
        reopened = _reopened(conn, concept)
        marked = [
            (g, p) in reopened and s == "to_reconcile"
            for g, p, s in zip(wide["unit_code"], wide["period_month"], wide["status"], strict=True)
        ]
        wide.loc[marked, "status"] = "reopened"
    decisions = _decisions(conn, concept, as_of)
    if not decisions.empty:
        at = {(r.geo_code, r.period): r for r in decisions.itertuples()}
        for i, row in wide.iterrows():
            d = at.get((row["unit_code"], row["period_month"]))
            if d is None:
                continue
            seen = json.loads(d.counts)
            now = {s: (None if pd.isna(row[f"n_{s}"]) else float(row[f"n_{s}"])) for s in names}
            if as_of is None and seen != now:
                wide.at[i, "status"] = "reopened"
                wide.at[i, "reopened_decision"] = d.decision_id
                continue
            wide.at[i, "status"] = "decided"
            wide.at[i, "chosen_source"] = d.source
            wide.at[i, "decision_id"] = d.decision_id
    wide = wide.rename(columns={"unit_code": "geo_code", "period_month": "period"})
    return wide.sort_values(["period", "geo_code"]).reset_index(drop=True)


# --- record-level matching ---------------------------------------------------------------


def _candidates(a: pd.DataFrame, b: pd.DataFrame, concept: Concept, same_unit: bool):
    """Pairs (index in a, index in b) that could be the same victim."""
    if a.empty or b.empty:
        return []
    left = a.assign(_d=pd.to_datetime(a["occurred_on"]), _k=1)
    right = b.assign(_d=pd.to_datetime(b["occurred_on"]), _k=1)
    on = ["unit_code"] if same_unit else ["_parent"]
    pairs = left.reset_index().merge(right.reset_index(), on=on, suffixes=("_a", "_b"))
    if not same_unit:
        pairs = pairs[pairs["unit_code_a"] != pairs["unit_code_b"]]
    days = (pairs["_d_a"] - pairs["_d_b"]).abs().dt.days
    ok = days <= concept.match_days
    sex_a, sex_b = pairs["victim_sex_a"], pairs["victim_sex_b"]
    ok &= sex_a.isna() | sex_b.isna() | (sex_a == sex_b)
    age_a, age_b = pairs["victim_age_a"], pairs["victim_age_b"]
    ok &= age_a.isna() | age_b.isna() | ((age_a - age_b).abs() <= concept.match_age_years)
    pairs = pairs[ok]
    return list(zip(pairs["index_a"], pairs["index_b"], strict=True))


def _resolve(pairs) -> tuple[list[tuple], set, set]:
    """Unique mutual pairs are matches (repeated as matches remove candidates); what still has
    several candidates is ambiguous. Returns (matches, ambiguous a, ambiguous b)."""
    pairs = set(pairs)
    matches = []
    while True:
        by_a, by_b = {}, {}
        for x, y in pairs:
            by_a.setdefault(x, set()).add(y)
            by_b.setdefault(y, set()).add(x)
        unique = [(x, y) for x, y in pairs if len(by_a[x]) == 1 and len(by_b[y]) == 1]
        if not unique:
            break
        matches += unique
        done_a, done_b = {x for x, _ in unique}, {y for _, y in unique}
        pairs = {(x, y) for x, y in pairs if x not in done_a and y not in done_b}
    return matches, {x for x, _ in pairs}, {y for _, y in pairs}


def match_records(conn: sa.Connection, concept: Concept, records: pd.DataFrame | None = None):
    """Every record of every source, with what it matched in each other source: ``match_<s>``
    (the other record's contributor:id), or a verdict: ``only`` (no candidate), ``ambiguous``,
    ``other_unit:<code>`` (found in a neighbouring unit: recoded), ``aggregate`` (a count of
    several victims: not matchable)."""
    records = _records(conn, concept, None) if records is None else records
    if records.empty:
        return records.assign(
            **{f"match_{s.name}": pd.Series(dtype=object) for s in concept.sources}
        )
    parents = dict(conn.execute(sa.text("SELECT geo_code, parent_code FROM geography")).all())
    records = records.assign(_parent=records["unit_code"].map(parents))
    counts_only = {s.name for s in concept.sources if s.counts_only}
    single = (records["n"].fillna(1) == 1) & ~records["source"].isin(counts_only)
    names = [s.name for s in concept.sources]
    for i, a_name in enumerate(names):
        for b_name in names[i + 1 :]:
            a = records[(records["source"] == a_name) & single]
            b = records[(records["source"] == b_name) & single]
            col_a, col_b = f"match_{b_name}", f"match_{a_name}"
            records.loc[records["source"] == a_name, col_a] = "only"
            records.loc[records["source"] == b_name, col_b] = "only"
            records.loc[(records["source"] == a_name) & ~single, col_a] = "aggregate"
            records.loc[(records["source"] == b_name) & ~single, col_b] = "aggregate"
            matches, amb_a, amb_b = _resolve(_candidates(a, b, concept, same_unit=True))
            for x, y in matches:
                records.at[x, col_a] = (
                    f"{records.at[y, 'observatory_code']}:{records.at[y, _id(concept)]}"
                )
                records.at[y, col_b] = (
                    f"{records.at[x, 'observatory_code']}:{records.at[x, _id(concept)]}"
                )
            records.loc[list(amb_a), col_a] = "ambiguous"
            records.loc[list(amb_b), col_b] = "ambiguous"
            left_a = a[a.index.isin(records.index[records[col_a] == "only"])]
            left_b = b[b.index.isin(records.index[records[col_b] == "only"])]
            recoded, _, _ = _resolve(_candidates(left_a, left_b, concept, same_unit=False))
            for x, y in recoded:
                records.at[x, col_a] = f"other_unit:{records.at[y, 'unit_code']}"
                records.at[y, col_b] = f"other_unit:{records.at[x, 'unit_code']}"
    return records.drop(columns=["_parent"])


def _id(concept: Concept) -> str:
    from obsx.intake.contract import load_contract

    contract = load_contract(concept.dataset)
    return next(k for k in contract.primary_key if k != "observatory_code")


def match_summary(records: pd.DataFrame, concept: Concept) -> pd.DataFrame:
    """Per unit, month and pair of sources: found by both, by one only, recoded, ambiguous."""
    names = [s.name for s in concept.sources]
    place = ["unit_code", "period_month"]
    frames = []

    def tally(source: str, other: str, side: str) -> pd.DataFrame:
        """Per unit-month, what the records of ``source`` found in ``other``."""
        mine = records[records["source"] == source]
        verdict = mine[f"match_{other}"].astype(str)
        recoded = verdict.str.startswith("other_unit:")
        flags = pd.DataFrame(
            {
                f"only_{side}": verdict == "only",
                f"recoded_{side}": recoded,
                f"ambiguous_{side}": verdict == "ambiguous",
                f"aggregate_{side}": verdict == "aggregate",
                f"both_{side}": ~verdict.isin(["only", "ambiguous", "aggregate"]) & ~recoded,
            }
        ).astype(int)
        return flags.groupby([mine[c] for c in place]).sum()

    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            pair = tally(a, b, "a").join(tally(b, a, "b"), how="outer").fillna(0).astype(int)
            if pair.empty:
                continue
            pair = pair.reset_index().rename(
                columns={"unit_code": "geo_code", "period_month": "period"}
            )
            frames.append(
                pair.assign(
                    concept=concept.code,
                    source_a=a,
                    source_b=b,
                    both=pair["both_a"],
                    aggregate=pair["aggregate_a"] + pair["aggregate_b"],
                )[SUMMARY_COLUMNS]
            )
    if not frames:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    return pd.concat(frames, ignore_index=True)


SUMMARY_COLUMNS = [
    "concept",
    "geo_code",
    "period",
    "source_a",
    "source_b",
    "both",
    "only_a",
    "only_b",
    "recoded_a",
    "recoded_b",
    "ambiguous_a",
    "ambiguous_b",
    "aggregate",
]


# --- persisted state, decisions and what indicators count --------------------------------


def refresh_reconciliation(conn: sa.Connection, now: dt.datetime) -> dict[str, pd.DataFrame]:
    """Recompute every concept's items and matches into ``reconciliation_item`` /
    ``reconciliation_match``, and close (reopen the item of) every decision whose counts have
    changed since. Returns the items per concept."""
    from obsx.warehouse.tables import (
        reconciliation_count,
        reconciliation_decision,
        reconciliation_item,
        reconciliation_match,
    )

    out = {}
    for table in (reconciliation_item, reconciliation_count, reconciliation_match):
        conn.execute(table.delete())
    for concept in concepts():
        frame = items(conn, concept)
        reopened = frame["reopened_decision"].dropna()
        for decision_id in reopened:
            row = frame[frame["reopened_decision"] == decision_id].iloc[0]
            counts = {s.name: row[f"n_{s.name}"] for s in concept.sources}
            conn.execute(
                reconciliation_decision.update()
                .where(reconciliation_decision.c.decision_id == int(decision_id))
                .values(
                    closed_at=now,
                    closed_reason="reopened: the sources' counts changed to "
                    + json.dumps(
                        {k: (None if pd.isna(v) else float(v)) for k, v in counts.items()}
                    ),
                )
            )
        counts = [
            {
                "concept": concept.code,
                "geo_code": r["geo_code"],
                "period": r["period"],
                "source": s.name,
                "count": float(r[f"n_{s.name}"]),
            }
            for r in frame.to_dict("records")
            for s in concept.sources
            if pd.notna(r[f"n_{s.name}"])
        ]
        if counts:
            conn.execute(reconciliation_count.insert(), counts)
        rows = [
            {
                "concept": concept.code,
                "geo_code": r["geo_code"],
                "period": r["period"],
                "difference": float(r["difference"]),
                "status": r["status"],
                "chosen_source": r["chosen_source"],
                "decision_id": None if pd.isna(r["decision_id"]) else int(r["decision_id"]),
                "computed_at": now,
            }
            for r in frame.to_dict("records")
        ]
        if rows:
            conn.execute(reconciliation_item.insert(), rows)
        summary = match_summary(match_records(conn, concept), concept)
        if not summary.empty:  # where both sources of the pair reported
            both = frame.melt(
                id_vars=["geo_code", "period"],
                value_vars=[f"n_{s.name}" for s in concept.sources],
                var_name="source",
                value_name="n",
            ).dropna()
            reported = set(
                zip(both["geo_code"], both["period"], both["source"].str[2:], strict=True)
            )
            summary = summary[
                [
                    (g, p, a) in reported and (g, p, b) in reported
                    for g, p, a, b in zip(
                        summary["geo_code"],
                        summary["period"],
                        summary["source_a"],
                        summary["source_b"],
                        strict=True,
                    )
                ]
            ]
        if not summary.empty:
            conn.execute(reconciliation_match.insert(), summary.to_dict("records"))
        out[concept.code] = frame
    return out


def build_exclusions(
    conn: sa.Connection, as_of: dt.datetime | None = None, items_now: dict | None = None
) -> tuple[Concept, ...]:
    """A temporary table ``reconcile_excluded`` of (unit, month, contributor) whose records of a
    concept indicators leave out (their source is not the chosen one); returns the concepts,
    for ``exclusion_sql``. ``items_now``: what ``refresh_reconciliation`` just returned (the
    current choices, not worked out again)."""
    conn.exec_driver_sql("DROP TABLE IF EXISTS reconcile_excluded")
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE reconcile_excluded (concept VARCHAR(64), unit_code VARCHAR(16),"
        " period_month VARCHAR(7), observatory_code VARCHAR(64))"
    )
    found = concepts()
    for concept in found:
        if items_now is not None and as_of is None:
            frame = items_now[concept.code]  # refreshed a moment ago, in this transaction
        else:
            frame = items(conn, concept, as_of)
        source_of = _sources_of(conn, concept)
        rows = [
            {
                "concept": concept.code,
                "unit_code": r.geo_code,
                "period_month": r.period,
                "observatory_code": code,
            }
            for r in frame[frame["sources_reporting"] >= 2].itertuples()
            for code, source in source_of.items()
            if source != r.chosen_source
        ]
        if rows:
            conn.execute(
                sa.text(
                    "INSERT INTO reconcile_excluded VALUES"
                    " (:concept, :unit_code, :period_month, :observatory_code)"
                ),
                rows,
            )
    return found


def exclusion_sql(dataset: str, found: tuple[Concept, ...], alias: str = "r") -> str:
    """A records query's filter: a concept's records count only from the chosen source."""
    from obsx.indicators.catalogue import condition_sql

    return "".join(
        f" AND NOT ({condition_sql(concept.where, alias=alias)} AND EXISTS (SELECT 1"
        f" FROM reconcile_excluded x WHERE x.concept = '{concept.code}'"
        f" AND x.unit_code = {alias}.unit_code AND x.period_month = {alias}.period_month"
        f" AND x.observatory_code = {alias}.observatory_code))"
        for concept in found
        if concept.dataset == dataset
    )


def mark_indicator_values(conn: sa.Connection, target: str) -> None:
    """``indicator_value.reconciliation`` of a concept's indicators: ``agreed`` where a unit and
    month inside the cell follow a decision, else ``pending`` where one is to reconcile."""
    # The cells holding a marked item, by one grouping join (a correlated EXISTS per value
    # scanned every item for every value: 187 s for a national year on SQLite).
    quarter = (
        "substr(i.period, 1, 4) || '-Q' || "
        "CAST((CAST(substr(i.period, 6, 2) AS INTEGER) + 2) / 3 AS VARCHAR(1))"
    )
    kinds = "SELECT 'month' AS period_type UNION ALL SELECT 'quarter' UNION ALL SELECT 'year'"
    for concept in concepts():
        if not concept.indicators:
            continue
        codes = ", ".join(f"'{c}'" for c in concept.indicators)
        conn.exec_driver_sql("DROP TABLE IF EXISTS reconcile_marks")
        conn.execute(
            sa.text(
                "CREATE TEMPORARY TABLE reconcile_marks AS"
                " SELECT g.geo_level, g.geo_code, t.period_type, CASE t.period_type"
                f" WHEN 'month' THEN i.period WHEN 'quarter' THEN {quarter}"
                " ELSE substr(i.period, 1, 4) END AS period,"
                " max(CASE WHEN i.status = 'decided' THEN 2 ELSE 1 END) AS mark"
                " FROM reconciliation_item i"
                " JOIN geography_rollup g ON g.unit_code = i.geo_code"
                f" CROSS JOIN ({kinds}) t"
                " WHERE i.concept = :concept"
                " AND i.status IN ('decided', 'to_reconcile', 'reopened')"
                " GROUP BY 1, 2, 3, 4"
            ),
            {"concept": concept.code},
        )
        conn.exec_driver_sql(
            "CREATE INDEX reconcile_marks_key"
            " ON reconcile_marks (geo_level, geo_code, period_type, period)"
        )
        conn.exec_driver_sql(
            f"UPDATE {target} AS v SET reconciliation = coalesce((SELECT CASE m.mark"
            " WHEN 2 THEN 'agreed' ELSE 'pending' END FROM reconcile_marks m"
            " WHERE m.geo_level = v.geo_level AND m.geo_code = v.geo_code"
            " AND m.period_type = v.period_type AND m.period = v.period), '')"
            f" WHERE v.indicator_code IN ({codes})"
        )
        conn.exec_driver_sql("DROP TABLE reconcile_marks")


def decide(
    engine: sa.Engine,
    concept_code: str,
    geo_code: str,
    period: str,
    source: str,
    by: str,
    reason: str,
    now: dt.datetime | None = None,
) -> int:
    """Record that the item follows ``source``: the figure is that source's count today; the
    counts seen are kept so that a later change reopens it. Returns the decision id."""
    from obsx.warehouse.tables import reconciliation_decision as d

    now = now or dt.datetime.now(dt.UTC)
    concept = get_concept(concept_code)
    if source not in {s.name for s in concept.sources}:
        raise ValueError(
            f"source {source!r} unknown (sources: {', '.join(s.name for s in concept.sources)})"
        )
    with engine.begin() as conn:
        frame = items(conn, concept)
        row = frame[(frame["geo_code"] == geo_code) & (frame["period"] == period)]
        if row.empty:
            raise ValueError(f"no source reported {concept.code} for {geo_code} in {period}")
        row = row.iloc[0]
        if pd.isna(row[f"n_{source}"]):
            raise ValueError(
                f"{source} did not report {geo_code} in {period}: it cannot be followed"
            )
        counts = {
            s.name: (None if pd.isna(row[f"n_{s.name}"]) else float(row[f"n_{s.name}"]))
            for s in concept.sources
        }
        conn.execute(
            d.update()
            .where(
                d.c.concept == concept.code,
                d.c.geo_code == geo_code,
                d.c.period == period,
                d.c.closed_at.is_(None),
            )
            .values(closed_at=now, closed_reason="superseded by a new decision")
        )
        return conn.execute(
            d.insert().values(
                concept=concept.code,
                geo_code=geo_code,
                period=period,
                source=source,
                figure=counts[source],
                counts=json.dumps(counts),
                decided_by=by,
                decided_at=now,
                reason=reason,
            )
        ).inserted_primary_key[0]


def get_concept(code: str | None) -> Concept:
    found = concepts()
    if not found:
        raise ValueError("this deployment declares no reconciliation concepts (deployment.yaml)")
    if code is None:
        return found[0]
    for c in found:
        if c.code == code:
            return c
    raise ValueError(f"unknown concept {code!r} (known: {', '.join(c.code for c in found)})")


# --- what the statistician reads ---------------------------------------------------------


def item_rows(conn: sa.Connection, concept: Concept) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The persisted items with a column per source (counts), and their matches."""
    from obsx.warehouse.tables import (
        reconciliation_count,
        reconciliation_item,
        reconciliation_match,
    )

    items_ = pd.read_sql(
        sa.select(reconciliation_item).where(reconciliation_item.c.concept == concept.code), conn
    )
    counts = pd.read_sql(
        sa.select(reconciliation_count).where(reconciliation_count.c.concept == concept.code), conn
    )
    wide = counts.pivot_table(
        index=["geo_code", "period"], columns="source", values="count", aggfunc="sum"
    ).reset_index()
    matches = pd.read_sql(
        sa.select(reconciliation_match).where(reconciliation_match.c.concept == concept.code), conn
    )
    return items_.merge(wide, on=["geo_code", "period"], how="left"), matches


def list_text(conn: sa.Connection, concept: Concept, status: str = "needs_decision") -> str:
    frame, matches = item_rows(conn, concept)
    names = [s.name for s in concept.sources]
    totals = frame["status"].value_counts()
    head = (
        f"{concept.name.get('en', concept.code)} ({concept.code}): {len(frame)} unit-months"
        " reported by some source — " + ", ".join(f"{totals.get(s, 0)} {s}" for s in STATUSES)
    )
    if status == "needs_decision":
        frame = frame[frame["status"].isin(NEEDS_DECISION)]
    elif status != "all":
        frame = frame[frame["status"] == status]
    lines = [head, ""]
    header = ["unit", "month", *names, "diff", "status", "follows", "explained"]
    table = []
    for r in frame.sort_values(["period", "geo_code"]).to_dict("records"):
        m = matches[(matches["geo_code"] == r["geo_code"]) & (matches["period"] == r["period"])]
        table.append(
            [
                r["geo_code"],
                r["period"],
                *("—" if pd.isna(r.get(n)) else f"{r[n]:g}" for n in names),
                f"{r['difference']:g}",
                r["status"],
                r["chosen_source"] or "",
                _explained(m),
            ]
        )
    if not table:
        return "\n".join([*lines, "Nothing to list."])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    for row in [header, *table]:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def _explained(m: pd.DataFrame) -> str:
    parts = []
    for r in m.to_dict("records"):
        a, b = r["source_a"], r["source_b"]
        bits = [f"{r['both']} both"]
        for key, label in (
            ("only_a", f"only {a}"),
            ("only_b", f"only {b}"),
            ("recoded_a", f"{a} elsewhere"),
            ("recoded_b", f"{b} elsewhere"),
            ("ambiguous_a", "ambiguous"),
            ("aggregate", "counts only"),
        ):
            if r[key]:
                bits.append(f"{r[key]} {label}")
        parts.append(f"{a}/{b}: " + ", ".join(bits))
    return "; ".join(parts)


def show_text(conn: sa.Connection, concept: Concept, geo: str, period: str) -> str:
    """One item: the counts, the decision (and past ones), every record and what it matched."""
    from obsx.warehouse.tables import reconciliation_decision as d

    frame, matches = item_rows(conn, concept)
    item = frame[(frame["geo_code"] == geo) & (frame["period"] == period)]
    if item.empty:
        raise ValueError(f"no source reported {concept.code} for {geo} in {period}")
    r = item.iloc[0]
    names = [s.name for s in concept.sources]
    lines = [
        f"{concept.code} {geo} {period}: {r['status']}; indicators follow {r['chosen_source']}",
        "counts: " + ", ".join(f"{n} {'—' if pd.isna(r.get(n)) else f'{r[n]:g}'}" for n in names),
        "matching: "
        + (
            _explained(matches[(matches["geo_code"] == geo) & (matches["period"] == period)]) or "—"
        ),
    ]
    history = pd.read_sql(
        sa.select(d)
        .where(d.c.concept == concept.code, d.c.geo_code == geo, d.c.period == period)
        .order_by(d.c.decided_at),
        conn,
    )
    for h in history.to_dict("records"):
        state = (
            "in force" if h["closed_at"] is None or pd.isna(h["closed_at"]) else h["closed_reason"]
        )
        lines.append(
            f"decision {h['decision_id']}: follows {h['source']} ({h['figure']:g}), by"
            f" {h['decided_by']} on {pd.Timestamp(h['decided_at']):%Y-%m-%d %H:%M}:"
            f" {h['reason']} [{state}]"
        )
    records = match_records(conn, concept)
    here = records[
        (records["period_month"] == period)
        & (
            (records["unit_code"] == geo)
            | records.filter(like="match_")
            .apply(lambda col: col.astype(str).eq(f"other_unit:{geo}"))
            .any(axis=1)
        )
    ]
    key = _id(concept)
    lines.append("records:")
    for rec in here.sort_values(["source", "occurred_on"]).to_dict("records"):
        found = ", ".join(f"{n}: {rec.get(f'match_{n}')}" for n in names if n != rec["source"])
        lines.append(
            f"  {rec['source']:<12} {rec['observatory_code']}:{rec[key]}  {rec['occurred_on']}"
            f"  unit {rec['unit_code']}  sex {rec.get('victim_sex') or '—'}"
            f"  age {'' if pd.isna(rec.get('victim_age')) else int(rec['victim_age'])}"
            f"  n={rec['n']:g}  → {found}"
        )
    return "\n".join(lines)
