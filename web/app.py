"""The routes: sign-in, the contributor's portal, the ministry's desk, accounts.

Authorization is checked on the server for every route: ``signed_in(*roles)`` refuses people of
other roles (403), and every contributor code, submission id, pack or bulletin named in a URL is
looked up among what the signed-in person may see (404 otherwise, so that nobody learns what
exists elsewhere). No path is built from what a request says: files are found by listing the
folders the server owns and matching names or ids from that listing or from the warehouse.
"""

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from obsx.config import data_root, warehouse_url
from obsx.indicators.catalogue import NOT_AVAILABLE
from obsx.warehouse import accounts
from obsx.warehouse.deployment import local_time
from web.oidc import directory_settings, oauth_client
from web.security import BodyLimit, SecurityHeaders, checked_form, csrf_token, session_secret
from web.words import TEXT

HERE = Path(__file__).resolve().parent
log = logging.getLogger("obsx.web")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TOKEN = re.compile(r"^[0-9a-f]{32}$")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
CLOSABLE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")
STAGED_SECONDS = 3600  # a checked file waits this long for "send"
SESSION_SECONDS = 8 * 3600
BOARD_PERIODS = 12


@dataclass
class Site:
    """What the routes share: the data root, the warehouse, the registry, the templates."""

    root: Path
    engine: sa.Engine
    templates: Jinja2Templates
    default_lang: str
    directory: object = None  # web.oidc.Directory, when sign-in by the directory is configured
    oauth: object = None

    @functools.cached_property
    def registry(self):
        from obsx.warehouse.reference import observatories

        return observatories(engine=self.engine)

    @functools.cached_property
    def zone(self):
        from obsx.intake.dropzone import Dropzone

        return Dropzone(self.root, self.registry)

    def view(self, name: str) -> str:
        """An analysts' view (docs/analytics.md): what the desk reads."""
        return (
            f"analytics.{name}" if self.engine.dialect.name == "postgresql" else f"analytics_{name}"
        )


def _site(request: Request) -> Site:
    return request.app.state.site


def _lang(request: Request) -> str:
    lang = request.session.get("lang")
    return lang if lang in TEXT else _site(request).default_lang


def _t(request: Request) -> dict[str, str]:
    return TEXT[_lang(request)]


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _user(request: Request) -> accounts.User | None:
    uid = request.session.get("uid")
    if not isinstance(uid, int):
        return None
    user = accounts.get_user(_site(request).engine, uid)
    if user is None or not user.active or request.session.get("pw") != _stamp(user):
        request.session.clear()  # disabled, or its password reset since this session began
        return None
    return user


def _stamp(user: accounts.User) -> str:
    return user.password_set_at.isoformat() if user.password_set_at else ""


def render(request: Request, template: str, status: int = 200, **context) -> Response:
    site = _site(request)
    return site.templates.TemplateResponse(
        request,
        template,
        {
            "directory": site.directory,
            "t": _t(request),
            "lang": _lang(request),
            "user": getattr(request.state, "user", None),
            "csrf": csrf_token(request),
            "flash": request.session.pop("flash", None),
            **context,
        },
        status_code=status,
    )


def _flash(request: Request, text: str, kind: str = "ok") -> None:
    request.session["flash"] = {"text": text, "kind": kind}


def signed_in(*roles: str):
    """The route needs a signed-in person of one of ``roles`` (any role when none given)."""

    def wrap(endpoint):
        @functools.wraps(endpoint)
        async def guarded(request: Request):
            user = await run_in_threadpool(_user, request)
            if user is None:
                if request.method == "GET":
                    return RedirectResponse("/login", status_code=303)
                raise HTTPException(401)
            if roles and user.role not in roles:
                raise HTTPException(403)
            request.state.user = user
            return await endpoint(request)

        return guarded

    return wrap


def _contributor(request: Request) -> str:
    """The contributor code of the URL, if the person is staff of it; else 404. Returns the
    registry's own string, never the request's."""
    user = request.state.user
    wanted = request.path_params["code"]
    for code in user.contributors:
        if code == wanted and code in _site(request).registry:
            return code
    raise HTTPException(404)


# --- signing in and out ------------------------------------------------------------------


async def home(request: Request):
    user = await run_in_threadpool(_user, request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    if user.role == "contributor":
        first = user.contributors[0] if user.contributors else None
        return RedirectResponse(f"/c/{first}" if first else "/login", status_code=303)
    return RedirectResponse("/desk" if user.role == "analyst" else "/admin/users", status_code=303)


async def login(request: Request):
    if request.method == "GET":
        return render(request, "login.html")
    form = await checked_form(request)
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))[:1024]
    site = _site(request)
    t = _t(request)
    limit = int(os.environ.get("OBSX_LOGIN_ADDRESS_LIMIT") or accounts.ADDRESS_LIMIT)
    until = await run_in_threadpool(
        accounts.address_throttled, site.engine, _address(request), limit
    )
    if until is not None:  # not even read: no account's count moves, no password is checked
        await run_in_threadpool(
            accounts.audit,
            site.engine,
            "sign-in refused",
            username,
            detail="throttled",
            address=_address(request),
        )
        message = t["throttled"].format(until=local_time(until, _lang(request)))
        return render(request, "login.html", status=429, error=message, username=username)
    answer = await run_in_threadpool(accounts.authenticate, site.engine, username, password)
    if answer.user is None:
        await run_in_threadpool(
            accounts.audit,
            site.engine,
            "sign-in refused",
            username,
            detail=answer.refused,
            address=_address(request),
        )
        message = t[answer.refused or "wrong"]
        if answer.refused == "locked" and answer.locked_until:
            message = message.format(until=local_time(answer.locked_until, _lang(request)))
        return render(request, "login.html", status=401, error=message, username=username)
    return await _start_session(request, answer.user, "sign-in")


