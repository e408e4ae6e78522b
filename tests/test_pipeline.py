"""End to end through Dagster: sensor tick -> runs -> warehouse, feedback and indicators.

Runs on a temporary SQLite warehouse and on PostgreSQL, with a test Dagster instance.
"""

import json
import os
import shutil

import dagster as dg
import pytest
import sqlalchemy as sa

from obsx import cli
from obsx.warehouse.deployment import DEPLOYMENTS_DIR as DEPLOYMENTS
from obsx.warehouse.tables import indicator_value, quarantine, record_tables, submission
from pipelines.definitions import defs
from pipelines.resources import DropzoneResource
from pipelines.sensors import incident_inbox_sensor

incidents = record_tables("incidents").current

PANAMA_CSV = (
    "Código incidente,Fecha,Distrito,Delito (ICCS),Sexo víctima,Edad,Arma\n"
    "P1,2025-01-03,0804,0101,Masculino,25,Arma de fuego\n"
    "P2,2025-01-20,0804,0401,Femenino,31,Sin arma\n"
    "P3,2025-13-01,0804,0101,M,40,Arma de fuego\n"  # impossible date: quarantined
).encode()
COLON_CSV = (
    "No. caso;Fecha del hecho;Distrito;ICCS;Sexo;Edad;Arma empleada\n"
    "C1;09/01/2025;301;101;Hombre;22;AF\n"
).encode("cp1252")


