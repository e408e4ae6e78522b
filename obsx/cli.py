"""``obsx``: the command engineers and observatories use.

``obsx run`` processes everything waiting in the drop folders once, materializing the same Dagster
assets the sensor would, recorded in the Dagster instance under the data root.

Exit status: 0 done; 1 (``ATTENTION``) a result that needs a person (a failed run, a file
rejected, a deployment file to fix; for ``obsx run`` and ``obsx report``, the commands cron runs,
also a warehouse server that cannot be reached, a full disk or any unexpected error: one
``NEEDS ATTENTION`` line, the traceback in ``<data root>/logs/obsx-errors.log``); 2 (``USAGE``) the
command was used wrongly (a missing file, an unknown dataset, observatory, indicator, area or
correction, a malformed date or period, a warehouse URL that cannot be reached by the other
commands, a data root that is not a folder or does not exist): one line on stderr, no traceback,
nothing done. Signals: ``obsx run`` stopped by SIGINT or SIGTERM exits 128 + the signal's number.
"""

import argparse
import os
import sys
from pathlib import Path

from obsx.config import data_root

ATTENTION, OK, USAGE = 1, 0, 2
# The linear algebra here (disclosure audits, survey variance) is many small matrices: threaded
# BLAS only contends for the cores (one 76x151 SVD: 3 ms single-threaded, up to 0.65 s threaded on
# a busy 2-core machine). Set before numpy loads; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


class UsageError(Exception):
    """The command was used wrongly: its message is the one line printed; exit status 2."""


class Fault(Exception):
    """Something outside the command needs a person (a server down): one ``NEEDS ATTENTION``
    line with its message; exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its refusals on one line (no usage block) and exit status 2."""

    def error(self, message: str):
        self.exit(USAGE, f"{self.prog}: {message} (see {self.prog} -h)\n")


def _prepare_environment(data_dir: str | None, create: bool = False) -> Path:
    """Point resources and the Dagster instance at the data root before Dagster is imported.

    Only the commands that make a data root (``create``: ``obsx seed``, ``obsx db upgrade``)
    create it: a mistyped ``--data-dir`` or ``OBSX_DATA_DIR`` is refused, not made empty."""
    root = data_root(data_dir)
    if root.exists() and not root.is_dir():
        raise UsageError(
            f"the data root {root} is a file, not a folder (--data-dir, OBSX_DATA_DIR)"
        )
    if not create and not root.exists():
        raise UsageError(_missing_root(root))
    try:
        root.mkdir(parents=True, exist_ok=True)
        os.environ["OBSX_DATA_DIR"] = str(root)
        home = Path(os.environ.get("DAGSTER_HOME") or root / "dagster")
        os.environ["DAGSTER_HOME"] = str(home)
        home.mkdir(parents=True, exist_ok=True)
        instance_config = home / "dagster.yaml"
        if not instance_config.exists():  # a local instance: SQLite storage, no telemetry
            instance_config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    except OSError as exc:
        where = exc.filename or root
        raise UsageError(f"cannot use the data root {root}: {exc.strerror}: {where}") from exc
    return root


def _missing_root(root: Path) -> str:
    return (
        f"the data root {root} does not exist (--data-dir, OBSX_DATA_DIR; obsx db upgrade or"
        " obsx seed creates one)"
    )


def cmd_seed(args) -> int:
    from obsx.warehouse.deployment import current_deployment, deployment_name

    root = _prepare_environment(args.data_dir, create=True)
    deployment = current_deployment()
    if not (deployment.root / "demo" / "seed.py").exists():
        raise UsageError(f"deployment {deployment_name()!r} has no demo to seed")
    written = deployment.demo().seed_demo(root, year=args.year)
    print(f"Seeded {len(written)} files into {root / 'dropzone'}")
    return OK


