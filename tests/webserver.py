"""A real ``obsx web`` process for the web tests, on a free port of 127.0.0.1."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

OBSX = Path(sys.executable).with_name("obsx")
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    """``obsx web`` on a free port, as ``make web`` starts it; returns it once it answers."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WAREHOUSE_URL", "OBSX_WEB_SECRET", "OBSX_WEB_URL")
        and not k.startswith(("OBSX_SMTP", "OBSX_OIDC", "OBSX_LIMIT_"))
    }
    env |= {"OBSX_DATA_DIR": str(root), "OBSX_WEB_LOG_LEVEL": "warning"} | settings
    server = subprocess.Popen(
        [str(OBSX), "web", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"obsx web ended: {server.stderr.read().decode()[-2000:]}")
        try:
            httpx.get(url + "/login", timeout=2)
            return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("obsx web did not answer within 60 s")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
