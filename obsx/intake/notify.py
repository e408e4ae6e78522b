"""E-mail to a contributor's staff when the feedback on one of its files is ready.

Only when an SMTP server is configured (``OBSX_SMTP_HOST``; see ``smtp_settings``). A submission
is announced once (``feedback_notice`` remembers it) to every active account of its contributor
that has an e-mail address, with its status and counts and, when ``OBSX_WEB_URL`` is set, the
link to its page in the portal. Submissions processed more than ``OBSX_NOTIFY_HOURS`` (default
48) ago are not announced, so that turning notices on does not mail the whole history.
``send_pending`` is called by the web application every minute and by ``obsx notify``.
"""

import datetime as dt
import os
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

import sqlalchemy as sa

from obsx.warehouse.tables import feedback_notice, submission, web_user, web_user_contributor

WORDS = {
    "es": {
        "subject": "Resultado del envío {file}: {status}",
        "accepted": "Aceptado",
        "partly_accepted": "Aceptado parcialmente",
        "rejected": "Rechazado",
        "body": "El archivo {file} ({name}), recibido el {received}, fue procesado: {status}.\n"
        "Filas leídas: {read}; aceptadas: {accepted}; rechazadas: {rejected}.\n",
        "link": "Vea el resultado y descargue las filas rechazadas en: {url}\n",
        "portal": "Vea el resultado en el portal de intercambio.\n",
    },
    "en": {
        "subject": "Result of {file}: {status}",
        "accepted": "Accepted",
        "partly_accepted": "Partly accepted",
        "rejected": "Rejected",
        "body": "The file {file} ({name}), received on {received}, was processed: {status}.\n"
        "Rows read: {read}; accepted: {accepted}; rejected: {rejected}.\n",
        "link": "Read the result and download the rejected rows at: {url}\n",
        "portal": "Read the result in the exchange's portal.\n",
    },
}


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int = 25
    sender: str = "observatorios@localhost"
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    web_url: str | None = None


def smtp_settings(environ=None) -> Smtp | None:
    """``OBSX_SMTP_HOST`` (unset: no e-mail), ``OBSX_SMTP_PORT`` (25), ``OBSX_SMTP_FROM``,
    ``OBSX_SMTP_USER`` and ``OBSX_SMTP_PASSWORD`` (when the server wants a login),
    ``OBSX_SMTP_STARTTLS=1``, and ``OBSX_WEB_URL`` (the portal's address, for links)."""
    env = os.environ if environ is None else environ
    host = env.get("OBSX_SMTP_HOST", "").strip()
    if not host:
        return None
    return Smtp(
        host=host,
        port=int(env.get("OBSX_SMTP_PORT") or 25),
        sender=env.get("OBSX_SMTP_FROM") or "observatorios@localhost",
        user=env.get("OBSX_SMTP_USER") or None,
        password=env.get("OBSX_SMTP_PASSWORD") or None,
        starttls=env.get("OBSX_SMTP_STARTTLS", "").lower() in ("1", "true", "yes"),
        web_url=(env.get("OBSX_WEB_URL") or "").rstrip("/") or None,
    )


def _pending(conn: sa.Connection, since: dt.datetime) -> list[dict]:
    s = submission.c
    done = sa.select(feedback_notice.c.submission_id)
    rows = conn.execute(
        sa.select(s.submission_id, s.observatory_code, s.file_name, s.status, s.received_at)
        .add_columns(s.rows_read, s.rows_accepted, s.rows_rejected)
        .where(
            s.merged_at.is_not(None),
            s.merged_at >= since,
            s.status.in_(["accepted", "partly_accepted", "rejected"]),
            s.submission_id.not_in(done),
        )
        .order_by(s.merged_at)
    )
    return [dict(r._mapping) for r in rows]


def _recipients(conn: sa.Connection, code: str) -> list[str]:
    u, link = web_user.c, web_user_contributor.c
    return list(
        conn.scalars(
            sa.select(u.email)
            .join(web_user_contributor, link.user_id == u.user_id)
            .where(link.observatory_code == code, u.active.is_(True), u.email.is_not(None))
            .order_by(u.email)
        )
    )


def message(row: dict, names: dict[str, str], smtp: Smtp, lang: str) -> EmailMessage:
    w = WORDS[lang]
    status = w.get(row["status"], row["status"])
    received = row["received_at"]
    mail = EmailMessage()
    mail["Subject"] = w["subject"].format(file=row["file_name"], status=status)
    mail["From"] = smtp.sender
    text = w["body"].format(
        file=row["file_name"],
        name=names.get(row["observatory_code"], row["observatory_code"]),
        received=received.strftime("%Y-%m-%d %H:%M") if received else "",
        status=status,
        read=row["rows_read"],
        accepted=row["rows_accepted"],
        rejected=row["rows_rejected"],
    )
    if smtp.web_url:
        text += w["link"].format(url=f"{smtp.web_url}/submissions/{row['submission_id']}")
    else:
        text += w["portal"]
    mail.set_content(text)
    return mail


def send_pending(
    engine: sa.Engine,
    smtp: Smtp,
    names: dict[str, str],
    lang: str = "es",
    now: dt.datetime | None = None,
) -> int:
    """E-mail the staff of every submission processed lately and not yet announced; returns the
    number of e-mails sent. A submission whose e-mail could not be sent is tried again next time."""
    now = now or dt.datetime.now(dt.UTC)
    hours = float(os.environ.get("OBSX_NOTIFY_HOURS") or 48)
    with engine.connect() as conn:
        pending = _pending(conn, now - dt.timedelta(hours=hours))
        recipients = {
            r["observatory_code"]: _recipients(conn, r["observatory_code"]) for r in pending
        }
    if not pending:
        return 0
    sent = 0
    with smtplib.SMTP(smtp.host, smtp.port, timeout=30) as server:
        if smtp.starttls:
            server.starttls()
        if smtp.user:
            server.login(smtp.user, smtp.password or "")
        for row in pending:
            to = recipients[row["observatory_code"]]
            if to:
                mail = message(row, names, smtp, lang)
                mail["To"] = ", ".join(to)
                server.send_message(mail)
                sent += len(to)
            with engine.begin() as conn:
                conn.execute(
                    feedback_notice.insert().values(
                        submission_id=row["submission_id"], notified_at=now, recipients=len(to)
                    )
                )
    return sent
