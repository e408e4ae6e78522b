"""How much one uploaded file may cost us: every limit on bad input, in one place.

A file over a limit is rejected with feedback naming the limit (problem code ``over-limit``), in
seconds and in bounded memory, and leaves the inbox; nothing else waits for it. Each limit can be
changed for an installation with an environment variable ``OBSX_LIMIT_<NAME>`` (for example
``OBSX_LIMIT_MAX_ROWS=2000000``), read when a file is processed, never at import.

The defaults fit every real export seen so far with a wide margin (the largest, the Guatemalan
police's 2023 register: 3.8 MB, 45,278 rows, 46 MB of sheet XML, compressed 12 times) and keep a
file's processing under about 2 GB of memory. Workbooks and SPSS files are read whole, so
``max_rows`` and ``max_cells`` bound them; a CSV is parsed, validated and staged ``chunk_cells``
cells at a time, so its memory does not grow with its length (a 2,000,000-row CSV peaked at about
850 MB through ``obsx run``): ``max_csv_rows``, ``max_file_bytes`` and ``max_seconds`` bound it.
"""

import contextlib
import contextvars
import os
import time
from dataclasses import dataclass, fields, replace

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    # Bytes of the file as uploaded (compressed size, for a workbook).
    max_file_bytes: int = 100 * MB
    # Workbooks (.xlsx are zip files): bytes once inflated, all parts together, and how many
    # times larger than compressed one part may be (a zip bomb inflates 1,000 times or more).
    max_uncompressed_bytes: int = 300 * MB
    max_compression_ratio: int = 200
    # The table: rows, columns, rows x columns (what a reader holds in memory: workbooks and
    # SPSS files are read whole), one cell's text. A CSV is read chunk by chunk, so its cells are
    # never all held: it has a row limit of its own, and no limit on cells.
    max_rows: int = 1_000_000
    max_csv_rows: int = 5_000_000
    max_columns: int = 1_000
    max_cells: int = 20_000_000
    max_cell_chars: int = 32_767  # Excel's own limit: no spreadsheet makes a longer cell
    # Reading and validating one file (checked as it goes; the work is bounded by the sizes above).
    max_seconds: float = 300.0
    # Feedback: problems listed one by one per problem code (the rest are counted), and the
    # size of the rejected-rows CSV sent back to be fixed.
    max_problems_per_code: int = 100
    max_rejected_csv_bytes: int = 2 * MB
    # A file is validated and staged for its merge this many cells at a time (rows of the
    # table, at least one): what bounds the memory a large file takes, whatever its length. A
    # file with months as columns makes twelve records of a row, so a chunk holds twelve times
    # its cells in records (a 30,000-row one: peak 1,094 MB at 1,000,000 cells, 766 MB at this).
    chunk_cells: int = 250_000
    # A file whose processing died this many times (a killed process, an unexpected error) is
    # rejected without being read again, so that it can never block anyone.
    max_failed_attempts: int = 2
    # A consumed upload is kept aside this long: a writer that was still writing into it (a
    # paused copy) is noticed and what it wrote becomes a new submission, never lost.
    hold_seconds: float = 24 * 3600.0


# What each limit is called in feedback, in the observatory's words (Spanish, English).
WORDS: dict[str, tuple[str, str]] = {
    "max_file_bytes": ("tamaño del archivo", "file size"),
    "max_uncompressed_bytes": ("tamaño del libro descomprimido", "uncompressed workbook size"),
    "max_compression_ratio": ("tasa de compresión", "compression ratio"),
    "max_rows": ("número de filas", "number of rows"),
    "max_csv_rows": ("número de filas de un CSV", "number of rows of a CSV"),
    "max_columns": ("número de columnas", "number of columns"),
    "max_cells": ("número de celdas (filas × columnas)", "number of cells (rows × columns)"),
    "max_cell_chars": ("caracteres en una celda", "characters in one cell"),
    "max_seconds": ("tiempo de lectura (segundos)", "reading time (seconds)"),
}


def current_limits(environ=None) -> Limits:
    """The defaults, overridden by ``OBSX_LIMIT_<NAME>`` variables where set.

    Raises ValueError naming the variable when one is not a positive number."""
    environ = os.environ if environ is None else environ
    changes = {}
    for f in fields(Limits):
        name = f"OBSX_LIMIT_{f.name.upper()}"
        text = environ.get(name)
        if text is None or not text.strip():
            continue
        kind = float if f.type in (float, "float") else int
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a {kind.__name__}") from None
        if value <= 0:
            raise ValueError(f"{name}={text!r} must be positive")
        changes[f.name] = value
    return replace(Limits(), **changes)


class LimitExceeded(Exception):
    """A file goes over one limit: which, the limit, and what was found (when known)."""

    def __init__(self, name: str, limit, found=None):
        super().__init__(f"{name}: {found} over the limit {limit}")
        self.name, self.limit, self.found = name, limit, found

    def problem(self):
        from obsx.intake.problems import problem

        es, en = WORDS.get(self.name, (self.name, self.name))
        found = "" if self.found is None else _number(self.found)
        return problem(
            "over-limit",
            limit_name_es=es,
            limit_name_en=en,
            limit=_number(self.limit),
            found_es=f" (tiene {found})" if found else "",
            found_en=f" (it has {found})" if found else "",
        )


def _number(value) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


class Deadline:
    """The time one file may take, checked by the readers as they go. Time spent paused (its
    rows being written to the warehouse, waiting for the warehouse) does not count."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._paused_at: float | None = None

    def check(self) -> None:
        if self._paused_at is None and time.monotonic() > self.end:
            raise LimitExceeded("max_seconds", self.seconds)

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = time.monotonic()

    def resume(self) -> None:
        if self._paused_at is not None:
            self.end += time.monotonic() - self._paused_at
            self._paused_at = None

    @contextlib.contextmanager
    def paused(self):
        self.pause()
        try:
            yield
        finally:
            self.resume()


_ACTIVE: contextvars.ContextVar[tuple[Limits, Deadline] | None] = contextvars.ContextVar(
    "obsx_limits", default=None
)


@contextlib.contextmanager
def bounded(limits: Limits | None = None, deadline: Deadline | None = None):
    """Within this block, readers enforce ``limits`` (default: current_limits()) and a clock
    (``deadline``, to go on with one started before; default: a new one)."""
    limits = limits or current_limits()
    token = _ACTIVE.set((limits, deadline or Deadline(limits.max_seconds)))
    try:
        yield limits
    finally:
        _ACTIVE.reset(token)


def active() -> tuple[Limits, Deadline]:
    """The limits and clock of the file being processed (outside ``bounded``: the defaults and
    a fresh clock, so that a reader called alone is bounded too)."""
    found = _ACTIVE.get()
    if found is None:
        limits = current_limits()
        return limits, Deadline(limits.max_seconds)
    return found
