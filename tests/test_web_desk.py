"""The ministry's desk through a real ``obsx web`` process: an analyst decides a reconciliation
(a reason is required), the next refresh follows it and the bulletin built from the desk shows
the decision; periods close and reopen; every action is audited; contributors cannot reach it.

The sources are those of tests/test_reconcile.py: in February 2025 the Panamá observatory counts
one homicide in district 0804 where forensic medicine (IMELCF) counts two."""

import datetime as dt
import re

import httpx
import pytest
import sqlalchemy as sa

from obsx.indicators.engine import compute_indicators, refresh_indicators
from obsx.indicators.reconcile import refresh_reconciliation
from obsx.intake.dropzone import Dropzone
from obsx.warehouse import accounts, corrections
from obsx.warehouse.reference import observatories
from tests.conftest import sqlite_warehouse
from tests.test_reconcile import HEADER, IMELCF, IMELCF_HEADER, NOW, PANAMA, deliver
from tests.webserver import PASSWORD, start_server, stop_server

REASON = "NEC-4 confirmado con el expediente de la fiscalía"


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    root = tmp_path_factory.mktemp("desk")
    engine = sqlite_warehouse(root)
    zone = Dropzone(root, observatories())
    zone.ensure_folders()
    deliver(zone, engine, "pa_panama", "panama.csv", "\n".join([HEADER, *PANAMA]) + "\n")
    deliver(
        zone,
        engine,
        "pa_imelcf",
        "necropsias_2025.csv",
        "\n".join([IMELCF_HEADER, *IMELCF]) + "\n",
        encoding="latin-1",
    )
    compute_indicators(engine, NOW)
    with engine.begin() as conn:
        refresh_reconciliation(conn, dt.datetime.now(dt.UTC))
    accounts.add_user(engine, "analista", "analyst", PASSWORD, display_name="Luis Gómez")
    accounts.add_user(engine, "panama", "contributor", PASSWORD, contributors=["pa_panama"])
    server, url = start_server(root)
    yield {"root": root, "url": url, "engine": engine, "zone": zone}
    stop_server(server)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def signed_in(desk, username: str) -> httpx.Client:
    client = httpx.Client(base_url=desk["url"], timeout=300)
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"csrf": token, "username": username, "password": PASSWORD})
    return client


def decide(client, reason: str) -> httpx.Response:
    page = client.get("/desk/reconciliation").text
    return client.post(
        "/desk/reconciliation/decide",
        data={
            "csrf": csrf_of(page),
            "geo": "0804",
            "period": "2025-02",
            "source": "forensic",
            "reason": reason,
        },
        follow_redirects=True,
    )


def test_a_decision_needs_a_reason_and_the_bulletin_built_from_the_desk_shows_it(desk):
    client = signed_in(desk, "analista")
    table = client.get("/desk/reconciliation").text
    assert "0804" in table and "Por conciliar" in table
    # sources in the analyst's words, the deployment's keys only as the form's values
    head = re.search(r"<thead>.*?</thead>", table, re.S).group(0)
    assert "observatorios municipales" in head and "Medicina Legal (IMELCF)" in head
    assert ">forensic<" not in table and ">observatory<" not in table

    refused = decide(client, "   ")
    assert "Escriba el motivo" in refused.text
    assert "Decidido" not in refused.text

    done = decide(client, REASON)
    assert "Decisión registrada: 0804 2025-02 sigue a Medicina Legal (IMELCF)." in done.text
    row = re.search(r"<tr><td>0804</td><td>2025-02</td>.*?</tr>", done.text, re.S).group(0)
    assert "Decidido" in row and REASON in row and "Medicina Legal (IMELCF)<br>" in row

    refresh_indicators(desk["engine"])  # what the next obsx run or the nightly refresh does
    page = client.get("/desk/periods").text
    built = client.post(
        "/desk/bulletin",
        data={"csrf": csrf_of(page), "period": "2025-02"},
        follow_redirects=True,
    )
    assert "Boletín 2025-02 generado" in built.text
    bulletin = client.get("/desk/bulletin/2025-02/boletin_2025-02.html")
    assert bulletin.status_code == 200
    assert bulletin.headers["content-disposition"].startswith("attachment")
    assert REASON in bulletin.text
    actions = [e["action"] for e in accounts.audit_events(desk["engine"])]
    assert "reconciliation decision" in actions and "bulletin built" in actions


def test_published_figures_show_withheld_cells_without_their_value(desk):
    from obsx.warehouse.tables import indicator_value as v

    with desk["engine"].connect() as conn:
        withheld = conn.execute(
            sa.select(v.c.indicator_code, v.c.period, v.c.geo_code, v.c.numerator, v.c.value)
            .where(
                v.c.conf_status.in_(["C", "D"]),
                v.c.disaggregation == "",
                v.c.period_type == "month",
                v.c.numerator > 0,
            )
            .limit(5)
        ).all()
    assert withheld, "the test data must hold withheld cells"
    client = signed_in(desk, "analista")
    for cell in withheld:
        page = client.get(
            "/desk/figures", params={"indicator": cell.indicator_code, "period": cell.period}
        ).text
        row = re.search(rf'<tr data-geo="{cell.geo_code}">.*?</tr>', page, re.S).group(0)
        assert "Reservado" in row
        shown = re.findall(r'<td class="num">([^<]*)</td>', row)
        assert f"{cell.numerator:,.0f}" not in shown and f"{cell.value:,.1f}" not in shown


