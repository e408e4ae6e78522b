"""The production instance configuration really runs the pipeline with runs stored in PostgreSQL."""

import shutil

import dagster as dg
import pytest
import sqlalchemy as sa

from obsx.config import REPO_ROOT
from pipelines.definitions import defs
from pipelines.planning import range_tags

pytestmark = pytest.mark.postgres


def test_dagster_yaml_keeps_runs_in_postgres(tmp_path, postgres_url, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    instance_url = sa.make_url(postgres_url).set(drivername="postgresql+psycopg2")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", instance_url.render_as_string(hide_password=False))
    monkeypatch.setenv("OBSX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.db'}")
    inbox = tmp_path / "data" / "dropzone" / "pa_panama" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "enero.csv").write_bytes(b"id,fecha,distrito,delito\nP1,2025-01-03,0804,0101\n")

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        key = (
            "pa_panama__"
            + __import__("hashlib").sha256((inbox / "enero.csv").read_bytes()).hexdigest()[:16]
        )
        instance.add_dynamic_partitions("submissions", [key])
        result = defs.resolve_job_def("process_submissions").execute_in_process(
            instance=instance, tags=range_tags(key, key)
        )
        assert result.success

    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT pipeline_name, status FROM runs")).all()
    engine.dispose()
    assert [tuple(r) for r in stored] == [("process_submissions", "SUCCESS")]
