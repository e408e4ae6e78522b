"""Drop folders: finding finished uploads, naming submissions, archiving their bytes.

Layout under the data root::

    dropzone/<observatory>/inbox/      what the observatory uploads (and nothing else reads)
    dropzone/<observatory>/feedback/   what we tell it back
    dropzone/<observatory>/reportes/   its monthly pack: its indicators, reporting record
    archive/<observatory>/<sha256>.<ext>  the immutable copy of every submission
"""

import hashlib
import os
import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

    def ensure_folders(self) -> None:
        for code in self.observatory_codes:
            for folder in (self.inbox(code), self.feedback_dir(code), self.archive_dir(code)):
                folder.mkdir(parents=True, exist_ok=True)

    def unknown_folders(self) -> list[str]:
        """Folders in the drop zone that belong to no registered observatory."""
        base = self.root / "dropzone"
        if not base.is_dir():
            return []
        return sorted(
            p.name for p in base.iterdir() if p.is_dir() and p.name not in self.observatory_codes
        )

    def never_processed(self) -> list[str]:
        """What lies in an inbox but will never be processed: links, folders, and names hidden
        with a leading dot (``..%2Fetc%2Fpasswd.csv``) that are not an upload in progress
        (``.name.part``). Said in the run summary, so nobody waits for them."""
        found = []
        for code in self.observatory_codes:
            inbox = self.inbox(code)
            if not inbox.is_dir():
                continue
            for path in sorted(inbox.iterdir()):
                name = path.name
                if name.lower().endswith(PARTIAL_SUFFIXES) or name.startswith("~$"):
                    continue  # an upload in progress, or an editor's lock file
                kind = (
                    "link"
                    if path.is_symlink()
                    else "folder"
                    if path.is_dir()
                    else "hidden name"
                    if name.startswith(".")
                    else None
                )
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

    def inbox_copies(self, code: str, sha256: str) -> list[Path]:
        """Every finished file in an observatory's inbox with exactly these bytes."""
        return [
            path
            for _, path, stat in self.finished_files(settle_seconds=0, codes=[code])
            if self.sha256(path, stat) == sha256
        ]

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

    def find_key(self, key: str) -> tuple[bytes, str, Path | None]:
        """The bytes of a submission, its file name, and its inbox path (None if only archived).

        Raises FileNotFoundError when neither the inbox nor the archive holds it.
        """
        code, sha_prefix = parse_partition_key(key)
        for _, path, stat in self.finished_files(settle_seconds=0, codes=[code]):
            if self.sha256(path, stat).startswith(sha_prefix):
                return path.read_bytes(), display_name(path), path
        archived = self.archived(code, sha_prefix)
        if archived is None:
            raise FileNotFoundError(f"submission {key}: not in the inbox nor in the archive")
        return archived.read_bytes(), archived.name, None
