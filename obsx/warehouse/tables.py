"""The national warehouse: tables derived from the contracts, and the per-submission merge.

One SQLAlchemy code path for SQLite (embedded default) and PostgreSQL (production).
"""

import datetime as dt
import functools
import hashlib
from typing import NamedTuple

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from obsx.intake.contract import (
    ACTION_FIELD,
    DELETE,
    PANDAS_DTYPES,
    Contract,
    load_contract,
    observatory_datasets,
)

SQL_TYPES = {
    "string": lambda f: sa.String(f.constraints.get("max_length", 64)),
    "integer": lambda f: sa.Integer(),
    # Double precision: survey weights need more than two decimals, budgets no fixed ceiling.
    "number": lambda f: sa.Float(),
    "date": lambda f: sa.Date(),
    "time": lambda f: sa.String(5),
}

metadata = sa.MetaData()

observatory = sa.Table(
    "observatory",
    metadata,
    sa.Column("observatory_code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("country_code", sa.String(2), nullable=False),
    sa.Column("opened_on", sa.Date),
    sa.Column("closed_on", sa.Date, comment="left the exchange on this day"),
    sa.Column(
        "kind",
        sa.String(20),
        nullable=False,
        server_default="observatory",
        comment="observatory, or institution (police, forensic medicine…: any unit)",
    ),
)

observatory_unit = sa.Table(
    "observatory_unit",
    metadata,
    sa.Column("observatory_code", sa.String(64), primary_key=True),
    sa.Column("geo_code", sa.String(16), primary_key=True),
)

geography = sa.Table(
    "geography",
    metadata,
    sa.Column("geo_code", sa.String(16), primary_key=True),
    sa.Column("valid_from", sa.Date, primary_key=True),
    sa.Column("valid_to", sa.Date),
    sa.Column("geo_level", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("parent_code", sa.String(16)),
    sa.Column("source", sa.String(200), nullable=False),
)

# For every area, the area it belongs to at its own level and each level above, and the months in
# which that holds: indicators roll each period up on the hierarchy valid then. Units of the
# lowest level roll up from there; an area above them rolls up from its own level (records a
# source placed at that level count there and above, never below: obsx/warehouse/places.py).
geography_rollup = sa.Table(
    "geography_rollup",
    metadata,
    sa.Column("unit_code", sa.String(16), primary_key=True),
    sa.Column("geo_level", sa.String(16), primary_key=True),
    sa.Column("geo_code", sa.String(16), nullable=False, index=True),
    sa.Column("from_month", sa.String(7), primary_key=True, comment="YYYY-MM, inclusive"),
    sa.Column("to_month", sa.String(7), comment="YYYY-MM, exclusive; NULL: still valid"),
)

# Files that declare they cover all their contributor's units for their months: a unit they do
# not list is a true zero, not "not reported". geo_level: a file whose records are placed at a
# level above the units covers the areas of that level made only of the contributor's units.
declared_coverage = sa.Table(
    "declared_coverage",
    metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True),
    sa.Column("period_month", sa.String(7), primary_key=True),
    sa.Column("observatory_code", sa.String(64), nullable=False),
    sa.Column("dataset", sa.String(64), nullable=False, index=True),
    sa.Column("geo_level", sa.String(16), comment="records placed at this level; NULL: units"),
)

# What each accepted file supplied (obsx/intake/submission.py): the record fields it filled (a column
# absent or all blank is not supplied) and, of the catalogue's scope fields, the codes it covers
# (null: all). A unit and month counts for an indicator only where a file covering it supplied
# what the indicator reads; elsewhere its cell is "not available", never 0.
submission_scope = sa.Table(
    "submission_scope",
    metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("supplied", sa.Text, nullable=False, comment="JSON list of record fields"),
    sa.Column("covers", sa.Text, nullable=False, comment="JSON {field: [codes]}; absent: all"),
)

population = sa.Table(
    "population",
    metadata,
    sa.Column("geo_code", sa.String(16), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("sex", sa.String(2), primary_key=True),
    sa.Column("age_group", sa.String(16), primary_key=True),
    sa.Column("population", sa.Integer, nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
)

# Every figure ever loaded, with when it was loaded and replaced: indicators as of a past moment
# divide by the population known then.
population_revision = sa.Table(
    "population_revision",
    metadata,
    sa.Column("geo_code", sa.String(16), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("sex", sa.String(2), primary_key=True),
    sa.Column("age_group", sa.String(16), primary_key=True),
    sa.Column("loaded_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("replaced_at", sa.DateTime(timezone=True), index=True),
    sa.Column("population", sa.Integer, nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
)

submission = sa.Table(
    "submission",
    metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True, comment="SHA-256 of the bytes"),
    sa.Column("partition_key", sa.String(100), nullable=False, unique=True),
    sa.Column("observatory_code", sa.String(64), nullable=False, index=True),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("file_name", sa.String(255), nullable=False),
    sa.Column("archive_path", sa.String(500), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("file_format", sa.String(16)),
    sa.Column("encoding", sa.String(16)),
    sa.Column("delimiter", sa.String(4)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("rows_read", sa.Integer, nullable=False, default=0),
    sa.Column("rows_accepted", sa.Integer, nullable=False, default=0),
    sa.Column("rows_rejected", sa.Integer, nullable=False, default=0),
    sa.Column("rows_inserted", sa.Integer, nullable=False, default=0),
    sa.Column("rows_updated", sa.Integer, nullable=False, default=0),
    sa.Column("rows_unchanged", sa.Integer, nullable=False, default=0),
    sa.Column("rows_held", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("rows_ignored", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("warnings", sa.Integer, nullable=False, default=0),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("merged_at", sa.DateTime(timezone=True)),
    sa.Column("run_id", sa.String(64)),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("quarantine_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("submission_id", sa.String(64), nullable=False, index=True),
    sa.Column(
        "source_row", sa.Integer, comment="row as the spreadsheet shows it; NULL: whole file"
    ),
    sa.Column("field", sa.String(200)),
    sa.Column("rule", sa.String(40), nullable=False),
    sa.Column("value", sa.Text),
    sa.Column("message_es", sa.Text, nullable=False),
    sa.Column("message_en", sa.Text, nullable=False),
)

period_lock = sa.Table(
    "period_lock",
    metadata,
    sa.Column("period_month", sa.String(7), primary_key=True, comment="YYYY-MM"),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_by", sa.String(100), nullable=False),
    sa.Column("note", sa.Text),
)

CORRECTION_STATES = "pending, approved, rejected, or superseded by a later correction"

indicator = sa.Table(
    "indicator",
    metadata,
    sa.Column("indicator_code", sa.String(40), primary_key=True),
    sa.Column("name_es", sa.String(200), nullable=False),
    sa.Column("name_en", sa.String(200), nullable=False),
    sa.Column("numerator", sa.Text, nullable=False),
    sa.Column("denominator", sa.Text),
    sa.Column("multiplier", sa.Integer),
    sa.Column("unit", sa.String(40), nullable=False),
    sa.Column("standard", sa.String(200)),
    # From indicators/catalogue.yaml, for analysts' SQL (the catalogue is the definition).
    sa.Column("kind", sa.String(16)),
    sa.Column("definition_es", sa.Text),
    sa.Column("definition_en", sa.Text),
    sa.Column("disaggregations", sa.String(200)),
    sa.Column("periods", sa.String(40)),
    sa.Column("min_events", sa.Integer),
    sa.Column("suppress_below", sa.Integer),
)

indicator_value = sa.Table(
    "indicator_value",
    metadata,
    sa.Column("indicator_code", sa.String(40), primary_key=True),
    sa.Column("geo_level", sa.String(16), primary_key=True),
    sa.Column("geo_code", sa.String(16), primary_key=True),
    sa.Column("period_type", sa.String(8), primary_key=True),
    sa.Column("period", sa.String(10), primary_key=True),
    sa.Column("disaggregation", sa.String(200), primary_key=True),
    sa.Column("numerator", sa.Float, comment="null: not available (see quality_flag)"),
    sa.Column("denominator", sa.Float),
    sa.Column("value", sa.Float),
    sa.Column("unit", sa.String(40), nullable=False),
    sa.Column(
        "conf_status",
        sa.String(1),
        nullable=False,
        server_default="F",
        comment="SDMX CONF_STATUS: F free, C withheld (small count), D withheld (would reveal one)",
    ),
    sa.Column(
        "quality_flag",
        sa.String(16),
        nullable=False,
        server_default="",
        comment="unstable (rate on few events); survey: caution (CV > 15%), unreliable (CV > 30%)",
    ),
    sa.Column(
        "coverage",
        sa.Float,
        comment="% of the area's population-months in the period covered by units whose sources"
        " supplied what the indicator reads (100: all units, every month)",
    ),
    sa.Column(
        "population_year", sa.Integer, comment="rates: the year of the population figures used"
    ),
    sa.Column("standard_error", sa.Float, comment="surveys: design-based (Taylor)"),
    sa.Column("ci_low", sa.Float, comment="surveys: 95% confidence interval"),
    sa.Column("ci_high", sa.Float),
    sa.Column("cv", sa.Float, comment="surveys: coefficient of variation (SE / estimate)"),
    sa.Column("change_previous", sa.Float, comment="% change against the previous period"),
    sa.Column("change_year_ago", sa.Float, comment="% change against a year before"),
    sa.Column(
        "reconciliation",
        sa.String(16),
        nullable=False,
        server_default="",
        comment="sources reconciled (obsx/indicators/reconcile.py): agreed (a decision inside), pending",
    ),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)

# The grant fund's cooperation contracts (reference data) and what each has executed per quarter.
cooperation_contract = sa.Table(
    "cooperation_contract",
    metadata,
    sa.Column("contract_code", sa.String(64), primary_key=True),
    sa.Column("geo_code", sa.String(16), nullable=False, index=True),
    sa.Column("programme", sa.String(200), nullable=False),
    sa.Column("amount", sa.Float, nullable=False),
    sa.Column("starts_on", sa.Date, nullable=False),
    sa.Column("ends_on", sa.Date, nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
)
contract_execution = sa.Table(
    "contract_execution",
    metadata,
    sa.Column("contract_code", sa.String(64), primary_key=True),
    sa.Column("period", sa.String(10), primary_key=True, comment="YYYY-Qn"),
    sa.Column("geo_code", sa.String(16), nullable=False),
    sa.Column("activities", sa.Integer, nullable=False),
    sa.Column("executed", sa.Integer, nullable=False),
    sa.Column("budget_planned", sa.Float),
    sa.Column("budget_executed", sa.Float),
    sa.Column("participants", sa.Float),
    sa.Column("participants_female", sa.Float),
    sa.Column("participants_male", sa.Float),
    sa.Column("participants_youth", sa.Float),
    sa.Column(
        "municipality_reported",
        sa.Boolean,
        nullable=False,
        comment="the contract's unit sent prevention activities of the quarter",
    ),
    sa.Column("flag", sa.String(16), nullable=False, comment="no_report when it sent nothing"),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)

# What each contributor owed under the deployment's reporting calendar, and when it arrived.
reporting_status = sa.Table(
    "reporting_status",
    metadata,
    sa.Column("observatory_code", sa.String(64), primary_key=True),
    sa.Column("dataset", sa.String(64), primary_key=True),
    sa.Column("period_type", sa.String(8), nullable=False),
    sa.Column("period", sa.String(10), primary_key=True),
    sa.Column("due_on", sa.Date, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), comment="first accepted file of it"),
    sa.Column("status", sa.String(10), nullable=False, comment="on_time, late, missing, not_due"),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)

# Each refresh of the indicators: which years it recomputed and what it read, so the next one
# recomputes only the years whose records changed since (all of them when the catalogue or the
# reference data changed).
indicator_refresh = sa.Table(
    "indicator_refresh",
    metadata,
    sa.Column("refreshed_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("years", sa.Text, comment="comma-separated; NULL: every year"),
    sa.Column("fingerprint", sa.String(64), nullable=False, comment="catalogue and reference"),
    sa.Column("values_written", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
)


# The last reference file loaded per dataset, by a digest of what its load read (the file, its
# contract and profile, the deployment, the loading code): an unchanged file is not read again.
reference_load = sa.Table(
    "reference_load",
    metadata,
    sa.Column("dataset", sa.String(40), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, comment="SHA-256 of what the load read"),
    sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
)


# What flowed back: each bulletin and municipal pack built, and every figure it printed, so the
# next bulletin can say which published figures were revised since, and why.
publication = sa.Table(
    "publication",
    metadata,
    sa.Column("publication_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False, comment="bulletin or pack"),
    sa.Column("period", sa.String(7), nullable=False, comment="the month it reports, YYYY-MM"),
    sa.Column("lang", sa.String(2), nullable=False),
    sa.Column("observatory_code", sa.String(64), comment="packs: whose pack"),
    sa.Column("path", sa.String(500), nullable=False, comment="the HTML file, under the data root"),
    sa.Column("built_at", sa.DateTime(timezone=True), nullable=False, index=True),
)
publication_figure = sa.Table(
    "publication_figure",
    metadata,
    sa.Column(
        "publication_id",
        sa.Integer,
        sa.ForeignKey("publication.publication_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("indicator_code", sa.String(40), primary_key=True),
    sa.Column("geo_level", sa.String(16), primary_key=True),
    sa.Column("geo_code", sa.String(16), primary_key=True),
    sa.Column("period_type", sa.String(8), primary_key=True),
    sa.Column("period", sa.String(10), primary_key=True),
    sa.Column("disaggregation", sa.String(200), primary_key=True),
    sa.Column("value", sa.Float, comment="as printed; NULL when withheld"),
    sa.Column("conf_status", sa.String(1), nullable=False),
)


# Sources counting the same thing, side by side (obsx/indicators/reconcile.py): per concept, unit and month,
# each source's count, the status, the source indicators follow; how their records matched; and
# the decisions of the reconciliation table, never deleted.
reconciliation_item = sa.Table(
    "reconciliation_item",
    metadata,
    sa.Column("concept", sa.String(64), primary_key=True),
    sa.Column("geo_code", sa.String(16), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("difference", sa.Float, nullable=False, comment="highest minus lowest count"),
    sa.Column(
        "status",
        sa.String(16),
        nullable=False,
        comment="agree, within_tolerance, to_reconcile, decided, reopened, single_source",
    ),
    sa.Column("chosen_source", sa.String(64), comment="the source indicators count"),
    sa.Column("decision_id", sa.Integer),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)
reconciliation_count = sa.Table(
    "reconciliation_count",
    metadata,
    sa.Column("concept", sa.String(64), primary_key=True),
    sa.Column("geo_code", sa.String(16), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("count", sa.Float, nullable=False),
)
reconciliation_match = sa.Table(
    "reconciliation_match",
    metadata,
    sa.Column("concept", sa.String(64), primary_key=True),
    sa.Column("geo_code", sa.String(16), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("source_a", sa.String(64), primary_key=True),
    sa.Column("source_b", sa.String(64), primary_key=True),
    sa.Column("both", sa.Integer, nullable=False, comment="victims found by both"),
    sa.Column("only_a", sa.Integer, nullable=False),
    sa.Column("only_b", sa.Integer, nullable=False),
    sa.Column("recoded_a", sa.Integer, nullable=False, comment="found by b in a neighbouring unit"),
    sa.Column("recoded_b", sa.Integer, nullable=False),
    sa.Column("ambiguous_a", sa.Integer, nullable=False, comment="several candidates: not guessed"),
    sa.Column("ambiguous_b", sa.Integer, nullable=False),
    sa.Column("aggregate", sa.Integer, nullable=False, comment="counts of several: not matchable"),
)
reconciliation_decision = sa.Table(
    "reconciliation_decision",
    metadata,
    sa.Column("decision_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("concept", sa.String(64), nullable=False),
    sa.Column("geo_code", sa.String(16), nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("source", sa.String(64), nullable=False, comment="the source the figure follows"),
    sa.Column("figure", sa.Float, nullable=False, comment="the agreed figure"),
    sa.Column(
        "counts", sa.Text, nullable=False, comment="every source's count when decided (JSON)"
    ),
    sa.Column("decided_by", sa.String(100), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), comment="reopened or superseded"),
    sa.Column("closed_reason", sa.Text),
    sa.Index("ix_reconciliation_decision_item", "concept", "geo_code", "period"),
)

# People who use the web application (web/), and what they did. Passwords are Argon2 hashes.
web_user = sa.Table(
    "web_user",
    metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254), comment="where feedback notices go (optional)"),
    sa.Column("role", sa.String(20), nullable=False, comment="contributor, analyst or admin"),
    sa.Column("password_hash", sa.String(255), nullable=False, comment="Argon2id"),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("failed_logins", sa.Integer, nullable=False, comment="wrong passwords in a row"),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("password_set_at", sa.DateTime(timezone=True), nullable=False),
)
web_user_contributor = sa.Table(
    "web_user_contributor",
    metadata,
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("web_user.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("observatory_code", sa.String(64), primary_key=True),
)
feedback_notice = sa.Table(
    "feedback_notice",
    metadata,
    sa.Column("submission_id", sa.String(64), primary_key=True),
    sa.Column("notified_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recipients", sa.Integer, nullable=False, comment="e-mails sent"),
)
audit_event = sa.Table(
    "audit_event",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("username", sa.String(64), comment="who (as typed, for a failed sign-in)"),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("target", sa.String(300), comment="what: a submission, a period, an item"),
    sa.Column("detail", sa.Text),
    sa.Column("address", sa.String(64), comment="the client's IP address"),
    sa.Index("ix_audit_event_at", "at"),
)


def _contract_columns(contract: Contract, keyed: bool = True) -> list[sa.Column]:
    return [
        sa.Column("observatory_code", sa.String(64), primary_key=keyed, nullable=False),
        *[
            sa.Column(
                f.name,
                SQL_TYPES[f.type](f),
                primary_key=keyed and f.name in contract.primary_key,
                nullable=not (f.required or f.name in contract.primary_key),
                comment=f.title["en"],
            )
            for f in contract.fields
        ],
    ]


class RecordTables(NamedTuple):
    current: sa.Table
    revision: sa.Table
    manifest: sa.Table
    pending: sa.Table


@functools.cache
def record_tables(dataset: str) -> RecordTables:
    """The tables of a dataset, derived from its contract.

    - ``<dataset>``: the current version of every record, plus period columns for indicators;
    - ``<dataset>_revision``: every version ever merged, with the submission that made it;
    - ``<dataset>_submitted``: which records each submission merged (for audit and checks);
    - ``<dataset>_pending``: changes to closed periods, held until approved or rejected.
    """
    contract = load_contract(dataset)
    current = sa.Table(
        dataset,
        metadata,
        *_contract_columns(contract),
        sa.Column("period_month", sa.String(7), nullable=False, index=True),
        sa.Column("period_year", sa.String(4), nullable=False, index=True),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("submission_id", sa.String(64), nullable=False, index=True),
        # Finds records of the same observatory and date (look-alikes of new records).
        sa.Index(f"ix_{dataset}_observatory_date", "observatory_code", contract.period_field),
    )
    revision = sa.Table(
        f"{dataset}_revision",
        metadata,
        *_contract_columns(contract),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("period_month", sa.String(7), nullable=False),
        sa.Column("period_year", sa.String(4), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("submission_id", sa.String(64), nullable=False, index=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("valid_to", sa.DateTime(timezone=True)),
    )
    key = [c for c in contract.primary_key if c != "observatory_code"]
    manifest = sa.Table(
        f"{dataset}_submitted",
        metadata,
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("observatory_code", sa.String(64), nullable=False),
        *[
            sa.Column(k, SQL_TYPES[contract.field(k).type](contract.field(k)), primary_key=True)
            for k in key
        ],
        sa.Column("source_row", sa.Integer, nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
    )
    pending = sa.Table(
        f"{dataset}_pending",
        metadata,
        sa.Column("correction_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("submission_id", sa.String(64), nullable=False, index=True),
        *_contract_columns(contract, keyed=False),
        sa.Column("period_month", sa.String(7), nullable=False),
        sa.Column("period_year", sa.String(4), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("source_row", sa.Integer, nullable=False),
        sa.Column("status", sa.String(12), nullable=False, index=True, comment=CORRECTION_STATES),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.String(100)),
        sa.Column("reason", sa.Text),
    )
    return RecordTables(current, revision, manifest, pending)


# Datasets contributors send, from their contracts in schemas/ (kind: observatory); each gets
# its tables from its contract (see record_tables).
DATASETS = observatory_datasets()
for _dataset in DATASETS:
    record_tables(_dataset)


@functools.cache
def get_engine(url: str) -> sa.Engine:
    """One engine per URL and process; SQLite gets WAL and a busy timeout for concurrent runs."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):
            # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that a
            # merge (DDL for its staging table included) is one atomic transaction.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # analysts read while a run writes
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # IMMEDIATE takes the write lock up front: two runs queue on the busy timeout instead
            # of failing when a read lock cannot be upgraded.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def dialect_insert(engine_or_conn):
    return {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[engine_or_conn.dialect.name]


def row_hashes(frame: pd.DataFrame, columns: list[str], defaults: dict | None = None) -> pd.Series:
    """A stable SHA-256 of each row's contract values: equal content, equal hash.

    A column listed in ``defaults`` counts only where it differs from its default (None: where
    it has a value), so adding an optional field to a contract leaves the hashes of existing
    records unchanged (Contract.hash_defaults).
    """
    defaults = defaults or {}
    plain = [c for c in columns if c not in defaults]
    text = frame[plain].astype("str").fillna("\x00")
    joined = text.iloc[:, 0].str.cat([text[c] for c in plain[1:]], sep="\x1f")
    for column, default in defaults.items():
        value = frame[column].astype("str")
        counted = frame[column].notna() if default is None else value.ne(default).fillna(False)
        joined = joined + ("\x1f" + column + "=" + value).where(counted, "")
    sha256 = hashlib.sha256
    hashes = [sha256(s.encode("utf-8")).hexdigest() for s in joined.tolist()]
    return pd.Series(hashes, index=frame.index, dtype="str")


def _column_values(frame: pd.DataFrame, table: sa.Table, dialect) -> list[list]:
    """Each column of ``frame`` as Python values the driver takes (None for missing, dates as
    dates), through the column type's own bind processing (SQLite stores dates as text)."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_datetime64_any_dtype(series):
            series = series.dt.date
        values = series.astype(object).where(series.notna(), None).tolist()
        sql_type = table.c[name].type
        process = sql_type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            values = [process(v) for v in values]
        columns.append(values)
    return columns


def _bulk_load(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """Insert a frame's rows as tuples, never one dict per row: COPY on PostgreSQL (about 20x
    faster than INSERT), executemany elsewhere."""
    rows = list(zip(*_column_values(frame, table, conn.dialect), strict=True))
    if not rows:
        return
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in frame.columns)
    if conn.dialect.name != "postgresql":
        marks = ", ".join("?" * len(frame.columns))
        conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})", rows)
        return
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def typed_frame(contract: Contract, records: list[dict], index: list[int] | None) -> pd.DataFrame:
    """Records from the warehouse as the typed frame validation produces (same content hash)."""
    frame = pd.DataFrame(records, columns=list(contract.record_fields))
    return pd.DataFrame(
        {f.name: frame[f.name].astype(PANDAS_DTYPES[f.type]).values for f in contract.fields},
        index=None if index is None else pd.Index(index, name="source_row"),
    )


def _lookalikes(
    conn: sa.Connection, stage: sa.Table, current: sa.Table, contract, observatory_code: str
) -> dict:
    """Staged records not held yet that are identical in every field but the id (and fields
    with a default) to a record already held: source row -> the id it may duplicate.

    One query inside the database, on the new rows only (equal dates use the period index).
    Two victims of one event can look alike, so this is a warning, never a rejection."""
    (key,) = [k for k in contract.primary_key if k != "observatory_code"]
    content = [f for f in contract.record_fields if f != key and f not in contract.defaults]
    s, c = stage.c, current.c
    # Nothing held by the observatory in the file's dates (a new month, the usual case): one
    # probe of the index instead of one per staged row (2.5 s per 100 files on PostgreSQL).
    when = contract.period_field
    first, last, undated = conn.execute(
        sa.select(
            sa.func.min(s[when]), sa.func.max(s[when]), sa.func.count() - sa.func.count(s[when])
        )
    ).one()
    if not undated:  # every staged row has a date (there is at least one row)
        any_held = sa.select(c.observatory_code).where(
            c.observatory_code == observatory_code, c[when].between(first, last)
        )
        if conn.execute(any_held.limit(1)).first() is None:
            return {}
    h = current.alias("held").c
    held = sa.select(sa.literal(1)).where(
        h.observatory_code == s.observatory_code, h[key] == s[key]
    )
    query = (
        sa.select(s.source_row, sa.func.min(c[key]))
        .select_from(
            stage.join(
                current,
                sa.and_(
                    c.observatory_code == s.observatory_code,
                    c[key] != s[key],
                    *[c[f].is_not_distinct_from(s[f]) for f in content],
                ),
            )
        )
        .where(~held.exists())
        .group_by(s.source_row)
    )
    return {int(row): other for row, other in conn.execute(query)}


def _withdrawals(
    conn: sa.Connection, dataset: str, observatory_code: str, accepted: pd.DataFrame
) -> tuple[pd.Series, dict]:
    """The ids of the rows asking to withdraw a record, and the records held for them."""
    deleting = accepted[ACTION_FIELD].eq(DELETE).fillna(False)
    contract = load_contract(dataset)
    (key,) = [k for k in contract.primary_key if k != "observatory_code"]
    wanted = accepted.loc[deleting, key]
    if wanted.empty:
        return wanted, {}
    current = record_tables(dataset).current
    held = {
        r[key]: dict(r)
        for r in conn.execute(
            sa.select(*[current.c[f] for f in contract.record_fields]).where(
                current.c.observatory_code == observatory_code,
                current.c[key].in_(wanted.tolist()),
            )
        ).mappings()
    }
    return wanted, held


def _withdrawals_as_versions(
    conn: sa.Connection, dataset: str, observatory_code: str, accepted: pd.DataFrame
) -> tuple[pd.DataFrame, list[int]]:
    """Turn each DELETE row into a full version: the record as held, marked withdrawn.

    Nothing is erased: the withdrawal becomes a revision like any change, indicators leave
    withdrawn records out, and re-sending the record restores it. Rows for records the
    warehouse does not hold are dropped; returns their source rows.
    """
    wanted, held = _withdrawals(conn, dataset, observatory_code, accepted)
    if wanted.empty:
        return accepted, []
    found = [(int(row), k) for row, k in zip(wanted.index, wanted, strict=True) if k in held]
    unknown = [int(row) for row, k in zip(wanted.index, wanted, strict=True) if k not in held]
    withdrawn = typed_frame(
        load_contract(dataset),
        [held[k] | {ACTION_FIELD: DELETE} for _, k in found],
        [row for row, _ in found],
    )
    others = accepted.drop(index=wanted.index)
    return pd.concat([others, withdrawn]).sort_index(kind="stable"), unknown


def _hold_closed_period_changes(conn, stage, current, pending, key, submission_id, now) -> int:
    """Move new or changed staged rows that touch a closed month into ``pending``; return how many.

    Any earlier pending correction of a record this submission sends is superseded.
    """
    s, c, p = stage.c, current.c, pending.c
    closed = sa.select(period_lock.c.period_month)
    touches_closed = sa.and_(
        sa.or_(c.row_hash.is_(None), c.row_hash != s.row_hash),
        sa.or_(s.period_month.in_(closed), c.period_month.in_(closed)),
    )
    joined = stage.outerjoin(current, sa.and_(*[s[k] == c[k] for k in key]))
    # The observatory's latest word on a record replaces any correction still waiting for it,
    # whether the new row is held again, merges (month reopened) or equals what is held.
    same_record = sa.tuple_(*[p[k] for k in key]).in_(sa.select(*[s[k] for k in key]))
    conn.execute(
        pending.update()
        .where(p.status == "pending", same_record)
        .values(status="superseded", decided_at=now, reason=f"superseded by {submission_id}")
    )
    if conn.scalar(sa.select(sa.func.count()).select_from(period_lock)) == 0:
        return 0  # no month is closed: nothing to hold
    held = conn.scalar(
        sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((touches_closed, 1), else_=0)), 0)
        ).select_from(joined)
    )
    if not held:
        return 0
    columns = [col.name for col in stage.columns]
    conn.execute(
        pending.insert().from_select(
            [*columns, "submission_id", "status", "created_at"],
            sa.select(
                *[s[col] for col in columns],
                sa.literal(submission_id),
                sa.literal("pending"),
                sa.literal(now, sa.DateTime(timezone=True)),
            )
            .select_from(joined)
            .where(touches_closed),
        )
    )
    mine = sa.select(sa.literal(1)).where(
        p.submission_id == submission_id, p.status == "pending", *[p[k] == s[k] for k in key]
    )
    conn.execute(stage.delete().where(mine.exists()))
    return held


@functools.cache
def stage_table(dataset: str) -> sa.Table:
    """The temporary table a merge stages its rows in. One object per dataset, so that the
    statements built on it are compiled once per process, not once per file."""
    current = record_tables(dataset).current
    return sa.Table(
        f"stage_{dataset}",
        sa.MetaData(),
        *[
            sa.Column(c.name, c.type, primary_key=c.primary_key)
            for c in current.columns
            if c.name not in ("revision", "submission_id")
        ],
        sa.Column("source_row", sa.Integer),
        prefixes=["TEMPORARY"],
    )


class Stage:
    """A submission's accepted rows, staged chunk by chunk in a temporary table of the caller's
    transaction (so that a large file is never held whole), then merged in one set-based pass
    (merge_staged). Withdrawals become versions as they are staged."""

    def __init__(self, conn: sa.Connection, dataset: str, observatory_code: str):
        self.conn, self.dataset, self.observatory_code = conn, dataset, observatory_code
        self.contract = load_contract(dataset)
        self.table = stage_table(dataset)
        self.rows = 0
        self.unknown_withdrawals: list[int] = []  # source rows withdrawing a record not held
        self.table.drop(conn, checkfirst=True)
        self.table.create(conn)

    def add(self, accepted: pd.DataFrame) -> None:
        """Stage accepted rows (typed, index: source row)."""
        contract = self.contract
        if contract.has_deletions:
            accepted, unknown = _withdrawals_as_versions(
                self.conn, self.dataset, self.observatory_code, accepted
            )
            self.unknown_withdrawals += unknown
        if accepted.empty:
            return
        fields = list(contract.record_fields)
        period = pd.to_datetime(accepted[contract.period_field])
        rows = accepted[fields].assign(
            observatory_code=self.observatory_code,
            row_hash=row_hashes(accepted, fields, defaults=contract.hash_defaults),
            period_month=period.dt.strftime("%Y-%m"),
            period_year=period.dt.strftime("%Y"),
            source_row=accepted.index.astype(int),
        )
        _bulk_load(self.conn, self.table, rows)
        self.rows += len(rows)

    def drop(self) -> None:
        self.table.drop(self.conn, checkfirst=True)


def merge_records(
    conn: sa.Connection,
    dataset: str,
    observatory_code: str,
    submission_id: str,
    accepted: pd.DataFrame,
    now: dt.datetime,
    respect_closed_periods: bool = True,
    lookalikes: dict[int, str] | None = None,
) -> dict[str, int]:
    """Upsert accepted rows by natural key inside the caller's transaction (see merge_staged)."""
    stage = Stage(conn, dataset, observatory_code)
    stage.add(accepted)
    return merge_staged(stage, submission_id, now, respect_closed_periods, lookalikes)


def merge_staged(
    stage: Stage,
    submission_id: str,
    now: dt.datetime,
    respect_closed_periods: bool = True,
    lookalikes: dict[int, str] | None = None,
) -> dict[str, int]:
    """Upsert the staged rows by natural key inside the stage's transaction, then drop the stage.

    A changed record gets a new revision (the previous one is closed at ``now``); an identical one
    is left alone, so merging the same rows twice changes nothing. A new or changed record that
    touches a closed period (its new or its old month) is held as a pending correction instead,
    unless ``respect_closed_periods`` is false (an approval). Returns the counts; new records
    that look like held ones are added to ``lookalikes`` when given (source row -> held id).
    """
    conn, dataset, contract = stage.conn, stage.dataset, stage.contract
    current, revision, manifest, pending = record_tables(dataset)
    fields = list(contract.record_fields)
    key = list(contract.primary_key)
    ignored, staged_rows = len(stage.unknown_withdrawals), stage.rows
    observatory_code = stage.observatory_code
    stage = stage.table  # from here on, the table the rows are in

    if lookalikes is not None and staged_rows:
        lookalikes.update(_lookalikes(conn, stage, current, contract, observatory_code))
    s, c = stage.c, current.c
    joined = stage.outerjoin(current, sa.and_(*[s[k] == c[k] for k in key]))
    changed = sa.and_(c.row_hash.is_not(None), c.row_hash != s.row_hash)
    held = 0
    if respect_closed_periods:
        held = _hold_closed_period_changes(conn, stage, current, pending, key, submission_id, now)
    # One pass over the staged rows, each looked up by key (a WHERE on the held table's columns
    # let SQLite turn the join around and scan every record held: quadratic over files).
    inserted, updated = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((c.row_hash.is_(None), 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((changed, 1), else_=0)), 0),
        ).select_from(joined)
    ).one()
    counts = {"rows_inserted": int(inserted), "rows_updated": int(updated), "rows_held": held}
    counts["rows_ignored"] = ignored
    counts["rows_unchanged"] = staged_rows - held - counts["rows_inserted"] - counts["rows_updated"]

    # Close the revision being superseded, then add the new one, then move the current row.
    r = revision.c
    superseded = (
        sa.select(sa.literal(1))
        .select_from(stage.join(current, sa.and_(*[s[k] == c[k] for k in key])))
        .where(*[s[k] == r[k] for k in key], c.row_hash != s.row_hash, c.revision == r.revision)
    )
    if counts["rows_updated"]:  # a file of new records closes nothing: skip the scan
        staged = sa.tuple_(*[r[k] for k in key]).in_(sa.select(*[s[k] for k in key]))
        conn.execute(
            revision.update()
            .where(staged, r.valid_to.is_(None), superseded.exists())  # staged: uses the key
            .values(valid_to=now)
        )
    conn.execute(
        revision.insert().from_select(
            [
                "observatory_code",
                *fields,
                "period_month",
                "period_year",
                "revision",
                "row_hash",
                "submission_id",
                "valid_from",
            ],
            sa.select(
                s.observatory_code,
                *[s[f] for f in fields],
                s.period_month,
                s.period_year,
                sa.func.coalesce(c.revision, 0) + 1,
                s.row_hash,
                sa.literal(submission_id),
                sa.literal(now, sa.DateTime(timezone=True)),
            )
            .select_from(joined)
            .where(sa.or_(c.row_hash.is_(None), changed)),
        )
    )
    upsert_columns = ["observatory_code", *fields, "period_month", "period_year", "row_hash"]
    insert = dialect_insert(conn)(current).from_select(
        [*upsert_columns, "revision", "submission_id"],
        sa.select(
            *[s[col] for col in upsert_columns], sa.literal(1), sa.literal(submission_id)
        ).where(
            sa.true()  # SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT
        ),
    )
    updates = {col: insert.excluded[col] for col in upsert_columns if col not in key}
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=key,
            set_={**updates, "revision": current.c.revision + 1, "submission_id": submission_id},
            where=current.c.row_hash != insert.excluded.row_hash,
        )
    )

    listed = sa.select(sa.literal(1)).where(*[s[k] == manifest.c[k] for k in key])
    conn.execute(
        manifest.delete().where(manifest.c.submission_id == submission_id, listed.exists())
    )
    manifest_columns = [col.name for col in manifest.columns if col.name != "submission_id"]
    conn.execute(
        manifest.insert().from_select(
            [*manifest_columns, "submission_id"],
            sa.select(*[s[col] for col in manifest_columns], sa.literal(submission_id)),
        )
    )
    stage.drop(conn)
    return counts
