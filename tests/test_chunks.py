"""A file is validated and staged in chunks (Limits.chunk_cells): split anywhere, it ends exactly
as it would read whole — warehouse, feedback and counts — and what must hold across the whole
file (one record id once, coverage, withdrawals, look-alikes, months as columns) still holds."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

import obsx.intake.validation
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.limits import LimitExceeded, current_limits
from obsx.intake.submission import process_submission
from obsx.warehouse import reference
from obsx.warehouse.migrations import upgrade
from obsx.warehouse.tables import (
    declared_coverage,
    get_engine,
    quarantine,
    record_tables,
    submission,
)
from tests.conftest import TODAY, load_reference

FIXTURES = Path(__file__).parent / "fixtures"
WHOLE = 10**12  # cells per chunk: any file in one piece

# Title and blank rows, a row with extra cells, bad cells, a total row, the same id in rows far
# apart, withdrawals of a held record and of an unknown one, a resent record under a new id.
MESSY = """Observatorio de Panamá: incidentes
generado el 2026-11-20

id,fecha,distrito,delito,sexo,edad,arma,accion
P1,2025-01-03,0804,0101,M,34,FIREARM,
P2,2025-01-04,0804,0401,F,29,NONE,
P3,2025-13-04,0804,0401,F,29,NONE,
P4,2025-01-05,0804,0502,M,,,
P5,2025-01-06,9999,0502,M,40,,