async def _start_session(request: Request, user: accounts.User, how: str) -> Response:
    lang = request.session.get("lang")
    request.session.clear()  # a new session: nothing carried over from before signing in
    request.session.update(
        {"uid": user.user_id, "pw": _stamp(user), "csrf": secrets.token_urlsafe(32)}
    )
    if lang:
        request.session["lang"] = lang
    await run_in_threadpool(
        accounts.audit, _site(request).engine, how, user.username, address=_address(request)
    )
    return RedirectResponse("/", status_code=303)


async def login_directory(request: Request):
    """To the ministry's directory (OpenID Connect), which sends the person back to the
    callback below."""
    site = _site(request)
    if site.directory is None:
        raise HTTPException(404)
    base = site.directory.web_url or str(request.base_url).rstrip("/")
    return await site.oauth.authorize_redirect(request, f"{base}/login/oidc/callback")


async def login_directory_callback(request: Request):
    from authlib.integrations.starlette_client import OAuthError
    from joserfc.errors import JoseError

    site = _site(request)
    if site.directory is None:
        raise HTTPException(404)
    t = _t(request)
    try:
        token = await site.oauth.authorize_access_token(request)
    except (OAuthError, JoseError) as exc:  # a bad state, code, signature, issuer, nonce…
        log.warning("directory sign-in refused: %r", exc)
        return render(request, "login.html", status=401, error=t["directory_failed"])
    claims = token.get("userinfo") or {}
    email = claims.get("email") if claims.get("email_verified") is True else None
    answer = (
        await run_in_threadpool(accounts.sign_in_by_email, site.engine, email)
        if email
        else accounts.SignIn(None, "unknown")
    )
    if answer.user is None:
        await run_in_threadpool(
            accounts.audit,
            site.engine,
            "directory sign-in refused",
            None,
            target=email or claims.get("sub"),
            detail=answer.refused,
            address=_address(request),
        )
        return render(request, "login.html", status=401, error=t["directory_unknown"])
    return await _start_session(request, answer.user, "directory sign-in")


async def logout(request: Request):
    await checked_form(request)
    user = await run_in_threadpool(_user, request)
    if user is not None:
        await run_in_threadpool(
            accounts.audit,
            _site(request).engine,
            "sign-out",
            user.username,
            address=_address(request),
        )
    lang = request.session.get("lang")
    request.session.clear()
    if lang:
        request.session["lang"] = lang
    return RedirectResponse("/login", status_code=303)


async def language(request: Request):
    form = await checked_form(request)
    wanted = form.get("lang")
    request.session["lang"] = wanted if wanted in TEXT else _site(request).default_lang
    return RedirectResponse("/", status_code=303)


# --- the contributor's portal --------------------------------------------------------------


def _submissions(site: Site, code: str) -> list[dict]:
    from obsx.warehouse.tables import submission as s

    with site.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                s.c.submission_id,
                s.c.file_name,
                s.c.dataset,
                s.c.status,
                s.c.received_at,
                s.c.rows_read,
                s.c.rows_accepted,
                s.c.rows_rejected,
                s.c.warnings,
            )
            .where(s.c.observatory_code == code)
            .order_by(s.c.received_at.desc())
            .limit(500)
        )
        return [dict(r._mapping) for r in rows]


def _waiting(site: Site, code: str) -> list[str]:
    from obsx.intake.dropzone import display_name

    return [display_name(p) for _, p, _ in site.zone.finished_files(settle_seconds=0, codes=[code])]


def _datasets() -> list[str]:
    from obsx.intake.contract import observatory_datasets

    return list(observatory_datasets())


@signed_in("contributor")
async def portal(request: Request):
    code = _contributor(request)
    site = _site(request)
    history = await run_in_threadpool(_submissions, site, code)
    waiting = await run_in_threadpool(_waiting, site, code)
    return render(
        request,
        "portal.html",
        code=code,
        name=site.registry[code].name,
        history=history,
        waiting=waiting,
        datasets=_datasets(),
        max_mb=_max_mb(),
    )


def _max_mb() -> int:
    from obsx.intake.limits import MB, current_limits

    return current_limits().max_file_bytes // MB


def _staging(site: Site, code: str) -> Path:
    return site.root / "web" / "staging" / code


def _clear_stale(folder: Path) -> None:
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        try:
            if time.time() - path.stat().st_mtime > STAGED_SECONDS:
                path.unlink(missing_ok=True)
        except FileNotFoundError:
            continue


async def _read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """The uploaded bytes, refusing past ``max_bytes`` as they are read."""
    from obsx.intake.limits import LimitExceeded
    from obsx.intake.uploads import UploadRefused

    chunks, size = [], 0
    while block := await upload.read(1 << 20):
        size += len(block)
        if size > max_bytes:  # not read further: its whole size is not known
            problem = LimitExceeded("max_file_bytes", max_bytes).problem()
            raise UploadRefused("size", problem.message("en"), problem)
        chunks.append(block)
    return b"".join(chunks)


