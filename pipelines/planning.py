"""Turn what lies in the inboxes into partition keys and run requests.

Shared by the sensor and by ``obsx run`` so that both start the same runs of the same job; and
whether the indicators are stale (records merged after their last refresh: a run interrupted
between its merges and its indicators). Importing this module imports neither Dagster nor the
data stack: an idle ``obsx run`` asks it before either is loaded.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from obsx.intake.dropzone import InboxFile

if TYPE_CHECKING:
    import dagster as dg

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass
class Plan:
    new_keys: list[str] = field(default_factory=list)  # to register, then run as one range
    again_keys: list[str] = field(default_factory=list)  # registered before: the same bytes again
    order: list[str] = field(default_factory=list)  # the registered keys, in insertion order

    def batches(self) -> list[list[str]]:
        """The keys of each run: the new keys as one range; keys registered before (a file sent
        again, or whose run was killed) as ranges of neighbours in the registered order, so that
        a demo seeded twice is one run, not one run per file."""
        again = contiguous_blocks(self.again_keys, self.order)
        return ([self.new_keys] if self.new_keys else []) + again

    def run_requests(self) -> "list[dg.RunRequest]":
        import dagster as dg

        requests = []
        for batch in self.batches():
            if batch is self.new_keys:
                digest = hashlib.sha256("\n".join(batch).encode()).hexdigest()[:32]
                run_key = f"new:{digest}"
            else:
                run_key = None  # the same bytes may come again later: a run each time
            if len(batch) == 1 and run_key is None:
                requests.append(dg.RunRequest(run_key=None, partition_key=batch[0]))
            else:
                requests.append(
                    dg.RunRequest(run_key=run_key, tags=range_tags(batch[0], batch[-1]))
                )
        return requests


def range_tags(first: str, last: str) -> dict[str, str]:
    return {RANGE_START: first, RANGE_END: last}


def plan(files: list[InboxFile], registered: set[str] | list[str]) -> Plan:
    """New keys in upload order, and keys already registered whose file is in the inbox again
    (``registered`` as a list: in the instance's insertion order, which groups those)."""
    result = Plan(order=list(registered) if isinstance(registered, list) else [])
    registered = set(registered)
    for f in files:
        target = result.again_keys if f.key in registered else result.new_keys
        if f.key not in target:
            target.append(f.key)
    return result


def contiguous_blocks(keys: Iterable[str], order: list[str]) -> list[list[str]]:
    """``keys`` as runs of neighbours in ``order`` (the instance's insertion order of partition
    keys), each one partition range; a key missing from ``order`` is a block of its own."""
    position = {k: i for i, k in enumerate(order)}
    blocks: list[list[str]] = []
    last = None
    for key in sorted(keys, key=lambda k: position.get(k, len(order))):
        here = position.get(key)
        if blocks and here is not None and last is not None and here == last + 1:
            blocks[-1].append(key)
        else:
            blocks.append([key])
        last = here
    return blocks


# What the indicators are computed from, and when each row changed: a change later than the
# last indicator refresh that did not reach the indicators (obsx.indicators.engine.years_to_refresh
# recomputes exactly these). Plain SQL over a few indexed columns: milliseconds.
_CHANGES = [
    ("submission", ("merged_at",), "submissions merged"),
    ("population_revision", ("loaded_at", "replaced_at"), "population rows loaded or replaced"),
]
# A record version added (a new record, a change, a withdrawal). Its valid_to need not be read: a
# version is closed only by the one that replaces it, in the same transaction, and valid_from is
# indexed while valid_to is not (with it, an idle run scanned every revision: 0.5 s at 1,000,000).
_REVISION_CHANGES = ("valid_from",)


def stale_indicators(conn: sa.Connection) -> str | None:
    """What changed after the last indicator refresh, in words (None: nothing, or no warehouse
    yet): e.g. "2 submissions merged, 14 incidents revisions after the last refresh
    (2026-11-26 06:07 UTC)"."""
    tables = set(sa.inspect(conn).get_table_names())
    if not {"submission", "indicator_refresh"} <= tables:
        return None
    last = "(SELECT max(refreshed_at) FROM indicator_refresh)"
    since = f"COALESCE({last}, '1900-01-01')"
    changed = []
    revisions = sorted(t for t in tables if t.endswith("_revision") and t != "population_revision")
    for table, columns, words in [
        *[c for c in _CHANGES if c[0] in tables],
        *[(t, _REVISION_CHANGES, t.removesuffix("_revision") + " revisions") for t in revisions],
    ]:
        where = " OR ".join(f"{c} > {since}" for c in columns)
        n = conn.scalar(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"))
        changed += [f"{n} {words}"] if n else []
    if not changed:
        return None
    when = conn.scalar(sa.text(f"SELECT {last}"))
    if when is None:
        return ", ".join(changed) + " and the indicators never computed"
    when = when[:16] if isinstance(when, str) else f"{when:%Y-%m-%d %H:%M}"  # SQLite: text
    return ", ".join(changed) + f" after the last indicator refresh ({when} UTC)"


def refresh_stale(engine: sa.Engine, stale: str) -> str:
    """Recompute what ``stale`` describes; the one line that says so."""
    from obsx.indicators.engine import refresh_indicators

    done = refresh_indicators(engine)
    years = "every year" if done["years"] is None else "years " + ", ".join(done["years"])
    return (
        f"Indicators were stale ({stale}): recomputed {years}, "
        f"{done['values']:,} values in {done['seconds']:.1f} s"
    )