def test_the_origin_of_a_withheld_figure_shows_nothing_to_count_it_by(desk):
    """The published side is tested on the demo (tests/test_demo_publication.py)."""
    from obsx.warehouse.tables import indicator_value as v

    with desk["engine"].connect() as conn:
        withheld = conn.execute(
            sa.select(v.c.indicator_code, v.c.geo_code, v.c.period).where(
                v.c.indicator_code == "HOMICIDE_COUNT",
                v.c.conf_status.in_(["C", "D"]),
                v.c.disaggregation == "",
                v.c.numerator > 0,
            )
        ).first()
    client = signed_in(desk, "analista")
    query = {"indicator": "HOMICIDE_COUNT", "geo": withheld.geo_code, "period": withheld.period}
    page = client.get("/desk/figures/explain", params=query)
    assert page.status_code == 200 and 'id="explain-withheld"' in page.text
    assert ".csv" not in page.text and 'id="files"' not in page.text

    for hostile in ({"geo": "../../etc"}, {"period": "2025-13"}, {"indicator": "NOPE"}):
        assert client.get("/desk/figures/explain", params=query | hostile).status_code == 404
    staff = signed_in(desk, "panama")
    assert staff.get("/desk/figures/explain", params=query).status_code == 403


def test_an_analyst_reads_what_changed_since_the_last_bulletin(desk):
    """The rows themselves are tested with the demo's late file (tests/test_bulletin.py)."""
    client = signed_in(desk, "analista")
    page = client.get("/desk/changes")
    assert page.status_code == 200
    intro = re.search(r'<p id="changes-intro">(.*?)</p>', page.text, re.S).group(1)
    assert "Primera edición" in intro or "boletín del" in intro
    assert signed_in(desk, "panama").get("/desk/changes").status_code == 403


def test_the_board_leads_to_each_contributors_submissions(desk):
    client = signed_in(desk, "analista")

    board = client.get("/desk", params={"year": "2025"}).text
    listed = client.get("/desk/submissions", params={"contributor": "pa_panama"})

    assert 'href="/desk/submissions?contributor=pa_panama"' in board
    assert "panama.csv" in listed.text and "Aceptado" in listed.text
    assert client.get("/desk/submissions", params={"contributor": "../x"}).status_code == 404


def test_an_analyst_closes_and_reopens_a_month(desk):
    client = signed_in(desk, "analista")

    def act(action):
        page = client.get("/desk/periods").text
        return client.post(
            "/desk/periods",
            data={"csrf": csrf_of(page), "period": "2025-03", "action": action},
            follow_redirects=True,
        )

    closed = act("close")
    assert "Cerrado: 2025-03" in closed.text
    assert "<td>2025-03</td><td>analista</td>" in closed.text
    reopened = act("reopen")
    assert "Reabierto: 2025-03" in reopened.text
    assert "<td>2025-03</td><td>analista</td>" not in reopened.text


def test_a_correction_held_for_a_closed_month_is_approved_from_the_desk(desk):
    engine = desk["engine"]
    corrections.close_period(engine, "2025-01", by="test")
    deliver(
        desk["zone"],
        engine,
        "pa_panama",
        "panama_correccion.csv",
        HEADER + "\nH1,2025-01-03,0804,0101,M,26,FIREARM\n",
    )
    client = signed_in(desk, "analista")
    page = client.get("/desk/corrections").text
    (held,) = re.findall(r'name="ids" value="(\d+)"', page)
    assert "25 → 26" in page

    def act(action, reason=""):
        token = csrf_of(client.get("/desk/corrections").text)
        return client.post(
            "/desk/corrections",
            data={"csrf": token, "ids": [held], "action": action, "reason": reason},
            follow_redirects=True,
        )

    assert "Escriba el motivo" in act("reject").text  # a rejection says why
    approved = act("approve")

    assert "Correcciones aplicadas: 1" in approved.text
    assert "No hay correcciones pendientes" in approved.text
    assert [c.status for c in corrections.list_corrections(engine, status=None)] == ["approved"]
    assert "corrections approve" in [e["action"] for e in accounts.audit_events(engine)]


def test_nothing_of_the_desk_is_open_to_a_contributor_nor_to_nobody(desk):
    staff = signed_in(desk, "panama")
    nobody = httpx.Client(base_url=desk["url"])
    token = csrf_of(staff.get("/c/pa_panama").text)

    assert staff.get("/desk/reconciliation").status_code == 403
    assert staff.get("/desk/corrections").status_code == 403
    assert staff.get("/desk/bulletin/2025-02/boletin_2025-02.html").status_code == 403
    assert (
        staff.post(
            "/desk/periods", data={"csrf": token, "period": "2025-03", "action": "close"}
        ).status_code
        == 403
    )
    assert nobody.get("/desk").headers["location"] == "/login"
    assert nobody.get("/admin/users").headers["location"] == "/login"
