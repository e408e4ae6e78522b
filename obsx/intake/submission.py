"""One submission, end to end: archive, read, validate, merge, feedback, clear the inbox.

Called by the Dagster asset for every partition key of a run; free of Dagster so that tests and
commands can call it too.
"""

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from obsx.indicators.catalogue import load_catalogue
from obsx.indicators.sources import units_within
from obsx.intake.contract import band_bounds, load_contract
from obsx.intake.dropzone import Dropzone, Upload, parse_partition_key, safe_stem
from obsx.intake.feedback import Report, write_feedback
from obsx.intake.limits import Deadline, LimitExceeded, Limits, active, bounded, current_limits
from obsx.intake.problems import ERROR, WARNING, problem
from obsx.intake.profiles import Profile, contributor_profiles
from obsx.intake.reading import Cells, Source, UnreadableFile, read_cells
from obsx.intake.validation import FileValidation, Observatory, ValidationResult
from obsx.warehouse.deployment import current_deployment
from obsx.warehouse.tables import (
    DATASETS,
    Stage,
    declared_coverage,
    dialect_insert,
    geography_rollup,
    merge_staged,
    population,
    quarantine,
    record_tables,
    submission,
    submission_scope,
)

log = logging.getLogger(__name__)

COUNT_COLUMNS = (
    "rows_read",
    "rows_accepted",
    "rows_rejected",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_held",
    "rows_ignored",
    "warnings",
)


STAGES = ("read", "validate", "merge", "feedback")


@dataclass
class Outcome:
    key: str
    submission_id: str
    observatory_code: str
    file_name: str
    status: str
    counts: dict[str, int]
    feedback: list[Path]
    already_merged: bool
    dataset: str
    seconds: dict[str, float] = field(default_factory=dict)  # time spent in each stage


class Stopwatch:
    """Seconds spent in each stage of a submission, for the run's metadata and benchmarks."""

    def __init__(self):
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now


def _profiles(observatory: Observatory) -> list[Profile]:
    """The contributor's profiles, plus the contract alone for datasets it has none for."""
    deployment = current_deployment(observatory.deployment or None)
    contracts = {d: load_contract(d) for d in DATASETS}
    found = contributor_profiles(observatory.code, contracts, deployment.profiles_dir)
    covered = {p.dataset for p in found}
    return found + [Profile(observatory.code, d) for d in DATASETS if d not in covered]


def choose_profile(
    data: bytes, file_name: str, observatory: Observatory, dataset: str | None = None
) -> tuple[Profile, Source | UnreadableFile]:
    """Which profile reads a file, and the file's table under it, its header found, to be read
    in chunks (or why it cannot be read).

    Profiles whose ``files`` pattern fits the name are the candidates (else every profile);
    among them, the one whose contract finds the largest share of its required fields among
    the headers wins.
    Raises ProfileError for a broken profile (the ministry's to fix)."""
    profiles = [p for p in _profiles(observatory) if dataset is None or p.dataset == dataset]
    # A file renamed by hand still finds its profile by its headers.
    candidates = [p for p in profiles if p.files and p.matches_file(file_name)] or profiles
    best, best_share, best_cells = None, -1.0, None
    read: dict[tuple, Cells | UnreadableFile] = {}  # the file is read once per distinct layout
    _, deadline = active()
    for profile in candidates:
        deadline.check()
        contract = load_contract(profile.dataset)
        layout = profile.layout(contract)
        how = (layout.sheet, layout.encoding, layout.delimiter, layout.value_labels)
        if how not in read:
            read[how] = _read_cells(data, file_name, layout)
        cells, share = read[how], 0.0
        if isinstance(cells, Cells):
            try:  # only the header row: the table is built once, for the profile chosen
                headers = cells.headers(layout)
            except UnreadableFile as exc:
                cells, headers = exc, []
            mapping, _ = contract.match_headers(headers, extra=profile.columns)
            found = set(mapping.values()) | {d.field for d in profile.derive}
            required = {f.name for f in contract.fields if f.required}
            share = len(required & found) / len(required)
        if share > best_share:
            best, best_share, best_cells = profile, share, cells
    if isinstance(best_cells, UnreadableFile):
        return best, best_cells
    try:
        return best, best_cells.source(best.layout(load_contract(best.dataset)))
    except UnreadableFile as exc:
        return best, exc
    except LimitExceeded as exc:  # a read over its time
        return best, UnreadableFile(exc.problem())


