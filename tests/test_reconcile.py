"""Reconciling sources: observatories and forensic medicine (IMELCF) count the same victims.

Files go through the drop folders like any: the Panamá observatory (district 0804) and San
Miguelito's (0805) in the contract's headers, IMELCF in its own export (latin-1, semicolons,
places as names). Known differences, month by month in 0804:

- January: the same two victims, one dated a day later by IMELCF, one a year older: agree.
- February: IMELCF has a victim the observatory does not: 1 against 2, to reconcile.
- March: San Miguelito's victim is in 0804 at IMELCF (a unit recoded); the Panamá observatory
  reported 0804 in March (a robbery) with no homicide: 0 against 1, explained as recoded.
- April: two victims the same day, same sex, ages a year apart, in both sources: they agree in
  number, and the matcher says ambiguous rather than guess who is who.
"""

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from obsx.indicators import reconcile
from obsx.indicators.engine import compute_indicators, indicator_values_as_of, refresh_indicators
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.submission import process_submission
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import indicator_value, reconciliation_decision
from tests.conftest import TODAY, load_reference

HEADER = "id,fecha,distrito,delito,sexo,edad,arma"
PANAMA = [
    "H1,2025-01-03,0804,0101,M,25,FIREARM",
    "H2,2025-01-20,0804,0101,M,19,SHARP",
    "H3,2025-02-11,0804,0101,F,33,FIREARM",
    "R1,2025-03-09,0804,0401,M,40,NONE",  # a robbery: 0804 reported March, no homicide
    "A1,2025-04-10,0804,0101,M,30,FIREARM",
    "A2,2025-04-10,0804,0101,M,31,FIREARM",
]
SAN_MIGUELITO = ["M1;05-03-2025;0805;0101;M;30;FIREARM"]  # its export: cp1252, ;, d-m-Y
IMELCF_HEADER = (
    "N° necropsia;Fecha de defunción;Sede;Provincia;Distrito;Sexo;Edad;Manera de muerte;Mecanismo"
)
IMELCF = [
    "NEC-1;04/01/2025;Morgue Judicial;Panamá;Panamá;Masculino;25;Homicidio;Arma de fuego",
    "NEC-2;20/01/2025;Morgue Judicial;Panamá;Panamá;Masculino;20;Homicidio;Arma blanca",
    "NEC-3;11/02/2025;Morgue Judicial;Panamá;Panamá;Femenino;33;Homicidio;Arma de fuego",
    "NEC-4;15/02/2025;Morgue Judicial;Panamá;Panamá;Masculino;40;Homicidio;Arma de fuego",
    "NEC-5;05/03/2025;Morgue Judicial;Panamá;Panamá;Masculino;30;Homicidio;Arma de fuego",
    "NEC-6;10/04/2025;Morgue Judicial;Panamá;Panamá;Masculino;30;Homicidio;Arma de fuego",
    "NEC-7;10/04/2025;Morgue Judicial;Panamá;Panamá;Masculino;31;Homicidio;Arma de fuego",
]
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def deliver(zone, engine, contributor, name, text, encoding="utf-8"):
    path = zone.inbox(contributor) / name
    path.write_bytes(text.encode(encoding))
    outcome = process_submission(
        partition_key(contributor, file_sha256(path)), zone, engine, observatories(), TODAY
    )
    assert outcome.counts["rows_rejected"] == 0, outcome
    return outcome


@pytest.fixture
def warehouse(tmp_path, loaded_engine):
    zone = Dropzone(tmp_path, observatories())
    zone.ensure_folders()
    deliver(zone, loaded_engine, "pa_panama", "panama.csv", "\n".join([HEADER, *PANAMA]) + "\n")
    deliver(
        zone,
        loaded_engine,
        "pa_san_miguelito",
        "sm.csv",
        "\n".join([HEADER.replace(",", ";"), *SAN_MIGUELITO]) + "\n",
        encoding="cp1252",
    )
    deliver(
        zone,
        loaded_engine,
        "pa_imelcf",
        "necropsias_2025.csv",
        "\n".join([IMELCF_HEADER, *IMELCF]) + "\n",
        encoding="latin-1",
    )
    compute_indicators(loaded_engine, NOW)
    loaded_engine.zone = zone
    return loaded_engine


def value(engine, code, geo, period):
    v = indicator_value.c
    with engine.connect() as conn:
        return conn.execute(
            sa.select(v.numerator, v.reconciliation).where(
                v.indicator_code == code,
                v.geo_code == geo,
                v.period == period,
                v.disaggregation == "",
            )
        ).one()


