"""The hostile corpus: files an attacker, a broken exporter or a tired person could drop.

``python tests/hostile/generate.py`` writes the small files into ``tests/hostile/files/`` (they
are committed); the large ones (zip bombs, 100,000 and 1,000,000 columns) are made
at test time by ``large_files()``. (The row limit is tested with a lower limit instead: a
file of a million rows would cost the test half a gigabyte.) What each must get is in ``verdicts.yaml``.
"""

import io
import sys
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).parent
FILES = HERE / "files"
HEADER = "id,fecha,distrito,delito,sexo,edad,arma"


def rows(prefix: str, n: int = 3, district: str = "0804") -> str:
    lines = [HEADER]
    lines += [f"{prefix}{i},2025-02-{i + 1:02d},{district},0401,F,30,Sin arma" for i in range(n)]
    return "\n".join(lines) + "\n"


def _xlsx_parts(sheet_xml: bytes, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """The parts of a minimal workbook whose only sheet is ``sheet_xml``."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    parts = {
        "[Content_Types].xml": (
            b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
            b'package/2006/content-types"><Default Extension="rels" ContentType="application/'
            b'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
            b'"application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/'
            b'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName='
            b'"/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-'
            b'officedocument.spreadsheetml.worksheet+xml"/></Types>'
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="'
            f'{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ).encode(),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook {ns} xmlns:r="{rel}"><sheets>'
            '<sheet name="Datos" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ).encode(),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="'
            f'{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
        ).encode(),
        "xl/worksheets/sheet1.xml": sheet_xml,
    }
    return parts | (extra or {})


def _zip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _cell(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


def sheet(cells_by_row: list[list[str]], doctype: str = "") -> bytes:
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    body = []
    for r, cells in enumerate(cells_by_row, start=1):
        refs = "".join(_cell(f"{chr(65 + c)}{r}", v) for c, v in enumerate(cells))
        body.append(f'<row r="{r}">{refs}</row>')
    xml = f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<worksheet {ns}><sheetData>'
    return (xml + "".join(body) + "</sheetData></worksheet>").encode()


def table(prefix: str) -> list[list[str]]:
    return [line.split(",") for line in rows(prefix).strip().split("\n")]


def valid_xlsx(prefix: str) -> bytes:
    return _zip(_xlsx_parts(sheet(table(prefix))))


def small_files() -> dict[str, bytes]:
    """name -> bytes of every committed file of the corpus."""
    laughs = '<!DOCTYPE lolz [<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    laughs += "]>"
    far_cell = sheet(table("XF")).replace(
        b"</sheetData>", b'<row r="9"><c r="XFD9"><v>1</v></c></row></sheetData>'
    )
    far_row = sheet(table("XR")).replace(
        b"</sheetData>", b'<row r="1048576"><c r="A1048576"><v>1</v></c></row></sheetData>'
    )
    good_xlsx = valid_xlsx("X")
    not_a_workbook = io.BytesIO()
    with zipfile.ZipFile(not_a_workbook, "w") as archive:
        archive.writestr("leeme.txt", "hola")
    files = {
        # names (the inbox name is set by the manifest where the file system or git would not
        # keep it: control characters, a leading dot)
        "normal.csv": rows("N"),
        "passwd_trick.csv": rows("T"),
        "hidden.csv": rows("H"),
        "tilde.csv": rows("W"),
        "espacios y ñ.csv": rows("E"),
        "control_name.csv": rows("K"),
        "long_name.csv": rows("L"),
        "informe.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n",
        "sin_extension": rows("S"),
        "MAYUSCULAS.CSV": rows("M"),
        "subiendo.csv.part": rows("U")[:40],
        # encodings
        "utf16.txt": rows("U16").replace(",", "\t").encode("utf-16"),
        "latin1.csv": rows("LA").replace("Sin arma", "Sin arma").encode("latin-1")
        + "LA9,2025-02-09,0804,0401,F,30,Arma blanca ñ\n".encode("latin-1"),
        "bom.csv": b"\xef\xbb\xbf" + rows("BO").encode(),
        "mixed_encoding.csv": rows("MX").encode()
        + "MX9,2025-02-09,0804,0401,F,30,Sin arma ñ\n".encode()
        + "MX8,2025-02-08,0804,0401,F,30,Niño\n".encode("latin-1"),
        "binary_junk.csv": bytes(range(256)) * 8,
        "empty.csv": b"",
        "header_only.csv": (HEADER + "\n").encode(),
        "blank_lines.csv": b"\n \n\t\n" * 200,
        "semicolon_pipe.csv": rows("PI").replace(",", "|").encode(),
        "old_mac_cr.csv": rows("CR").replace("\n", "\r").encode(),
        "nul_late.csv": rows("NL").encode() + b"x" * 9000 + b"\x00\n",
        # control characters and markup in cells
        "ansi_in_cells.csv": rows("AN").replace("Sin arma", "\x1b[31mSin arma\x07").encode(),
        "html_sql_ids.csv": (
            HEADER + "\n<script>alert(1)</script>,2025-02-01,0804,0401,F,30,Sin arma\n"
            "x'; DROP TABLE incidents;--,2025-02-02,0804,0401,F,30,Sin arma\n"
        ).encode(),
        # formulas
        "formula_cells.csv": (
            HEADER + '\nFC1,2025-02-01,0804,0401,"=HYPERLINK(""http://x"",""clic"")",30,'
            "Sin arma\nFC2,2025-02-02,0804,0401,F,30,Sin arma\n"
        ).encode(),
        "formula_ids.csv": (
            HEADER + "\n=1+1,2025-02-01,0804,0401,F,30,Sin arma\n"
            "\"+cmd|' /C calc'!A0\",2025-02-02,0804,0401,F,30,Sin arma\n"
            "@SUM(A1),2025-02-03,0804,0401,F,30,Sin arma\n-2+3,2025-02-04,0804,0401,F,30,Sin arma\n"
            "FI5,2025-02-05,0804,0401,F,30,Sin arma\n"
        ).encode(),
        "formula_xlsx.xlsx": _zip(
            _xlsx_parts(
                sheet(table("FX")).replace(
                    b"</sheetData>",
                    b'<row r="5"><c r="A5"><f>HYPERLINK("x")</f></c></row></sheetData>',
                )
            )
        ),
        # huge fields and shapes
        "huge_field.csv": (
            rows("HF") + "HF9,2025-02-09,0804,0401,F,30," + "A" * 40_000 + "\n"
        ).encode(),
        "unterminated_quote.csv": (
            rows("UQ") + 'UQ9,"2025-02-09,0804,0401,F,30,Sin arma\n'
        ).encode(),
        "long_id.csv": (
            HEADER + "\n" + "I" * 500 + ",2025-02-01,0804,0401,F,30,Sin arma\n"
        ).encode(),
        # workbooks
        "valid.xlsx": good_xlsx,
        "billion_laughs.xlsx": _zip(_xlsx_parts(sheet([["id"], ["&lol9;"]], doctype=laughs))),
        "xxe.xlsx": _zip(
            _xlsx_parts(
                sheet(
                    [["id"], ["&xxe;"]],
                    doctype='<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
                )
            )
        ),
        "far_cell.xlsx": _zip(_xlsx_parts(far_cell)),
        "far_row.xlsx": _zip(_xlsx_parts(far_row)),
        "truncated.xlsx": good_xlsx[: len(good_xlsx) // 2],
        "zip_named.csv": valid_xlsx("ZN"),
        "csv_named.xlsx": rows("CX"),
        "not_a_workbook.xlsx": not_a_workbook.getvalue(),
        "junk_excel97.xls": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00junk" * 100,
        "junk_spss.sav": b"$FL2" + b"\x00\x01junk" * 100,
        # the contract
        "other_municipality.csv": rows("OM", district="0804"),
        "duplicate_ids.csv": rows("DI") + "DI0,2025-02-09,0804,0401,F,30,Sin arma\n",
        "future_dates.csv": rows("FD") + "FD9,2099-01-01,0804,0401,F,30,Sin arma\n",
        "same_bytes.csv": rows("SB"),
        "same_bytes_again.csv": rows("SB"),
        "same_bytes_colon.csv": rows("SB"),
    }
    return {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}


def _deflated_zeros(size: int) -> tuple[bytes, int]:
    """``size`` zero bytes deflated (a zip bomb's payload) and their CRC, made in one pass."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block, out, crc = b"0" * (1 << 20), [], 0
    for _ in range(size // len(block)):
        out.append(packer.compress(block))
        crc = zlib.crc32(block, crc)
    out.append(packer.flush())
    return b"".join(out), crc


def _bomb(size: int, declared: int | None = None) -> bytes:
    """A workbook whose sheet inflates to ``size`` bytes; ``declared`` lies about it."""
    payload, crc = _deflated_zeros(size)
    parts = _xlsx_parts(b"")
    del parts["xl/worksheets/sheet1.xml"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
        info = zipfile.ZipInfo("xl/worksheets/sheet1.xml")
        info.compress_type = zipfile.ZIP_DEFLATED
        info.CRC, info.compress_size, info.file_size = crc, len(payload), declared or size
        offset = buffer.tell()
        buffer.write(info.FileHeader())
        buffer.write(payload)
        archive.filelist.append(info)
        archive.NameToInfo[info.filename] = info
        info.header_offset = offset
        archive.start_dir = buffer.tell()
    return buffer.getvalue()


def large_files() -> dict[str, bytes]:
    """name -> bytes of the corpus's large files, made at test time (a few seconds)."""
    wide_header = ",".join(
        ["id", "fecha", "distrito", "delito"] + [f"c{i}" for i in range(100_000)]
    )
    return {
        "bomb_1gb.xlsx": _bomb(1 << 30),
        "bomb_lying.xlsx": _bomb(400 << 20, declared=1 << 20),
        "ratio_bomb.xlsx": _bomb(50 << 20),
        "columns_100k.csv": (
            wide_header + "\n" + "Z1,2025-02-01,0804,0401" + ",x" * 100_000 + "\n"
        ).encode(),
        "columns_1m.csv": (",".join(["id"] * 1_000_000) + "\n").encode(),
    }


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else FILES
    target.mkdir(parents=True, exist_ok=True)
    for name, data in small_files().items():
        (target / name).write_bytes(data)
    print(f"{len(small_files())} files in {target}")