@pytest.fixture
def root(tmp_path, warehouse_url, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("OBSX_DATA_DIR", str(root))
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    return root


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def drop(root, observatory, name, data):
    inbox = root / "dropzone" / observatory / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(data)
    os.utime(path, (1, 1))  # long finished
    return path


def tick(instance, cursor=None):
    """Evaluate the sensor and carry out what it asks, as the daemon would."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"dropzone": DropzoneResource(settle_seconds=0)},
    )
    result = incident_inbox_sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    job = defs.resolve_job_def("process_submissions")
    runs = []
    for request in result.run_requests or []:
        runs.append(
            job.execute_in_process(
                instance=instance, tags=request.tags, partition_key=request.partition_key
            )
        )
    return result, runs


def warehouse(url):
    return sa.create_engine(url)


def test_sensor_tick_processes_every_file_in_one_run(root, instance, warehouse_url):
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)
    drop(root, "pa_colon", "enero colón.csv", COLON_CSV)
    drop(root, "pa_colon", "roto.xlsx", b"PK\x03\x04 not really a workbook")
    (root / "dropzone" / "pa_panama" / "inbox" / "subiendo.csv.part").write_bytes(b"half")

    result, runs = tick(instance)

    assert len(runs) == 1 and runs[0].success
    checks = {e.check_name: e.passed for e in runs[0].get_asset_check_evaluations()}
    assert checks == {
        "accepted_rows_held_in_warehouse": True,
        "contract_expectations": True,
        "volume_in_line_with_history": True,
        "numerators_add_up": True,
        "reporting_units_have_population": True,
        "records_placed_in_geography": True,
        "reference_file_valid": True,
    }
    engine = warehouse(warehouse_url)
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(submission.c.file_name, submission.c.status)).all())
        assert statuses == {
            "enero.csv": "partly_accepted",
            "enero colón.csv": "accepted",
            "roto.xlsx": "rejected",
        }
        assert sorted(conn.scalars(sa.select(incidents.c.incident_id))) == ["C1", "P1", "P2"]
        rules = conn.execute(sa.select(quarantine.c.source_row, quarantine.c.rule)).all()
        assert sorted(rules, key=str) == sorted(
            [(4, "type-date"), (None, "unreadable-file")], key=str
        )
        v = indicator_value.c
        national = conn.execute(
            sa.select(v.numerator, v.value).where(
                v.indicator_code == "SDG_16_1_1",
                v.geo_level == "national",
                v.period == "2025",
                v.disaggregation == "",
            )
        ).one()
    engine.dispose()
    assert national.numerator == 2
    # Feedback for each file; the consumed uploads left the inboxes, the partial one stayed.
    feedback = sorted(p.name for p in (root / "dropzone" / "pa_colon" / "feedback").iterdir())
    assert [n.rsplit("__", 1)[0] for n in feedback] == ["enero_colon"] * 2 + ["roto"] * 2
    report = json.loads(
        next((root / "dropzone" / "pa_panama" / "feedback").glob("*.json")).read_text()
    )
    assert report["summary"]["rows_rejected"] == 1
    assert report["problems"][0]["row"] == 4
    assert [p.name for p in (root / "dropzone" / "pa_panama" / "inbox").iterdir()] == [
        "subiendo.csv.part"
    ]
    assert list((root / "dropzone" / "pa_colon" / "inbox").iterdir()) == []

    second, runs = tick(instance, result.cursor)
    assert runs == [] and second.skip_reason


def test_same_bytes_dropped_again_are_one_submission(root, instance, warehouse_url):
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)
    first, _ = tick(instance)
    drop(root, "pa_panama", "enero (reenvío).csv", PANAMA_CSV)

    _, runs = tick(instance, first.cursor)

    assert len(runs) == 1 and runs[0].success
    engine = warehouse(warehouse_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(submission)) == 1
        assert conn.scalar(sa.select(sa.func.max(incidents.c.revision))) == 1
    engine.dispose()
    again = next((root / "dropzone" / "pa_panama" / "feedback").glob("enero_reenvio__*.json"))
    assert json.loads(again.read_text())["duplicate_of_earlier_upload"] is True
    assert list((root / "dropzone" / "pa_panama" / "inbox").iterdir()) == []


def test_unreadable_file_touches_nothing_already_accepted(root, instance, warehouse_url):
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)
    first, _ = tick(instance)
    engine = warehouse(warehouse_url)
    with engine.connect() as conn:
        before = conn.execute(sa.select(incidents).order_by(incidents.c.incident_id)).all()

    drop(root, "pa_panama", "enero.csv", b"\x00\x01binary garbage")
    _, runs = tick(instance, first.cursor)

    assert runs[0].success
    with engine.connect() as conn:
        assert conn.execute(sa.select(incidents).order_by(incidents.c.incident_id)).all() == before
        assert sorted(conn.scalars(sa.select(submission.c.status))) == [
            "partly_accepted",
            "rejected",
        ]
    engine.dispose()


def test_obsx_run_processes_the_inboxes_and_says_when_attention_is_needed(
    root, tmp_path, monkeypatch, capsys, warehouse_url
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)

    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "Submissions processed: 1 (0 accepted, 1 partly accepted, 0 rejected)" in out
    # three rows: a small count, and the summary prints only what is published
    assert "National homicide rate 2025: withheld (disclosure control)" in out

    (root / "dropzone" / "pa_desconocido" / "inbox").mkdir(parents=True)
    assert cli.main(["run", "--settle-seconds", "0"]) == 1
    assert "NEEDS ATTENTION - Drop folders of no registered observatory: pa_desconocido" in (
        capsys.readouterr().out
    )
    # The runs are in the instance under DAGSTER_HOME, for the UI.
    with dg.DagsterInstance.get() as instance:
        jobs = {r.job_name for r in instance.get_runs()}
    assert jobs == {"process_submissions"}


def test_files_already_requested_do_not_starve_newer_ones(tmp_path, instance, monkeypatch):
    monkeypatch.setenv("OBSX_DATA_DIR", str(tmp_path / "data"))
    first = drop(tmp_path / "data", "pa_panama", "a.csv", PANAMA_CSV)
    second = drop(tmp_path / "data", "pa_colon", "b.csv", COLON_CSV)
    os.utime(second, (2, 2))
    resources = {"dropzone": DropzoneResource(settle_seconds=0, max_files_per_tick=1)}

    def evaluate(cursor):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        result = incident_inbox_sensor(context)
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        return result

    one = evaluate(None)  # its run is never executed: a.csv stays in the inbox
    two = evaluate(one.cursor)
    three = evaluate(two.cursor)

    def requested_keys(result):
        return [r.tags.get("dagster/asset_partition_range_start") for r in result.run_requests]

    assert requested_keys(one)[0].startswith("pa_panama__")
    assert requested_keys(two)[0].startswith("pa_colon__")
    assert three.run_requests == [] and three.skip_reason
    assert len(json.loads(three.cursor)["requested"]) == 2
    first.unlink()  # processed elsewhere: it leaves the cursor
    assert len(json.loads(evaluate(three.cursor).cursor)["requested"]) == 1


def test_a_broken_reference_file_or_profile_stops_no_one_else(
    root, tmp_path, monkeypatch, capsys, warehouse_url
):
    deployment = tmp_path / "deployment"
    shutil.copytree(DEPLOYMENTS / "pa", deployment)
    monkeypatch.setenv("OBSX_DEPLOYMENT", str(deployment))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)
    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    capsys.readouterr()

    geography = deployment / "reference" / "geography.csv"
    geography.write_text(
        geography.read_text(encoding="utf-8").replace("0804,district", "0804,barrio"),
        encoding="utf-8",
    )
    profile = deployment / "profiles" / "pa_colon" / "incidents.yaml"
    profile.write_text(profile.read_text(encoding="utf-8") + "\nsheeet: 2\n", encoding="utf-8")
    drop(root, "pa_panama", "febrero.csv", PANAMA_CSV.replace(b"P1,", b"P4,"))
    drop(root, "pa_colon", "enero.csv", COLON_CSV)

    assert cli.main(["run", "--settle-seconds", "0"]) == 1
    out = capsys.readouterr().out
    assert "Submissions processed: 1 (0 accepted, 1 partly accepted, 0 rejected)" in out
    # the geography: what to fix, where; Panamá's file went through on the last good geography
    assert "reference_geography:reference_file_valid" in out
    assert "row 66: level 'barrio' is not one of national, province, district" in out
    # Colón's profile: its file and line; Colón's file waits in its inbox for the fix
    assert "pa_colon/incidents.yaml:28: unknown key 'sheeet'" in out
    assert (root / "dropzone" / "pa_colon" / "inbox" / "enero.csv").exists()
    assert not (root / "dropzone" / "pa_panama" / "inbox" / "febrero.csv").exists()
    assert "Traceback" not in out


def test_an_unchanged_reference_file_is_not_loaded_again(
    root, tmp_path, monkeypatch, warehouse_url
):
    from obsx.warehouse import reference
    from obsx.warehouse.tables import geography, observatory, population, reference_load

    deployment = tmp_path / "deployment"
    shutil.copytree(DEPLOYMENTS / "pa", deployment)
    monkeypatch.setenv("OBSX_DEPLOYMENT", str(deployment))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    loads, real = [], {}
    for name in ("load_geography", "load_observatories", "load_population"):
        real[name] = getattr(reference, name)
        monkeypatch.setattr(
            reference, name, lambda *a, name=name, **kw: loads.append(name) or real[name](*a, **kw)
        )
    engine = warehouse(warehouse_url)

    def run(name):
        loads.clear()
        drop(root, "pa_panama", name, PANAMA_CSV.replace(b"P1,", f"Q{name},".encode()))
        assert cli.main(["run", "--settle-seconds", "0"]) == 0
        with engine.connect() as conn:
            names = dict(conn.execute(sa.select(geography.c.geo_code, geography.c.name)).all())
            people = conn.scalar(sa.select(sa.func.sum(population.c.population)))
        return sorted(loads), names, people

    every = ["load_geography", "load_observatories", "load_population"]
    first, names, people = run("enero.csv")
    assert first == every and names["0804"] == "Panamá"
    # the same reference files: neither read nor replaced
    assert run("febrero.csv") == ([], names, people)
    # the geography changes: loaded again, and the files checked against it again
    csv = deployment / "reference" / "geography.csv"
    csv.write_text(csv.read_text(encoding="utf-8").replace(",Panamá,", ",Panamá Centro,"), "utf-8")
    again, renamed, _ = run("marzo.csv")
    assert again == every and renamed["0804"] == "Panamá Centro"
    assert run("abril.csv")[0] == []
    # the contributors' registry changes: only it is loaded again
    registry = deployment / "contributors.yaml"
    registry.write_text(
        registry.read_text(encoding="utf-8").replace(
            "del Municipio de Panamá", "del Distrito de Panamá", 1
        ),
        encoding="utf-8",
    )
    assert run("junio.csv")[0] == ["load_observatories"]
    with engine.connect() as conn:
        names = set(conn.scalars(sa.select(observatory.c.name)))
    assert "Observatorio de Seguridad Ciudadana del Distrito de Panamá" in names
    # a geography loaded by other means (not from the file): the next run loads the file
    real["load_geography"](engine, reference.read_geography())
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(reference_load)) == 2
    assert run("mayo.csv")[0] == every
    engine.dispose()


def test_the_same_file_from_a_second_observatory_is_refused_not_left_behind(
    root, tmp_path, monkeypatch, capsys, warehouse_url
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    drop(root, "pa_panama", "enero.csv", PANAMA_CSV)
    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    drop(root, "pa_colon", "copia.csv", PANAMA_CSV)

    assert cli.main(["run", "--settle-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "Submissions processed: 1 (0 accepted, 0 partly accepted, 1 rejected)" in out
    assert "NEEDS ATTENTION" not in out
    feedback = json.loads(
        next((root / "dropzone" / "pa_colon" / "feedback").glob("*.json")).read_text()
    )
    assert [p["code"] for p in feedback["problems"]] == ["sent-by-another-observatory"]


def test_links_folders_and_hidden_names_in_an_inbox_are_named_not_ignored_forever(
    root, tmp_path, monkeypatch, capsys, warehouse_url
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    inbox = root / "dropzone" / "pa_colon" / "inbox"
    drop(root, "pa_colon", "..%2F..%2Fetc%2Fpasswd.csv", COLON_CSV)
    drop(root, "pa_colon", "subiendo.csv.part", b"half")  # an upload in progress: not named
    (inbox / "carpeta").mkdir()
    (inbox / "enlace.csv").symlink_to(tmp_path)

    assert cli.main(["run", "--settle-seconds", "0"]) == 1
    out = capsys.readouterr().out
    assert (
        "NEEDS ATTENTION - In an inbox but never processed (rename or remove): "
        "pa_colon/..%2F..%2Fetc%2Fpasswd.csv (hidden name), pa_colon/carpeta (folder), "
        "pa_colon/enlace.csv (link)"
    ) in out
    assert "subiendo" not in out