@signed_in("contributor")
async def check(request: Request):
    """Check before sending: the file's verdict as ``obsx validate`` gives it; the bytes wait
    in the server's staging folder under a random token until "send" or "cancel"."""
    from obsx.intake.dropzone import display_name
    from obsx.intake.limits import current_limits
    from obsx.intake.uploads import UploadRefused, check_size, dry_run, upload_suffix

    code = _contributor(request)
    site = _site(request)
    form = await checked_form(request, max_files=1)
    upload = form.get("file")
    dataset = form.get("dataset") or None
    t = _t(request)
    if dataset is not None and dataset not in _datasets():
        raise HTTPException(400)
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise UploadRefused("missing", "")
        name = display_name(Path(upload.filename.replace("\\", "/").split("/")[-1]))
        upload_suffix(name)
        data = await _read_upload(upload, current_limits().max_file_bytes)
        check_size(len(data))
    except UploadRefused as exc:
        _flash(
            request, t[f"refused_{exc.code}"].format(detail=exc.message(_lang(request))), "error"
        )
        return RedirectResponse(f"/c/{code}", status_code=303)
    started = time.monotonic()
    report = await run_in_threadpool(
        dry_run, data, name, site.registry[code], dataset, _lang(request)
    )
    seconds = time.monotonic() - started
    folder = _staging(site, code)
    folder.mkdir(parents=True, exist_ok=True)
    _clear_stale(folder)
    token = secrets.token_hex(16)
    (folder / token).write_bytes(data)
    meta = {"name": name, "dataset": report.dataset, "uid": request.state.user.user_id}
    (folder / f"{token}.json").write_text(json.dumps(meta), encoding="utf-8")
    await run_in_threadpool(
        accounts.audit,
        site.engine,
        "check",
        request.state.user.username,
        target=f"{code}/{name}",
        detail=f"{report.status}, {report.counts['rows_read']} rows, {seconds:.2f} s",
        address=_address(request),
    )
    return render(
        request,
        "verdict.html",
        code=code,
        name=site.registry[code].name,
        doc=report.as_document(),
        token=token,
        seconds=seconds,
    )


def _staged(request: Request, code: str, token: str) -> tuple[Path, dict] | None:
    """The staged file of ``token`` if this person staged it for ``code``."""
    if not TOKEN.match(token):
        return None
    folder = _staging(_site(request), code)
    for path in folder.glob("*.json") if folder.is_dir() else []:
        if path.stem == token:  # matched from the listing, never joined from the request
            meta = json.loads(path.read_text(encoding="utf-8"))
            if meta.get("uid") == request.state.user.user_id:
                return path.with_suffix(""), meta
    return None


@signed_in("contributor")
async def send(request: Request):
    from obsx.intake.uploads import UploadRefused, deliver

    code = _contributor(request)
    site = _site(request)
    form = await checked_form(request)
    found = _staged(request, code, str(form.get("token", "")))
    t = _t(request)
    if found is None:
        _flash(request, t["expired"], "error")
        return RedirectResponse(f"/c/{code}", status_code=303)
    path, meta = found
    action = form.get("action")
    if action == "send":
        try:
            done = await run_in_threadpool(
                deliver, site.zone, code, meta["name"], path.read_bytes()
            )
        except UploadRefused as exc:
            _flash(
                request,
                t[f"refused_{exc.code}"].format(detail=exc.message(_lang(request))),
                "error",
            )
        else:
            await run_in_threadpool(
                accounts.audit,
                site.engine,
                "upload",
                request.state.user.username,
                target=f"{code}/{done.path.name}",
                detail=f"sha256 {done.sha256}, {done.size} bytes",
                address=_address(request),
            )
            _flash(request, t["sent"].format(name=done.path.name))
    else:
        _flash(request, t["cancelled"])
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)
    return RedirectResponse(f"/c/{code}", status_code=303)


def _submission_of(request: Request) -> dict:
    """The submission of the URL, if it is one of the person's contributors'; else 404."""
    from obsx.warehouse.tables import submission as s

    sid = request.path_params["sid"]
    if not HEX64.match(sid):
        raise HTTPException(404)
    with _site(request).engine.connect() as conn:
        row = conn.execute(sa.select(s).where(s.c.submission_id == sid)).first()
    if row is None or row.observatory_code not in request.state.user.contributors:
        raise HTTPException(404)
    return dict(row._mapping)


def _feedback_files(site: Site, row: dict) -> tuple[Path | None, Path | None]:
    """The feedback JSON of a submission and its rejected-rows CSV, found by listing the
    contributor's feedback folder for the id's 16 first hex digits (as obsx names them)."""
    folder = site.zone.feedback_dir(row["observatory_code"])
    marker = f"__{row['submission_id'][:16]}."
    found_json = found_csv = None
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if marker not in path.name or path.name.startswith("."):
            continue
        if path.name.endswith(marker + "json"):
            found_json = path
        elif path.suffix == ".csv":
            found_csv = path
    return found_json, found_csv


@signed_in("contributor")
async def feedback(request: Request):
    site = _site(request)
    row = await run_in_threadpool(_submission_of, request)
    doc_path, csv_path = _feedback_files(site, row)
    doc = json.loads(doc_path.read_text(encoding="utf-8")) if doc_path else None
    return render(
        request,
        "feedback.html",
        code=row["observatory_code"],
        name=site.registry[row["observatory_code"]].name
        if row["observatory_code"] in site.registry
        else row["observatory_code"],
        row=row,
        doc=doc,
        has_csv=csv_path is not None,
    )