def _read_cells(data: bytes, file_name: str, layout) -> Cells | UnreadableFile:
    """The file's cells, or why they cannot be read (never raises for bad input; a file over
    a limit is unreadable with the problem naming the limit)."""
    try:
        return read_cells(data, file_name, layout)
    except UnreadableFile as exc:
        return exc
    except LimitExceeded as exc:
        return UnreadableFile(exc.problem())
    except Exception as exc:  # a hostile file may break a reader in ways we cannot list
        log.warning("reader failed on %s: %r", file_name, exc)
        kind = type(exc).__name__
        return UnreadableFile(
            problem(
                "unreadable-file",
                reason_es=f"formato dañado ({kind})",
                reason_en=f"damaged format ({kind})",
            )
        )


def detect_dataset(data: bytes, file_name: str, observatory: Observatory) -> str:
    """Which dataset a file holds (see choose_profile)."""
    return choose_profile(data, file_name, observatory)[0].dataset


def check_file(
    data: bytes,
    file_name: str,
    observatory: Observatory,
    dataset: str | None,
    today: dt.date,
    chosen: tuple[Profile, Source | UnreadableFile] | None = None,
    on_accepted=None,
    clock: "Stopwatch | None" = None,
) -> tuple[ValidationResult, dict]:
    """Read and validate a file through the contributor's profile for it, chunk by chunk
    (``Limits.chunk_cells`` at a time). Each chunk's accepted rows go to ``on_accepted`` when
    given (the result then only counts them), else they are all kept in the result.

    Never raises for bad input (a broken profile is the ministry's to fix, and does raise).
    Returns the result and facts about the file. A file over a limit part way through is
    rejected whole: ``on_accepted`` may have had rows of it, which must then be dropped.
    """
    profile, table = chosen or choose_profile(data, file_name, observatory, dataset)
    info = file_info(profile, table, observatory)
    if isinstance(table, UnreadableFile):
        return _rejected(table.problem), info
    limits, deadline = active()
    checking = FileValidation(load_contract(profile.dataset), observatory, today, profile)
    kept = []
    try:
        for chunk in table.chunks(limits.chunk_cells):
            if clock:
                clock.lap("read")
            deadline.check()
            accepted = checking.check(chunk)
            if clock:
                clock.lap("validate")
            if on_accepted is None:
                kept.append(accepted)
            elif accepted.empty:
                pass  # nothing to stage (a header that matches no field: the file is judged)
            else:
                with deadline.paused():  # writing to the warehouse is not reading the file
                    on_accepted(accepted)
                if clock:
                    clock.lap("merge")
    except LimitExceeded as exc:
        return _rejected(exc.problem()), info
    except UnreadableFile as exc:
        return _rejected(exc.problem), info
    if on_accepted is not None:
        return checking.result(), info
    return checking.result(pd.concat(kept) if len(kept) > 1 else kept[0]), info


def file_info(profile: Profile, table: Source | UnreadableFile, observatory: Observatory) -> dict:
    """What the feedback says about how a file was read."""
    info = {
        "profile": profile.where if profile.path else None,
        "language": profile.language,
        "dataset": profile.dataset,
        "complete_coverage": profile.complete_coverage or observatory.complete_coverage,
        "level": profile.level,
    }
    if isinstance(table, UnreadableFile):
        return info
    return info | {
        "format": table.file_format,
        "encoding": table.encoding,
        "delimiter": table.delimiter,
        "header_row": str(table.header_row),
    }


