"""``obsx``: the command engineers and observatories use.

``obsx run`` processes everything waiting in the drop folders once, materializing the same Dagster
assets the sensor would, recorded in the Dagster instance under the data root.
"""

import argparse
import os
import sys
from pathlib import Path

from obsx.config import data_root

ATTENTION, OK = 1, 0


def _prepare_environment(data_dir: str | None) -> Path:
    """Point resources and the Dagster instance at the data root before Dagster is imported."""
    root = data_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    os.environ["OBSX_DATA_DIR"] = str(root)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(root / "dagster")))
    home.mkdir(parents=True, exist_ok=True)
    instance_config = home / "dagster.yaml"
    if not instance_config.exists():  # a local instance: SQLite storage, no telemetry
        instance_config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return root


def cmd_seed(args) -> int:
    from obsx.seed import seed_demo

    root = _prepare_environment(args.data_dir)
    written = seed_demo(root, year=args.year)
    print(f"Seeded {len(written)} files into {root / 'dropzone'}")
    return OK


def cmd_run(args) -> int:
    root = _prepare_environment(args.data_dir)
    from pipelines.run_once import run_once

    report = run_once(root, settle_seconds=args.settle_seconds, batch_size=args.batch_size)
    print(report.summary())
    return OK if report.all_processed else ATTENTION


def _engine(args):
    from obsx.config import warehouse_url
    from obsx.warehouse import get_engine

    root = _prepare_environment(args.data_dir)
    return get_engine(warehouse_url(root=root))


def cmd_db_upgrade(args) -> int:
    from obsx.migrations import current_revision, upgrade

    engine = _engine(args)
    before = current_revision(engine)
    upgrade(engine)
    print(
        f"warehouse {engine.url.render_as_string()}: {before or 'empty'} -> {current_revision(engine)}"
    )
    return OK


def cmd_db_roles(args) -> int:
    from obsx.access import grant_roles
    from obsx.migrations import upgrade

    engine = _engine(args)
    upgrade(engine)
    grant_roles(engine, writer=args.writer, analyst=args.analyst)
    print(
        f"roles ready: {args.writer} (pipeline, read-write), {args.analyst} (analytics, read-only)"
    )
    return OK


def cmd_indicators(args) -> int:
    import datetime as dt

    import pandas as pd
    import sqlalchemy as sa

    from obsx.indicators import indicator_values_as_of
    from obsx.migrations import ensure_current
    from obsx.warehouse import indicator_value

    engine = _engine(args)
    ensure_current(str(engine.url), engine)
    if args.as_of:
        as_of = dt.datetime.fromisoformat(args.as_of)
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=dt.UTC)
        frame = indicator_values_as_of(engine, as_of)
    else:
        with engine.connect() as conn:
            frame = pd.read_sql(sa.select(indicator_value), conn)
    for column in ("indicator_code", "geo_code", "period"):
        wanted = getattr(args, column)
        if wanted:
            frame = frame[frame[column] == wanted]
    frame.to_csv(sys.stdout, index=False)
    return OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="obsx", description="Observatory Exchange")
    parser.add_argument("--data-dir", help="data root (default: $OBSX_DATA_DIR or ./var)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="process every finished file in the drop folders once")
    run.add_argument(
        "--settle-seconds",
        type=float,
        default=5.0,
        help="ignore files modified more recently than this (still being written)",
    )
    run.add_argument("--batch-size", type=int, default=200, help="submissions per Dagster run")
    run.set_defaults(func=cmd_run)

    seed = commands.add_parser(
        "seed", help="write the demo observatories' files into their inboxes"
    )
    seed.add_argument("--year", type=int, default=2025)
    seed.set_defaults(func=cmd_seed)

    ind = commands.add_parser(
        "indicators", help="indicator values as CSV, now or as of a past moment"
    )
    ind.add_argument("--as-of", help="ISO date or time (UTC unless an offset is given)")
    ind.add_argument("--indicator", dest="indicator_code")
    ind.add_argument("--geo", dest="geo_code")
    ind.add_argument("--period")
    ind.set_defaults(func=cmd_indicators)

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
    db_roles.set_defaults(func=cmd_db_roles)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