def items(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = reconcile.items(conn, reconcile.get_concept(None))
    return frame.set_index(["geo_code", "period"])


def test_sources_side_by_side_and_their_records_matched(warehouse):
    frame = items(warehouse)
    jan, feb, mar, apr = (frame.loc[("0804", f"2025-0{m}")] for m in (1, 2, 3, 4))
    assert (jan["n_observatory"], jan["n_forensic"], jan["status"]) == (2, 2, "agree")
    assert (feb["n_observatory"], feb["n_forensic"], feb["status"]) == (1, 2, "to_reconcile")
    assert (mar["n_observatory"], mar["n_forensic"], mar["status"]) == (0, 1, "to_reconcile")
    assert (apr["n_observatory"], apr["n_forensic"], apr["status"]) == (2, 2, "agree")
    # San Miguelito's March victim: IMELCF did not report 0805 (it lists places with victims)
    assert frame.loc[("0805", "2025-03"), "status"] == "single_source"
    sep = "." if warehouse.dialect.name == "postgresql" else "_"  # the analysts' views
    with warehouse.connect() as conn:
        matches = pd.read_sql(
            sa.text(f"SELECT * FROM analytics{sep}reconciliation_match WHERE geo_code = '0804'"),
            conn,
        ).set_index("period")
        view = pd.read_sql(sa.text(f"SELECT * FROM analytics{sep}reconciliation"), conn)
    assert matches.loc["2025-01", ["both", "only_a", "only_b"]].tolist() == [2, 0, 0]
    assert matches.loc["2025-02", ["both", "only_a", "only_b"]].tolist() == [1, 0, 1]
    assert matches.loc["2025-03", ["both", "only_b", "recoded_b"]].tolist() == [0, 0, 1]
    assert matches.loc["2025-04", ["both", "ambiguous_a", "ambiguous_b"]].tolist() == [0, 2, 2]
    feb_view = view[(view["geo_code"] == "0804") & (view["period"] == "2025-02")]
    assert dict(zip(feb_view["source"], feb_view["count"], strict=True)) == {
        "observatory": 1,
        "forensic": 2,
    }
    # The record-level explanation: IMELCF's NEC-4 is the victim the observatory lacks.
    with warehouse.connect() as conn:
        records = reconcile.match_records(conn, reconcile.get_concept(None)).set_index(
            "incident_id"
        )
    assert records.loc["NEC-4", "match_observatory"] == "only"
    assert records.loc["NEC-1", "match_observatory"] == "pa_panama:H1"  # a day later
    assert records.loc["NEC-5", "match_observatory"] == "other_unit:0805"
    assert records.loc["M1", "match_forensic"] == "other_unit:0804"
    assert set(records.loc[["A1", "A2"], "match_forensic"]) == {"ambiguous"}


def test_indicators_count_one_source_and_say_which(warehouse):
    # Never both: January is 2 victims, not 4.
    assert value(warehouse, "HOMICIDE_COUNT", "0804", "2025-01") == (2, "")
    assert value(warehouse, "HOMICIDE_COUNT", "PA", "2025-01")[0] == 2
    # February: the default source (the observatory) until the table decides; flagged pending.
    assert value(warehouse, "HOMICIDE_COUNT", "0804", "2025-02") == (1, "pending")
    # 2 + 1 + 0 + 2 in 0804 and 1 in 0805: the recoded victim counted once, where San Miguelito has it
    assert value(warehouse, "HOMICIDE_COUNT", "PA", "2025") == (6, "pending")


def test_a_decision_changes_the_published_figure_and_a_new_file_reopens_it(warehouse):
    before = dt.datetime.now(dt.UTC)  # after the files were merged, before the decision
    decision = reconcile.decide(
        warehouse,
        "homicide_victims",
        "0804",
        "2025-02",
        "forensic",
        "ministry statistician",
        "NEC-4 confirmed with the prosecutor's file",
    )
    refresh_indicators(warehouse)
    assert value(warehouse, "HOMICIDE_COUNT", "0804", "2025-02") == (2, "agreed")
    assert value(warehouse, "SDG_16_1_1", "PA", "2025-02")[1] == "agreed"
    assert items(warehouse).loc[("0804", "2025-02"), "status"] == "decided"
    # As published before the decision: reproducible.
    as_of = indicator_values_as_of(warehouse, before)
    old = as_of[(as_of["indicator_code"] == "HOMICIDE_COUNT") & (as_of["geo_code"] == "0804")]
    assert old.set_index("period").loc["2025-02", "numerator"] == 1
    # IMELCF sends another February victim: the item reopens, the default source is back.
    deliver(
        warehouse.zone,
        warehouse,
        "pa_imelcf",
        "necropsias_2025_tardias.csv",
        IMELCF_HEADER + "\nNEC-8;20/02/2025;Morgue Judicial;Panamá;Panamá;Masculino;50;"
        "Homicidio;Arma blanca\n",
        encoding="latin-1",
    )
    refresh_indicators(warehouse)
    assert items(warehouse).loc[("0804", "2025-02"), "status"] == "reopened"
    assert value(warehouse, "HOMICIDE_COUNT", "0804", "2025-02") == (1, "pending")
    with warehouse.connect() as conn:
        closed = conn.execute(
            sa.select(
                reconciliation_decision.c.closed_at, reconciliation_decision.c.closed_reason
            ).where(reconciliation_decision.c.decision_id == decision)
        ).one()
    assert closed.closed_at is not None and "reopened" in closed.closed_reason


def test_decisions_are_refused_when_they_cannot_hold(warehouse):
    with pytest.raises(ValueError, match="did not report"):
        reconcile.decide(warehouse, None, "0805", "2025-03", "forensic", "x", "y")
    with pytest.raises(ValueError, match="unknown"):
        reconcile.decide(warehouse, None, "0804", "2025-02", "police", "x", "y")
    with pytest.raises(ValueError, match="no source reported"):
        reconcile.decide(warehouse, None, "0804", "2030-01", "forensic", "x", "y")


def test_the_statistician_reads_it_from_the_command_line(warehouse, tmp_path, capsys, monkeypatch):
    from obsx.cli import main

    monkeypatch.setenv("WAREHOUSE_URL", warehouse.url.render_as_string(hide_password=False))
    assert main(["--data-dir", str(tmp_path), "reconcile", "list"]) == 0
    listed = capsys.readouterr().out
    assert "0804  2025-02" in listed and "to_reconcile" in listed
    assert "0804  2025-01" not in listed  # agrees: not waiting for anyone
    assert main(["--data-dir", str(tmp_path), "reconcile", "show", "0804", "2025-03"]) == 0
    shown = capsys.readouterr().out
    assert "other_unit:0805" in shown and "NEC-5" in shown
    args = ["reconcile", "decide", "0804", "2025-02", "--source", "forensic"]
    assert main(["--data-dir", str(tmp_path), *args, "--reason", "autopsy", "--by", "ana"]) == 0
    assert (
        main(["--data-dir", str(tmp_path), *args[:-2], "--source", "police", "--reason", "x"]) == 2
    )


def test_guatemala_forensic_counts_against_an_observatory_register(
    warehouse_url, tmp_path, monkeypatch
):
    """INACIF's national January 2024 count (per municipio and sex, listing only places with
    victims, declaring all covered) against Mixco's register of 11 victims: INACIF has 13 in
    0108. Counts cannot be matched record by record; the figure follows INACIF, the default."""
    import shutil

    from obsx.warehouse.migrations import upgrade
    from obsx.warehouse.tables import get_engine

    monkeypatch.setenv("OBSX_DEPLOYMENT", "gt")
    engine = get_engine(warehouse_url)
    upgrade(engine)
    load_reference(engine)  # Guatemala's: INE's municipios, the 2018 census
    registry = observatories()
    zone = Dropzone(tmp_path, registry)
    zone.ensure_folders()
    fixtures = Path(__file__).parent / "fixtures" / "gt"
    for contributor, name in (
        ("gt_inacif", "homicidios_nacional_2024_01.csv"),
        ("gt_mixco", "mixco_homicidios_2024_01.csv"),
    ):
        shutil.copy(fixtures / name, zone.inbox(contributor) / name)
        key = partition_key(contributor, file_sha256(zone.inbox(contributor) / name))
        assert process_submission(key, zone, engine, registry, TODAY).counts["rows_rejected"] == 0
    compute_indicators(engine, NOW)
    frame = items(engine)
    mixco = frame.loc[("0108", "2024-01")]
    assert (mixco["n_forensic"], mixco["n_observatory"]) == (13, 11)
    assert mixco["status"] == "to_reconcile"  # 2 > max(1, 5% of 13)
    assert mixco["chosen_source"] == "forensic"
    assert frame.loc[("0101", "2024-01"), "status"] == "single_source"  # INACIF only
    assert value(engine, "HOMICIDE_COUNT", "0108", "2024-01") == (13, "pending")
    with engine.connect() as conn:
        inacif = conn.scalar(
            sa.text("SELECT sum(victim_count) FROM incidents WHERE observatory_code = 'gt_inacif'")
        )
        records = reconcile.match_records(conn, reconcile.get_concept(None))
    assert value(engine, "HOMICIDE_COUNT", "GT", "2024-01")[0] == inacif  # never INACIF + Mixco
    assert set(records.loc[records["source"] == "forensic", "match_observatory"]) == {"aggregate"}


def test_the_asset_lists_what_needs_a_decision(warehouse, tmp_path):
    import dagster as dg

    from assets.reconciliation import source_reconciliation
    from pipelines.resources import WarehouseResource

    url = warehouse.url.render_as_string(hide_password=False)
    result = dg.materialize(
        [source_reconciliation],
        resources={"warehouse": WarehouseResource(url=url, data_dir=str(tmp_path))},
    )
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["homicide_victims: to_reconcile"].value == 2
    assert metadata["homicide_victims: agree"].value == 2
    waiting = metadata["homicide_victims: needs a decision"].value
    assert "| 0804 | 2025-02 | 1 | 2 | to_reconcile |" in waiting