class AcceptedRows:
    """What the whole-file rules need to know of a file's accepted rows while the rows themselves
    are staged chunk by chunk: how many, their units and months (with counts), first and last
    dates."""

    def __init__(self, dataset: str, profile: Profile | None = None):
        contract = load_contract(dataset)
        self.dataset = dataset
        self.geography, self.period = contract.geography_field, contract.period_field
        self.fields = set(contract.record_fields)
        self.count = 0
        self.first = self.last = None
        self._places: list[pd.DataFrame] = []
        self.supplied: set[str] = set()  # record fields some accepted row fills
        # What the file covers of each scope field of the catalogue: what its profile says,
        # else all codes (None), else the codes its rows hold (filled in by ``add``).
        spec = load_catalogue().datasets.get(dataset)
        # A band field (age_band) supplies what the dimensions reading it group only where a
        # band fits wholly inside one of their groups: "25-34 años" is no age group of 15-29
        # and 30-44, so a file of such bands supplies none (not available, never 0).
        self.grouping = [
            (d.band_field, list(d.bands.values()))
            for d in (spec.dimensions.values() if spec else [])
            if d.band_field and d.bands
        ]
        self.covers: dict[str, list[str] | None] = {}
        self.observed: dict[str, set[str]] = {}
        for name, default in (spec.scope if spec else {}).items():
            said = profile.covered(name) if profile else None
            if said is not None:
                self.covers[name] = sorted(said)
            elif default == "observed":
                self.observed[name] = set()
        self.shares = contract.population_shares  # count field -> share judged implausible
        self._counts: list[pd.DataFrame] = []  # rows counting more than one, for those fields

    def add(self, accepted: pd.DataFrame) -> None:
        if accepted.empty:
            return
        self.count += len(accepted)
        self.supplied |= {
            c
            for c in self.fields & set(accepted)
            if accepted[c].notna().any() and self._groups(c, accepted[c])
        }
        for name, seen in self.observed.items():
            if name in accepted:
                seen.update(accepted[name].dropna().astype(str))
        dates = pd.to_datetime(accepted[self.period])
        known = dates.dropna()
        if not known.empty:
            low, high = known.min(), known.max()
            self.first = low if self.first is None else min(self.first, low)
            self.last = high if self.last is None else max(self.last, high)
        places = pd.DataFrame(
            {
                "unit": accepted[self.geography].astype("str"),
                "month": dates.dt.strftime("%Y-%m"),
                "year": dates.dt.year,
            }
        )
        counted = places.groupby(["unit", "month", "year"], dropna=False).size()
        self._places.append(counted.rename("count").reset_index())
        for name in self.shares:
            values = accepted[name]
            several = values.gt(1).fillna(False).to_numpy()
            if several.any():  # a row of one victim is never implausible: only these are kept
                self._counts.append(
                    places[several].assign(
                        row=accepted.index[several].to_numpy(),
                        field=name,
                        value=values[several].to_numpy(),
                    )
                )

    def _groups(self, field: str, values: pd.Series) -> bool:
        """Whether the band field's values fit some group of every dimension reading it."""
        for band_field, groups in self.grouping:
            if band_field != field:
                continue
            fits = False
            for text in values.dropna().astype(str).unique():
                bounds = band_bounds(text)
                if bounds is None:
                    continue
                low, high = bounds
                fits = any(
                    low >= g_low and (g_high is None or (high is not None and high <= g_high))
                    for g_low, g_high in groups
                )
                if fits:
                    break
            if not fits:
                return False
        return True

    def counts(self) -> pd.DataFrame:
        """Rows of the count fields with a value above one: row, field, value, unit, month,
        year."""
        if not self._counts:
            return pd.DataFrame(columns=["row", "field", "value", "unit", "month", "year"])
        return pd.concat(self._counts, ignore_index=True)

    def scope_row(self, sha: str, dataset: str) -> dict:
        """The file's row of ``submission_scope``: the fields it supplied, the codes it covers."""
        covers = self.covers | {name: sorted(seen) for name, seen in self.observed.items()}
        covers = {name: codes for name, codes in covers.items() if codes is not None}
        return {
            "submission_id": sha,
            "dataset": dataset,
            "supplied": json.dumps(sorted(self.supplied)),
            "covers": json.dumps(covers, sort_keys=True),
        }

    def places(self) -> pd.DataFrame:
        """Unit, month, year and how many accepted rows have them (missing ones included)."""
        if not self._places:
            return pd.DataFrame(columns=["unit", "month", "year", "count"])
        every = pd.concat(self._places)
        return every.groupby(["unit", "month", "year"], dropna=False)["count"].sum().reset_index()


