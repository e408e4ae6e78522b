"""The ministry's reference files are checked against their contracts before they replace data."""

import datetime as dt
from pathlib import Path

import pytest

from obsx import reference
from obsx.validation import ReferenceDataError

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
