"""Sign-in through a directory by OpenID Connect: a small identity provider run by the test
(discovery, authorize, token, keys; ID tokens signed RS256 with a key made here), the real
``obsx web`` process configured to use it. A verified e-mail of an active account signs in; an
unknown address, an unverified one or a token signed by another key does not."""

import secrets
import threading
import time
import urllib.parse

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from obsx.warehouse import accounts
from tests.conftest import sqlite_warehouse
from tests.webserver import PASSWORD, free_port, start_server, stop_server

CLIENT_ID, CLIENT_SECRET = "obsx-portal", "s3cret"


class Directory:
    """The identity provider: who the next person to sign in is, and with which key to sign."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.signing_key = self.key
        self.person = {}
        self.codes = {}
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def discovery(self, request):
        return JSONResponse(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def authorize(self, request):
        q = request.query_params
        assert q["client_id"] == CLIENT_ID and "openid" in q["scope"].split()
        code = secrets.token_urlsafe(8)
        self.codes[code] = q.get("nonce")
        query = urllib.parse.urlencode({"code": code, "state": q["state"]})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)

    async def token(self, request):
        form = await request.form()
        nonce = self.codes.pop(form["code"])
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "sub": "person-1",
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            **self.person,
        }
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.signing_key)
        return JSONResponse(
            {"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )

    async def jwks(self, request):
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})


@pytest.fixture(scope="module")
def directory():
    port = free_port()
    found = Directory(port)
    server = uvicorn.Server(
        uvicorn.Config(found.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield found
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def portal(tmp_path_factory, directory):
    root = tmp_path_factory.mktemp("oidc")
    engine = sqlite_warehouse(root)
    accounts.add_user(engine, "luis", "analyst", PASSWORD, email="Luis.Gomez@ministerio.example")
    accounts.add_user(engine, "baja", "analyst", PASSWORD, email="baja@ministerio.example")
    accounts.set_active(engine, "baja", False)
    server, url = start_server(
        root,
        OBSX_OIDC_ISSUER=directory.url,
        OBSX_OIDC_CLIENT_ID=CLIENT_ID,
        OBSX_OIDC_CLIENT_SECRET=CLIENT_SECRET,
        OBSX_OIDC_LABEL="Directorio del Ministerio",
    )
    yield {"url": url, "engine": engine}
    stop_server(server)


def sign_in_by_directory(portal, directory, **person) -> httpx.Response:
    directory.person = person
    client = httpx.Client(base_url=portal["url"], timeout=60, follow_redirects=True)
    assert "Iniciar sesión con Directorio del Ministerio" in client.get("/login").text
    return client.get("/login/oidc")


def test_a_verified_email_of_an_active_account_signs_in(portal, directory):
    page = sign_in_by_directory(
        portal, directory, email="luis.gomez@ministerio.example", email_verified=True
    )

    assert page.url.path == "/desk" and "Entregas por período" in page.text
    events = accounts.audit_events(portal["engine"])
    assert events[0]["action"] == "directory sign-in" and events[0]["username"] == "luis"


@pytest.mark.parametrize(
    "person",
    [
        {"email": "nadie@ministerio.example", "email_verified": True},
        {"email": "luis.gomez@ministerio.example", "email_verified": False},
        {"email": "baja@ministerio.example", "email_verified": True},
    ],
    ids=["unknown", "unverified", "disabled"],
)
def test_a_person_the_accounts_do_not_know_is_refused(portal, directory, person):
    page = sign_in_by_directory(portal, directory, **person)

    assert page.status_code == 401 and page.url.path == "/login/oidc/callback"
    assert "no corresponde a ninguna cuenta activa" in page.text


def test_an_id_token_signed_by_another_key_is_refused(portal, directory):
    directory.signing_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    try:
        page = sign_in_by_directory(
            portal, directory, email="luis.gomez@ministerio.example", email_verified=True
        )
    finally:
        directory.signing_key = directory.key

    assert page.status_code == 401 and "El directorio no confirmó su identidad" in page.text