def _declare_coverage(conn, dataset, code, sha, accepted: AcceptedRows, level=None) -> None:
    """Record that the file covers all the contributor's units in each month it spans (its
    areas of ``level``, for records placed there)."""
    conn.execute(declared_coverage.delete().where(declared_coverage.c.submission_id == sha))
    if accepted.first is None:
        return
    months = pd.period_range(accepted.first, accepted.last, freq="M").strftime("%Y-%m")
    conn.execute(
        declared_coverage.insert(),
        [
            {
                "submission_id": sha,
                "period_month": m,
                "observatory_code": code,
                "dataset": dataset,
                "geo_level": level,
            }
            for m in months
        ],
    )


def unit_totals(conn, units: list[str]) -> pd.DataFrame:
    """Each unit's total population by year (geo_code, year, population): the total given, else
    the sum of its parts (by sex, else by age group, else by both: the demo's Panamá). An area
    above the units (records placed at its level) has the sum of its units' (those it holds
    now), as its rates do."""
    found = _own_totals(conn, units)
    areas = set(units) - set(found["geo_code"])
    inside = units_within(conn, areas) if areas else pd.DataFrame()
    if inside.empty:
        return found
    parts = inside.merge(
        _own_totals(conn, sorted(set(inside["unit_code"]))).rename(
            columns={"geo_code": "unit_code"}
        ),
        on="unit_code",
    )
    summed = parts.groupby(["area_code", "year"], as_index=False)["population"].sum()
    return pd.concat([found, summed.rename(columns={"area_code": "geo_code"})], ignore_index=True)


def _own_totals(conn, units: list[str]) -> pd.DataFrame:
    p = population.c
    known = pd.DataFrame(
        conn.execute(
            sa.select(p.geo_code, p.year, p.sex, p.age_group, p.population).where(
                p.geo_code.in_(units)
            )
        ).all(),
        columns=["geo_code", "year", "sex", "age_group", "population"],
    )
    keys = ["geo_code", "year"]
    total = known[known["sex"].eq("T") & known["age_group"].eq("T")]
    by_sex = known[known["sex"].ne("T") & known["age_group"].eq("T")]
    by_age = known[known["sex"].eq("T") & known["age_group"].ne("T")]
    by_both = known[known["sex"].ne("T") & known["age_group"].ne("T")]  # sex and age only
    found = [total[[*keys, "population"]]]
    for parts in (by_sex, by_age, by_both):
        found.append(parts.groupby(keys, as_index=False)["population"].sum())
    every = pd.concat(found, ignore_index=True)
    return every.drop_duplicates(subset=keys, keep="first")  # the total first, then by sex


def _population_in(totals: pd.DataFrame, unit: str, year: int) -> tuple[int, int] | None:
    """A unit's population in ``year`` and the year it is of: that year's, else the latest
    earlier year's (a census), else the earliest later one's (as the rates take it)."""
    figures = totals[totals["geo_code"].eq(unit)]
    if figures.empty:
        return None
    years = figures["year"].astype(int)
    earlier = figures[years.le(year)]
    chosen = earlier.loc[earlier["year"].idxmax()] if not earlier.empty else None
    if chosen is None:
        chosen = figures.loc[figures["year"].idxmin()]
    return int(chosen["population"]), int(chosen["year"])