def _nothing_waiting(root: Path, settle_seconds: float) -> int | None:
    """An idle run answers before Dagster and the data stack are imported (well under a second
    instead of 4 s): no finished file in any inbox, no folder of an unregistered contributor.
    Indicators left stale by an interrupted run (records merged after their last refresh) are
    found by one cheap query and recomputed here, still without Dagster."""
    import sqlalchemy as sa

    from obsx.config import warehouse_url
    from obsx.intake.dropzone import Dropzone
    from obsx.warehouse.contributors import read_contributors
    from pipelines.planning import refresh_stale, stale_indicators

    zone = Dropzone(root, read_contributors())
    zone.ensure_folders()  # registering a contributor creates its folders
    if next(iter(zone.finished_files(settle_seconds=settle_seconds)), None) is not None:
        return None
    unknown, never = zone.unknown_folders(), zone.never_processed()
    # Inside their settle time (modified less than settle_seconds ago): still being written.
    arriving = [f"{code}/{path.name}" for code, path, _ in zone.finished_files(settle_seconds=0)]
    if arriving:
        n = len(arriving)
        print(
            f"Nothing to process yet: {n} file{'s' * (n > 1)} still arriving"
            f" ({', '.join(arriving[:10])}{', …' * (n > 10)}), changed in the last"
            f" {settle_seconds:g} s; the next run takes {'them' if n > 1 else 'it'}."
        )
    else:
        print(f"Nothing waiting in the inboxes of {len(zone.observatory_codes)} contributors.")
    url, stale, problem = warehouse_url(root=root), None, None
    try:
        parsed = sa.make_url(url)
        backend = parsed.get_backend_name()
        if backend != "sqlite" or Path(parsed.database or "").is_file():  # else: no warehouse yet
            engine = sa.create_engine(
                url, connect_args={"connect_timeout": 10} if backend == "postgresql" else {}
            )
            try:
                try:
                    conn = engine.connect()
                except sa.exc.DBAPIError as exc:
                    raise Fault(_unreachable(parsed, exc) + "; indicators not checked") from exc
                with conn:
                    stale = stale_indicators(conn)
            finally:
                engine.dispose()
        if stale:
            from obsx.warehouse.tables import get_engine

            print(refresh_stale(get_engine(url), stale), flush=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError):
        _warehouse(url)  # a URL that cannot be used: one line, exit status 2
        raise
    except Fault as exc:  # said, not fatal: the next run checks again
        problem = str(exc)
    except sa.exc.DBAPIError as exc:  # said, not fatal: the next run checks again
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        shown = parsed.render_as_string(hide_password=True)
        problem = f"indicators not checked or not recomputed: warehouse {shown}: {reason}"
    if unknown:
        print("NEEDS ATTENTION - Drop folders of no registered observatory: " + ", ".join(unknown))
    if never:
        print(
            "NEEDS ATTENTION - In an inbox but never processed (rename or remove): "
            + ", ".join(never)
        )
    if problem:
        print(f"NEEDS ATTENTION - {problem}")
    return ATTENTION if unknown or never or problem else OK


def cmd_run(args) -> int:
    from obsx.sourceyaml import ReferenceDataError, SourceError

    root = _prepare_environment(args.data_dir)
    idle = _nothing_waiting(root, args.settle_seconds)
    if idle is not None:
        return idle
    from obsx.config import warehouse_url

    # A wrong URL (2) or a server down (1): one line, before Dagster starts.
    _warehouse(warehouse_url(root=root), fault=True).dispose()
    from pipelines import stopping

    stopping.install()  # SIGINT, SIGTERM: finish the current file, start nothing more
    from pipelines.run_once import run_once

    try:
        report = run_once(
            root,
            settle_seconds=args.settle_seconds,
            batch_size=args.batch_size,
            say=lambda line: print(line, flush=True),  # progress: files done of total, rows
        )
    except (SourceError, ReferenceDataError) as exc:  # the deployment's own files: say what
        print(f"NEEDS ATTENTION - the deployment's files cannot be used: {exc}")
        return ATTENTION
    except KeyboardInterrupt:  # a second signal: stopped at once, the current file rolled back
        signum = stopping.requested() or 2
        print(
            f"NEEDS ATTENTION - Stopped at once by a second signal ({stopping.name(signum)}):"
            " a file not finished was rolled back and stays in its inbox for the next run",
            flush=True,
        )
        return 128 + signum
    print(report.summary(), flush=True)
    if report.stopped_by:
        return 128 + report.stopped_by
    return OK if report.all_processed else ATTENTION


def _moment(text: str):
    """``--as-of``: an ISO date or time (UTC unless it gives an offset)."""
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or time (e.g. 2026-01-15 or 2026-01-15T08:00)"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


PERIOD = r"\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?"


def _period(text: str) -> str:
    """``--period`` of an indicator value: YYYY, YYYY-Qn or YYYY-MM."""
    import re

    if not re.fullmatch(PERIOD, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a period: YYYY, YYYY-Qn or YYYY-MM (e.g. 2025, 2025-Q1, 2025-03)"
        )
    return text


def _closable(text: str) -> str:
    """``obsx period close|reopen``: a month YYYY-MM or a year YYYY."""
    import re

    if not re.fullmatch(r"\d{4}(-(0[1-9]|1[0-2]))?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month YYYY-MM or a year YYYY")
    return text


def _disaggregation(text: str) -> str:
    if text and "=" not in text.strip("="):
        raise argparse.ArgumentTypeError(f"{text!r} is not dimension=value (e.g. sex=F)")
    return text


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _year(text: str) -> int:
    if not text.isdigit() or not 1900 <= int(text) <= 2100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a year from 1900 to 2100")
    return int(text)


def _dataset(name: str) -> str:
    from obsx.intake.contract import observatory_datasets

    if name not in observatory_datasets():
        known = ", ".join(observatory_datasets())
        raise argparse.ArgumentTypeError(f"unknown dataset {name!r} (known: {known})")
    return name