@signed_in("contributor")
async def rejected_rows(request: Request):
    site = _site(request)
    row = await run_in_threadpool(_submission_of, request)
    _, csv_path = _feedback_files(site, row)
    if csv_path is None:
        raise HTTPException(404)
    await run_in_threadpool(
        accounts.audit,
        site.engine,
        "download rejected rows",
        request.state.user.username,
        target=row["submission_id"],
        address=_address(request),
    )
    return FileResponse(csv_path, media_type="text/csv; charset=utf-8", filename=csv_path.name)


def _packs(site: Site, code: str) -> dict[str, Path]:
    folder = site.zone.reports_dir(code)
    if not folder.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(folder.iterdir(), reverse=True)
        if p.is_file() and not p.is_symlink() and p.suffix in (".html", ".pdf")
    }


@signed_in("contributor")
async def packs(request: Request):
    code = _contributor(request)
    site = _site(request)
    return render(
        request,
        "packs.html",
        code=code,
        name=site.registry[code].name,
        packs=list(_packs(site, code)),
    )


@signed_in("contributor")
async def pack_file(request: Request):
    code = _contributor(request)
    path = _packs(_site(request), code).get(request.path_params["name"])
    if path is None:
        raise HTTPException(404)
    return _download(path)


def _download(path: Path) -> Response:
    """A file as an attachment (a PDF may open in the browser): no HTML of ours runs in the
    portal's origin without the portal's CSP."""
    if path.suffix == ".pdf":
        return FileResponse(path, media_type="application/pdf")
    return FileResponse(path, filename=path.name, content_disposition_type="attachment")


def _calendar(site: Site, code: str) -> list[dict]:
    """What the contributor owes, newest first: due date, first arrival, status."""
    with site.engine.connect() as conn:
        frame = pd.read_sql(
            sa.text(
                "SELECT dataset, period_type, period, due_on, received_at, status"
                f" FROM {site.view('reporting_status')} WHERE observatory_code = :code"
                " ORDER BY period DESC, dataset"
            ),
            conn,
            params={"code": code},
        )
    frame["due_on"] = frame["due_on"].astype(str).str[:10]
    # the day it arrived where the due date is counted: the deployment's time zone
    frame["received_at"] = frame["received_at"].map(lambda v: local_time(v, "en", note=False)[:10])
    return frame.to_dict("records")


@signed_in("contributor")
async def calendar(request: Request):
    code = _contributor(request)
    site = _site(request)
    rows = await run_in_threadpool(_calendar, site, code)
    return render(
        request,
        "calendar.html",
        code=code,
        name=site.registry[code].name,
        rows=rows,
        datasets=_datasets(),
    )


@signed_in("contributor")
async def template(request: Request):
    """The Excel template of one of the contributor's datasets (``obsx template``)."""
    from obsx.intake.contract import load_contract
    from obsx.publication.publishing import excel_template

    code = _contributor(request)
    wanted = request.path_params["dataset"]
    dataset = next((d for d in _datasets() if d == wanted), None)
    if dataset is None:
        raise HTTPException(404)
    lang = _lang(request)
    data = await run_in_threadpool(excel_template, load_contract(dataset), lang)
    stem = "plantilla" if lang == "es" else "template"
    return Response(
        data,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"content-disposition": f'attachment; filename="{stem}_{dataset}_{code}.xlsx"'},
    )


# --- the ministry's desk --------------------------------------------------------------------


def _board(site: Site, year: str | None) -> tuple[list[dict], list[str], str | None]:
    """Per dataset: contributors x the periods of ``year`` (default: the latest year anything
    arrived), each cell the period's status from the analysts' view."""
    with site.engine.connect() as conn:
        frame = pd.read_sql(
            sa.text(
                "SELECT observatory_code, dataset, period_type, period, due_on, received_at,"
                f" status FROM {site.view('reporting_status')}"
            ),
            conn,
        )
    if frame.empty:
        return [], [], None
    frame["year"] = frame["period"].str[:4]
    years = sorted(frame["year"].unique())
    if year not in years:
        arrived = frame[frame["status"].isin(["on_time", "late"])]
        year = max(arrived["year"]) if len(arrived) else years[-1]
    frame = frame[frame["year"] == year]
    boards = []
    for (dataset, period_type), group in frame.groupby(["dataset", "period_type"], sort=True):
        periods = sorted(group["period"].unique())
        due = group.groupby("period")["due_on"].min().astype(str).str[:10].to_dict()
        cells = {(r.observatory_code, r.period): r for r in group.itertuples()}
        rows = []
        for code in sorted(group["observatory_code"].unique()):
            name = site.registry[code].name if code in site.registry else code
            row = []
            for p in periods:
                r = cells.get((code, p))
                received = None
                if r is not None and r.received_at is not None and not pd.isna(r.received_at):
                    received = str(r.received_at)[:10]
                row.append({"status": r.status if r is not None else "", "received": received})
            rows.append({"code": code, "name": name, "cells": row})
        totals = group["status"].value_counts().to_dict()
        boards.append(
            {
                "dataset": dataset,
                "period_type": period_type,
                "periods": periods,
                "due": due,
                "rows": rows,
                "totals": totals,
            }
        )
    return boards, years, year