def _implausible_counts(conn, accepted: AcceptedRows) -> list:
    """Rows counting more than their field's share of their unit's population in one month
    (the contract's warn_above_population_share): said, never refused."""
    counts = accepted.counts().dropna(subset=["unit", "year"])
    if counts.empty:
        return []
    counts["year"] = counts["year"].astype(int)
    totals = unit_totals(conn, sorted(set(counts["unit"])))
    pairs = counts[["unit", "year"]].drop_duplicates()
    figures = [_population_in(totals, u, y) for u, y in pairs.itertuples(index=False)]
    pairs["population"] = [f[0] if f else float("nan") for f in figures]
    pairs["population_year"] = [f[1] if f else float("nan") for f in figures]
    counts = counts.merge(pairs, on=["unit", "year"])
    counts["share"] = counts["field"].map(accepted.shares)
    over = counts["value"].astype(float) > counts["share"] * counts["population"]
    contract = load_contract(accepted.dataset)
    found = []
    for c in counts[over].sort_values(["row", "month"]).itertuples():
        f = contract.field(c.field)
        part = c.value / c.population if c.population else float("inf")
        found.append(
            problem(
                "implausible-count",
                row=int(c.row),
                value=f"{int(c.value):,}",
                title_es=f.title["es"],
                title_en=f.title["en"],
                share_es=f"{part:.1%}".replace(".", ",").replace("%", " %"),
                share_en=f"{part:.1%}",
                unit=c.unit,
                population=f"{int(c.population):,}",
                year=int(c.population_year),
                month=c.month,
            )
        )
    return found


def _reference_warnings(conn, accepted: AcceptedRows) -> list:
    """Units of accepted rows that no rate or no indicator can use: without population, or not
    in the geography in the month of the record. Nothing is said before reference data exist."""
    if not accepted.count:
        return []
    places = accepted.places()
    distinct = sorted(set(places["unit"].dropna()))
    found = []
    if conn.scalar(sa.select(sa.func.count()).select_from(population)):
        with_population = set(unit_totals(conn, distinct)["geo_code"])
        first_year = places.groupby("unit")["year"].min()
        found += [
            problem("unit-without-population", value=unit, year=int(first_year[unit]))
            for unit in distinct
            if unit not in with_population
        ]
        found += _implausible_counts(conn, accepted)
    if conn.scalar(sa.select(sa.func.count()).select_from(geography_rollup)):
        r = geography_rollup.c
        spans: dict[str, list] = {}
        for unit, start, end in conn.execute(
            sa.select(r.unit_code, r.from_month, r.to_month).where(r.unit_code.in_(distinct))
        ):
            spans.setdefault(unit, []).append((start, end))
        pairs = (
            places.dropna(subset=["unit", "month"])
            .groupby(["unit", "month"])["count"]
            .sum()
            .sort_index()
        )
        for (unit, month), count in pairs.items():
            placed = any(
                (s is None or s <= month) and (e is None or e > month)
                for s, e in spans.get(unit, [])
            )
            if not placed:
                found.append(
                    problem("unit-outside-geography", value=unit, month=month, count=count)
                )
    return found


