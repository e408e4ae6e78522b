"""End to end in a real browser: Debian's Chromium, driven by Selenium through chromedriver
(``apt-get install chromium chromium-driver``; .ci/run installs them).

An observatory signs in, checks a file (its verdict in the page), sends it (it lands in the
inbox); an analyst opens the reporting board. Screenshots of both pages go to the folder in
``OBSX_SCREENSHOTS`` (``OBSX_SCREENSHOTS=docs/img`` refreshes the README's), else to a
temporary folder. Without Chromium the test is skipped with the reason, except under CI=true,
where it fails."""

import base64
import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

from obsx.indicators.reconcile import refresh_reconciliation
from obsx.indicators.reporting import refresh_reporting
from obsx.intake.dropzone import Dropzone
from obsx.warehouse import accounts
from obsx.warehouse.reference import observatories
from tests.conftest import process_inboxes, sqlite_warehouse
from tests.test_reconcile import HEADER, IMELCF, IMELCF_HEADER, PANAMA, deliver
from tests.webserver import PASSWORD, start_server, stop_server

FIXTURES = Path(__file__).parent / "fixtures" / "incidents"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# One file from each of four observatories, processed before the browser comes: the board shows
# who delivered.
DELIVERED = {
    "pa_la_chorrera": "la_chorrera_febrero.xls",
    "pa_arraijan": "arraijan_marzo.csv",
    "pa_panama": "panama_abril.sav",
}


def _browser_or_reason() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            return f"{path} is missing (apt-get install {package})"
    return None


@pytest.fixture(scope="module")
def browser():
    missing = _browser_or_reason()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests must run under CI=true: {missing}")
        pytest.skip(f"browser test skipped: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--lang=es",
    ):
        options.add_argument(argument)
    options.add_argument("--window-size=1440,900")
    from selenium.common.exceptions import WebDriverException

    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    except WebDriverException:  # a start that timed out on a loaded machine: once more
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("webui")
    engine = sqlite_warehouse(root)
    zone = Dropzone(root, observatories())
    zone.ensure_folders()
    for code, name in DELIVERED.items():
        shutil.copy(FIXTURES / name, zone.inbox(code) / name)
    process_inboxes(root, engine, list(DELIVERED))
    # Forensic medicine's count of the same homicides (tests/test_reconcile.py): February 2025 in
    # district 0804 waits for a decision.
    deliver(zone, engine, "pa_panama", "panama.csv", "\n".join([HEADER, *PANAMA]) + "\n")
    deliver(
        zone,
        engine,
        "pa_imelcf",
        "necropsias_2025.csv",
        "\n".join([IMELCF_HEADER, *IMELCF]) + "\n",
        encoding="latin-1",
    )
    with engine.begin() as conn:
        refresh_reconciliation(conn, dt.datetime.now(dt.UTC))
    with engine.begin() as conn:
        refresh_reporting(conn, dt.datetime.now(dt.UTC))
    accounts.add_user(
        engine,
        "colon",
        "contributor",
        PASSWORD,
        display_name="Ana Pérez (Colón)",
        contributors=["pa_colon"],
    )
    accounts.add_user(engine, "analista", "analyst", PASSWORD, display_name="Luis Gómez")
    server, url = start_server(root)
    yield {"root": root, "url": url, "zone": zone, "engine": engine}
    stop_server(server)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("OBSX_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(driver, url: str, username: str) -> None:
    """Sign in from a signed-out browser."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(url + "/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def click_and_wait(driver, element) -> None:
    """Click, then wait for the page it leads to (a click does not wait for navigation). While
    the old page goes, chromedriver may answer "Node with given id does not belong to the
    document" instead of "stale element" (seen on a loaded machine): asked again until stale."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    element.click()
    WebDriverWait(driver, 60, ignored_exceptions=(WebDriverException,)).until(
        expected_conditions.staleness_of(element)
    )


def full_page(driver, path: Path) -> None:
    """A screenshot of the whole page (Chrome DevTools' capture beyond the viewport)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 3000)}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip | {"scale": 1}}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def test_an_observatory_checks_and_sends_a_file_and_an_analyst_reads_the_board(
    browser, site, shots
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    sign_in(browser, site["url"], "colon")
    assert browser.current_url.endswith("/c/pa_colon")
    browser.find_element(By.ID, "file").send_keys(str(FIXTURES / "colon_enero.xlsx"))
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#upload button[type=submit]"))

    verdict = browser.find_element(By.ID, "verdict").text
    assert "Aceptado parcialmente" in verdict
    assert "Estafa" in verdict  # the rejected row, with its reason
    full_page(browser, shots / "portal-verdict.png")
    assert list(site["zone"].inbox("pa_colon").iterdir()) == []  # checked, not sent

    click_and_wait(browser, browser.find_element(By.ID, "send"))
    assert "colon_enero.xlsx" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert [p.name for p in site["zone"].inbox("pa_colon").iterdir()] == ["colon_enero.xlsx"]
    # The next run processes it: its result page, rendered from the feedback, and its rejected
    # rows to download.
    process_inboxes(site["root"], site["engine"], ["pa_colon"])
    browser.get(site["url"] + "/c/pa_colon")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#history a"))
    assert "Estafa" in browser.find_element(By.ID, "feedback").text
    link = browser.find_element(By.ID, "rejected-csv").get_attribute("href")
    rejected = browser.execute_script(
        "return fetch(arguments[0]).then(r => r.ok ? r.text() : 'HTTP ' + r.status)", link
    )
    assert "Estafa" in rejected
    full_page(browser, shots / "portal-feedback.png")
    # English, one click away.
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "button[name=lang]"))
    assert "Check before sending" in browser.page_source
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "button[name=lang]"))
    click_and_wait(
        browser,
        browser.find_element(By.CSS_SELECTOR, "header .tools form[action='/logout'] button"),
    )

    sign_in(browser, site["url"], "analista")
    assert browser.current_url.endswith("/desk")
    board = browser.find_element(By.CSS_SELECTOR, "table.board").text
    assert "Observatorio de Seguridad Ciudadana del Municipio de Panamá" in board
    assert "Tarde" in board or "A tiempo" in board
    full_page(browser, shots / "desk-board.png")

    # The analyst decides that February's figure in 0804 follows forensic medicine.
    browser.get(site["url"] + "/desk/reconciliation")
    row = browser.find_element(By.XPATH, "//tr[td[1]='0804' and td[2]='2025-02']")
    assert "Por conciliar" in row.text and "nan" not in row.text
    Select(row.find_element(By.NAME, "source")).select_by_value("forensic")
    row.find_element(By.NAME, "reason").send_keys("NEC-4 confirmado por la fiscalía")
    click_and_wait(browser, row.find_element(By.CSS_SELECTOR, "button"))
    assert "Decisión registrada" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    row = browser.find_element(By.XPATH, "//tr[td[1]='0804' and td[2]='2025-02']")
    assert "Decidido" in row.text and "NEC-4 confirmado por la fiscalía" in row.text
    full_page(browser, shots / "desk-reconciliation.png")
    for name in ("portal-verdict.png", "desk-board.png", "desk-reconciliation.png"):
        assert (shots / name).stat().st_size > 10_000