def _warehouse(url: str, fault: bool = False):
    """An engine on ``url`` that has connected once: a URL that cannot be parsed, a driver that
    is not installed or a server that cannot be reached is a usage error, not a traceback; with
    ``fault`` (the commands cron runs) a server that cannot be reached is a ``Fault``."""
    import sqlalchemy as sa

    from obsx.warehouse.tables import get_engine

    try:
        shown = sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError as exc:  # never echoed: it may hold a password
        raise UsageError(
            "WAREHOUSE_URL is not a database URL (e.g. postgresql+psycopg://user@host:5432/db"
            " or sqlite:////path/warehouse.db)"
        ) from exc
    try:
        engine = get_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise UsageError(f"WAREHOUSE_URL {shown}: {exc} (PostgreSQL or SQLite)") from exc
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        if fault:
            raise Fault(_unreachable(sa.make_url(url), exc)) from exc
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise UsageError(f"cannot reach the warehouse {shown}: {reason}") from exc
    return engine


def _unreachable(url, exc) -> str:
    """What an operator reads when the warehouse refuses: where, which URL (no password), why."""
    reason = str(exc.orig).strip().splitlines()[0] if getattr(exc, "orig", None) else str(exc)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        return f"the warehouse database {url.database} cannot be opened ({shown}): {reason}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"the warehouse database at {where} cannot be reached ({shown}): {reason}"


def _engine(args, migrate: bool = True, fault: bool = False, create: bool = False):
    """The warehouse of the data root, brought to this release's schema unless told not to.

    The data root must exist when the warehouse is its default SQLite file (``create``: made);
    with ``WAREHOUSE_URL`` set, these commands use nothing else of it and create nothing."""
    from obsx.config import warehouse_url
    from obsx.warehouse.migrations import ensure_current

    root = data_root(args.data_dir)
    if create or root.exists() or not os.environ.get("WAREHOUSE_URL"):
        root = _prepare_environment(args.data_dir, create=create)
    else:
        for parent in root.parents:  # (a_file.txt/var: not a folder either)
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"cannot use the data root {root}: not a folder: {parent}")
                break
        os.environ["OBSX_DATA_DIR"] = str(root)
    url = warehouse_url(root=root)
    engine = _warehouse(url, fault=fault)
    if migrate:
        ensure_current(url, engine)
    return engine


def cmd_db_upgrade(args) -> int:
    from obsx.warehouse.migrations import current_revision, upgrade

    engine = _engine(args, migrate=False, create=True)
    before = current_revision(engine)
    upgrade(engine)
    print(
        f"warehouse {engine.url.render_as_string()}: {before or 'empty'} -> {current_revision(engine)}"
    )
    return OK


def cmd_db_roles(args) -> int:
    from obsx.warehouse.access import AccessError, grant_roles, other_databases

    engine = _engine(args, migrate=False)
    if engine.dialect.name != "postgresql":
        raise UsageError("obsx db roles: roles exist on PostgreSQL only (WAREHOUSE_URL is SQLite)")
    from obsx.warehouse.migrations import ensure_current

    ensure_current(engine.url.render_as_string(hide_password=False), engine)
    try:
        loopholes = grant_roles(
            engine, writer=args.writer, analyst=args.analyst, revoke_connect=args.revoke_connect
        )
    except AccessError as exc:
        raise UsageError(f"obsx db roles: {exc}") from exc
    print(
        f"roles ready: {args.writer} (pipeline, read-write), {args.analyst} (analytics, read-only)"
    )
    with engine.connect() as conn:
        elsewhere = other_databases(conn, args.analyst)
    if elsewhere:
        print(
            f"note: PUBLIC may still connect to {', '.join(elsewhere)} on this server, so may"
            f" {args.analyst} unless pg_hba.conf refuses it (docs/deploy.md; --revoke-connect)"
        )
    for loophole in loopholes:
        print(f"NEEDS ATTENTION - {loophole}")
    return ATTENTION if loopholes else OK


def cmd_indicators(args) -> int:

    import pandas as pd
    import sqlalchemy as sa

    from obsx.indicators.engine import indicator_values_as_of
    from obsx.warehouse.tables import indicator_value

    engine = _engine(args)
    if args.indicator_code:
        _known_indicator(args.indicator_code)
    if args.geo_code:
        _known_area(engine, args.geo_code)
    if args.as_of:
        as_of = args.as_of
        frame = indicator_values_as_of(engine, as_of)
    else:
        with engine.connect() as conn:
            frame = pd.read_sql(sa.select(indicator_value), conn)
    for column in ("indicator_code", "geo_code", "period"):
        wanted = getattr(args, column)
        if wanted:
            frame = frame[frame[column] == wanted]
    if not args.unsuppressed:
        from obsx.indicators.suppression import as_published

        frame = as_published(frame)
    from obsx.intake.feedback import defuse_text_columns  # a spreadsheet runs "=…" cells

    defuse_text_columns(frame).to_csv(sys.stdout, index=False)
    return OK


