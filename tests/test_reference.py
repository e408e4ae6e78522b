"""The ministry's reference files are checked against their contracts before they replace data."""

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
        + "08,provincia,Panamá,PA,1990-01-01,,INEC\n"  # level not in the code list
        + "0804,district,Panamá,08,1990-13-01,,INEC\n"  # no such date
        + "PA,national,Panamá,,1990-01-01,,INEC\n",  # key repeated
        encoding="utf-8",
    )
    with pytest.raises(ReferenceDataError) as refused:
        reference.read_geography(path)
    message = str(refused.value)
    assert "row 2: geo_level 'provincia'" in message
    assert "row 3: valid_from '1990-13-01' is not a date" in message
    assert "row 4: the key" in message