@signed_in("analyst")
async def desk(request: Request):
    wanted = request.query_params.get("year")
    year = wanted if wanted and re.fullmatch(r"\d{4}", wanted) else None
    boards, years, shown = await run_in_threadpool(_board, _site(request), year)
    return render(request, "desk.html", boards=boards, years=years, year=shown)


def _desk_submissions(site: Site, code: str) -> list[dict]:
    """A contributor's submissions as the desk lists them: file, dataset, status, counts."""
    from obsx.warehouse.tables import submission as s

    with site.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                s.c.file_name,
                s.c.dataset,
                s.c.status,
                s.c.received_at,
                s.c.rows_read,
                s.c.rows_accepted,
                s.c.rows_rejected,
            )
            .where(s.c.observatory_code == code)
            .order_by(s.c.received_at.desc())
            .limit(500)
        )
        return [dict(r._mapping) for r in rows]


@signed_in("analyst")
async def desk_submissions(request: Request):
    site = _site(request)
    wanted = request.query_params.get("contributor", "")
    code = next((c for c in site.registry if c == wanted), None)
    if code is None:
        raise HTTPException(404)
    rows = await run_in_threadpool(_desk_submissions, site, code)
    return render(
        request, "desk_submissions.html", code=code, name=site.registry[code].name, history=rows
    )


def _reconciliation(site: Site) -> tuple[object, list[dict]]:
    from obsx.indicators import reconcile

    try:
        concept = reconcile.get_concept(None)
    except ValueError:
        return None, []
    with site.engine.connect() as conn:
        frame = pd.read_sql(
            sa.text(
                "SELECT geo_code, period, source, count, difference, status, chosen_source,"
                f" decided_by, decided_at, reason FROM {site.view('reconciliation')}"
                " WHERE concept = :concept"
            ),
            conn,
            params={"concept": concept.code},
        )
    shown = frame[frame["status"].isin(["to_reconcile", "reopened", "decided"])]
    shown = shown.astype(object).where(shown.notna(), None)  # no decision yet: None, not NaN
    items = []
    for (geo, period), group in shown.groupby(["geo_code", "period"], sort=True):
        first = group.iloc[0]
        counts = {
            r.source: r.count
            for r in group.itertuples()
            if isinstance(r.source, str) and r.count is not None
        }
        items.append(
            {
                "geo": geo,
                "period": period,
                "counts": counts,
                "difference": first["difference"],
                "status": first["status"],
                "follows": first["chosen_source"],
                "decided_by": first["decided_by"],
                "reason": first["reason"],
            }
        )
    items.sort(key=lambda i: (i["status"] == "decided", i["period"], i["geo"]))
    return concept, items


@signed_in("analyst")
async def reconciliation(request: Request):
    concept, items = await run_in_threadpool(_reconciliation, _site(request))
    labels = {s.name: s.said(_lang(request)) for s in concept.sources} if concept else {}
    return render(request, "reconciliation.html", concept=concept, items=items, sources=labels)


def _decide(
    site: Site, concept_code: str, geo: str, period: str, source: str, by: str, reason: str
):
    from obsx.indicators import reconcile

    decision = reconcile.decide(site.engine, concept_code, geo, period, source, by, reason)
    with site.engine.begin() as conn:
        reconcile.refresh_reconciliation(conn, dt.datetime.now(dt.UTC))
    return decision


@signed_in("analyst")
async def decide(request: Request):
    from obsx.indicators import reconcile

    form = await checked_form(request)
    site = _site(request)
    t = _t(request)
    geo, period = str(form.get("geo", "")), str(form.get("period", ""))
    source, reason = str(form.get("source", "")), str(form.get("reason", "")).strip()
    if not reason:
        _flash(request, t["reason_required"], "error")
        return RedirectResponse("/desk/reconciliation", status_code=303)
    concept = reconcile.get_concept(None)
    user = request.state.user
    try:
        decision = await run_in_threadpool(
            _decide, site, concept.code, geo, period, source, user.username, reason[:2000]
        )
    except ValueError as exc:
        _flash(request, str(exc), "error")
        return RedirectResponse("/desk/reconciliation", status_code=303)
    await run_in_threadpool(
        accounts.audit,
        site.engine,
        "reconciliation decision",
        user.username,
        target=f"{concept.code} {geo} {period}",
        detail=f"decision {decision}: follows {source}; {reason[:500]}",
        address=_address(request),
    )
    said = concept.source(source).said(_lang(request))
    _flash(request, t["decision_recorded"].format(geo=geo, period=period, source=said))
    return RedirectResponse("/desk/reconciliation", status_code=303)


FIGURE_PERIOD = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$")


