"""People who sign in to the web application, and the audit of what they do.

Three roles: ``contributor`` (the staff of one or more contributors: they upload and read their
own feedback), ``analyst`` (the ministry's desk) and ``admin`` (manages accounts). Passwords are
stored as Argon2id hashes (argon2-cffi's defaults, RFC 9106's second recommendation); after
``LOCK_AFTER`` wrong passwords in a row an account is locked for ``LOCK_MINUTES``, whoever types
them. ``obsx users …`` and the web application call these functions; nothing else writes the
tables.
"""

import contextlib
import datetime as dt
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from obsx.warehouse.tables import audit_event, web_user, web_user_contributor

ROLES = ("contributor", "analyst", "admin")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
EMAIL_RE = re.compile(r"^[^@\s<>,;]{1,64}@[^@\s<>,;]{1,189}\.[^@\s<>,;.]{2,63}$")
MIN_PASSWORD = 10
LOCK_AFTER = 10
LOCK_MINUTES = 15
# Refused sign-ins from one address (a spray over many names, which no account's own count sees)
# after which that address waits ADDRESS_MINUTES; the web's OBSX_LOGIN_ADDRESS_LIMIT overrides it.
ADDRESS_LIMIT = 30
ADDRESS_MINUTES = 15

_HASHER = PasswordHasher()
# Verified against when the user does not exist, so that a wrong name takes as long as a wrong
# password (no telling which names exist from the time an answer takes).
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A request about accounts that cannot be done: the message says why (shown as is)."""


@dataclass(frozen=True)
class User:
    user_id: int
    username: str
    display_name: str
    role: str
    active: bool
    contributors: tuple[str, ...]
    locked_until: dt.datetime | None = None
    password_set_at: dt.datetime | None = None  # a session from before a reset is void
    email: str | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives back naive times (stored as UTC)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment


def new_password() -> str:
    """A random password to hand over once (16 URL-safe characters, about 96 bits)."""
    return secrets.token_urlsafe(12)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")


def _user(conn: sa.Connection, row) -> User:
    codes = conn.scalars(
        sa.select(web_user_contributor.c.observatory_code)
        .where(web_user_contributor.c.user_id == row.user_id)
        .order_by(web_user_contributor.c.observatory_code)
    ).all()
    return User(
        row.user_id,
        row.username,
        row.display_name,
        row.role,
        bool(row.active),
        tuple(codes),
        _aware(row.locked_until),
        _aware(row.password_set_at),
        row.email,
    )


def add_user(
    engine: sa.Engine,
    username: str,
    role: str,
    password: str,
    display_name: str | None = None,
    contributors: tuple[str, ...] | list[str] = (),
    known_contributors: set[str] | None = None,
    email: str | None = None,
) -> User:
    """Create an account. A contributor account needs at least one contributor code (checked
    against ``known_contributors`` when given); other roles take none."""
    if not USERNAME_RE.match(username):
        raise AccountError(
            f"user name {username!r}: 2 to 64 lowercase letters, digits, '.', '_' or '-'"
        )
    if role not in ROLES:
        raise AccountError(f"role {role!r} unknown (roles: {', '.join(ROLES)})")
    contributors = sorted(set(contributors))
    if role == "contributor" and not contributors:
        raise AccountError("a contributor account needs --contributor CODE (one or more)")
    if role != "contributor" and contributors:
        raise AccountError(f"an {role} account is linked to no contributor")
    unknown = [
        c for c in contributors if known_contributors is not None and c not in known_contributors
    ]
    if unknown:
        raise AccountError(f"unknown contributor {', '.join(unknown)}")
    if email is not None and not EMAIL_RE.match(email):
        raise AccountError(f"{email!r} is not an e-mail address")
    _check_password(password)
    now = _now()
    with engine.begin() as conn:
        if conn.scalar(sa.select(web_user.c.user_id).where(web_user.c.username == username)):
            raise AccountError(f"user {username!r} exists already")
        user_id = conn.execute(
            web_user.insert().values(
                username=username,
                display_name=display_name or username,
                email=email,
                role=role,
                password_hash=_HASHER.hash(password),
                active=True,
                failed_logins=0,
                locked_until=None,
                created_at=now,
                password_set_at=now,
            )
        ).inserted_primary_key[0]
        if contributors:
            conn.execute(
                web_user_contributor.insert(),
                [{"user_id": user_id, "observatory_code": c} for c in contributors],
            )
        return _user(
            conn, conn.execute(sa.select(web_user).where(web_user.c.user_id == user_id)).one()
        )


def get_user(engine: sa.Engine, user_id: int) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(web_user).where(web_user.c.user_id == user_id)).first()
        return None if row is None else _user(conn, row)


def list_users(engine: sa.Engine) -> list[User]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(web_user).order_by(web_user.c.username)).all()
        return [_user(conn, r) for r in rows]


def _by_name(conn: sa.Connection, username: str):
    row = conn.execute(sa.select(web_user).where(web_user.c.username == username)).first()
    if row is None:
        raise AccountError(f"no user {username!r}")
    return row


def reset_password(engine: sa.Engine, username: str, password: str) -> None:
    """Set a new password (an administrator's doing); it also lifts a lock."""
    _check_password(password)
    with engine.begin() as conn:
        row = _by_name(conn, username)
        conn.execute(
            web_user.update()
            .where(web_user.c.user_id == row.user_id)
            .values(
                password_hash=_HASHER.hash(password),
                password_set_at=_now(),
                failed_logins=0,
                locked_until=None,
            )
        )


def set_active(engine: sa.Engine, username: str, active: bool) -> None:
    with engine.begin() as conn:
        row = _by_name(conn, username)
        conn.execute(
            web_user.update().where(web_user.c.user_id == row.user_id).values(active=active)
        )


@dataclass(frozen=True)
class SignIn:
    """The answer to a sign-in: the user, or why not (``wrong``, ``locked``, ``disabled``)."""

    user: User | None
    refused: str | None = None
    locked_until: dt.datetime | None = None


def authenticate(
    engine: sa.Engine, username: str, password: str, now: dt.datetime | None = None
) -> SignIn:
    """Check a password. Wrong ones are counted; the ``LOCK_AFTER``-th in a row locks the account
    for ``LOCK_MINUTES`` (during which even the right password is refused); a right one resets
    the count. An unknown name is answered like a wrong password, after the same work."""
    now = now or _now()
    with engine.begin() as conn:
        row = conn.execute(sa.select(web_user).where(web_user.c.username == username)).first()
        if row is None:
            with contextlib.suppress(VerificationError):
                _HASHER.verify(_DUMMY_HASH, password)
            return SignIn(None, "wrong")
        locked = _aware(row.locked_until)
        if locked is not None and locked > now:
            return SignIn(None, "locked", locked)
        try:
            _HASHER.verify(row.password_hash, password)
            good = True
        except (VerificationError, InvalidHashError):
            good = False
        if not good:
            failed = (0 if locked is not None else row.failed_logins) + 1
            until = now + dt.timedelta(minutes=LOCK_MINUTES) if failed >= LOCK_AFTER else None
            conn.execute(
                web_user.update()
                .where(web_user.c.user_id == row.user_id)
                .values(failed_logins=0 if until else failed, locked_until=until)
            )
            return SignIn(None, "locked" if until else "wrong", until)
        if not row.active:
            return SignIn(None, "disabled")
        values = {"failed_logins": 0, "locked_until": None}
        if _HASHER.check_needs_rehash(row.password_hash):
            values["password_hash"] = _HASHER.hash(password)
        conn.execute(web_user.update().where(web_user.c.user_id == row.user_id).values(**values))
        return SignIn(_user(conn, row))


def address_throttled(
    engine: sa.Engine, address: str | None, limit: int = ADDRESS_LIMIT, now=None
) -> dt.datetime | None:
    """Until when sign-ins from ``address`` are refused unread: after ``limit`` refused
    sign-ins from it within ``ADDRESS_MINUTES`` (the audit's record), None otherwise."""
    if not address:
        return None
    now = now or _now()
    e = audit_event.c
    with engine.connect() as conn:
        recent = (
            conn.execute(
                sa.select(e.at)
                .where(
                    e.address == address[:64],
                    e.action == "sign-in refused",
                    e.at >= now - dt.timedelta(minutes=ADDRESS_MINUTES),
                )
                .order_by(e.at.desc())
                .limit(limit)
            )
            .scalars()
            .all()
        )
    if len(recent) < limit:
        return None
    return _aware(recent[0]) + dt.timedelta(minutes=ADDRESS_MINUTES)


def sign_in_by_email(engine: sa.Engine, email: str) -> SignIn:
    """The active account with this e-mail address, for a sign-in vouched for by the ministry's
    directory (web/oidc.py): no password is checked, none is counted."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(web_user).where(sa.func.lower(web_user.c.email) == email.strip().lower())
        ).all()
        if len(rows) != 1:  # none, or an address two accounts share: refused, not guessed
            return SignIn(None, "unknown")
        if not rows[0].active:
            return SignIn(None, "disabled")
        return SignIn(_user(conn, rows[0]))


def audit(
    engine_or_conn,
    action: str,
    username: str | None,
    target: str | None = None,
    detail: str | None = None,
    address: str | None = None,
) -> None:
    """Record that ``username`` did ``action`` on ``target`` from ``address``, now."""
    values = {
        "at": _now(),
        "username": (username or "")[:64] or None,
        "action": action,
        "target": None if target is None else target[:300],
        "detail": detail,
        "address": None if address is None else address[:64],
    }
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.begin() as conn:
            conn.execute(audit_event.insert().values(**values))
    else:
        engine_or_conn.execute(audit_event.insert().values(**values))


def audit_events(engine: sa.Engine, limit: int = 200) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_event).order_by(audit_event.c.event_id.desc()).limit(limit)
        )
        return [dict(r._mapping) for r in rows]


DEMO_STAFF = {"analyst": "analista", "admin": "admin"}


def demo_accounts(engine: sa.Engine, contributor_codes) -> list[tuple[str, str, str]]:
    """For the demo: an analyst, an administrator and one account per contributor (named by its
    code), each with a random password. Only accounts that do not exist are made; returns
    (user, role, password) of those, to be shown once and never written anywhere."""
    existing = {u.username for u in list_users(engine)}
    made = []
    wanted = [(name, role, ()) for role, name in DEMO_STAFF.items()]
    wanted += [(code, "contributor", (code,)) for code in sorted(contributor_codes)]
    for name, role, codes in wanted:
        if name in existing:
            continue
        password = new_password()
        add_user(engine, name, role, password, contributors=codes)
        made.append((name, role, password))
    return made
