"""The ministry's reference files are checked against their contracts before they replace data."""

import datetime as dt
from pathlib import Path

import pytest

from obsx.intake.validation import ReferenceDataError
from obsx.warehouse import reference

HEADER = "geo_code,geo_level,name,parent_code,valid_from,valid_to,source\n"


def test_committed_reference_files_meet_their_contracts():
    geography, population = reference.read_geography(), reference.read_population()
    assert set(geography["geo_level"]) == {"national", "province", "district"}
    assert population["population"].min() >= 0
    districts = set(geography.loc[geography["geo_level"] == "district", "geo_code"])
    assert set(population["geo_code"]) == districts


def test_a_broken_geography_file_is_refused_whole_with_its_rows(tmp_path):
    path = tmp_path / "geography.csv"
    path.write_text(
        HEADER
        + "PA,national,Panamá,,1990-01-01,,INEC\n"
        + "08,region,Panamá,PA,1990-01-01,,INEC\n"  # level not in the code list
        + "0804,district,Panamá,08,1990-13-01,,INEC\n"  # no such date
        + "PA,national,Panamá,,1990-01-01,,INEC\n",  # key repeated
        encoding="utf-8",
    )
    with pytest.raises(ReferenceDataError) as refused:
        reference.read_geography(path)
    message = str(refused.value)
    # rows as the spreadsheet shows them: the header is row 1
    assert "row 3: level 'region' is not one of national, province, district" in message
    assert "row 4: valid_from '1990-13-01' is not a date" in message
    assert "row 5: the key" in message
    assert "not_nullable" not in message  # a bad date is reported once


FIXTURES = Path(__file__).parent / "fixtures" / "reference"


def test_inec_workbook_with_titles_spanish_labels_and_a_total_row():
    population = reference.read_population(FIXTURES / "inec_poblacion.xlsx")

    assert population[["geo_code", "sex", "age_group", "population"]].values.tolist() == [
        ["0101", "M", "0-14", 4012],
        ["0101", "F", "65+", 1311],
        ["0804", "F", "15-29", 140552],
    ]


def test_cp1252_semicolon_population_file():
    population = reference.read_population(FIXTURES / "poblacion_contraloria.csv")

    assert population["geo_code"].tolist() == ["0301", "0301", "1301"]
    assert population["source"].iloc[0] == "Contraloría (prueba)"


def test_geography_workbook_keeps_the_history_of_a_boundary_change():
    geography = reference.read_geography(FIXTURES / "inec_division.xlsx")

    arraijan = geography[geography["name"] == "Arraiján"]
    assert arraijan[["geo_code", "parent_code"]].values.tolist() == [["0801", "08"], ["1301", "13"]]
    assert arraijan["valid_to"].tolist() == [dt.date(2014, 1, 1), None]
    assert set(geography["geo_level"]) == {"national", "province", "district"}


def test_latin1_geography_with_comarcas_and_day_first_dates():
    geography = reference.read_geography(FIXTURES / "division_comarcas.csv")

    assert geography[["geo_code", "geo_level", "name"]].values.tolist() == [
        ["PA", "national", "Panamá"],
        ["12", "province", "Comarca Ngäbe-Buglé"],
        ["1201", "district", "Besikó"],
    ]
    assert geography["valid_from"].tolist()[1] == dt.date(1997, 1, 1)


def test_a_file_naming_provinces_is_not_read_as_the_districts_sharing_their_names():
    """Panamá, Colón, Bocas del Toro and Los Santos are provinces and districts of Panama: a
    file that names provinces (Chiriquí and Veraguas are provinces only) must not put its rows in
    the districts of the same name (issue 21: 325 of 556 rows were accepted misplaced)."""
    import pandas as pd

    from obsx.intake.contract import load_contract
    from obsx.intake.profiles import Derivation
    from obsx.intake.validation import _derive, at_level
    from obsx.warehouse.places import OTHER_LEVEL

    imelcf = reference.observatories()["pa_imelcf"]

    def place(names, observatory=imelcf):
        raw = pd.DataFrame({"Lugar": names})
        derive = Derivation(field="district_code", kind="place", place="Lugar")
        codes, problems, _ = _derive(derive, raw, load_contract("incidents"), observatory, None)
        return codes.tolist(), problems

    provinces = ["Panamá", "Colón", "Bocas del Toro", "Los Santos", "Chiriquí", "Veraguas"]
    codes, problems = place(provinces)
    assert codes == [""] * 6
    assert [p.code for p in problems] == [OTHER_LEVEL] * 6
    assert problems[1].message("es") == (
        "«Colón» es una provincia o comarca (03), no un distrito: los datos se registran por "
        "distrito. Indique en cada fila su distrito."
    )
    assert problems[4].message("en").startswith("'Chiriquí' is a province or comarca (04), not")
    # A file of districts keeps the districts of those names; a province among them is refused.
    codes, problems = place(["Panamá", "San Miguelito", "Colón", "Chiriquí"])
    assert codes == ["0804", "0805", "0301", ""]
    assert [(p.row, p.code) for p in problems] == [(3, OTHER_LEVEL)]
    # The same names read at the level they are of (a profile's ``level: province``): every one
    # is its province, and a district's name is now the place of another level.
    by_province = at_level(imelcf, "province")
    codes, problems = place([*provinces, "San Miguelito"], by_province)
    assert codes == ["08", "03", "01", "07", "04", "09", ""]
    assert problems[0].message("es").startswith("«San Miguelito» es un distrito (0805), no una")
    assert len(by_province.districts) == 13  # a national institution: every province and comarca
    assert at_level(reference.observatories()["pa_colon"], "province").districts == ()