def _figures(site: Site, code: str | None, period: str | None, lang: str) -> dict:
    """One indicator's published cells (totals) for one period, every area, from the analysts'
    view: withheld cells come without a value, as they are published."""
    with site.engine.connect() as conn:
        indicators = pd.read_sql(
            sa.text(
                f"SELECT indicator_code, name_es, name_en, unit FROM {site.view('indicator')}"
                " ORDER BY indicator_code"
            ),
            conn,
        )
        codes = list(indicators["indicator_code"])
        if not codes:
            return {"indicators": [], "periods": [], "rows": []}
        code = code if code in codes else codes[0]
        periods = list(
            conn.scalars(
                sa.text(
                    f"SELECT DISTINCT period FROM {site.view('indicator_value')}"
                    " WHERE indicator_code = :code ORDER BY period DESC"
                ),
                {"code": code},
            )
        )
        if period not in periods:
            months = [p for p in periods if MONTH.match(p)]
            period = (months or periods or [None])[0]
        rows = pd.read_sql(
            sa.text(
                "SELECT v.geo_level, v.geo_code, g.name, v.numerator, v.denominator, v.value,"
                " v.unit, v.conf_status, v.quality_flag, v.coverage, v.change_previous,"
                " v.reconciliation"
                f" FROM {site.view('indicator_value')} v LEFT JOIN {site.view('geography')} g"
                " ON g.geo_code = v.geo_code AND g.geo_level = v.geo_level AND g.valid_to IS NULL"
                " WHERE v.indicator_code = :code AND v.period = :period AND v.disaggregation = ''"
            ),
            conn,
            params={"code": code, "period": period},
        )
    levels = current_levels()
    order = {level: i for i, level in enumerate(["national", *levels])}
    level_names = {code: name.get(lang, code) for code, name in levels.items()}
    rows["order"] = rows["geo_level"].map(lambda level: order.get(level, 99))
    rows = rows.sort_values(["order", "geo_code"]).drop(columns="order")
    rows = rows.astype(object).where(rows.notna(), None)
    chosen = indicators[indicators["indicator_code"] == code].iloc[0]
    return {
        "indicators": [
            (r.indicator_code, r.name_es if lang == "es" else r.name_en)
            for r in indicators.itertuples()
        ],
        "code": code,
        "name": chosen["name_es"] if lang == "es" else chosen["name_en"],
        "unit": chosen["unit"],
        "period": period,
        "periods": periods,
        "rows": rows.to_dict("records"),
        "level_names": level_names,
    }


GEO_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,16}$")


def _explain(site: Site, code: str, geo: str, period: str) -> dict | None:
    """What makes one published figure, as an analyst may read it: the files each side was
    counted from and the population of a rate. Never how many rows each file gave, nor which:
    a file is one contributor's quarter or month, so its count is a finer cell, often one that
    is withheld (the demo's national homicides per file were Arraiján's withheld quarters).
    A withheld figure: nothing at all."""
    from obsx.publication.lineage import explain

    with site.engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(
                    "SELECT indicator_code, geo_level, geo_code, period, value, numerator,"
                    f" denominator, unit, conf_status, quality_flag FROM {site.view('indicator_value')}"
                    " WHERE indicator_code = :code AND geo_code = :geo AND period = :period"
                    " AND disaggregation = ''"
                ),
                {"code": code, "geo": geo, "period": period},
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    row = dict(row)
    found = {"figure": row, "files": [], "population": []}
    if row["conf_status"] != "F" or row["quality_flag"] == NOT_AVAILABLE:
        return found  # a withheld figure's files and rows would count it
    lineage = explain(site.engine, code, geo, period)
    records = lineage.records
    if not records.empty:
        files = records[["side", "observatory_code", "file_name", "received_at"]]
        found["files"] = [
            {
                "side": side,
                "contributor": contributor,
                "contributor_name": getattr(site.registry.get(contributor), "name", contributor),
                "file_name": file_name,
                "received_at": received_at,
            }
            for side, contributor, file_name, received_at in files.drop_duplicates()
            .sort_values(["side", "observatory_code", "file_name"])
            .itertuples(index=False)
        ]
    if not lineage.population.empty:
        population = lineage.population  # by sex and age group, newest year first
        latest = population[
            population["year"] == population.groupby("geo_code")["year"].transform("max")
        ]
        total = latest.groupby(["geo_code", "year"], as_index=False).agg(
            population=("population", "sum"), source=("source", "first")
        )
        found["population"] = total.to_dict("records")
    return found


@signed_in("analyst")
async def figure_explain(request: Request):
    params = request.query_params
    code, geo, period = params.get("indicator", ""), params.get("geo", ""), params.get("period", "")
    if not (FIGURE_PERIOD.match(period) and GEO_CODE.match(geo) and GEO_CODE.match(code[:16])):
        raise HTTPException(404)
    found = await run_in_threadpool(_explain, _site(request), code, geo, period)
    if found is None:
        raise HTTPException(404)
    return render(request, "explain.html", **found)


@signed_in("analyst")
async def changes(request: Request):
    from obsx.publication.bulletin import changes_since_last_bulletin

    found = await run_in_threadpool(
        changes_since_last_bulletin, _site(request).engine, _lang(request)
    )
    return render(request, "changes.html", **found)


def current_levels() -> dict[str, dict[str, str]]:
    """The deployment's levels, top first: code -> name by language."""
    from obsx.warehouse.deployment import current_deployment

    return {level.code: level.name for level in current_deployment().levels}


@signed_in("analyst")
async def figures(request: Request):
    code = request.query_params.get("indicator")
    period = request.query_params.get("period")
    period = period if period and FIGURE_PERIOD.match(period) else None
    found = await run_in_threadpool(_figures, _site(request), code, period, _lang(request))
    return render(request, "figures.html", **found)


def _corrections(site: Site):
    from obsx.warehouse import corrections

    return corrections.list_corrections(site.engine, status="pending")


@signed_in("analyst")
async def corrections_page(request: Request):
    items = await run_in_threadpool(_corrections, _site(request))
    return render(request, "corrections.html", items=items)