def _known_indicator(code: str) -> None:
    from obsx.indicators.catalogue import load_catalogue

    codes = [ind.code for ind in load_catalogue().indicators]
    if code not in codes:
        raise UsageError(f"unknown indicator {code!r} (known: {', '.join(codes)})")


def _known_area(engine, code: str) -> None:
    """An area code of any level the warehouse knows (skipped before reference data loads)."""
    import sqlalchemy as sa

    from obsx.warehouse.tables import geography_rollup, indicator_value

    with engine.connect() as conn:
        known = conn.scalar(
            sa.select(sa.literal(1)).where(
                sa.or_(
                    sa.exists().where(geography_rollup.c.geo_code == code),
                    sa.exists().where(indicator_value.c.geo_code == code),
                )
            )
        )
        empty = conn.scalar(sa.select(sa.func.count()).select_from(geography_rollup)) == 0
    if not known and not empty:
        raise UsageError(f"unknown area code {code!r} (geo_code of the geography, any level)")


def cmd_explain(args) -> int:
    import pandas as pd

    from obsx.publication.lineage import explain

    engine = _engine(args)
    _known_indicator(args.indicator)
    _known_area(engine, args.geo)
    try:
        found = explain(engine, args.indicator, args.geo, args.period, args.disaggregation)
    except LookupError as exc:
        if type(exc) is not LookupError:  # a KeyError or IndexError here is a bug: traceback
            raise
        raise UsageError(f"obsx explain: {exc.args[0]}") from exc
    if args.csv:
        from obsx.intake.feedback import defuse_text_columns

        defuse_text_columns(found.records).to_csv(sys.stdout, index=False)
        return OK
    v = found.value
    print(
        f"{v['indicator_code']} {v['geo_level']} {v['geo_code']} {v['period']}"
        f" {v['disaggregation'] or '(total)'}: value {v['value']}, numerator {v['numerator']},"
        f" denominator {v['denominator']}, {v['unit']}; disclosure {v['conf_status']},"
        f" computed {v['computed_at']}"
    )
    why = {
        "C": "withheld: a count from 1 to the indicator's suppress_below - 1 (primary)",
        "D": "withheld so that, with everything published, no small count can be narrowed"
        " below its protection interval (secondary; docs/analytics.md)",
    }.get(v["conf_status"])
    if why:
        print(why + "; published as C, without a value")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        for side, rows in found.records.groupby("side", sort=False) if len(found.records) else []:
            print(f"\n{side}: {len(rows)} records")
            print(rows.drop(columns="side").head(args.show).to_string(index=False))
            if len(rows) > args.show:
                print(f"... {len(rows) - args.show} more (--show N, or --csv for all)")
        if len(found.population):
            print(f"\ndenominator: population of {found.population['geo_code'].nunique()} units")
            print(found.population.head(args.show).to_string(index=False))
    return OK


def _who(args) -> str:
    return args.by or os.environ.get("USER") or "unknown"


def cmd_inbox(args) -> int:
    """``obsx inbox release ID``: a rejected file back into its inbox, judged anew by the next run."""
    from obsx.intake.dropzone import Dropzone
    from obsx.intake.uploads import release
    from obsx.warehouse.reference import observatories

    engine = _engine(args)
    root = data_root(args.data_dir)
    zone = Dropzone(root, observatories(engine=engine))
    try:
        done = release(engine, zone, args.submission.lower())
    except LookupError as exc:
        raise UsageError(f"obsx inbox release: {exc.args[0]}") from exc
    print(f"released: {done.path.relative_to(root)} (the next obsx run judges it anew)")
    return OK


def cmd_period(args) -> int:
    from obsx.warehouse import corrections

    engine = _engine(args)
    if args.action == "close":
        months = corrections.close_period(engine, args.period, by=_who(args), note=args.note)
        print(f"closed: {', '.join(months) or 'nothing new (already closed)'}")
    elif args.action == "reopen":
        print(f"reopened: {', '.join(corrections.reopen_period(engine, args.period))}")
    else:
        print(corrections.closed_periods(engine).to_string(index=False))
    return OK


def _print_corrections(items) -> None:
    for c in items:
        print(
            f"#{c.correction_id} [{c.status}] {c.observatory_code} {c.record_id} "
            f"period {c.period_month} (submission {c.submission_id[:16]}, row {c.source_row})"
        )
        for name, (before, after) in c.changes.items():
            print(f"    {name}: {before} -> {after}")