def _merge(
    conn,
    dataset,
    code,
    sha,
    result: ValidationResult,
    stage: Stage | None,
    accepted: AcceptedRows | None,
    now,
    covers_all: bool = False,
    level: str | None = None,
) -> tuple[str, dict]:
    """Merge the staged rows (``stage``: None when nothing was read) and quarantine rejected
    ones; returns the status and the counts."""
    counts = {
        "rows_read": result.rows_read,
        "rows_accepted": result.rows_accepted,
        "rows_rejected": result.rows_rejected,
        "rows_inserted": 0,
        "rows_updated": 0,
        "rows_unchanged": 0,
        "rows_held": 0,
        "rows_ignored": 0,
        "warnings": sum(p.severity == WARNING for p in result.problems),
    }
    if result.status == "rejected":
        if stage is not None:
            stage.drop()  # what a file refused part way through staged merges nowhere
    else:
        warnings = _reference_warnings(conn, accepted)
        result.problems += warnings
        counts["warnings"] += len(warnings)
        if covers_all:
            _declare_coverage(conn, dataset, code, sha, accepted, level)
        if accepted is not None and accepted.count:
            scope = submission_scope.c.submission_id == sha
            conn.execute(submission_scope.delete().where(scope))
            conn.execute(submission_scope.insert(), [accepted.scope_row(sha, dataset)])
        lookalikes: dict[int, str] = {}
        counts |= merge_staged(stage, sha, now, lookalikes=lookalikes)
        result.problems += [
            problem("possible-duplicate", row=row, value=other)
            for row, other in sorted(lookalikes.items())
        ]
        counts["warnings"] += len(lookalikes)
    if counts["rows_held"]:
        pending = record_tables(dataset).pending
        held = conn.execute(
            sa.select(pending.c.source_row, pending.c.period_month)
            .where(pending.c.submission_id == sha, pending.c.status == "pending")
            .order_by(pending.c.source_row)
        )
        result.problems += [problem("held-closed-period", row=r, value=m) for r, m in held]
        counts["warnings"] += counts["rows_held"]
    if counts["rows_ignored"]:
        unknown = stage.unknown_withdrawals if stage is not None else []
        result.problems += [problem("withdraw-unknown", row=r) for r in unknown]
        counts["warnings"] += counts["rows_ignored"]
    conn.execute(quarantine.delete().where(quarantine.c.submission_id == sha))
    errors = [p for p in result.problems if p.severity == ERROR]
    if errors:
        conn.execute(
            quarantine.insert(),
            [
                {
                    "submission_id": sha,
                    "source_row": p.row,
                    "field": p.column,
                    "rule": p.code,
                    "value": p.value,
                    "message_es": p.message("es"),
                    "message_en": p.message("en"),
                }
                for p in errors
            ],
        )
    return result.status, counts


def _superseded(conn: sa.Connection, dataset: str, sha: str) -> bool:
    """Whether a later submission changed or withdrew a record this one wrote."""
    revision = record_tables(dataset).revision
    key = load_contract(dataset).primary_key
    mine, still = revision.alias("mine"), revision.alias("still")
    still_open = sa.select(sa.literal(1)).where(
        *[still.c[k] == mine.c[k] for k in key],
        still.c.submission_id == sha,
        still.c.valid_to.is_(None),
    )
    closed = sa.select(sa.literal(1)).where(
        mine.c.submission_id == sha, mine.c.valid_to.is_not(None), ~still_open.exists()
    )
    return bool(conn.execute(sa.select(closed.exists())).scalar())


def _rejected(p) -> ValidationResult:
    return ValidationResult(accepted=pd.DataFrame(), rows_read=0, problems=[p])


# Failures that are not the file's fault (a full disk, a lost database): they do not count
# against it when deciding that a file keeps breaking its run (Dropzone.end_attempt).
NOT_THE_FILES_FAULT = (OSError, sa.exc.DBAPIError)


def process_submission(
    key: str,
    dropzone: Dropzone,
    engine: sa.Engine,
    observatories: dict[str, Observatory],
    today: dt.date,
    run_id: str | None = None,
    limits: Limits | None = None,
) -> Outcome:
    """Process one submission key. Idempotent: a rerun of a merged submission changes nothing.

    Bad input never raises: a file over a limit (obsx.intake.limits), unreadable or invalid is
    rejected with feedback and leaves the inbox. A file whose processing died
    ``max_failed_attempts`` times before (a killed process, an unexpected error) is rejected
    unread, so that it cannot hold up anyone's later runs."""
    limits = limits or current_limits()
    code, _ = parse_partition_key(key)
    upload = dropzone.find_upload(key, limits.max_file_bytes)
    failed_before = dropzone.start_attempt(code, upload.sha256)
    try:
        outcome = _process(
            key, upload, failed_before, dropzone, engine, observatories[code], today, run_id, limits
        )
    except NOT_THE_FILES_FAULT:
        dropzone.end_attempt(code, upload.sha256, failed_before)
        raise
    dropzone.end_attempt(code, upload.sha256)
    return outcome


