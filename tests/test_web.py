"""The web application as people use it: a real ``obsx web`` process on a free port, over a real
SQLite warehouse, driven over HTTP (sign in, check, send, feedback, IDOR, CSRF, lock-out)."""

import datetime as dt
import email
import email.policy
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from obsx.intake.dropzone import Dropzone
from obsx.warehouse import accounts
from obsx.warehouse.reference import observatories
from tests.conftest import process_inboxes, sqlite_warehouse
from tests.webserver import OBSX, PASSWORD, free_port, start_server, stop_server

FIXTURES = Path(__file__).parent / "fixtures" / "incidents"
LIMIT = 200_000  # OBSX_LIMIT_MAX_FILE_BYTES of the server: the fixtures are far smaller


class Mailbox:
    """What a local SMTP server (aiosmtpd) received."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture(scope="module")
def mailbox():
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, mailbox):
    """A data root with a warehouse, Panamá's April file processed, four accounts, a server that
    e-mails feedback notices through the local SMTP server."""
    root = tmp_path_factory.mktemp("web")
    engine = sqlite_warehouse(root)
    zone = Dropzone(root, observatories())
    zone.ensure_folders()
    shutil.copy(FIXTURES / "panama_abril.sav", zone.inbox("pa_panama") / "panama_abril.sav")
    (panama,) = process_inboxes(root, engine, ["pa_panama"])
    accounts.add_user(
        engine,
        "colon",
        "contributor",
        PASSWORD,
        contributors=["pa_colon"],
        email="estadistica@colon.example",
    )
    accounts.add_user(engine, "panama", "contributor", PASSWORD, contributors=["pa_panama"])
    accounts.add_user(engine, "analista", "analyst", PASSWORD)
    accounts.add_user(engine, "admin", "admin", PASSWORD)
    accounts.add_user(engine, "victima", "contributor", PASSWORD, contributors=["pa_colon"])
    server, url = start_server(
        root,
        OBSX_SMTP_HOST="127.0.0.1",
        OBSX_SMTP_PORT=str(mailbox.port),
        OBSX_WEB_URL="https://portal.example",
        OBSX_NOTIFY_SECONDS="0.5",
        OBSX_LIMIT_MAX_FILE_BYTES=str(LIMIT),
    )
    yield {"root": root, "url": url, "zone": zone, "engine": engine, "panama": panama}
    stop_server(server)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def signed_in(site, username: str) -> httpx.Client:
    client = httpx.Client(base_url=site["url"], timeout=60)
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "username": username, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return client


def check(client: httpx.Client, code: str, name: str, data: bytes) -> httpx.Response:
    token = csrf_of(client.get(f"/c/{code}").text)
    return client.post(
        f"/c/{code}/check",
        data={"csrf": token, "dataset": ""},
        files={"file": (name, data, "application/octet-stream")},
        follow_redirects=True,
    )


def test_signing_in_opens_the_contributors_portal(site):
    client = signed_in(site, "colon")

    page = client.get("/", follow_redirects=True)

    assert page.url.path == "/c/pa_colon"
    assert "Observatorio" in page.text and "Revisar antes de enviar" in page.text


def test_the_session_cookie_is_httponly_and_lax_and_pages_carry_security_headers(site):
    client = httpx.Client(base_url=site["url"])

    page = client.get("/login")

    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"


def test_a_bad_file_checked_gives_its_problems_and_stores_nothing(site):
    client = signed_in(site, "colon")
    inbox = site["zone"].inbox("pa_colon")

    page = check(client, "pa_colon", "malo.csv", b"hola;mundo\n1;2\n3;4\n")

    assert page.status_code == 200
    assert "Rechazado" in page.text
    assert 'class="error"' in page.text  # the problems, row by row
    assert list(inbox.iterdir()) == []


def test_a_file_name_is_shown_as_text_never_as_markup(site):
    client = signed_in(site, "colon")

    page = check(client, "pa_colon", "<img src=x onerror=alert(1)>.csv", b"a;b\n1;2\n")

    assert page.status_code == 200
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;.csv" in page.text


def test_a_file_of_a_type_not_accepted_is_refused_before_it_is_stored(site):
    client = signed_in(site, "colon")

    page = check(client, "pa_colon", "virus.exe", b"MZ\x90\x00")

    assert "Tipo de archivo no admitido" in page.text
    assert list(site["zone"].inbox("pa_colon").iterdir()) == []
    staged = (site["root"] / "web" / "staging").glob("pa_colon/*")
    assert all(p.read_bytes() != b"MZ\x90\x00" for p in staged)


def test_a_file_over_the_size_limit_is_refused_before_it_is_stored(site):
    client = signed_in(site, "colon")
    over = b"id,fecha\n" + b"1,2025-01-01\n" * (LIMIT // 13 + 100)

    page = check(client, "pa_colon", "grande.csv", over)
    huge = check(client, "pa_colon", "enorme.csv", over * 10)  # past the body limit: 413

    assert "supera el límite de tamaño del archivo" in page.text
    assert huge.status_code == 413
    assert list(site["zone"].inbox("pa_colon").iterdir()) == []
    staged = (site["root"] / "web" / "staging").glob("pa_colon/*")
    assert all(p.stat().st_size <= LIMIT for p in staged)


def test_a_file_sent_lands_in_the_inbox_and_its_feedback_shows_after_obsx_run(site, mailbox):
    client = signed_in(site, "colon")
    data = (FIXTURES / "colon_enero.xlsx").read_bytes()

    verdict = check(client, "pa_colon", "colon_enero.xlsx", data)
    assert "Aceptado parcialmente" in verdict.text
    token = re.search(r'name="token" value="([0-9a-f]{32})"', verdict.text).group(1)
    sent = client.post(
        "/c/pa_colon/send",
        data={"csrf": csrf_of(verdict.text), "token": token, "action": "send"},
        follow_redirects=True,
    )

    inbox = site["zone"].inbox("pa_colon")
    assert [p.name for p in inbox.iterdir()] == ["colon_enero.xlsx"]  # no .part left behind
    assert (inbox / "colon_enero.xlsx").read_bytes() == data
    assert "colon_enero.xlsx" in sent.text

    run = subprocess.run(
        [str(OBSX), "--data-dir", str(site["root"]), "run", "--settle-seconds", "0"],
        env={k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_URL", "DAGSTER_HOME")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "colon_enero.xlsx" in run.stdout, run.stdout + run.stderr

    history = client.get("/c/pa_colon")
    link = re.search(r'href="(/submissions/[0-9a-f]{64})"', history.text).group(1)
    feedback = client.get(link)
    assert feedback.status_code == 200
    assert "Estafa" in feedback.text  # the rejected row's reason
    # times as the observatory's staff read them: Panama's clock, not the server's UTC
    with site["engine"].connect() as conn:
        received = conn.scalar(
            sa.text("SELECT received_at FROM submission WHERE submission_id = :id"),
            {"id": link.rsplit("/", 1)[1]},
        )
    received = dt.datetime.fromisoformat(str(received))  # UTC, as stored
    panama = received - dt.timedelta(hours=5)
    shown = panama.strftime("%d/%m/%Y %H:%M")
    assert f"<td>{shown}</td>" in history.text and "(America/Panama)" in history.text
    assert f"{shown} (hora de America/Panama)" in feedback.text
    rejected = client.get(link + "/rejected.csv")
    assert rejected.status_code == 200
    assert "Estafa" in rejected.content.decode("utf-8-sig")
    deadline = time.monotonic() + 30
    while not mailbox.messages and time.monotonic() < deadline:
        time.sleep(0.2)
    (notice,) = mailbox.messages  # Panamá's staff have no address: only Colón's is told
    assert notice["To"] == "estadistica@colon.example"
    assert "colon_enero.xlsx" in notice["Subject"] and "Aceptado parcialmente" in notice["Subject"]
    assert f"https://portal.example{link}" in notice.get_content()


def test_another_contributors_feedback_is_refused(site):
    client = signed_in(site, "colon")
    other = site["panama"].submission_id

    assert client.get(f"/submissions/{other}").status_code == 404
    assert client.get(f"/submissions/{other}/rejected.csv").status_code == 404
    assert client.get("/c/pa_panama").status_code == 404
    assert signed_in(site, "panama").get(f"/submissions/{other}").status_code == 200


def test_a_contributor_reads_its_calendar_and_downloads_its_templates(site):
    client = signed_in(site, "colon")

    calendar = client.get("/c/pa_colon/calendar")
    template = client.get("/c/pa_colon/templates/incidents.xlsx")

    assert calendar.status_code == 200 and "Calendario de entregas" in calendar.text
    assert template.status_code == 200 and template.content[:2] == b"PK"
    assert "plantilla_incidents" in template.headers["content-disposition"]
    assert client.get("/c/pa_colon/templates/geography.xlsx").status_code == 404
    assert client.get("/c/pa_panama/calendar").status_code == 404


def test_an_analyst_cannot_open_the_portal_nor_a_contributor_the_desk(site):
    assert signed_in(site, "analista").get("/c/pa_colon").status_code == 403
    assert signed_in(site, "colon").get("/desk").status_code == 403


def test_a_post_without_its_csrf_token_is_refused(site):
    client = signed_in(site, "colon")

    refused = client.post("/c/pa_colon/check", files={"file": ("a.csv", b"x\n1\n", "text/csv")})
    wrong = client.post("/logout", data={"csrf": "not-the-token"})

    assert refused.status_code == 403
    assert wrong.status_code == 403
    assert client.get("/c/pa_colon").status_code == 200  # still signed in


def test_ten_wrong_passwords_lock_the_account(site):
    client = httpx.Client(base_url=site["url"])
    token = csrf_of(client.get("/login").text)
    answers = [
        client.post("/login", data={"csrf": token, "username": "victima", "password": f"bad{i}"})
        for i in range(10)
    ]

    right = client.post("/login", data={"csrf": token, "username": "victima", "password": PASSWORD})

    assert all(a.status_code == 401 for a in answers)
    assert "bloqueada" not in answers[8].text
    assert "bloqueada" in answers[9].text
    assert right.status_code == 401 and "bloqueada" in right.text
    events = accounts.audit_events(site["engine"])
    assert (
        sum(e["action"] == "sign-in refused" and e["username"] == "victima" for e in events) == 11
    )


def test_the_analysts_reporting_board_shows_who_delivered(site):
    client = signed_in(site, "analista")

    board = client.get("/desk")

    assert board.status_code == 200
    assert "Entregas por período" in board.text


def test_a_password_reset_or_a_disabled_account_ends_its_open_sessions(site):
    for name in ("reset", "gone"):
        accounts.add_user(site["engine"], name, "contributor", PASSWORD, contributors=["pa_colon"])
    reset, gone = signed_in(site, "reset"), signed_in(site, "gone")
    assert reset.get("/c/pa_colon").status_code == 200

    accounts.reset_password(site["engine"], "reset", "another long password")
    accounts.set_active(site["engine"], "gone", False)

    for client in (reset, gone):
        answer = client.get("/c/pa_colon")
        assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_an_administrator_adds_an_account_whose_password_is_shown_once(site):
    admin = signed_in(site, "admin")
    token = csrf_of(admin.get("/admin/users").text)

    added = admin.post(
        "/admin/users",
        data={
            "csrf": token,
            "action": "add",
            "username": "nueva",
            "role": "contributor",
            "contributors": ["pa_colon"],
        },
        follow_redirects=True,
    )
    password = re.search(
        r"Nueva contraseña de nueva \(se muestra una sola vez\): (\S+)</p>", added.text
    ).group(1)
    again = admin.get("/admin/users")

    assert password not in again.text  # shown once
    assert "<td>nueva</td><td>contributor</td><td>pa_colon</td>" in again.text
    assert accounts.authenticate(site["engine"], "nueva", password).user is not None
    assert "user add" in [e["action"] for e in accounts.audit_events(site["engine"])]
    assert signed_in(site, "analista").get("/admin/users").status_code == 403


def test_a_spray_of_wrong_passwords_over_many_names_stops_its_address(tmp_path):
    """Each name tried once (no account's own lock moves): after OBSX_LOGIN_ADDRESS_LIMIT
    refusals the address is refused unread, even with a right password, and the audit says so."""
    engine = sqlite_warehouse(tmp_path)
    accounts.add_user(engine, "sprayed", "contributor", PASSWORD, contributors=["pa_colon"])
    server, url = start_server(tmp_path, OBSX_LOGIN_ADDRESS_LIMIT="5")
    try:
        client = httpx.Client(base_url=url, timeout=60)
        token = csrf_of(client.get("/login").text)
        answers = [
            client.post("/login", data={"csrf": token, "username": f"n{i}", "password": "x"})
            for i in range(5)
        ]
        right = {"csrf": token, "username": "sprayed", "password": PASSWORD}
        stopped = client.post("/login", data=right)
    finally:
        stop_server(server)
    assert [a.status_code for a in answers] == [401] * 5
    assert stopped.status_code == 429 and "desde esta dirección" in stopped.text
    assert "(hora de America/Panama)" in stopped.text and "UTC" not in stopped.text
    user = next(u for u in accounts.list_users(engine) if u.username == "sprayed")
    assert user.active
    events = accounts.audit_events(engine)
    assert [e["detail"] for e in events if e["username"] == "sprayed"] == ["throttled"]
