"""Drop folders: which uploads are finished, how submissions are named, archived and found."""

import hashlib
import os
import re
import stat
import time
import unicodedata
from pathlib import Path

import pytest

from obsx.intake.dropzone import (
    Dropzone,
    display_name,
    parse_partition_key,
    partition_key,
    safe_stem,
)

NOW = time.time()
SETTLE = 60


def age(path: Path, seconds: float) -> None:
    """Set ``path``'s modification time ``seconds`` before NOW (the link itself, not its target)."""
    os.utime(path, (NOW - seconds, NOW - seconds), follow_symlinks=False)


@pytest.fixture
def dropzone(tmp_path):
    zone = Dropzone(tmp_path, ["pa_panama", "pa_colon"])
    zone.ensure_folders()
    return zone


def drop(zone: Dropzone, name: str, data: bytes = b"id\n1\n", code="pa_panama", seconds=3600):
    path = zone.inbox(code) / name
    path.write_bytes(data)
    age(path, seconds)
    return path


def test_ensure_folders_creates_inbox_feedback_and_archive_per_observatory(dropzone, tmp_path):
    for code in ("pa_panama", "pa_colon"):
        assert (tmp_path / "dropzone" / code / "inbox").is_dir()
        assert (tmp_path / "dropzone" / code / "feedback").is_dir()
        assert (tmp_path / "archive" / code).is_dir()
    dropzone.ensure_folders()  # idempotent


def test_scan_returns_only_finished_regular_files(dropzone, tmp_path):
    drop(dropzone, "incidentes.csv")
    for name in [".oculto.csv", "~$lock.xlsx", "subida.csv.part", "x.TMP", "y.csv.crdownload"]:
        drop(dropzone, name)
    drop(dropzone, "reciente.csv", seconds=SETTLE - 10)
    subfolder = dropzone.inbox("pa_panama") / "carpeta"
    subfolder.mkdir()
    drop(dropzone, "carpeta/dentro.csv")
    age(subfolder, 3600)
    outside = tmp_path / "fuera.csv"
    outside.write_bytes(b"secreto\n")
    age(outside, 3600)
    link = dropzone.inbox("pa_panama") / "enlace.csv"
    link.symlink_to(outside)
    age(link, 3600)

    found = dropzone.scan(settle_seconds=SETTLE, limit=100, now=NOW)
    assert [(f.observatory_code, f.path.name) for f in found] == [("pa_panama", "incidentes.csv")]


def test_file_is_picked_up_once_it_has_settled(dropzone):
    drop(dropzone, "subida.csv", seconds=SETTLE - 1)
    assert dropzone.scan(SETTLE, limit=10, now=NOW) == []
    assert [f.path.name for f in dropzone.scan(SETTLE, limit=10, now=NOW + 1)] == ["subida.csv"]


def test_scan_lists_oldest_first_up_to_the_limit(dropzone):
    drop(dropzone, "nuevo.csv", b"a\n1\n", seconds=100)
    drop(dropzone, "viejo.csv", b"b\n1\n", code="pa_colon", seconds=300)
    drop(dropzone, "medio.csv", b"c\n1\n", seconds=200)
    assert [f.path.name for f in dropzone.scan(SETTLE, limit=2, now=NOW)] == [
        "viejo.csv",
        "medio.csv",
    ]


def test_same_bytes_under_two_names_give_the_same_content_key(dropzone):
    data = b"id,fecha\nA1,2025-01-05\n"
    drop(dropzone, "enero.csv", data)
    drop(dropzone, "copia de enero.csv", data)
    drop(dropzone, "febrero.csv", b"id,fecha\nA2,2025-02-05\n")
    keys = {f.path.name: f.key for f in dropzone.scan(SETTLE, limit=10, now=NOW)}
    expected = f"pa_panama__{hashlib.sha256(data).hexdigest()[:16]}"
    assert keys["enero.csv"] == keys["copia de enero.csv"] == expected
    assert keys["febrero.csv"] != expected
    assert all(re.fullmatch(r"pa_panama__[0-9a-f]{16}", key) for key in keys.values())


def test_partition_key_round_trips():
    sha = hashlib.sha256(b"x").hexdigest()
    assert parse_partition_key(partition_key("pa_panama", sha)) == ("pa_panama", sha[:16])


@pytest.mark.parametrize(
    "key", ["bad", "x__nothex", "__0123456789abcdef", "pa_panama__0123456789ABCDEF", "pa__0123"]
)
def test_parse_partition_key_rejects_malformed_keys(key):
    with pytest.raises(ValueError, match="not a submission key"):
        parse_partition_key(key)


