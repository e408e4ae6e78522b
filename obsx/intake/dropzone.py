"""Drop folders: finding finished uploads, naming submissions, archiving their bytes.

Layout under the data root::

    dropzone/<observatory>/inbox/      what the observatory uploads (and nothing else reads)
    dropzone/<observatory>/feedback/   what we tell it back
    dropzone/<observatory>/reportes/   its monthly pack: its indicators, reporting record
    archive/<observatory>/<sha256>.<ext>  the immutable copy of every submission
    held/<observatory>/                consumed uploads kept aside a while (see consume)
    attempts/<observatory>/<sha256>    processing attempts of a file that has not finished yet

Upload protocol (docs/bad-input.md): write ``name.part`` (or any partial suffix below), rename
to ``name`` when complete; partial names are never picked up. A plain copy is protected too: a
file is picked up only once it has not changed for the settle time, and it leaves the inbox only
if its bytes are still those processed; a consumed file is held aside, and if a writer goes on
writing into it, what it holds then comes back to the inbox as a new submission.
"""

import errno
import hashlib
import json
import os
import re
import stat as stat_module
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from obsx.intake.limits import current_limits

KEY_SEPARATOR = "__"
HASH_CHARS_IN_KEY = 16
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".swp", ".lock")
PARTIAL_PREFIXES = (".", "~")
ARCHIVE_SUFFIXES = {".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".xls", ".sav"}


def partition_key(observatory_code: str, sha256: str) -> str:
    """The submission's partition key: safe alphabet, bounded length, content-derived."""
    return f"{observatory_code}{KEY_SEPARATOR}{sha256[:HASH_CHARS_IN_KEY]}"


def parse_partition_key(key: str) -> tuple[str, str]:
    observatory_code, _, sha_prefix = key.rpartition(KEY_SEPARATOR)
    if not observatory_code or not re.fullmatch(r"[0-9a-f]{16}", sha_prefix):
        raise ValueError(f"not a submission key: {key!r}")
    return observatory_code, sha_prefix


def display_name(path: Path, limit: int = 200) -> str:
    """A file name safe to show and store: no control characters, undecodable bytes replaced."""
    name = os.fsencode(path.name).decode("utf-8", errors="replace")
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return (name or "(sin nombre)")[:limit]


def safe_stem(name: str, limit: int = 80) -> str:
    """A file-name stem made only of ASCII letters, digits, '-', '_' and '.'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(ascii_name).stem).strip("._")
    return stem[:limit] or "archivo"


def fingerprint(path: Path, size: int, mtime_ns: int) -> str:
    """What identifies an upload on disk, cheaply: name, size and modification time."""
    return f"{path}|{size}|{mtime_ns}"


def open_regular(path: Path) -> int:
    """A descriptor on ``path`` only if it is a regular file: a link is never followed (even
    one put in place of a file after it was listed), a pipe never waited on.

    Raises OSError (ELOOP for a link, EINVAL for anything not a regular file)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    if not stat_module.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Upload:
    """A submission's bytes as read (None when the file is over ``max_file_bytes``: then only
    its hash was computed, as a stream), and where they came from."""

    data: bytes | None
    sha256: str
    size: int
    file_name: str
    path: Path | None  # its inbox path; None when read from the archive
    mtime_ns: int = 0


def read_upload(path: Path, max_bytes: int | None = None) -> Upload:
    """Read an inbox file once, hashing it as it is read; a file larger than ``max_bytes`` is
    hashed but not kept in memory. Size and time are those of the bytes read.

    Raises OSError for what is not a regular file, FileChangedError if it changed meanwhile."""
    digest, chunks, size = hashlib.sha256(), [], 0
    with os.fdopen(open_regular(path), "rb") as fh:
        before = os.fstat(fh.fileno())
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
            if chunks is not None and max_bytes is not None and size > max_bytes:
                chunks = None  # too large to read: hashed only
            elif chunks is not None:
                chunks.append(block)
        after = os.fstat(fh.fileno())
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise FileChangedError(path)
    data = None if chunks is None else b"".join(chunks)
    return Upload(data, digest.hexdigest(), size, display_name(path), path, after.st_mtime_ns)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


OUR_PARTIAL = re.compile(r"^\..+\.(\d+)\.part$")  # what _write_atomically and archive write
STALE_PARTIAL_SECONDS = 3600


def clean_partials(folder: Path, now: float | None = None) -> list[Path]:
    """Remove our own half-written files (``.<name>.<pid>.part``) left by a process that died:
    its pid is gone, or the file is an hour old (another machine's). Returns what went."""
    now = time.time() if now is None else now
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = OUR_PARTIAL.match(path.name)
        if not match or path.is_symlink() or not path.is_file():
            continue
        pid = int(match.group(1))
        try:
            old = now - path.stat().st_mtime > STALE_PARTIAL_SECONDS
        except FileNotFoundError:
            continue
        if old or (pid != os.getpid() and not _pid_alive(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(json.dumps(document), encoding="utf-8")
    os.replace(partial, path)


class FileChangedError(OSError):
    """A file changed while it was being read: someone is still writing it."""

    def __init__(self, path: Path):
        super().__init__(errno.EAGAIN, "changed while being read", str(path))


@dataclass(frozen=True)
class InboxFile:
    observatory_code: str
    path: Path
    size: int
    mtime_ns: int
    sha256: str

    @property
    def key(self) -> str:
        return partition_key(self.observatory_code, self.sha256)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.path, self.size, self.mtime_ns)


def _same_bytes(path: Path, size: int, mtime_ns: int, sha256: str) -> bool:
    """Whether ``path`` still holds the bytes processed: same size, time and SHA-256."""
    try:
        st = path.lstat()
        if not stat_module.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            return False
        return file_sha256(path) == sha256
    except OSError:
        return False


class Dropzone:
    def __init__(self, root: Path, observatory_codes: Iterable[str]):
        self.root = Path(root)
        self.observatory_codes = sorted(observatory_codes)
        # fingerprint -> SHA-256, so that a run handling many keys reads each file once
        self.hashes: dict[str, str] = {}

    def sha256(self, path: Path, stat: os.stat_result) -> str:
        seen = fingerprint(path, stat.st_size, stat.st_mtime_ns)
        if seen not in self.hashes:
            self.hashes[seen] = file_sha256(path)
        return self.hashes[seen]

    def inbox(self, code: str) -> Path:
        return self.root / "dropzone" / code / "inbox"

    def feedback_dir(self, code: str) -> Path:
        return self.root / "dropzone" / code / "feedback"

    def reports_dir(self, code: str) -> Path:
        """What flows back every month: the contributor's own pack (obsx report)."""
        return self.root / "dropzone" / code / "reportes"

    def archive_dir(self, code: str) -> Path:
        return self.root / "archive" / code

    def held_dir(self, code: str) -> Path:
        return self.root / "held" / code

    def attempts_path(self, code: str, sha256: str) -> Path:
        return self.root / "attempts" / code / sha256

    def ensure_folders(self) -> None:
        """Create every contributor's folders; clear what a crashed process left half-written;
        give back to the inboxes held uploads that were written to after being consumed."""
        for code in self.observatory_codes:
            for folder in (self.inbox(code), self.feedback_dir(code), self.archive_dir(code)):
                folder.mkdir(parents=True, exist_ok=True)
            for folder in (self.feedback_dir(code), self.archive_dir(code), self.held_dir(code)):
                clean_partials(folder)
        self.check_held()

    # -- attempts: a file that keeps killing its run is set aside ------------------------------

    def failed_attempts(self, code: str, sha256: str) -> int:
        """Attempts at a file that started and never finished (a killed process, an error)."""
        try:
            return int(json.loads(self.attempts_path(code, sha256).read_text())["started"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return 0

    def start_attempt(self, code: str, sha256: str) -> int:
        """Count one more attempt at a file; returns how many failed before this one."""
        failed = self.failed_attempts(code, sha256)
        _write_json(self.attempts_path(code, sha256), {"started": failed + 1, "at": time.time()})
        return failed

    def end_attempt(self, code: str, sha256: str, failed_before: int | None = None) -> None:
        """The attempt finished (``failed_before`` None), or failed for a reason that is not the
        file's (a full disk, a lost database): then it does not count against it."""
        path = self.attempts_path(code, sha256)
        if failed_before:
            _write_json(path, {"started": failed_before, "at": time.time()})
        else:
            path.unlink(missing_ok=True)

    # -- leaving the inbox: only the bytes processed, never a file still being written --------

    def consume(self, code: str, path: Path, size: int, mtime_ns: int, sha256: str) -> Path | None:
        """Take a processed file out of the inbox, if its bytes are still those processed.

        The file is moved aside (``held/``) and checked there; a file that changed meanwhile is
        given back to the inbox at once, as a new submission. Held files are checked again by
        every later run (``check_held``) for ``hold_seconds``: a writer that still had the file
        open and went on writing (a paused copy) is noticed then. Returns the inbox path a file
        was given back under, else None."""
        held = self.held_dir(code)
        held.mkdir(parents=True, exist_ok=True)
        target = held / f"{sha256[:16]}.{time.time_ns()}.{os.getpid()}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None  # consumed by another run meanwhile
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # The inbox is on another filesystem: check, then delete (no hold).
            if _same_bytes(path, size, mtime_ns, sha256):
                path.unlink(missing_ok=True)
            return None
        _write_json(
            target.with_name(target.name + ".json"),
            {"name": path.name, "size": size, "mtime_ns": mtime_ns, "sha256": sha256},
        )
        if not _same_bytes(target, size, mtime_ns, sha256):
            return self._give_back(code, target)
        return None

    def check_held(self, now: float | None = None) -> list[Path]:
        """Give back to the inbox held files written to since they were consumed; forget those
        held longer than ``hold_seconds`` unchanged. Returns the inbox paths given back."""
        now = time.time() if now is None else now
        hold = current_limits().hold_seconds
        given_back = []
        for code in self.observatory_codes:
            folder = self.held_dir(code)
            if not folder.is_dir():
                continue
            for meta in sorted(folder.glob("*.json")):
                target = meta.with_name(meta.name.removesuffix(".json"))
                try:
                    info = json.loads(meta.read_text(encoding="utf-8"))
                    st = target.lstat()
                except FileNotFoundError:
                    meta.unlink(missing_ok=True)
                    continue
                except ValueError:
                    continue  # being written
                if (st.st_size, st.st_mtime_ns) != (info["size"], info["mtime_ns"]):
                    given_back.append(self._give_back(code, target))
                elif now - meta.stat().st_mtime > hold:
                    target.unlink(missing_ok=True)
                    meta.unlink(missing_ok=True)
        return given_back

    def _give_back(self, code: str, target: Path) -> Path:
        """Put a held file back in the inbox under its name (or ``name (2).ext`` if taken)."""
        meta = target.with_name(target.name + ".json")
        try:
            name = json.loads(meta.read_text(encoding="utf-8"))["name"]
        except (FileNotFoundError, ValueError, KeyError):
            name = f"devuelto_{target.name}.csv"
        stem, suffix = os.path.splitext(name)
        inbox = self.inbox(code)
        for n in range(1, 1000):
            dest = inbox / (name if n == 1 else f"{stem} ({n}){suffix}")
            try:
                os.link(target, dest)  # never over an existing file
            except FileExistsError:
                continue
            target.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return dest
        raise FileExistsError(f"no free name in {inbox} for {name}")

    def unknown_folders(self) -> list[str]:
        """Folders in the drop zone that belong to no registered observatory."""
        base = self.root / "dropzone"
        if not base.is_dir():
            return []
        return sorted(
            p.name for p in base.iterdir() if p.is_dir() and p.name not in self.observatory_codes
        )

    def never_processed(self, now: float | None = None) -> list[str]:
        """What lies in an inbox but will never be processed: links (never followed), folders,
        anything else that is not a regular file, names hidden with a leading dot
        (``..%2Fetc%2Fpasswd.csv``) or a ``~``, and uploads in progress (``name.part``) or
        editors' lock files (``~$name``) left for longer than ``hold_seconds``. Said in the run
        summary, so nobody waits for them; everything else gets feedback."""
        now = time.time() if now is None else now
        hold = current_limits().hold_seconds
        found = []
        for code in self.observatory_codes:
            inbox = self.inbox(code)
            if not inbox.is_dir():
                continue
            for path in sorted(inbox.iterdir()):
                name = path.name
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                in_progress = name.lower().endswith(PARTIAL_SUFFIXES) or name.startswith("~$")
                if stat_module.S_ISLNK(st.st_mode):
                    kind = "link"
                elif stat_module.S_ISDIR(st.st_mode):
                    kind = "folder"
                elif not stat_module.S_ISREG(st.st_mode):
                    kind = "not a regular file"
                elif in_progress:  # untouched since (ctime: a copy keeping an old mtime is new)
                    hours = (now - max(st.st_mtime, st.st_ctime)) / 3600
                    kind = f"unfinished upload, {hours:.0f} h old" if hours * 3600 > hold else None
                elif name.startswith(PARTIAL_PREFIXES):
                    kind = "hidden name"
                else:
                    kind = None
                if kind:
                    found.append(f"{code}/{display_name(path)} ({kind})")
        return found

    def finished_files(self, settle_seconds: float, now: float | None = None, codes=None):
        """Yield ``(observatory, path, stat)`` for uploads that look complete.

        Skipped: hidden and temporary names, links, folders, and files modified less than
        ``settle_seconds`` ago (still being written).
        """
        now = time.time() if now is None else now
        for code in codes or self.observatory_codes:
            inbox = self.inbox(code)
            if not inbox.is_dir():
                continue
            for path in sorted(inbox.iterdir()):
                name = path.name
                if name.startswith(PARTIAL_PREFIXES) or name.lower().endswith(PARTIAL_SUFFIXES):
                    continue
                if path.is_symlink() or not path.is_file():
                    continue
                stat = path.stat()
                # A clock ahead of ours (mtime in the future) delays a file, never loses it.
                if settle_seconds > 0 and now - stat.st_mtime < settle_seconds:
                    continue
                yield code, path, stat

    def scan(
        self,
        settle_seconds: float,
        limit: int,
        now: float | None = None,
        skip: frozenset[str] | set[str] = frozenset(),
    ) -> list[InboxFile]:
        """Finished uploads, oldest first, at most ``limit``, leaving out fingerprints in ``skip``.

        Skipping before the limit matters: files already handed to a run must not take the places
        of newer ones.
        """
        candidates = sorted(
            (
                (code, path, stat)
                for code, path, stat in self.finished_files(settle_seconds, now)
                if fingerprint(path, stat.st_size, stat.st_mtime_ns) not in skip
            ),
            key=lambda c: (c[2].st_mtime_ns, str(c[1])),
        )
        found = []
        for code, path, stat in candidates[:limit]:
            try:
                sha = self.sha256(path, stat)
            except FileNotFoundError:  # consumed by a run between listing and reading
                continue
            found.append(InboxFile(code, path, stat.st_size, stat.st_mtime_ns, sha))
        return found

    def inbox_copies(self, code: str, sha256: str) -> list[tuple[Path, os.stat_result]]:
        """Every finished file in an observatory's inbox with exactly these bytes, as hashed
        (its size and time then)."""
        found = []
        for _, path, stat in self.finished_files(settle_seconds=0, codes=[code]):
            try:
                if self.sha256(path, stat) == sha256:
                    found.append((path, stat))
            except OSError:  # gone, replaced by a link, or being rewritten
                continue
        return found

    def consume_copies(self, code: str, upload: "Upload") -> list[Path]:
        """Take out of the inbox the upload processed and its identical copies, each only if
        unchanged; returns the paths given back to the inbox as new submissions."""
        given_back = []
        copies = self.inbox_copies(code, upload.sha256)
        if upload.path is not None and upload.path not in {p for p, _ in copies}:
            try:  # changed since it was read: consume() gives it straight back
                st = upload.path.lstat()
                if stat_module.S_ISREG(st.st_mode):
                    copies.append((upload.path, st))
            except FileNotFoundError:
                pass
        for path, st in copies:
            size, mtime = st.st_size, st.st_mtime_ns
            if path == upload.path:
                size, mtime = upload.size, upload.mtime_ns  # as read, not as seen later
            back = self.consume(code, path, size, mtime, upload.sha256)
            if back is not None:
                given_back.append(back)
        return given_back

    def archived(self, code: str, sha_prefix: str) -> Path | None:
        folder = self.archive_dir(code)
        if not folder.is_dir():
            return None
        return next(iter(sorted(folder.glob(f"{sha_prefix}*"))), None)

    def archive(self, code: str, sha256: str, data: bytes, original_name: str) -> Path:
        """Keep an immutable copy named by its hash; writing the same bytes twice is a no-op."""
        suffix = Path(original_name).suffix.lower()
        target = (
            self.archive_dir(code) / f"{sha256}{suffix if suffix in ARCHIVE_SUFFIXES else '.bin'}"
        )
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.chmod(partial, 0o444)
        os.replace(partial, target)
        return target

    def find_upload(self, key: str, max_bytes: int | None = None) -> Upload:
        """A submission's bytes from the inbox (links never followed, a file changed since it
        was hashed passed over), else from the archive. See read_upload for ``max_bytes``.

        Raises FileNotFoundError when neither the inbox nor the archive holds it.
        """
        code, sha_prefix = parse_partition_key(key)
        for _, path, stat in self.finished_files(settle_seconds=0, codes=[code]):
            try:
                if not self.sha256(path, stat).startswith(sha_prefix):
                    continue
                upload = read_upload(path, max_bytes)
            except OSError:  # gone, replaced by a link, or being written: not these bytes
                continue
            if upload.sha256.startswith(sha_prefix):
                return upload
        archived = self.archived(code, sha_prefix)
        if archived is None:
            raise FileNotFoundError(f"submission {key}: not in the inbox nor in the archive")
        data = archived.read_bytes()
        return Upload(data, hashlib.sha256(data).hexdigest(), len(data), archived.name, None)

    def find_key(self, key: str) -> tuple[bytes, str, Path | None]:
        """The bytes of a submission, its file name, and its inbox path (None if only archived).

        Raises FileNotFoundError when neither the inbox nor the archive holds it.
        """
        upload = self.find_upload(key)
        return upload.data, upload.file_name, upload.path
