"""obsx validate: the pipeline's verdict and feedback, touching nothing."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from obsx import cli
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.feedback import defuse_formulas
from obsx.intake.submission import process_submission
from obsx.warehouse.reference import observatories
from tests.conftest import TODAY

FIXTURES = Path(__file__).parent / "fixtures" / "incidents"
CASES = [
    ("colon_enero.xlsx", "pa_colon"),
    ("la_chorrera_febrero.xls", "pa_la_chorrera"),
    ("arraijan_marzo.csv", "pa_arraijan"),
    ("panama_abril.sav", "pa_panama"),
]


@pytest.mark.parametrize(("name", "observatory"), CASES)
def test_validate_gives_the_same_verdict_as_the_pipeline(name, observatory, tmp_path, engine):
    exit_code = cli.main(
        [
            "validate",
            str(FIXTURES / name),
            "--observatory",
            observatory,
            "--out",
            str(tmp_path / "v"),
        ]
    )
    dry = json.loads(next((tmp_path / "v").glob("*.json")).read_text())

    zone = Dropzone(tmp_path / "data", observatories())
    zone.ensure_folders()
    shutil.copy(FIXTURES / name, zone.inbox(observatory) / name)
    key = partition_key(observatory, file_sha256(zone.inbox(observatory) / name))
    outcome = process_submission(key, zone, engine, observatories(), TODAY)

    assert dry["status"] == outcome.status
    assert (exit_code == 0) == (outcome.status == "accepted")
    assert dry["dry_run"] is True
    assert [p["row"] for p in dry["problems"]] == [
        p["row"] for p in json.loads(outcome.feedback[0].read_text())["problems"]
    ]


def test_rejected_rows_come_back_as_a_csv_to_fix_and_resend(tmp_path, engine):
    out = tmp_path / "v"
    cli.main(
        [
            "validate",
            str(FIXTURES / "colon_enero.xlsx"),
            "--observatory",
            "pa_colon",
            "--out",
            str(out),
        ]
    )
    rejected = pd.read_csv(next(out.glob("*.rechazadas.csv")), encoding="utf-8-sig", dtype=str)

    assert rejected["fila"].tolist() == ["6"]
    assert "Estafa" in rejected["motivo"].item()
    fixed = rejected.drop(columns=["fila", "motivo"]).assign(**{"Tipo de delito": "Robo"})
    resend = tmp_path / "corregido.csv"
    fixed.to_csv(resend, index=False)

    assert cli.main(["validate", str(resend), "--observatory", "pa_colon", "--out", str(out)]) == 0


def test_feedback_in_english_on_request(tmp_path):
    cli.main(
        [
            "validate",
            str(FIXTURES / "colon_enero.xlsx"),
            "--observatory",
            "pa_colon",
            "--out",
            str(tmp_path),
            "--lang",
            "en",
        ]
    )

    page = next(tmp_path.glob("*.html")).read_text()
    assert "Partly accepted" in page and "Aceptado" not in page
    assert next(tmp_path.glob("*.rejected.csv")).read_text(encoding="utf-8-sig").startswith("row,")


def test_formulas_in_rejected_rows_come_back_as_text_not_as_formulas():
    rows = pd.DataFrame(
        {
            "id": ['=HYPERLINK("http://x","clic")', "+cmd|' /C calc'!A0", "@SUM(A1)", "A4"],
            "edad": ["-2", "12", "-cmd", "1.5"],
        }
    )
    safe = defuse_formulas(rows)
    assert safe["id"].tolist() == [
        '\'=HYPERLINK("http://x","clic")',
        "'+cmd|' /C calc'!A0",
        "'@SUM(A1)",
        "A4",
    ]
    assert safe["edad"].tolist() == ["-2", "12", "'-cmd", "1.5"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["validate", "/no/such/file.csv", "--observatory", "pa_colon"], "No such file"),
        (["template", "crimes"], "unknown dataset 'crimes'"),
        (["indicators", "--as-of", "yesterday"], "is not an ISO date or time"),
    ],
)
def test_command_mistakes_get_a_message_not_a_traceback(argv, said, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse refuses the argument itself
        code = exit_.code
    err = capsys.readouterr().err
    assert code != 0 and said in err and "Traceback" not in err