P6,2025-02-07,0804,0101,X,30,FIREARM,
P7,2025-02-08,0804,0401,M,222,SHARP,,extra
P1,2025-02-09,0804,0502,F,20,,
P8,2025-02-10,0804,0401,F,29,NONE,
OLD1,,0804,,,,,eliminar
NOPE,,0804,,,,,eliminar
P9,2025-03-01,0804,0101,M,34,FIREARM,
P2,2025-03-02,0804,0101,M,34,FIREARM,
P10,2025-03-03,0804,0101,M,34,FIREARM,
TOTAL,,,,,,,
"""
HELD_BEFORE = b"id,fecha,distrito,delito\nOLD1,2025-01-02,0804,0101\nOLD2,2025-01-03,0804,0401\n"


def submit(root: Path, engine, code: str, name: str, data: bytes, chunk_cells: int, **changes):
    registry = reference.observatories()
    zone = Dropzone(root, registry)
    zone.ensure_folders()
    (zone.inbox(code) / name).write_bytes(data)
    key = partition_key(code, file_sha256(zone.inbox(code) / name))
    limits = replace(current_limits(), chunk_cells=chunk_cells, **changes)
    return process_submission(key, zone, engine, registry, TODAY, limits=limits)


def warehouse_contents(engine, dataset: str) -> dict:
    """Every row a submission leaves, without clock times and generated ids."""
    tables = [*record_tables(dataset), quarantine, declared_coverage, submission]
    found = {}
    with engine.connect() as conn:
        for table in tables:
            columns = [
                c
                for c in table.columns
                if not isinstance(c.type, sa.DateTime)
                and c.name not in ("quarantine_id", "correction_id", "run_id", "archive_path")
            ]
            rows = conn.execute(sa.select(*columns)).all()
            found[table.name] = sorted(rows, key=repr)
    return found


def feedback_contents(root: Path, code: str) -> dict:
    """The feedback files, without the moment of reception."""
    found = {}
    for path in sorted((root / "dropzone" / code / "feedback").iterdir()):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            document = json.loads(text)
            document.pop("received_at")
            text = document
        elif path.suffix == ".html":
            text = "\n".join(line for line in text.splitlines() if "<strong>" not in line)
        found[path.name] = text
    return found


def processed(tmp_path, code, name, data, chunk_cells, before=(), dataset="incidents", **changes):
    root = tmp_path / f"cells_{chunk_cells}"
    engine = get_engine(f"sqlite:///{root / 'warehouse.db'}")
    root.mkdir()
    upgrade(engine)
    load_reference(engine)
    for earlier_name, earlier in before:
        submit(root, engine, code, earlier_name, earlier, WHOLE)
    outcome = submit(root, engine, code, name, data, chunk_cells, **changes)
    return (
        (outcome.status, outcome.counts, outcome.dataset),
        warehouse_contents(engine, dataset),
        feedback_contents(root, code),
    )


def test_a_messy_file_split_row_by_row_ends_as_it_does_read_whole(tmp_path):
    before = [("antes.csv", HELD_BEFORE)]
    whole = processed(tmp_path, "pa_panama", "enero.csv", MESSY.encode(), WHOLE, before)
    split = processed(tmp_path, "pa_panama", "enero.csv", MESSY.encode(), 1, before)

    assert split == whole
    (status, counts, _), contents, feedback = whole
    assert status == "partly_accepted"
    assert counts["rows_ignored"] == 1  # NOPE: withdrawn but never held
    problems = next(
        v for k, v in feedback.items() if k.startswith("enero") and k.endswith(".json")
    )["problems"]
    codes = {(p["row"], p["code"]) for p in problems}
    # P1 (row 5) again at row 13, P2 (row 6) again at row 18: chunks apart, still repeats
    assert {(13, "duplicate-key"), (18, "duplicate-key"), (16, "withdraw-unknown")} <= codes
    assert (None, "encoding-guessed") not in codes
    held = {r.incident_id: r for r in contents["incidents"]}
    assert held["P1"].occurred_on.isoformat() == "2025-01-03"  # the first P1, not row 13's
    assert held["OLD1"].record_action == "DELETE" and "NOPE" not in held


@pytest.mark.parametrize(
    ("deployment", "code", "path", "dataset", "chunk_cells"),
    [
        ("pa", "pa_arraijan", "incidents/arraijan_marzo.csv", "incidents", 1),
        ("pa", "pa_colon", "incidents/colon_enero.xlsx", "incidents", 1),
        ("pa", "pa_la_chorrera", "incidents/la_chorrera_febrero.xls", "incidents", 1),
        ("pa", "pa_panama", "incidents/panama_abril.sav", "incidents", 1),
        (
            "pa",
            "pa_san_miguelito",
            "survey_responses/san_miguelito_encuesta.csv",
            "survey_responses",
            1,
        ),
        ("pa", "pa_panama", "survey_responses/panama_encuesta.sav", "survey_responses", 1),
        ("pa", "pa_colon", "prevention_activities/colon_plan.xlsx", "prevention_activities", 1),
        # months as columns, places by name, homonyms and bad cells: 20 source rows a chunk
        ("gt", "gt_pnc", "gt/wide_meses_2024_small.csv", "incidents", 20 * 16),
        ("gt", "gt_mixco", "gt/mixco_incidentes_2024.csv", "incidents", 7 * 25),
        # declares that it covers every municipio: coverage from the whole file's months
        ("gt", "gt_inacif", "gt/homicidios_nacional_2024_01.csv", "incidents", 5 * 20),
        # the police's real registers (../shared/data), a few chunks each
        ("gt", "gt_pnc", "gt/pnc/Detenidos1T2024.xlsx", "arrests", 50_000),
        ("gt", "gt_pnc", "gt/pnc/Detenidos2021.sav", "arrests", 200_000),
    ],
)
def test_files_split_in_chunks_end_as_they_do_whole(
    tmp_path, monkeypatch, deployment, code, path, dataset, chunk_cells
):
    if deployment != "pa":
        monkeypatch.setenv("OBSX_DEPLOYMENT", deployment)
    data = (FIXTURES / path).read_bytes()
    name = Path(path).name
    whole = processed(tmp_path, code, name, data, WHOLE, dataset=dataset)
    split = processed(tmp_path, code, name, data, chunk_cells, dataset=dataset)
    assert split == whole
    assert whole[0][1]["rows_accepted"] > 0


def test_a_bad_row_in_the_last_chunk_rejects_that_row_only(tmp_path):
    lines = [f"P{i},2025-01-{i:02d},0804,0101" for i in range(1, 10)] + ["P10,2025-01-40,0804,0101"]
    data = ("id,fecha,distrito,delito\n" + "\n".join(lines) + "\n").encode()

    (status, counts, _), contents, _ = processed(tmp_path, "pa_panama", "a.csv", data, 8)

    assert (status, counts["rows_accepted"], counts["rows_rejected"]) == ("partly_accepted", 9, 1)
    assert sorted(r.incident_id for r in contents["incidents"]) == sorted(
        f"P{i}" for i in range(1, 10)
    )
    assert [(r.source_row, r.rule) for r in contents["quarantine"]] == [(11, "type-date")]


def test_a_file_refused_part_way_through_merges_nothing_it_staged(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    engine = get_engine(f"sqlite:///{root / 'warehouse.db'}")
    upgrade(engine)
    load_reference(engine)
    lines = [f"P{i},2025-01-{i:02d},0804,0101" for i in range(1, 10)]
    data = ("id,fecha,distrito,delito\n" + "\n".join(lines) + "\n").encode()
    real_check = obsx.intake.validation.FileValidation.check

    def out_of_time_at_the_third_chunk(self, table):
        if self.chunks == 2:
            raise LimitExceeded("max_seconds", 300.0)
        return real_check(self, table)

    monkeypatch.setattr(
        obsx.intake.validation.FileValidation, "check", out_of_time_at_the_third_chunk
    )
    outcome = submit(root, engine, "pa_panama", "a.csv", data, 4 * 3)

    assert (outcome.status, outcome.counts["rows_accepted"]) == ("rejected", 0)
    with engine.connect() as conn:
        assert (
            conn.scalar(sa.select(sa.func.count()).select_from(record_tables("incidents")[0])) == 0
        )
    monkeypatch.undo()  # the same connection goes on to merge the next file whole
    outcome = submit(root, engine, "pa_panama", "b.csv", data.replace(b"P", b"Q"), 4 * 3)
    assert (outcome.status, outcome.counts["rows_inserted"]) == ("accepted", 9)


@pytest.mark.postgres
def test_chunks_are_copied_into_postgresql_and_merge_as_whole(postgres_url, tmp_path):
    engine = get_engine(postgres_url)
    upgrade(engine)
    load_reference(engine)
    root = tmp_path / "data"
    for name, data in [("antes.csv", HELD_BEFORE), ("enero.csv", MESSY.encode())]:
        outcome = submit(root, engine, "pa_panama", name, data, 1)
    expected = processed(
        tmp_path, "pa_panama", "enero.csv", MESSY.encode(), WHOLE, [("antes.csv", HELD_BEFORE)]
    )
    assert (outcome.status, outcome.counts) == expected[0][:2]
    assert warehouse_contents(engine, "incidents")["incidents"] == expected[1]["incidents"]