@signed_in("analyst")
async def corrections_action(request: Request):
    """Approve (applied, indicators recomputed) or reject (a reason required) held corrections."""
    from obsx.warehouse import corrections

    form = await checked_form(request)
    site = _site(request)
    t = _t(request)
    action = form.get("action")
    reason = str(form.get("reason", "")).strip()
    pending = {c.correction_id for c in await run_in_threadpool(_corrections, site)}
    ids = sorted({int(i) for i in form.getlist("ids") if str(i).isdigit()} & pending)
    if action not in ("approve", "reject") or not ids:
        _flash(request, t["choose_corrections"], "error")
        return RedirectResponse("/desk/corrections", status_code=303)
    if action == "reject" and not reason:
        _flash(request, t["reason_required"], "error")
        return RedirectResponse("/desk/corrections", status_code=303)
    user = request.state.user
    if action == "approve":
        done = await run_in_threadpool(corrections.approve, site.engine, ids, user.username)
    else:
        done = await run_in_threadpool(
            corrections.reject, site.engine, ids, user.username, reason[:2000]
        )
    await run_in_threadpool(
        accounts.audit,
        site.engine,
        f"corrections {action}",
        user.username,
        target=", ".join(f"#{i}" for i in ids),
        detail=reason or None,
        address=_address(request),
    )
    said = {"approve": "corrections_approved", "reject": "corrections_rejected"}[action]
    _flash(request, t[said].format(count=done))
    return RedirectResponse("/desk/corrections", status_code=303)


def _bulletins(site: Site) -> dict[str, dict[str, Path]]:
    """Built bulletins by month: {period: {file name: path}}, from the reports folder."""
    base = site.root / "reports"
    found: dict[str, dict[str, Path]] = {}
    for folder in sorted(base.iterdir(), reverse=True) if base.is_dir() else []:
        if not MONTH.match(folder.name) or not folder.is_dir():
            continue
        files = {
            p.name: p
            for p in sorted(folder.iterdir())
            if p.is_file()
            and p.name.startswith(("boletin_", "bulletin_"))
            and p.suffix in (".html", ".pdf")
        }
        if files:
            found[folder.name] = files
    return found


@signed_in("analyst")
async def periods(request: Request):
    from obsx.publication.bulletin import last_closed_month
    from obsx.warehouse import corrections

    site = _site(request)
    closed = await run_in_threadpool(corrections.closed_periods, site.engine)
    return render(
        request,
        "periods.html",
        closed=closed.to_dict("records"),
        bulletins={p: list(files) for p, files in _bulletins(site).items()},
        default_month=last_closed_month(),
    )


@signed_in("analyst")
async def period_action(request: Request):
    from obsx.warehouse import corrections

    form = await checked_form(request)
    site = _site(request)
    t = _t(request)
    period, action = str(form.get("period", "")).strip(), form.get("action")
    if not CLOSABLE.match(period) or action not in ("close", "reopen"):
        _flash(request, t["bad_period"], "error")
        return RedirectResponse("/desk/periods", status_code=303)
    user = request.state.user
    if action == "close":
        months = await run_in_threadpool(
            corrections.close_period, site.engine, period, user.username, form.get("note") or None
        )
        message = t["closed_msg"].format(months=", ".join(months) or "—")
    else:
        months = await run_in_threadpool(corrections.reopen_period, site.engine, period)
        message = t["reopened_msg"].format(months=", ".join(months))
    await run_in_threadpool(
        accounts.audit,
        site.engine,
        f"period {action}",
        user.username,
        target=period,
        address=_address(request),
    )
    _flash(request, message)
    return RedirectResponse("/desk/periods", status_code=303)


@signed_in("analyst")
async def bulletin(request: Request):
    from obsx.publication.bulletin import build_report

    form = await checked_form(request)
    site = _site(request)
    t = _t(request)
    period = str(form.get("period", "")).strip()
    if not MONTH.match(period):
        _flash(request, t["bad_period"], "error")
        return RedirectResponse("/desk/periods", status_code=303)
    built = await run_in_threadpool(build_report, site.engine, site.root, period, _lang(request))
    await run_in_threadpool(
        accounts.audit,
        site.engine,
        "bulletin built",
        request.state.user.username,
        target=period,
        detail=f"revised {built.revised}",
        address=_address(request),
    )
    _flash(request, t["built"].format(period=period, revised=built.revised))
    return RedirectResponse("/desk/periods", status_code=303)


@signed_in("analyst")
async def bulletin_file(request: Request):
    files = _bulletins(_site(request)).get(request.path_params["period"], {})
    path = files.get(request.path_params["name"])
    if path is None:
        raise HTTPException(404)
    return _download(path)


# --- accounts ------------------------------------------------------------------------------


async def _users_page(request: Request, new_password: dict | None = None) -> Response:
    site = _site(request)
    listed = await run_in_threadpool(accounts.list_users, site.engine)
    events = await run_in_threadpool(accounts.audit_events, site.engine, 100)
    return render(
        request,
        "users.html",
        users=listed,
        events=events,
        roles=accounts.ROLES,
        contributors=sorted(site.registry),
        new_password=new_password,
    )


@signed_in("admin")
async def users(request: Request):
    return await _users_page(request)


