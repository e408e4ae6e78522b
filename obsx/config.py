"""Where things live. Environment variables are read when asked, never at import time."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = REPO_ROOT / "schemas"
REFERENCE_DIR = REPO_ROOT / "reference"

DEFAULT_DATA_DIR = "var"


def data_root(value: str | None = None) -> Path:
    """The data root: ``value``, else ``$OBSX_DATA_DIR``, else ``./var``; absolute."""
    return Path(value or os.environ.get("OBSX_DATA_DIR") or DEFAULT_DATA_DIR).resolve()


def warehouse_url(value: str | None = None, root: Path | None = None) -> str:
    """The warehouse URL: ``value``, else ``$WAREHOUSE_URL``, else SQLite in the data root."""
    url = value or os.environ.get("WAREHOUSE_URL")
    if url:
        return url
    return f"sqlite:///{(root or data_root()) / 'warehouse.db'}"