def cmd_corrections(args) -> int:
    from obsx.warehouse import corrections

    engine = _engine(args)
    if args.action == "list":
        items = corrections.list_corrections(engine, status=None if args.all else "pending")
        _print_corrections(items)
        if not items:
            print("no corrections waiting")
        return OK
    ids = sorted(set(args.ids))
    found = {c.correction_id: c for c in corrections.list_corrections(engine, status=None, ids=ids)}
    unknown = [i for i in ids if i not in found]
    if unknown:
        listed = ", ".join(f"#{i}" for i in unknown)
        raise UsageError(f"no correction {listed} (obsx corrections list --all shows them)")
    decided = [c for c in found.values() if c.status != "pending"]
    if decided:
        listed = ", ".join(f"#{c.correction_id} is {c.status}" for c in decided)
        done = {"show": "shown", "approve": "approved", "reject": "rejected"}[args.action]
        raise UsageError(f"only pending corrections can be {done}: {listed}")
    items = list(found.values())
    _print_corrections(items)
    if args.action == "reject":
        count = corrections.reject(engine, ids, by=_who(args), reason=args.reason)
        print(f"rejected {count}")
        return OK
    changes = corrections.indicator_changes(engine, ids)
    print(f"indicator values that change: {len(changes)}")
    if len(changes):
        print(changes.head(args.show).to_string(index=False))
    if args.action == "approve":
        print(f"approved and applied {corrections.approve(engine, ids, by=_who(args))}")
    return OK


def cmd_validate(args) -> int:
    from obsx.intake.dropzone import safe_stem
    from obsx.intake.feedback import write_feedback
    from obsx.intake.uploads import dry_run
    from obsx.warehouse.reference import observatories

    registry = observatories()
    if args.observatory not in registry:
        raise UsageError(f"unknown observatory {args.observatory!r} (known: {', '.join(registry)})")
    path = Path(args.file)
    data = path.read_bytes()  # missing, a folder, unreadable: main() says so in one line
    observatory = registry[args.observatory]
    # Accepted rows are only counted (a dry run stores nothing): memory stays at one chunk.
    report = dry_run(data, path.name, observatory, args.dataset, args.lang)
    lang = report.lang
    out = Path(args.out) if args.out else Path.cwd() / f"{safe_stem(path.name)}_validacion"
    written = write_feedback(out, safe_stem(path.name), report)
    counts = report.counts
    print(
        f"{path.name}: {report.status} - {counts['rows_read']} rows read, "
        f"{counts['rows_accepted']} would be accepted, {counts['rows_rejected']} rejected, "
        f"{counts['warnings']} warnings"
    )
    for p in report.problems[: args.show]:
        where = "file" if p.row is None else f"row {p.row}"
        print(f"  {where} {p.column or ''}: {p.message(lang)}")
    if len(report.problems) > args.show:
        print(f"  ... {len(report.problems) - args.show} more")
    print("feedback: " + ", ".join(str(w) for w in written))
    return OK if report.status == "accepted" else ATTENTION


def _contracts(names: list[str] | None = None):
    from obsx.config import SCHEMAS_DIR
    from obsx.intake.contract import load_contract

    return [load_contract(n) for n in names or sorted(p.stem for p in SCHEMAS_DIR.glob("*.yaml"))]


def cmd_template(args) -> int:
    from obsx.publication.publishing import excel_template

    (contract,) = _contracts([args.dataset])
    stem = "plantilla" if args.lang == "es" else "template"
    out = Path(args.out or f"{stem}_{contract.dataset}.xlsx")
    out.write_bytes(excel_template(contract, args.lang))
    print(f"template for {contract.dataset}: {out}")
    return OK


def cmd_schema_docs(args) -> int:
    from obsx.publication.publishing import write_contract_docs

    for path in write_contract_docs(_contracts(), Path(args.out), args.lang):
        print(path)
    return OK


def _month(text: str) -> str:
    """``--period``: a month, YYYY-MM."""
    import re

    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month YYYY-MM (e.g. 2025-10)")
    return text


def cmd_report(args) -> int:
    from obsx.publication import bulletin

    root = _prepare_environment(args.data_dir)
    engine = _engine(args, fault=True)
    with engine.connect() as conn:
        latest = bulletin.last_month_with_data(conn)
        ended = bulletin.last_month_with_data(conn, until=bulletin.last_closed_month())
    if latest is None:
        raise Fault(
            "nothing to report yet: the warehouse holds no records (obsx run processes the"
            " inboxes first)"
        )
    period = args.period
    if not period:
        if ended is None:
            raise Fault(
                f"nothing to report yet: no month that has ended has records (the latest is"
                f" {latest}); obsx report --period {latest} builds it as it stands"
            )
        period = ended
        print(f"no --period: the last month that has data, {period}", flush=True)
    built = bulletin.build_report(engine, root, period, lang=args.lang)
    print(built.summary())
    return OK