@signed_in("admin")
async def user_action(request: Request):
    form = await checked_form(request)
    site = _site(request)
    admin = request.state.user.username
    action = form.get("action")
    username = str(form.get("username", "")).strip().lower()
    try:
        if action == "add":
            password = accounts.new_password()
            await run_in_threadpool(
                functools.partial(
                    accounts.add_user,
                    site.engine,
                    username,
                    str(form.get("role", "")),
                    password,
                    display_name=str(form.get("display_name", "")).strip() or None,
                    contributors=form.getlist("contributors"),
                    known_contributors=set(site.registry),
                )
            )
            shown = {"user": username, "password": password}
        elif action == "reset":
            password = accounts.new_password()
            await run_in_threadpool(accounts.reset_password, site.engine, username, password)
            shown = {"user": username, "password": password}
        elif action in ("disable", "enable"):
            await run_in_threadpool(accounts.set_active, site.engine, username, action == "enable")
            shown = None
        else:
            raise HTTPException(400)
    except accounts.AccountError as exc:
        _flash(request, str(exc), "error")
        return RedirectResponse("/admin/users", status_code=303)
    await run_in_threadpool(
        accounts.audit,
        site.engine,
        f"user {action}",
        admin,
        target=username,
        address=_address(request),
    )
    # A new password is shown in this answer only: never kept in the session cookie.
    return await _users_page(request, shown)


# --- errors --------------------------------------------------------------------------------


async def http_error(request: Request, exc: HTTPException):
    t = _t(request)
    text = {403: t["forbidden"], 404: t["not_found"]}.get(exc.status_code, exc.detail)
    if exc.detail == "csrf":
        text = t["csrf"]
    if exc.status_code == 401:
        return RedirectResponse("/login", status_code=303)
    return render(request, "error.html", status=exc.status_code, message=text)


async def _notices(site: Site, every: float) -> None:
    """E-mail contributors' staff when feedback is ready (obsx/intake/notify.py), every ``every`` s."""
    from obsx.intake.notify import send_pending, smtp_settings

    while True:
        smtp = smtp_settings()
        if smtp is not None:
            names = {code: o.name for code, o in site.registry.items()}
            try:
                sent = await run_in_threadpool(
                    send_pending, site.engine, smtp, names, site.default_lang
                )
                if sent:
                    log.info("feedback notices sent: %d", sent)
            except Exception:  # a mail server down is said and tried again, never fatal
                log.exception("feedback notices not sent")
        await asyncio.sleep(every)


def _lifespan(site: Site):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        every = float(os.environ.get("OBSX_NOTIFY_SECONDS") or 60)
        task = asyncio.create_task(_notices(site, every))
        try:
            yield
        finally:
            task.cancel()

    return lifespan


@jinja2.pass_context
def _local_time(context, moment, note: bool = False) -> str:
    """``{{ when | local }}``: a stored UTC moment in the deployment's time zone, as its people
    read it (tables name the zone once, in their heading)."""
    return local_time(moment, context.get("lang", "es"), note)


def create_app(root: Path | None = None, url: str | None = None) -> Starlette:
    """The application over the data root ``root`` and the warehouse at ``url`` (defaults:
    ``$OBSX_DATA_DIR``, ``$WAREHOUSE_URL``), migrated to this release."""
    from obsx.intake.limits import MB, current_limits
    from obsx.warehouse.deployment import current_deployment
    from obsx.warehouse.migrations import ensure_current
    from obsx.warehouse.tables import get_engine

    root = Path(root) if root else data_root()
    url = url or warehouse_url(root=root)
    engine = get_engine(url)
    ensure_current(url, engine)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["local"] = _local_time
    templates.env.globals["time_zone"] = current_deployment().time_zone
    site = Site(root, engine, templates, current_deployment().language)
    site.directory = directory_settings()
    if site.directory is not None:
        site.oauth = oauth_client(site.directory)
    secure = os.environ.get("OBSX_WEB_SECURE_COOKIES", "").lower() in ("1", "true", "yes")
    routes = [
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/login/oidc", login_directory),
        Route("/login/oidc/callback", login_directory_callback),
        Route("/logout", logout, methods=["POST"]),
        Route("/language", language, methods=["POST"]),
        Route("/c/{code}", portal),
        Route("/c/{code}/check", check, methods=["POST"]),
        Route("/c/{code}/send", send, methods=["POST"]),
        Route("/c/{code}/packs", packs),
        Route("/c/{code}/calendar", calendar),
        Route("/c/{code}/templates/{dataset}.xlsx", template),
        Route("/c/{code}/packs/{name}", pack_file),
        Route("/submissions/{sid}", feedback),
        Route("/submissions/{sid}/rejected.csv", rejected_rows),
        Route("/desk", desk),
        Route("/desk/reconciliation", reconciliation),
        Route("/desk/reconciliation/decide", decide, methods=["POST"]),
        Route("/desk/figures", figures),
        Route("/desk/figures/explain", figure_explain),
        Route("/desk/changes", changes),
        Route("/desk/submissions", desk_submissions),
        Route("/desk/corrections", corrections_page),
        Route("/desk/corrections", corrections_action, methods=["POST"]),
        Route("/desk/periods", periods),
        Route("/desk/periods", period_action, methods=["POST"]),
        Route("/desk/bulletin", bulletin, methods=["POST"]),
        Route("/desk/bulletin/{period}/{name}", bulletin_file),
        Route("/admin/users", users),
        Route("/admin/users", user_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, hsts=secure),
            Middleware(BodyLimit, max_bytes=current_limits().max_file_bytes + MB),
            Middleware(
                SessionMiddleware,
                secret_key=session_secret(root),
                session_cookie="obsx_session",
                max_age=SESSION_SECONDS,
                same_site="lax",
                https_only=secure,
            ),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=_lifespan(site),
    )
    app.state.site = site
    return app
