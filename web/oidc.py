"""Sign-in through the ministry's directory by OpenID Connect (Authlib), when configured.

The directory only says who the person is; what they may do stays with the local account: an
OpenID Connect sign-in opens the active account whose e-mail address is the verified ``email``
claim of the ID token (Authlib checks its signature against the issuer's keys, its issuer,
audience, expiry and nonce). Nobody gets an account by signing in.

Settings: ``OBSX_OIDC_ISSUER`` (the issuer's URL: its ``/.well-known/openid-configuration`` is
read), ``OBSX_OIDC_CLIENT_ID``, ``OBSX_OIDC_CLIENT_SECRET``, ``OBSX_OIDC_LABEL`` (the button's
words, e.g. "Directorio del Ministerio"), and ``OBSX_WEB_URL`` when the public address is not
the one requests arrive at (the redirect URI is ``<OBSX_WEB_URL>/login/oidc/callback``).
"""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Directory:
    issuer: str
    client_id: str
    client_secret: str
    label: str
    web_url: str | None


def directory_settings(environ=None) -> Directory | None:
    env = os.environ if environ is None else environ
    issuer = (env.get("OBSX_OIDC_ISSUER") or "").rstrip("/")
    client_id = env.get("OBSX_OIDC_CLIENT_ID") or ""
    if not issuer or not client_id:
        return None
    return Directory(
        issuer=issuer,
        client_id=client_id,
        client_secret=env.get("OBSX_OIDC_CLIENT_SECRET") or "",
        label=env.get("OBSX_OIDC_LABEL") or "OpenID Connect",
        web_url=(env.get("OBSX_WEB_URL") or "").rstrip("/") or None,
    )


def oauth_client(directory: Directory):
    from authlib.integrations.starlette_client import OAuth

    oauth = OAuth()
    oauth.register(
        name="directory",
        server_metadata_url=f"{directory.issuer}/.well-known/openid-configuration",
        client_id=directory.client_id,
        client_secret=directory.client_secret,
        client_kwargs={"scope": "openid email profile"},
    )
    return oauth.create_client("directory")