def cmd_reconcile(args) -> int:
    from obsx.indicators import reconcile

    engine = _engine(args)
    try:
        concept = reconcile.get_concept(args.concept)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.action == "decide":
        if not (args.geo and args.period and args.source and args.reason):
            raise UsageError("reconcile decide needs GEO PERIOD --source S --reason TEXT")
        try:
            decision = reconcile.decide(
                engine, concept.code, args.geo, args.period, args.source, _who(args), args.reason
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        print(f"decision {decision}: {concept.code} {args.geo} {args.period} follows {args.source}")
        print("The indicators follow it at the next refresh (obsx run, or the nightly run).")
        return OK
    with engine.begin() as conn:
        reconcile.refresh_reconciliation(conn, _now())
        if args.action == "show":
            if not (args.geo and args.period):
                raise UsageError("reconcile show needs GEO PERIOD (e.g. 0805 2025-03)")
            try:
                print(reconcile.show_text(conn, concept, args.geo, args.period))
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
            return OK
        print(reconcile.list_text(conn, concept, args.status))
    return OK


def _now():
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def cmd_web(args) -> int:
    from web.server import serve

    serve(_prepare_environment(args.data_dir), args.host, args.port)
    return OK


def cmd_users(args) -> int:
    from obsx.warehouse import accounts
    from obsx.warehouse.contributors import read_contributors

    engine = _engine(args)
    try:
        if args.action == "list":
            for u in accounts.list_users(engine):
                state = "active" if u.active else "disabled"
                print(f"{u.username}\t{u.role}\t{','.join(u.contributors) or '-'}\t{state}")
            return OK
        if args.action == "demo":
            made = accounts.demo_accounts(engine, read_contributors())
            for name, role, password in made:
                print(f"{name}\t{role}\t{password}")
            if made:
                print("(passwords shown once; obsx users reset-password NAME gives a new one)")
            return OK
        if not args.username:
            raise UsageError(f"users {args.action} needs a user name")
        if args.action == "disable":
            accounts.set_active(engine, args.username, False)
            print(f"{args.username}: disabled")
            return OK
        password = accounts.new_password()
        if args.action == "add":
            accounts.add_user(
                engine,
                args.username,
                args.role,
                password,
                display_name=args.name,
                contributors=args.contributor,
                known_contributors=set(read_contributors()),
                email=args.email,
            )
        else:
            accounts.reset_password(engine, args.username, password)
        print(f"{args.username}: password {password} (shown once)")
    except accounts.AccountError as exc:
        raise UsageError(f"obsx users {args.action}: {exc}") from exc
    return OK


def cmd_notify(args) -> int:
    from obsx.intake.notify import send_pending, smtp_settings
    from obsx.warehouse.contributors import read_contributors
    from obsx.warehouse.deployment import current_deployment

    engine = _engine(args)
    smtp = smtp_settings()
    if smtp is None:
        raise UsageError("obsx notify: no SMTP server (OBSX_SMTP_HOST, docs/deploy.md)")
    names = {code: c["name"] for code, c in read_contributors().items()}
    sent = send_pending(engine, smtp, names, current_deployment().language)
    print(f"feedback notices sent: {sent}")
    return OK


def cmd_catalogue_docs(args) -> int:
    from obsx.indicators.catalogue import load_catalogue, write_catalogue_docs

    for path in write_catalogue_docs(load_catalogue(), Path(args.out)):
        print(path)
    return OK


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="obsx", description="Observatory Exchange")
    parser.add_argument("--data-dir", help="data root (default: $OBSX_DATA_DIR or ./var)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="process every finished file in the drop folders once")
    run.add_argument(
        "--settle-seconds",
        type=_seconds,
        default=5.0,
        help="ignore files modified more recently than this (still being written)",
    )
    run.add_argument(
        "--batch-size", type=_count(1), default=200, help="submissions per Dagster run"
    )
    run.set_defaults(func=cmd_run)

    seed = commands.add_parser(
        "seed", help="write the demo observatories' files into their inboxes"
    )
    seed.add_argument("--year", type=_year, default=2025)
    seed.set_defaults(func=cmd_seed)

    check = commands.add_parser(
        "validate", help="dry run: the feedback a file would get, touching nothing"
    )
    check.add_argument("file")
    check.add_argument("--observatory", required=True, help="observatory code, e.g. pa_colon")
    check.add_argument(
        "--dataset", type=_dataset, help="default: recognised from the file (profile, headers)"
    )
    check.add_argument("--lang", choices=["es", "en"], help="default: the profile's language")
    check.add_argument("--out", help="folder for the feedback files (default: ./<file>_validacion)")
    check.add_argument("--show", type=_count(0), default=20, help="problems to print")
    check.set_defaults(func=cmd_validate)

    template = commands.add_parser("template", help="an Excel template to fill in for a dataset")
    template.add_argument("dataset", type=_dataset)
    template.add_argument("--lang", choices=["es", "en"], default="es")
    template.add_argument("--out", help="default: ./plantilla_<dataset>.xlsx")
    template.set_defaults(func=cmd_template)

    docs = commands.add_parser("schema-docs", help="the data contract as Markdown and HTML pages")
    docs.add_argument("--lang", choices=["es", "en"], default="es")
    docs.add_argument("--out", default="docs/contract")
    docs.set_defaults(func=cmd_schema_docs)

    cat = commands.add_parser(
        "catalogue-docs", help="the indicator catalogue as Markdown for analysts (es and en)"
    )
    cat.add_argument("--out", default="docs")
    cat.set_defaults(func=cmd_catalogue_docs)

    ind = commands.add_parser(
        "indicators", help="published indicator values as CSV, now or as of a past moment"
    )
    ind.add_argument(
        "--as-of", type=_moment, help="ISO date or time (UTC unless an offset is given)"
    )
    ind.add_argument("--indicator", dest="indicator_code")
    ind.add_argument("--geo", dest="geo_code")
    ind.add_argument("--period", type=_period, help="YYYY, YYYY-Qn or YYYY-MM")
    ind.add_argument(
        "--unsuppressed",
        action="store_true",
        help="the computed values of withheld cells too (needs read access to indicator_value,"
        " which the analyst role does not have); default: what is published",
    )
    ind.set_defaults(func=cmd_indicators)

    why = commands.add_parser(
        "explain", help="the records, files, rows and population behind one indicator value"
    )
    why.add_argument("indicator", help="indicator code, e.g. SDG_16_1_1")
    why.add_argument("--geo", required=True, help="area code at any level")
    why.add_argument("--period", required=True, type=_period, help="YYYY, YYYY-Qn or YYYY-MM")
    why.add_argument(
        "--disaggregation",
        default="",
        type=_disaggregation,
        help="e.g. sex=F (default: the total)",
    )
    why.add_argument("--show", type=_count(0), default=30, help="records to print per side")
    why.add_argument("--csv", action="store_true", help="every record as CSV")
    why.set_defaults(func=cmd_explain)

    report = commands.add_parser(
        "report",
        help="the monthly bulletin (HTML, PDF), each contributor's pack and the open-data files",
    )
    report.add_argument(
        "--period", type=_month, help="YYYY-MM (default: the last month that has ended)"
    )
    report.add_argument("--lang", choices=["es", "en"], default="es")
    report.set_defaults(func=cmd_report)

    rec = commands.add_parser(
        "reconcile", help="sources counting the same victims, side by side; record decisions"
    )
    rec.add_argument("action", choices=["list", "show", "decide"])
    rec.add_argument("geo", nargs="?", help="unit code (show, decide)")
    rec.add_argument("period", nargs="?", help="YYYY-MM (show, decide)")
    rec.add_argument("--concept", help="default: the deployment's first")
    rec.add_argument(
        "--status",
        default="needs_decision",
        help="list: to_reconcile, reopened, decided, agree, … or all (default: needs_decision)",
    )
    rec.add_argument("--source", help="decide: the source the figure follows")
    rec.add_argument("--reason", help="decide: why (kept with the decision)")
    rec.add_argument("--by", help="decide: who decides (default: $USER)")
    rec.set_defaults(func=cmd_reconcile)

    inbox = commands.add_parser("inbox", help="files in the drop folders").add_subparsers(
        dest="action", required=True
    )
    released = inbox.add_parser(
        "release", help="a rejected or set-aside file back into its inbox, judged anew"
    )
    released.add_argument("submission", help="the submission id (or its first 8+ characters)")
    released.set_defaults(func=cmd_inbox)
    period = commands.add_parser("period", help="close or reopen published periods")
    period.add_argument("action", choices=["close", "reopen", "list"])
    period.add_argument(
        "period", nargs="?", type=_closable, help="YYYY-MM, or YYYY for its twelve months"
    )
    period.add_argument("--by", help="who closes it (default: $USER)")
    period.add_argument("--note")
    period.set_defaults(func=cmd_period)

    fixes = commands.add_parser("corrections", help="changes held for closed periods")
    fixes.add_argument("action", choices=["list", "show", "approve", "reject"])
    fixes.add_argument("ids", nargs="*", type=int)
    fixes.add_argument("--all", action="store_true", help="list decided ones too")
    fixes.add_argument("--by", help="who decides (default: $USER)")
    fixes.add_argument("--reason", help="why a correction is rejected")
    fixes.add_argument("--show", type=_count(0), default=40, help="indicator changes to print")
    fixes.set_defaults(func=cmd_corrections)

    web = commands.add_parser("web", help="the web portal and desk (uvicorn)")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=_count(1), default=8000)
    web.set_defaults(func=cmd_web)

    notify = commands.add_parser(
        "notify", help="e-mail contributors' staff whose feedback is ready (OBSX_SMTP_HOST)"
    )
    notify.set_defaults(func=cmd_notify)

    people = commands.add_parser("users", help="accounts of the web application")
    people.add_argument("action", choices=["add", "list", "reset-password", "disable", "demo"])
    people.add_argument("username", nargs="?")
    people.add_argument(
        "--role", choices=["contributor", "analyst", "admin"], default="contributor"
    )
    people.add_argument(
        "--contributor", action="append", default=[], help="add: contributor code (repeatable)"
    )
    people.add_argument("--name", help="add: the person's name as shown")
    people.add_argument("--email", help="add: where feedback notices go (contributor staff)")
    people.set_defaults(func=cmd_users)

    db = commands.add_parser("db", help="warehouse administration").add_subparsers(
        dest="db_command", required=True
    )
    db_upgrade = db.add_parser(
        "upgrade", help="migrate the warehouse ($WAREHOUSE_URL) to this release"
    )
    db_upgrade.set_defaults(func=cmd_db_upgrade)
    db_roles = db.add_parser("roles", help="create/grant the writer and analyst roles (PostgreSQL)")
    db_roles.add_argument("--writer", default="obsx_writer")
    db_roles.add_argument("--analyst", default="obsx_analyst")
    db_roles.add_argument(
        "--revoke-connect",
        action="append",
        default=[],
        metavar="DATABASE",
        help="also revoke CONNECT from PUBLIC on this other database of the server (repeatable;"
        " its owner and superusers keep it, every other role that relied on PUBLIC loses it)",
    )
    db_roles.set_defaults(func=cmd_db_roles)

    args = parser.parse_args(argv)
    if args.func is cmd_period and args.action != "list" and not args.period:
        parser.error("period close/reopen needs a period (YYYY-MM or YYYY)")
    if args.func is cmd_corrections and args.action != "list" and not args.ids:
        parser.error(f"corrections {args.action} needs correction ids")
    if args.func is cmd_corrections and args.action == "reject" and not args.reason:
        parser.error("corrections reject needs --reason")
    from obsx.sourceyaml import ReferenceDataError, SourceError

    try:
        return args.func(args)
    except UsageError as exc:
        return _usage(str(exc))
    except SourceError as exc:
        if Path(exc.path).name == "deployment.yaml" and not Path(exc.path).exists():
            from obsx.warehouse.deployment import deployment_name  # a setting, not a file, is wrong

            return _usage(f"OBSX_DEPLOYMENT={deployment_name()}: {str(exc).split(': ', 1)[-1]}")
        print(f"NEEDS ATTENTION - {exc}", file=sys.stderr)  # a deployment file to fix
        return ATTENTION
    except ReferenceDataError as exc:
        print(f"NEEDS ATTENTION - {exc}", file=sys.stderr)
        return ATTENTION
    except Fault as exc:
        print(f"NEEDS ATTENTION - {' '.join(str(exc).split())}", file=sys.stderr)
        return ATTENTION
    except OSError as exc:  # a path given that is missing, a folder, a file, unreadable…
        where = f": {exc.filename}" if exc.filename else ""
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError):  # mkdir of an --out folder where a file is
            reason = "a file is there, a folder is needed"
        message = f"{reason}{where}"
        if args.func in UNATTENDED:  # mid-run (a full disk…): a result that needs a person
            print(f"NEEDS ATTENTION - {message}", file=sys.stderr)
            return ATTENTION
        return _usage(message)
    except Exception as exc:  # a bug, broken instance storage…: the log has the traceback
        if args.func not in UNATTENDED:
            raise
        return _logged(args, exc)


def _logged(args, exc: Exception) -> int:
    """One ``NEEDS ATTENTION`` line naming the error and the log that holds its traceback
    (``<data root>/logs/obsx-errors.log``); if the log cannot be written, the traceback follows
    the line on stderr."""
    import datetime as dt
    import traceback

    first = (str(exc).strip().splitlines() or [""])[0]
    log = data_root(args.data_dir) / "logs" / "obsx-errors.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"--- {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC obsx {args.command}\n")
            out.write(traceback.format_exc())
    except OSError:
        print(f"NEEDS ATTENTION - {type(exc).__name__}: {first}", file=sys.stderr)
        traceback.print_exc()
        return ATTENTION
    print(f"NEEDS ATTENTION - {type(exc).__name__}: {first} (traceback in {log})", file=sys.stderr)
    return ATTENTION


def _usage(message: str) -> int:
    """One line on stderr, exit status 2."""
    line = " ".join(message.split())
    print(line if line.startswith("obsx") else f"obsx: {line}", file=sys.stderr)
    return USAGE


# The commands cron runs: every fault is a result that needs a person (exit 1), never a traceback.
UNATTENDED = (cmd_run, cmd_report)

if __name__ == "__main__":
    sys.exit(main())
