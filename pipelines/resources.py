"""Resources: the warehouse and the drop zone. Environment is read when used, not at import."""

from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from obsx.config import data_root, warehouse_url
from obsx.intake.dropzone import Dropzone
from obsx.warehouse.migrations import ensure_current
from obsx.warehouse.reference import read_contributors
from obsx.warehouse.tables import get_engine


class WarehouseResource(dg.ConfigurableResource):
    """The national warehouse. ``url`` else ``$WAREHOUSE_URL`` else ``<data root>/warehouse.db``."""

    url: str | None = None
    data_dir: str | None = None

    def engine(self) -> sa.Engine:
        root = data_root(self.data_dir)
        root.mkdir(parents=True, exist_ok=True)
        url = warehouse_url(self.url, root)
        engine = get_engine(url)
        ensure_current(url, engine)
        return engine


class DropzoneResource(dg.ConfigurableResource):
    """The observatories' drop folders under the data root (``$OBSX_DATA_DIR``, default ./var)."""

    data_dir: str | None = None
    settle_seconds: float = 5.0
    max_files_per_tick: int = 200

    def root(self) -> Path:
        return data_root(self.data_dir)

    def dropzone(self) -> Dropzone:
        dropzone = Dropzone(self.root(), read_contributors())  # registering creates its folder
        dropzone.ensure_folders()
        return dropzone
