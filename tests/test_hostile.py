"""The hostile corpus (tests/hostile/): every file gets its verdict through `obsx run`, nothing
already accepted is lost, and what we send back stays small and formula-safe."""

import ast
import json
import os
import time

import pytest
import sqlalchemy as sa
import yaml

from obsx import cli
from obsx.intake.dropzone import display_name, safe_stem
from obsx.warehouse.tables import record_tables
from tests.hostile.generate import FILES, HERE, large_files, rows

incidents = record_tables("incidents").current
VERDICTS = yaml.safe_load((HERE / "verdicts.yaml").read_text(encoding="utf-8"))
SUBMITTED = {"accepted", "partly_accepted", "rejected"}


def inbox_name(entry) -> str:
    name = entry.get("as", entry.get("file"))
    if name == "LONG":
        return "nombre_" + "x" * 230 + ".csv"
    return ast.literal_eval(repr(name).replace("\\\\x", "\\x"))


@pytest.fixture
def root(tmp_path, warehouse_url, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("OBSX_DATA_DIR", str(root))
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return root


def drop(root, contributor, name, data, mtime=1):
    inbox = root / "dropzone" / contributor / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def test_the_corpus_is_large_enough():
    assert len(VERDICTS) >= 40
    committed = {e["file"] for e in VERDICTS if "file" in e} & {p.name for p in FILES.iterdir()}
    assert len(committed) >= 40


def test_every_hostile_file_gets_its_verdict(root, warehouse_url, capsys):
    drop(root, "pa_panama", "base.csv", rows("B", 5).encode())
    cli.main(["run", "--settle-seconds", "0"])  # (exit status: the indicators are not ours here)
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        before = conn.execute(sa.select(incidents).order_by(incidents.c.incident_id)).all()
    capsys.readouterr()

    large = large_files()
    for entry in VERDICTS:
        contributor = entry.get("contributor", "pa_panama")
        inbox = root / "dropzone" / contributor / "inbox"
        name = inbox_name(entry)
        if entry.get("make") == "link":
            (inbox / name).symlink_to("/etc/passwd")
        elif entry.get("make") == "folder":
            (inbox / name).mkdir()
            (inbox / name / "dentro.csv").write_bytes(rows("IN").encode())
        elif entry.get("make") == "fifo":
            os.mkfifo(inbox / name)
        else:
            file = entry["file"]
            data = large[file] if file in large else (FILES / file).read_bytes()
            drop(root, contributor, name, data, entry.get("mtime", 1))

    started = time.perf_counter()
    assert cli.main(["run", "--settle-seconds", "0"]) == 1  # links, folders, hidden names
    seconds = time.perf_counter() - started
    out = capsys.readouterr().out

    with engine.connect() as conn:
        after = conn.execute(
            sa.select(incidents).where(incidents.c.incident_id.in_([r.incident_id for r in before]))
        ).all()
    engine.dispose()
    wrong = []
    for entry in VERDICTS:
        contributor = entry.get("contributor", "pa_panama")
        name = inbox_name(entry)
        status, code = entry["status"], entry.get("code")
        inbox = root / "dropzone" / contributor / "inbox"
        left = os.path.lexists(inbox / name)
        if status in SUBMITTED:
            stem = safe_stem(display_name(inbox / name))
            feedback = sorted(
                (root / "dropzone" / contributor / "feedback").glob(f"{stem}__*.json")
            )
            if len(feedback) != 1:
                wrong.append((name, "feedback documents", len(feedback)))
                continue
            document = json.loads(feedback[0].read_text(encoding="utf-8"))
            codes = set(document["problem_counts"])
            if document["status"] != status or (code and code not in codes) or left:
                wrong.append((name, document["status"], sorted(codes), "left" if left else ""))
            if not code and any(p["severity"] == "error" for p in document["problems"]):
                wrong.append((name, "unexpected errors", sorted(codes)))
        elif status == "never_processed":
            said = f"{contributor}/{display_name(inbox / name)} ({code})"
            if said not in out or not left:
                wrong.append((name, "not named in the summary", said))
        elif status == "waiting":
            if not left or name in out:
                wrong.append((name, "an upload in progress must wait, unnamed"))
        elif status == "consumed" and left:
            wrong.append((name, "left in the inbox"))
    assert wrong == [], "\n".join(map(str, wrong))
    assert sorted(after) == sorted(before)  # nothing already accepted was lost or changed
    for folder in root.glob("dropzone/*/feedback"):
        for document in folder.iterdir():
            assert document.stat().st_size < 3 * 1024 * 1024, document.name
    print(f"corpus of {len(VERDICTS)} processed in {seconds:.1f} s")
