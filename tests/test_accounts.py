"""Accounts (obsx/warehouse/accounts.py), the portal's inbox delivery (obsx/intake/uploads.py) and ``obsx users``,
without a server."""

import datetime as dt

import pytest
import sqlalchemy as sa

from obsx import cli
from obsx.intake.dropzone import Dropzone
from obsx.intake.uploads import UploadRefused, deliver
from obsx.warehouse import accounts
from obsx.warehouse.tables import web_user

PASSWORD = "correct horse battery"


def test_passwords_are_stored_as_argon2id_hashes_only(engine):
    accounts.add_user(engine, "ana", "analyst", PASSWORD)

    with engine.connect() as conn:
        stored = conn.scalar(sa.select(web_user.c.password_hash))

    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.authenticate(engine, "ana", PASSWORD).user.role == "analyst"
    assert accounts.authenticate(engine, "ana", "wrong password").refused == "wrong"
    assert accounts.authenticate(engine, "nobody", PASSWORD).refused == "wrong"


def test_the_tenth_wrong_password_locks_for_a_while_then_the_right_one_works(engine):
    accounts.add_user(engine, "ana", "contributor", PASSWORD, contributors=["pa_colon"])
    now = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)

    answers = [accounts.authenticate(engine, "ana", f"bad {i}", now) for i in range(10)]
    during = accounts.authenticate(engine, "ana", PASSWORD, now + dt.timedelta(minutes=14))
    after = accounts.authenticate(engine, "ana", PASSWORD, now + dt.timedelta(minutes=16))

    assert [a.refused for a in answers] == ["wrong"] * 9 + ["locked"]
    assert during.refused == "locked"
    assert after.user is not None and after.user.contributors == ("pa_colon",)
    assert (
        accounts.authenticate(engine, "ana", "bad again", now + dt.timedelta(minutes=17)).refused
        == "wrong"
    )


def test_a_disabled_account_cannot_sign_in_and_a_reset_lifts_a_lock(engine):
    accounts.add_user(engine, "ana", "admin", PASSWORD)
    for i in range(10):
        accounts.authenticate(engine, "ana", f"bad {i}")
    accounts.reset_password(engine, "ana", "a brand new password")
    assert accounts.authenticate(engine, "ana", "a brand new password").user is not None

    accounts.set_active(engine, "ana", False)

    assert accounts.authenticate(engine, "ana", "a brand new password").refused == "disabled"


@pytest.mark.parametrize(
    ("username", "role", "codes", "why"),
    [
        ("Ana Pérez", "analyst", (), "lowercase"),
        ("ana", "boss", (), "role"),
        ("ana", "contributor", (), "needs --contributor"),
        ("ana", "analyst", ("pa_colon",), "no contributor"),
        ("ana", "contributor", ("pa_nowhere",), "unknown contributor"),
    ],
)
def test_accounts_that_cannot_be_are_refused(engine, username, role, codes, why):
    with pytest.raises(accounts.AccountError, match=why):
        accounts.add_user(
            engine, username, role, PASSWORD, contributors=codes, known_contributors={"pa_colon"}
        )


def test_a_short_password_is_refused(engine):
    with pytest.raises(accounts.AccountError, match="at least 10"):
        accounts.add_user(engine, "ana", "analyst", "short")


def test_delivery_writes_by_the_part_protocol_and_never_overwrites(tmp_path):
    zone = Dropzone(tmp_path, ["pa_colon"])

    first = deliver(zone, "pa_colon", "../../etc/enero 2025.csv", b"a,b\n1,2\n")
    second = deliver(zone, "pa_colon", "enero 2025.csv", b"a,b\n3,4\n")

    inbox = zone.inbox("pa_colon")
    assert sorted(p.name for p in inbox.iterdir()) == ["enero_2025 (2).csv", "enero_2025.csv"]
    assert first.path.read_bytes() == b"a,b\n1,2\n" and second.path.read_bytes() == b"a,b\n3,4\n"
    with pytest.raises(UploadRefused):
        deliver(zone, "pa_colon", "script.sh", b"echo")
    with pytest.raises(KeyError):
        deliver(zone, "pa_panama", "enero.csv", b"a\n1\n")


def test_obsx_users_adds_lists_resets_and_disables(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    root = ["--data-dir", str(tmp_path)]

    assert (
        cli.main(
            [*root, "users", "add", "ana", "--role", "contributor", "--contributor", "pa_colon"]
        )
        == 0
    )
    password = capsys.readouterr().out.split("password ")[1].split()[0]
    assert cli.main([*root, "users", "add", "ana", "--role", "analyst"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert cli.main([*root, "users", "reset-password", "ana"]) == 0
    assert password not in capsys.readouterr().out
    assert cli.main([*root, "users", "disable", "ana"]) == 0
    assert cli.main([*root, "users", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ana\tcontributor\tpa_colon\tdisabled"