HOSTILE_NAMES = [
    "informe\nenero.csv",
    "tab\tretorno\r.csv",
    "Informe Colón (enero) 2025.csv",
    "x" * 300 + ".csv",
    os.fsdecode(b"bad\xff.csv"),
    "../../etc/passwd",
    "\u202etxt.exe",
    "...",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_get_a_safe_display_name_and_stem(name):
    shown = display_name(Path(name))
    assert shown
    assert len(shown) <= 200
    assert not [ch for ch in shown if unicodedata.category(ch).startswith("C")]
    stem = safe_stem(name)
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,80}", stem)


def test_display_name_keeps_accents_and_replaces_undecodable_bytes():
    assert display_name(Path("Informe Colón.csv")) == "Informe Colón.csv"
    assert display_name(Path(os.fsdecode(b"bad\xff.csv"))) == "bad\ufffd.csv"
    assert safe_stem("Informe Colón (enero).xlsx") == "Informe_Colon_enero"


def test_files_with_hostile_names_on_disk_are_scanned(dropzone):
    names = ["línea\nnueva.csv", "con espacios y ñ.csv", os.fsdecode(b"bad\xff.csv")]
    for index, name in enumerate(names):
        drop(dropzone, name, f"id\n{index}\n".encode())
    found = dropzone.scan(SETTLE, limit=10, now=NOW)
    assert sorted(f.path.name for f in found) == sorted(names)
    assert sorted(display_name(f.path) for f in found) == [
        "bad\ufffd.csv",
        "con espacios y ñ.csv",
        "líneanueva.csv",
    ]


def test_archive_writes_a_read_only_copy_named_by_hash_once(dropzone):
    data = b"id\nA1\n"
    sha = hashlib.sha256(data).hexdigest()
    path = dropzone.archive("pa_panama", sha, data, "Enero.CSV")
    assert path == dropzone.archive_dir("pa_panama") / f"{sha}.csv"
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0
    assert dropzone.archive("pa_panama", sha, b"other bytes", "otra.csv") == path
    assert path.read_bytes() == data
    assert sorted(p.name for p in dropzone.archive_dir("pa_panama").iterdir()) == [path.name]


def test_archive_of_an_unexpected_extension_is_stored_as_bin(dropzone):
    path = dropzone.archive("pa_colon", "ab" * 32, b"%PDF", "informe.pdf")
    assert path.name == "ab" * 32 + ".bin"


def test_find_key_reads_the_inbox_copy_then_falls_back_to_the_archive(dropzone):
    data = b"id\nA1\n"
    inbox_path = drop(dropzone, "Informe Colón.csv", data)
    sha = hashlib.sha256(data).hexdigest()
    key = partition_key("pa_panama", sha)
    assert dropzone.find_key(key) == (data, "Informe Colón.csv", inbox_path)

    archived = dropzone.archive("pa_panama", sha, data, inbox_path.name)
    inbox_path.unlink()
    assert dropzone.find_key(key) == (data, archived.name, None)


def test_find_key_raises_when_neither_inbox_nor_archive_holds_it(dropzone):
    drop(dropzone, "otro.csv", b"id\nB1\n")
    with pytest.raises(FileNotFoundError):
        dropzone.find_key("pa_panama__0123456789abcdef")


def test_find_key_does_not_look_in_another_observatory(dropzone):
    data = b"id\nA1\n"
    drop(dropzone, "a.csv", data, code="pa_colon")
    with pytest.raises(FileNotFoundError):
        dropzone.find_key(partition_key("pa_panama", hashlib.sha256(data).hexdigest()))


def test_unknown_folders_lists_folders_of_unregistered_observatories(dropzone, tmp_path):
    assert dropzone.unknown_folders() == []
    (tmp_path / "dropzone" / "pa_chiriqui" / "inbox").mkdir(parents=True)
    assert dropzone.unknown_folders() == ["pa_chiriqui"]


def test_unknown_folders_is_empty_before_the_drop_zone_exists(tmp_path):
    assert Dropzone(tmp_path, ["pa_panama"]).unknown_folders() == []


def test_unknown_folders_ignores_stray_files(dropzone, tmp_path):
    (tmp_path / "dropzone" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "dropzone" / "LEEME.txt").write_text("hola")
    assert dropzone.unknown_folders() == []
