"""Serving the application with uvicorn (``obsx web``, ``make web``)."""

import os
from pathlib import Path


def serve(root: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve on ``host:port`` until interrupted. Behind a reverse proxy, uvicorn trusts the
    ``X-Forwarded-*`` headers of the addresses in ``FORWARDED_ALLOW_IPS`` (default 127.0.0.1)."""
    import uvicorn

    from web.app import create_app

    app = create_app(root)
    print(f"Observatory Exchange web on http://{host}:{port} (data root {root})", flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        server_header=False,
        log_level=os.environ.get("OBSX_WEB_LOG_LEVEL", "info"),
    )
