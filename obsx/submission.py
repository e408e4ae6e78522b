"""One submission, end to end: archive, read, validate, merge, feedback, clear the inbox.

Called by the Dagster asset for every partition key of a run; free of Dagster so that tests and
commands can call it too.
"""

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from obsx.contract import load_contract
from obsx.dropzone import Dropzone, parse_partition_key, safe_stem
from obsx.feedback import Report, write_feedback
from obsx.problems import ERROR, WARNING, problem
from obsx.reading import UnreadableFile, read_submission
from obsx.validation import Observatory, ValidationResult, validate
from obsx.warehouse import _insert, merge_records, quarantine, submission

log = logging.getLogger(__name__)

COUNT_COLUMNS = (
    "rows_read",
    "rows_accepted",
    "rows_rejected",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "warnings",
)


@dataclass
class Outcome:
    key: str
    submission_id: str
    observatory_code: str
    file_name: str
    status: str
    counts: dict[str, int]
    feedback: tuple[Path, Path]
    already_merged: bool


def check_file(
    data: bytes, file_name: str, observatory: Observatory, dataset: str, today: dt.date
) -> tuple[ValidationResult, dict]:
    """Read and validate a file; never raises for bad input. Returns the result and file facts."""
    contract = load_contract(dataset)
    try:
        table = read_submission(data, file_name)
    except UnreadableFile as exc:
        return _rejected(exc.problem), {}
    except Exception as exc:  # a hostile file may break a reader in ways we cannot list
        log.warning("reader failed on %s: %r", file_name, exc)
        kind = type(exc).__name__
        damaged = problem(
            "unreadable-file",
            reason_es=f"formato dañado ({kind})",
            reason_en=f"damaged format ({kind})",
        )
        return _rejected(damaged), {}
    info = {
        "format": table.file_format,
        "encoding": table.encoding,
        "delimiter": table.delimiter,
        "header_row": str(table.header_row),
    }
    return validate(table, contract, observatory, today), info


def _rejected(p) -> ValidationResult:
    import pandas as pd

    return ValidationResult(accepted=pd.DataFrame(), rows_read=0, problems=[p])


def process_submission(
    key: str,
    dropzone: Dropzone,
    engine: sa.Engine,
    observatories: dict[str, Observatory],
    today: dt.date,
    run_id: str | None = None,
    dataset: str = "incidents",
) -> Outcome:
    """Process one submission key. Idempotent: a rerun of a merged submission changes nothing."""
    code, _ = parse_partition_key(key)
    observatory = observatories[code]
    data, file_name, inbox_path = dropzone.find_key(key)
    sha = hashlib.sha256(data).hexdigest()
    now = dt.datetime.now(dt.UTC)

    with engine.connect() as conn:
        earlier = (
            conn.execute(sa.select(submission).where(submission.c.submission_id == sha))
            .mappings()
            .first()
        )
    if earlier is not None and inbox_path is None:
        file_name = earlier["file_name"]  # reprocessing from the archive: keep the uploaded name
    result, info = check_file(data, file_name, observatory, dataset, today)
    feedback_stem = f"{safe_stem(file_name)}__{sha[:16]}"
    already_merged = earlier is not None and earlier["merged_at"] is not None

    if already_merged:
        counts = {c: earlier[c] for c in COUNT_COLUMNS}
        status = earlier["status"]
    else:
        archive_path = dropzone.archive(code, sha, data, file_name)
        status = result.status
        counts = {
            "rows_read": result.rows_read,
            "rows_accepted": len(result.accepted),
            "rows_rejected": result.rows_rejected,
            "rows_inserted": 0,
            "rows_updated": 0,
            "rows_unchanged": 0,
            "warnings": sum(p.severity == WARNING for p in result.problems),
        }
        with engine.begin() as conn:
            if status != "rejected":
                counts |= merge_records(conn, dataset, code, sha, result.accepted, now)
            values = {
                "partition_key": key,
                "observatory_code": code,
                "dataset": dataset,
                "file_name": file_name,
                "archive_path": str(archive_path.relative_to(dropzone.root)),
                "size_bytes": len(data),
                "file_format": info.get("format"),
                "encoding": info.get("encoding"),
                "delimiter": info.get("delimiter"),
                "status": status,
                **counts,
                "merged_at": now,
                "run_id": run_id,
            }
            upsert = _insert(conn)(submission).values(submission_id=sha, received_at=now, **values)
            conn.execute(
                upsert.on_conflict_do_update(index_elements=["submission_id"], set_=values)
            )
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

    feedback_dir = dropzone.feedback_dir(code)
    report = Report(
        submission_id=sha,
        observatory_code=code,
        observatory_name=observatory.name,
        dataset=dataset,
        file_name=file_name,
        received_at=(earlier["received_at"] if earlier is not None else now).isoformat(
            timespec="seconds"
        ),
        status=status,
        counts=counts,
        problems=result.problems,
        file_info=info,
        # The same bytes uploaded again (a rerun from the archive is no new upload).
        duplicate_of_earlier_upload=already_merged and inbox_path is not None,
    )
    paths = write_feedback(feedback_dir, feedback_stem, report)
    # Only now, with the warehouse committed and the feedback written, is the upload consumed.
    for path in dropzone.inbox_copies(code, sha):
        path.unlink(missing_ok=True)
    return Outcome(key, sha, code, file_name, status, counts, paths, already_merged)
