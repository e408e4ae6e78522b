"""Files people upload through the web portal: the limits checked before a byte is kept, the dry
run (what ``obsx validate`` would say), and delivery into the contributor's inbox.

Delivery follows the inbox protocol (obsx/intake/dropzone.py): the bytes are written to a hidden
``.<name>.<pid>.part`` file in the inbox, which no run picks up, then renamed to their final name
in one step; a name already taken gets `` (2)``, `` (3)``… so that nothing is overwritten. The
final name is made from the uploaded name by ``safe_stem`` and an allowed suffix only.
"""

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from obsx.intake.dropzone import ARCHIVE_SUFFIXES, Dropzone, safe_stem
from obsx.intake.feedback import Report
from obsx.intake.limits import LimitExceeded, Limits, current_limits
from obsx.intake.problems import WARNING

# What an observatory may send (the readers' formats; obsx/intake/reading.py).
UPLOAD_SUFFIXES = tuple(sorted(ARCHIVE_SUFFIXES))


class UploadRefused(ValueError):
    """An upload refused before it is stored: ``code`` says why (``type``, ``size``, ``empty``)."""

    def __init__(self, code: str, detail: str, problem=None):
        super().__init__(detail)
        self.code = code
        self.problem = problem  # the feedback's own problem, when there is one (over-limit)

    def message(self, lang: str) -> str:
        return self.problem.message(lang) if self.problem is not None else str(self)


def upload_suffix(file_name: str) -> str:
    """The file's suffix, lowercased, if it is one we read; else UploadRefused('type')."""
    suffix = Path(file_name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UploadRefused("type", suffix or "(none)")
    return suffix


def check_size(size: int, limits: Limits | None = None) -> None:
    """UploadRefused('size') past ``max_file_bytes``; ('empty') for no bytes at all."""
    limits = limits or current_limits()
    if size > limits.max_file_bytes:
        problem = LimitExceeded("max_file_bytes", limits.max_file_bytes, size).problem()
        raise UploadRefused("size", problem.message("en"), problem)
    if size == 0:
        raise UploadRefused("empty", "0 bytes")


def dry_run(
    data: bytes, file_name: str, observatory, dataset: str | None, lang: str | None = None
) -> Report:
    """The report ``obsx validate`` gives for these bytes: nothing stored, nothing merged."""
    from obsx.intake.submission import check_file

    result, info = check_file(
        data, file_name, observatory, dataset, dt.date.today(), on_accepted=lambda rows: None
    )
    lang = lang or info["language"]
    return Report(
        submission_id=hashlib.sha256(data).hexdigest(),
        observatory_code=observatory.code,
        observatory_name=observatory.name,
        dataset=info["dataset"],
        file_name=file_name,
        received_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        status=result.status,
        counts={
            "rows_read": result.rows_read,
            "rows_accepted": result.rows_accepted,
            "rows_rejected": result.rows_rejected,
            "warnings": sum(p.severity == WARNING for p in result.problems),
        },
        problems=result.problems,
        file_info=info,
        lang=lang,
        dry_run=True,
        max_problems_per_code=current_limits().max_problems_per_code,
        rejected_rows=result.rejected_for_resending(lang),
    )


@dataclass(frozen=True)
class Delivered:
    path: Path
    sha256: str
    size: int


def deliver(zone: Dropzone, code: str, file_name: str, data: bytes) -> Delivered:
    """Write ``data`` into ``code``'s inbox under a safe name, by the ``.part`` protocol."""
    if code not in zone.observatory_codes:
        raise KeyError(f"unknown contributor {code!r}")
    suffix = upload_suffix(file_name)
    check_size(len(data))
    inbox = zone.inbox(code)
    inbox.mkdir(parents=True, exist_ok=True)
    stem = safe_stem(file_name)
    partial = inbox / f".{stem}{suffix}.{os.getpid()}.part"
    with open(partial, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        for n in range(1, 1000):
            target = inbox / (f"{stem}{suffix}" if n == 1 else f"{stem} ({n}){suffix}")
            try:
                os.link(partial, target)  # never over an existing file
            except FileExistsError:
                continue
            return Delivered(target, hashlib.sha256(data).hexdigest(), len(data))
        raise FileExistsError(f"no free name in {inbox} for {stem}{suffix}")
    finally:
        partial.unlink(missing_ok=True)


def release(engine, zone: Dropzone, submission_id: str) -> Delivered:
    """An operator's second chance for a rejected file (one set aside after its processing kept
    dying, or one rejected before a profile was fixed): its archived bytes go back into its
    contributor's inbox, its attempts are forgotten and the submission is judged anew by the
    next run (its row becomes ``received`` again). ``submission_id``: the id or a prefix of it
    (at least 8 characters) naming one submission."""
    import sqlalchemy as sa

    from obsx.warehouse.tables import submission

    s = submission.c
    if len(submission_id) < 8 or not all(c in "0123456789abcdef" for c in submission_id):
        raise LookupError(f"{submission_id!r}: give at least 8 hex digits of the submission id")
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(s.submission_id, s.observatory_code, s.file_name, s.archive_path, s.status)
            .where(s.submission_id.like(f"{submission_id}%"))
            .with_for_update()
        ).all()
        if len(rows) != 1:
            raise LookupError(
                f"{submission_id}: {'no submission' if not rows else 'several submissions'}"
                " with that id"
            )
        (sid, code, file_name, archive_path, status) = rows[0]
        if status != "rejected":
            raise LookupError(
                f"{sid[:16]} ({file_name}) is {status}, not rejected: nothing to release"
            )
        archived = (zone.root / archive_path).resolve()
        if not archived.is_relative_to(zone.root.resolve()) or not archived.is_file():
            raise LookupError(f"{sid[:16]} ({file_name}): its archived copy is missing")
        data = archived.read_bytes()
        if hashlib.sha256(data).hexdigest() != sid:
            raise LookupError(f"{sid[:16]} ({file_name}): its archived copy has changed")
        conn.execute(
            submission.update()
            .where(s.submission_id == sid)
            .values(status="received", merged_at=None)
        )
        zone.end_attempt(code, sid)  # its past attempts count no more
        return deliver(zone, code, file_name, data)
