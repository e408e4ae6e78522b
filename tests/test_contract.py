"""The incidents data contract: loading, header matching and code lists."""

import pytest

from obsx.intake.contract import load_contract, parse_contract


@pytest.fixture(scope="module")
def contract():
    return load_contract("incidents")


def minimal_spec() -> dict:
    text = {"es": "x", "en": "x"}
    return {
        "dataset": "mini",
        "version": 1,
        "title": text,
        "description": text,
        "primary_key": ["observatory_code", "id"],
        "geography_field": "district",
        "period_field": "day",
        "fields": [
            {"name": "id", "type": "string", "title": text, "description": text},
            {"name": "district", "type": "string", "title": text, "description": text},
            {"name": "day", "type": "date", "title": text, "description": text},
        ],
        "codelists": {"sex": {"title": text, "codes": {"F": text, "M": text}}},
    }


def test_incidents_contract_loads_with_its_fields_key_and_code_lists(contract):
    assert contract.dataset == "incidents"
    assert contract.primary_key == ("observatory_code", "incident_id")
    assert contract.geography_field == "district_code"
    assert contract.period_field == "occurred_on"
    assert contract.record_fields[:2] == ("incident_id", "occurred_on")
    assert set(contract.codelists) == {
        "action",
        "count_unit",
        "iccs",
        "relationship",
        "sex",
        "weapon",
        "yes_no",
    }
    assert contract.field("crime_code").codelist is contract.codelists["iccs"]
    assert contract.field("occurred_on").required
    assert not contract.field("victim_age").required


@pytest.mark.parametrize(
    ("header", "field"),
    [
        (" Código Incidente ", "incident_id"),
        ("codigo incidente", "incident_id"),
        ("FECHA", "occurred_on"),
        ("Fecha del hecho", "occurred_on"),
        ("Date of occurrence", "occurred_on"),
        ("Delito (ICCS)", "crime_code"),
        ("Código de distrito (INEC)", "district_code"),
        ("SEXO VÍCTIMA", "victim_sex"),
        ("edad_victima", "victim_age"),
        ("Medio  Empleado", "weapon"),
        ("hora", "occurred_at"),
    ],
)
def test_header_matches_field_through_alias_title_case_accents_and_spaces(contract, header, field):
    mapping, unknown = contract.match_headers([header])
    assert mapping == {header: field}
    assert unknown == []


def test_headers_outside_the_contract_are_reported_as_unknown(contract):
    mapping, unknown = contract.match_headers(["id", "Nombre víctima", "Observaciones"])
    assert mapping == {"id": "incident_id"}
    assert unknown == ["Nombre víctima", "Observaciones"]


def test_second_header_for_the_same_field_counts_as_unknown(contract):
    mapping, unknown = contract.match_headers(["Fecha", "id", "fecha_hecho"])
    assert mapping == {"Fecha": "occurred_on", "id": "incident_id"}
    assert unknown == ["fecha_hecho"]


@pytest.mark.parametrize(
    ("codelist", "value", "code"),
    [
        ("sex", "F", "F"),
        ("sex", "m", "M"),
        ("sex", "Masculino", "M"),
        ("sex", "MUJER", "F"),
        ("sex", "No especificado", "NE"),
        ("weapon", "arma de fuego", "FIREARM"),
        ("weapon", "Arma Blanca", "SHARP"),
        ("weapon", "Firearm", "FIREARM"),
        ("iccs", "0101", "0101"),
        ("iccs", "Homicidio intencional", "0101"),
        ("iccs", "homicidio culposo en transito", "010321"),
        ("iccs", "Robbery", "0401"),
    ],
)
def test_code_list_accepts_codes_labels_and_aliases_case_insensitively(
    contract, codelist, value, code
):
    assert contract.codelists[codelist].canonical(value) == code


@pytest.mark.parametrize(("value", "code"), [("101", "0101"), ("20111", "020111")])
def test_iccs_code_stored_as_number_gets_its_leading_zero_back(contract, value, code):
    assert contract.codelists["iccs"].canonical(value) == code


def test_leading_zero_is_only_restored_for_code_lists_that_ask_for_it():
    spec = minimal_spec()
    spec["codelists"]["num"] = {
        "title": {"es": "n", "en": "n"},
        "codes": {"01": {"es": "a", "en": "a"}},
    }
    assert parse_contract(spec).codelists["num"].canonical("1") == "1"


@pytest.mark.parametrize(
    ("codelist", "value"), [("iccs", "0999"), ("sex", "X"), ("weapon", "láser")]
)
def test_unknown_code_is_returned_unchanged(contract, codelist, value):
    assert contract.codelists[codelist].canonical(value) == value


def test_minimal_spec_parses():
    contract = parse_contract(minimal_spec())
    assert contract.record_fields == ("id", "district", "day")
    assert contract.codelists["sex"].canonical("f") == "F"


def test_parse_contract_refuses_an_unknown_field_type():
    spec = minimal_spec()
    spec["fields"][0]["type"] = "float"
    with pytest.raises(ValueError, match="unknown type 'float'"):
        parse_contract(spec)


def test_parse_contract_refuses_an_unknown_code_list():
    spec = minimal_spec()
    spec["fields"][1]["codelist"] = "provinces"
    with pytest.raises(ValueError, match="unknown code list 'provinces'"):
        parse_contract(spec)


def test_parse_contract_refuses_a_period_field_that_is_not_a_field():
    spec = minimal_spec()
    spec["period_field"] = "month"
    with pytest.raises(ValueError, match="'month' is not a field"):
        parse_contract(spec)
