"""The Excel template and the contract's documentation, both derived from schemas/."""

import datetime as dt
import io

import openpyxl
import pytest

from obsx import cli
from obsx.config import REPO_ROOT, SCHEMAS_DIR
from obsx.intake.contract import load_contract
from obsx.intake.submission import check_file
from obsx.publication.publishing import contract_html, contract_markdown, excel_template
from obsx.warehouse.reference import observatories

CONTRACT = load_contract("incidents")


@pytest.mark.parametrize("lang", ["es", "en"])
def test_filled_template_is_accepted_as_it_comes(lang):
    book = openpyxl.load_workbook(io.BytesIO(excel_template(CONTRACT, lang)))
    sheet = book.worksheets[0]
    headers = [c.value for c in sheet[2]]
    assert headers == [f.title[lang] for f in CONTRACT.fields]
    lists = {str(v.sqref)[0] for v in sheet.data_validations.dataValidation}
    coded = {chr(ord("A") + i) for i, f in enumerate(CONTRACT.fields) if f.codelist}
    assert lists == coded

    def pick(field, code):
        return CONTRACT.field(field).codelist.labels[code][lang]

    row = {
        "incident_id": "T-1",
        "occurred_on": dt.datetime(2025, 6, 1),
        "district_code": "0804",
        "crime_code": pick("crime_code", "0101"),
        "victim_sex": pick("victim_sex", "F"),
        "victim_age": 30,
        "weapon": pick("weapon", "FIREARM"),
        "record_action": pick("record_action", "UPSERT"),
    }
    for column, f in enumerate(CONTRACT.fields, start=1):
        sheet.cell(row=3, column=column, value=row.get(f.name))
    filled = io.BytesIO()
    book.save(filled)

    result, info = check_file(
        filled.getvalue(),
        "plantilla.xlsx",
        observatories()["pa_panama"],
        "incidents",
        dt.date(2026, 11, 23),
    )
    assert (result.status, info["header_row"]) == ("accepted", "2")
    assert result.accepted.loc[3, ["crime_code", "victim_sex", "weapon"]].tolist() == [
        "0101",
        "F",
        "FIREARM",
    ]


@pytest.mark.parametrize("dataset", sorted(p.stem for p in SCHEMAS_DIR.glob("*.yaml")))
@pytest.mark.parametrize(("lang", "suffix"), [("es", ""), ("en", ".en")])
def test_committed_contract_docs_are_up_to_date(dataset, lang, suffix):
    contract, folder = load_contract(dataset), REPO_ROOT / "docs" / "contract"
    assert (folder / f"{dataset}{suffix}.md").read_text() == contract_markdown(contract, lang), (
        "run: obsx schema-docs && obsx schema-docs --lang en"
    )
    assert (folder / f"{dataset}{suffix}.html").read_text() == contract_html(contract, lang)


def test_docs_list_every_field_and_code():
    page = contract_markdown(CONTRACT, "es")
    for f in CONTRACT.fields:
        assert f"`{f.name}`" in page
    assert "| `0101` | Homicidio intencional |" in page


def test_template_command_writes_a_workbook(tmp_path):
    out = tmp_path / "plantilla.xlsx"
    assert cli.main(["template", "incidents", "--out", str(out)]) == 0
    assert openpyxl.load_workbook(out).sheetnames == ["Datos", "Listas"]