def _unread(observatory: Observatory, file_name: str) -> tuple[Profile, dict]:
    """The profile a file would be read through, chosen by name alone (for a file not read)."""
    profiles = _profiles(observatory)
    profile = next((p for p in profiles if p.files and p.matches_file(file_name)), profiles[0])
    info = {
        "profile": profile.where if profile.path else None,
        "language": profile.language,
        "dataset": profile.dataset,
        "complete_coverage": False,
        "level": profile.level,
    }
    return profile, info


def _process(
    key: str,
    upload: Upload,
    failed_before: int,
    dropzone: Dropzone,
    engine: sa.Engine,
    observatory: Observatory,
    today: dt.date,
    run_id: str | None,
    limits: Limits,
) -> Outcome:
    clock = Stopwatch()
    code = observatory.code
    data, file_name, inbox_path, sha = upload.data, upload.file_name, upload.path, upload.sha256
    now = dt.datetime.now(dt.UTC)
    if inbox_path is None:  # reprocessing from the archive: the name it was uploaded with, which
        with engine.connect() as conn:  # also chooses the profile (``files`` patterns)
            uploaded_as = sa.select(submission.c.file_name).where(submission.c.submission_id == sha)
            file_name = conn.scalar(uploaded_as) or file_name
    closed = observatory.closed_on is not None and today > observatory.closed_on
    if failed_before >= limits.max_failed_attempts or data is None or closed:
        profile, info = _unread(observatory, file_name)
        if closed:
            refused = problem("contributor-closed", closed_on=observatory.closed_on.isoformat())
        elif data is None:
            refused = LimitExceeded("max_file_bytes", limits.max_file_bytes, upload.size).problem()
        else:
            log.warning("%s: processing died %d times, set aside unread", key, failed_before)
            refused = problem("failed-repeatedly", attempts=failed_before)
        dataset, result, chosen = profile.dataset, _rejected(refused), None
    else:
        # One clock for reading and validating the file, stopped while it is not being read
        # (archived, waiting for the warehouse, its rows written there).
        deadline = Deadline(limits.max_seconds)
        with bounded(limits, deadline):
            chosen = choose_profile(data, file_name, observatory)
        deadline.pause()
        dataset, info = chosen[0].dataset, file_info(*chosen, observatory)
    clock.lap("read")
    feedback_stem = f"{safe_stem(file_name)}__{sha[:16]}"
    if data is not None:
        archive_path = str(dropzone.archive(code, sha, data, file_name).relative_to(dropzone.root))
    else:  # too large to keep: the feedback says so, the inbox copy goes
        archive_path = "(not archived: over max_file_bytes)"
    with engine.begin() as conn:
        # Claim the submission row, then decide under its lock: a sensor run and a command run
        # over the same file merge it once, and the second reports what the first did.
        identity = {
            "partition_key": key,
            "observatory_code": code,
            "dataset": dataset,
            "file_name": file_name,
            "archive_path": archive_path,
            "size_bytes": upload.size,
        }
        claim = dialect_insert(conn)(submission).values(
            submission_id=sha, received_at=now, status="received", **identity
        )
        conn.execute(claim.on_conflict_do_nothing(index_elements=["submission_id"]))
        row = (
            conn.execute(
                sa.select(submission).where(submission.c.submission_id == sha).with_for_update()
            )
            .mappings()
            .one()
        )
        already_merged = row["merged_at"] is not None
        received_at = row["received_at"]
        if row["observatory_code"] != code and row["status"] == "rejected":
            # A rejected file reserves nothing: the same bytes from another observatory are
            # judged anew, as that observatory's (the first sender keeps its own feedback).
            log.warning("%s: bytes first sent by %s (rejected there)", key, row["observatory_code"])
            conn.execute(
                submission.update()
                .where(submission.c.submission_id == sha)
                .values(received_at=now, status="received", merged_at=None, **identity)
            )
            already_merged, received_at = False, now
        elif already_merged and inbox_path is not None and chosen is not None:
            # Sent again by its observatory after a later file corrected its records: the latest
            # upload wins, so it applies again (the same bytes as the latest change nothing).
            resent = row["status"] != "rejected" and _superseded(conn, dataset, sha)
            if resent:
                already_merged, received_at = False, now
        if row["observatory_code"] != code and row["status"] != "rejected":
            # The identical file came from another observatory first: say so, merge nothing.
            result = _rejected(
                problem("sent-by-another-observatory", other=row["observatory_code"])
            )
            status, counts, already_merged = "rejected", dict.fromkeys(COUNT_COLUMNS, 0), False
            received_at = now
        elif already_merged:
            if chosen is not None:  # read again for the feedback; nothing is staged
                seen = AcceptedRows(dataset, chosen[0])  # what the merge's warnings read
                deadline.resume()
                with bounded(limits, deadline):
                    result, info = check_file(
                        data, file_name, observatory, dataset, today, chosen, seen.add, clock
                    )
                # the warnings the merge said (a unit without population…): a feedback written
                # after a crash past the merge says them too
                result.problems += _reference_warnings(conn, seen)
            counts, status = {c: row[c] for c in COUNT_COLUMNS}, row["status"]
        else:
            stage = accepted = None
            if chosen is not None:
                # Validated and staged chunk by chunk inside this transaction: a file is never
                # held whole, and what a failure interrupts is rolled back with the rest.
                stage, accepted = Stage(conn, dataset, code), AcceptedRows(dataset, chosen[0])

                def stage_rows(rows):
                    accepted.add(rows)
                    stage.add(rows)

                deadline.resume()
                with bounded(limits, deadline):
                    result, info = check_file(
                        data, file_name, observatory, dataset, today, chosen, stage_rows, clock
                    )
            status, counts = _merge(
                conn,
                dataset,
                code,
                sha,
                result,
                stage,
                accepted,
                now,
                info["complete_coverage"],
                info["level"],
            )
            conn.execute(
                submission.update()
                .where(submission.c.submission_id == sha)
                .values(
                    file_format=info.get("format"),
                    encoding=info.get("encoding"),
                    delimiter=info.get("delimiter"),
                    status=status,
                    merged_at=now,
                    run_id=run_id,
                    **counts,
                )
            )

    clock.lap("merge")
    feedback_dir = dropzone.feedback_dir(code)
    # The same bytes uploaded again, once the first upload was told what happened to it: not a
    # rerun from the archive, nor a retry of an upload whose feedback a crash prevented.
    told_before = any(feedback_dir.glob(f"*__{sha[:16]}.json"))
    report = Report(
        submission_id=sha,
        observatory_code=code,
        observatory_name=observatory.name,
        dataset=dataset,
        file_name=file_name,
        received_at=received_at.isoformat(timespec="seconds"),
        status=status,
        counts=counts,
        problems=result.problems,
        file_info=info,
        duplicate_of_earlier_upload=already_merged and inbox_path is not None and told_before,
        lang=info["language"],
        rejected_rows=result.rejected_for_resending(info["language"]),
    )
    paths = write_feedback(feedback_dir, feedback_stem, report, limits)
    # Only now, with the warehouse committed and the feedback written, is the upload consumed,
    # and only if its bytes are still those processed (else it is a new submission).
    for back in dropzone.consume_copies(code, upload):
        log.warning("%s changed after it was read: back in the inbox as %s", key, back.name)
    clock.lap("feedback")
    return Outcome(
        key, sha, code, file_name, status, counts, paths, already_merged, dataset, clock.seconds
    )
