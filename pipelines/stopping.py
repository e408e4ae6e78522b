"""``obsx run`` stops cleanly on SIGINT or SIGTERM (#23, item 3).

The first signal asks to stop: the file being processed finishes (its merge and its feedback),
no further file or batch starts, the indicators are left for the next run to recompute (records
merged after the last refresh are found and refreshed by it), the summary is printed and the
command exits 128 + the signal's number. A second signal stops at once: the current file's
transaction rolls back and the file stays in its inbox.

Dagster's in-process execution installs its own handlers while a run executes (a signal then
interrupts whatever step is running). Every signal is also written to a wake-up pipe
(``signal.set_wakeup_fd``), whoever's handler runs, so a stop asked for at any moment is seen;
inside the step that processes files, ``deferred()`` puts this module's handler back so that
the current file is finished instead of interrupted.
"""

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
_pipe: list[int] = []  # read end of the wake-up pipe, once installed


def _handler(signum: int, frame) -> None:
    _received.append(signum)
    if len(_received) > 1 or len(set(_received)) > 1:
        raise KeyboardInterrupt  # a second signal: now


def _drain() -> None:
    if not _pipe:
        return
    try:
        data = os.read(_pipe[0], 512)
    except BlockingIOError:
        return
    except OSError:
        return
    # The handler has already recorded what it saw; the pipe adds what Dagster's handlers saw.
    for signum in data:
        if signum in SIGNALS and signum not in _received:
            _received.append(signum)


def install() -> None:
    """``obsx run``: the first SIGINT or SIGTERM asks to stop (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _received.clear()
    if not _pipe:
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        _pipe.append(read)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    for signum in SIGNALS:
        signal.signal(signum, _handler)


def requested() -> int | None:
    """The signal that asked to stop, if one did."""
    _drain()
    return _received[0] if _received else None


def name(signum: int) -> str:
    return signal.Signals(signum).name


@contextmanager
def deferred() -> Iterator[None]:
    """Inside a step (where Dagster's handler would interrupt it), a signal only asks to stop:
    the caller checks ``requested()`` between files. Outside ``obsx run`` (the daemon, tests)
    nothing was installed and nothing changes."""
    if not _pipe or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
