"""Accessibility audit of the portal and the desk in a real browser (issue #22: "accessible
(labels, keyboard, contrast); usable on a phone").

The server, the data and the browser are those of tests/test_web_browser.py (Debian's Chromium
through chromedriver; skipped with the reason without it, failed under CI=true). Every page a
contributor, an analyst and an administrator reach there, in Spanish and in English, is audited
by JavaScript run in the page, once in a desktop window (1440×900) and once in a phone's
(390×844):

1. ``<html lang>`` is ``es`` or ``en``; the page has a ``<title>`` (naming the page, not only
   the site) and exactly one ``<h1>``;
2. every visible form control (input other than hidden/submit/button, select, textarea) has an
   accessible name: ``<label for>``, a wrapping ``<label>``, ``aria-label`` or
   ``aria-labelledby``;
3. every ``<img>`` has an ``alt``; every link and button has a non-empty accessible text;
4. text contrast (WCAG 2.1, 1.4.3): every visible element with text of its own (and every form
   control showing a value) reaches 4.5:1 between its computed ``color`` and the background
   under it (the background colours of it and its ancestors, composed over white), 3:1 for
   large text (24px, or 18.66px bold);
5. keyboard (its own test): TAB from the start of the sign-in page reaches the user name, the
   password and the button, in that order, and ENTER signs in; every element TAB reaches there,
   on the desk (its navigation and the rest) and in the reconciliation's and the figures' forms
   shows a focus indicator (an outline with a width, or a box-shadow), an outline standing out
   3:1 from what it is drawn on (WCAG 2.1, 1.4.11), and is on screen;
6. (phone) the ``<meta name=viewport>`` is there and the page does not scroll sideways
   (``scrollWidth`` within the window, scrollbar excluded); what sticks out is named.

``test_the_audit_finds_what_it_looks_for`` breaks a page on purpose: each check fails there.

Every failure names the page, the window, the element (tag, id, classes, text, where it is) and
what is wrong, so that a developer can act on it."""

import shutil

import pytest
import sqlalchemy as sa

from obsx.indicators.engine import compute_indicators
from obsx.warehouse import accounts, corrections
from tests.conftest import process_inboxes
from tests.test_reconcile import HEADER, NOW, deliver
from tests.test_web_browser import FIXTURES, browser, click_and_wait, sign_in, site
from tests.webserver import PASSWORD

# tests/test_web_browser.py's fixtures, requested here by name: Chromium, and the server with its
# data (named in __all__ so that the linter knows they are meant to be here).
__all__ = ["browser", "site"]

DESKTOP = (1440, 900)
PHONE = (390, 844)

# describe(el): what a developer needs to find the element: its tag, id, classes, a few
# attributes, its text and the nearest ancestor with an id.
DESCRIBE = r"""
const describe = (el) => {
  if (!el) return "page";
  let s = el.tagName.toLowerCase();
  if (el.id) s += "#" + el.id;
  for (const c of el.classList) s += "." + c;
  for (const a of ["name", "type", "value", "href", "for"]) {
    const v = el.getAttribute(a);
    if (v && !(a === "value" && el.type === "hidden")) s += `[${a}="${v.slice(0, 60)}"]`;
  }
  const text = (el.textContent || "").trim().replace(/\s+/g, " ");
  if (text) s += ` "${text.length > 50 ? text.slice(0, 50) + "…" : text}"`;
  const path = [];
  for (let p = el.parentElement; p && p !== document.body && path.length < 4; p = p.parentElement) {
    path.unshift(p.tagName.toLowerCase() + (p.id ? "#" + p.id : "")
      + [...p.classList].map((c) => "." + c).join(""));
    if (p.id) break;
  }
  return path.length ? `${s} in ${path.join(" > ")}` : s;
};
const rgba = (text) => {
  const m = /^rgba?\(([^)]*)\)$/.exec(text.trim());
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
};
const hex = (c) => "#" + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
const linear = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
const luminance = (c) => 0.2126 * linear(c[0]) + 0.7152 * linear(c[1]) + 0.0722 * linear(c[2]);
const ratio = (a, b) => {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
};
const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
// The colour under an element: the background colours of it and its ancestors, the nearest
// opaque one and the translucent ones above it, composed over white. A background image cannot
// be judged here: its element is returned instead of a colour.
const background = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const style = getComputedStyle(e);
    if (style.backgroundImage !== "none") return {image: e};
    const c = rgba(style.backgroundColor);
    if (c === null) return {unread: style.backgroundColor};
    if (c[3] > 0) layers.push(c);
    if (c[3] >= 1) break;
  }
  return {colour: layers.reverse().reduce((under, top) => over(top, under), [255, 255, 255, 1])};
};
const shown = (el) => {
  if (!el.getClientRects().length) return false;
  const style = getComputedStyle(el);
  return style.visibility === "visible" && style.display !== "none";
};
"""

AUDIT = (
    DESCRIBE
    + r"""
const phone = arguments[0];
const found = [];
const add = (check, el, detail) => found.push([check, describe(el), detail]);
const counted = {controls: 0, actions: 0, texts: 0};

// 1. language, title, one heading
const lang = document.documentElement.getAttribute("lang");
if (!["es", "en"].includes(lang)) add("lang", document.documentElement, `lang=${JSON.stringify(lang)}`);
const title = document.title.trim();
if (!title) add("title", null, "the page has no <title>");
// "page · site": a title that names the site alone does not say which page this is (2.4.2)
const [part, ...site] = title.split(" · ");
if (site.length && part.trim() === site.join(" · ").trim()) {
  add("title", null, `the <title> "${title}" names the site, not the page`);
}
const h1 = [...document.querySelectorAll("h1")];
if (h1.length !== 1) add("h1", null, `${h1.length} <h1>: ${h1.map(describe).join("; ") || "none"}`);
for (const h of h1) if (!h.textContent.trim()) add("h1", h, "the <h1> is empty");

// 2. every visible form control has an accessible name
const texts = (ids) => ids.split(/\s+/).map((id) => document.getElementById(id))
  .filter(Boolean).map((e) => e.textContent.trim()).join(" ").trim();
const labelled = (el) => {
  if (el.getAttribute("aria-labelledby") && texts(el.getAttribute("aria-labelledby"))) return true;
  if ((el.getAttribute("aria-label") || "").trim()) return true;
  return [...(el.labels || [])].some((l) => l.textContent.trim());  // <label for>, wrapping
};
const BUTTONS = ["hidden", "submit", "button", "reset", "image"];
for (const el of document.querySelectorAll("input, select, textarea")) {
  if (el.tagName === "INPUT" && BUTTONS.includes(el.type)) continue;
  if (shown(el)) counted.controls++;
  if (shown(el) && !labelled(el)) add("label", el, "no <label>, aria-label or aria-labelledby");
}

// 3. images have an alt; links and buttons say what they do
for (const img of document.querySelectorAll("img")) if (!img.hasAttribute("alt")) add("alt", img, "no alt");
const named = (el) => {
  if (el.getAttribute("aria-labelledby") && texts(el.getAttribute("aria-labelledby"))) return true;
  if ((el.getAttribute("aria-label") || "").trim()) return true;
  if (el.tagName === "INPUT") return (el.type === "image" ? el.alt : el.value || "").trim() !== "";
  if (el.textContent.trim()) return true;
  if ([...el.querySelectorAll("img[alt]")].some((i) => i.alt.trim())) return true;
  return (el.getAttribute("title") || "").trim() !== "";
};
const ACTIONS = "a[href], button, [role=button], [role=link], "
  + "input[type=submit], input[type=button], input[type=reset], input[type=image]";
for (const el of document.querySelectorAll(ACTIONS)) {
  counted.actions++;
  if (!named(el)) add("name", el, "no accessible text");
}

// 4. text contrast
const SKIP = new Set(["SCRIPT", "STYLE", "TEMPLATE", "NOSCRIPT", "TITLE", "META", "LINK", "HEAD"]);
const TEXTUAL = ["text", "search", "email", "url", "tel", "password", "number", "date", "month", "file"];
for (const el of [document.body, ...document.body.querySelectorAll("*")]) {
  if (SKIP.has(el.tagName) || !shown(el)) continue;
  const own = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
  const value = (el.tagName === "SELECT" && el.selectedOptions.length)
    || (el.tagName === "TEXTAREA" && el.value)
    || (el.tagName === "INPUT" && TEXTUAL.includes(el.type) && (el.value || el.type === "file"));
  if (!own && !value) continue;
  counted.texts++;
  const style = getComputedStyle(el);
  const colour = rgba(style.color);
  const under = background(el);
  if (!colour || under.unread) {
    add("contrast", el, `colour not readable: ${style.color} on ${under.unread || "?"}`);
    continue;
  }
  if (under.image) {
    add("contrast", el, `background image on ${describe(under.image)}: contrast not measurable`);
    continue;
  }
  const text = over(colour, under.colour);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && parseInt(style.fontWeight, 10) >= 700);
  const needed = large ? 3 : 4.5;
  const r = ratio(text, under.colour);
  if (r < needed) {
    add("contrast", el, `${hex(text)} on ${hex(under.colour)}: ${r.toFixed(2)}:1 < ${needed}:1`
      + ` (${style.fontSize}, weight ${style.fontWeight})`);
  }
}

// 6. a phone: the viewport is declared and nothing makes the page scroll sideways
if (phone) {
  const viewport = document.querySelector('meta[name="viewport"]');
  if (!viewport || !/width\s*=\s*device-width/.test(viewport.content)) {
    add("viewport", viewport, "no <meta name=viewport content=width=device-width>");
  }
  const root = document.documentElement;
  const room = Math.min(window.innerWidth, root.clientWidth);
  if (root.scrollWidth > room + 1) {
    // What sticks out: elements past the right edge whose parent does not, outside any
    // container that scrolls or clips them.
    const clipped = (el) => {
      for (let p = el.parentElement; p && p !== root; p = p.parentElement) {
        if (getComputedStyle(p).overflowX !== "visible") return true;
      }
      return false;
    };
    const out = [...document.body.querySelectorAll("*")].filter((el) => {
      if (!shown(el) || el.getBoundingClientRect().right <= room + 1 || clipped(el)) return false;
      const parent = el.parentElement;
      return parent === document.body || parent.getBoundingClientRect().right <= room + 1;
    });
    for (const el of out) {
      add("phone", el, `right edge at ${Math.round(el.getBoundingClientRect().right)}px in a`
        + ` ${room}px window: the page scrolls sideways (scrollWidth ${root.scrollWidth})`);
    }
    // Text that runs out of a box that fits (a long word, a file name): its element.
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const el = node.parentElement;
      if (!node.textContent.trim() || !shown(el) || clipped(node) || out.includes(el)) continue;
      range.selectNodeContents(node);
      const right = range.getBoundingClientRect().right;
      if (right > room + 1 && el.getBoundingClientRect().right <= room + 1) {
        out.push(el);
        add("phone", el, `its text runs to ${Math.round(right)}px in a ${room}px window:`
          + ` the page scrolls sideways (scrollWidth ${root.scrollWidth})`);
      }
    }
    if (!out.length) add("phone", null, `scrollWidth ${root.scrollWidth} > ${room}px window`);
  }
}
return {found, counted};
"""
)

# What the TAB key reached: the element and whether it shows where the focus is.
FOCUSED = (
    DESCRIBE
    + r"""
const el = document.activeElement;
if (!el || el === document.body || el === document.documentElement) return {what: "body"};
const style = getComputedStyle(el);
const problems = [];
const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
const shadow = style.boxShadow && style.boxShadow !== "none";
if (!outline && !shadow) {
  problems.push(`no focus indicator (outline ${style.outlineStyle} ${style.outlineWidth},`
    + ` box-shadow ${style.boxShadow})`);
}
const box = el.getBoundingClientRect();
if (outline) {
  // The outline must stand out 3:1 from what it is drawn on: what is under the middle of each
  // of its sides that is in the window (elementsFromPoint: the outline itself is not hit).
  const ring = rgba(style.outlineColor);
  const gap = parseFloat(style.outlineOffset) + parseFloat(style.outlineWidth) / 2;
  const [x, y] = [box.left + box.width / 2, box.top + box.height / 2];
  const sides = [[box.left - gap, y], [box.right + gap, y], [x, box.top - gap], [x, box.bottom + gap]];
  const [width, height] = [document.documentElement.clientWidth, document.documentElement.clientHeight];
  for (const [px, py] of sides) {
    if (px < 0 || py < 0 || px >= width || py >= height) continue;  // off the page: not seen
    const beneath = document.elementsFromPoint(px, py).find((e) => e !== el && !el.contains(e));
    const under = background(beneath || document.documentElement);
    if (!ring || !under.colour) {
      problems.push(`focus outline ${style.outlineColor} on what cannot be read`);
      break;
    }
    const r = ratio(over(ring, under.colour), under.colour);
    if (r < 3) {
      problems.push(`focus outline ${hex(ring)} on ${hex(under.colour)} (${describe(beneath)}):`
        + ` ${r.toFixed(2)}:1 < 3:1`);
      break;
    }
  }
}
if (box.width === 0 || box.height === 0 || box.right <= 0 || box.bottom <= 0
    || box.left >= window.innerWidth || box.top >= window.innerHeight) {
  problems.push(`focused but not on screen (${Math.round(box.left)},${Math.round(box.top)})`);
}
return {what: describe(el), id: el.id, tag: el.tagName.toLowerCase(), type: el.type || "",
        href: el.getAttribute("href") || "", nav: !!el.closest("header nav"),
        form: el.form ? el.form.getAttribute("action") : "", problems};
"""
)


@pytest.fixture(scope="module")
def audited(site):
    """tests/test_web_browser.py's site, with what its other pages show: published figures, a
    correction held for a closed month, an administrator."""
    engine = site["engine"]
    compute_indicators(engine, NOW, months=["2025-02"])  # a few seconds, not all
    corrections.close_period(engine, "2025-01", by="test")
    deliver(
        site["zone"],
        engine,
        "pa_panama",
        "panama_correccion.csv",
        HEADER + "\nH1,2025-01-03,0804,0101,M,26,FIREARM\n",
    )
    accounts.add_user(engine, "admin", "admin", PASSWORD, display_name="Administración")
    return site


class Audit:
    """The failures of every page audited, each with its page, window and element."""

    def __init__(self, driver, url: str):
        self.driver, self.url, self.pages, self.failures = driver, url, [], []

    def page(self, label: str, marker: str | None = None) -> None:
        """Audits the page open in the browser, in a desktop window and in a phone's;
        ``marker`` (a CSS selector) proves it is the page meant, not a redirection."""
        from selenium.webdriver.common.by import By

        where = self.driver.current_url.removeprefix(self.url) + f" ({label})"
        if marker:
            assert self.driver.find_elements(By.CSS_SELECTOR, marker), (
                f"{where}: {marker} is not there: {self.driver.find_element(By.TAG_NAME, 'h1').text}"
            )
        seen = set()
        for window, size in (("desktop", DESKTOP), ("phone", PHONE)):
            self.driver.set_window_size(*size)
            width = self.driver.execute_script("return window.innerWidth")
            assert width == size[0], f"the browser window is {width}px wide, not {size[0]}px"
            result = self.driver.execute_script(AUDIT, window == "phone")
            # Not an audit of nothing: every page has text, links or buttons to judge.
            assert result["counted"]["texts"] and result["counted"]["actions"], (where, result)
            for check, element, detail in result["found"]:
                if (check, element, detail) not in seen:
                    seen.add((check, element, detail))
                    self.failures.append(f"[{check}] {where} {window}: {element}: {detail}")
        self.driver.set_window_size(*DESKTOP)
        self.pages.append(where)

    def get(self, path: str, label: str, marker: str | None = None) -> None:
        self.driver.get(self.url + path)
        self.page(label, marker)

    def switch_language(self) -> None:
        from selenium.webdriver.common.by import By

        button = self.driver.find_element(By.CSS_SELECTOR, "header button[name=lang]")
        click_and_wait(self.driver, button)

    def check(self) -> None:
        assert self.pages
        assert not self.failures, (
            f"{len(self.failures)} accessibility failures on {len(self.pages)} pages:\n"
            + "\n".join(self.failures)
        )


def both_languages(audit: Audit, pages: list[tuple[str, str, str | None]]) -> None:
    """Each page in Spanish, then in English (the language button of the header), then back."""
    for path, label, marker in pages:
        audit.get(path, label, marker)
    audit.switch_language()
    assert audit.driver.execute_script("return document.documentElement.lang") == "en"
    for path, label, marker in pages:
        audit.get(path, label + ", English", marker)
    audit.switch_language()


def test_the_sign_in_pages_pass_the_audit(browser, audited):
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    audit = Audit(browser, audited["url"])
    both_languages(audit, [("/login", "sign-in", "form[action='/login']")])
    browser.find_element(By.ID, "username").send_keys("colon")
    browser.find_element(By.ID, "password").send_keys("not the password")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    audit.page("sign-in refused", "#login-error")
    audit.check()


def test_every_page_of_a_contributor_passes_the_audit(browser, audited, tmp_path):
    from selenium.webdriver.common.by import By

    # Colón's January under the kind of name files get: long, without a space to wrap at.
    upload = tmp_path / "Reporte_mensual_de_incidentes_Observatorio_de_Colon_enero_2025.xlsx"
    shutil.copy(FIXTURES / "colon_enero.xlsx", upload)
    audit = Audit(browser, audited["url"])
    sign_in(browser, audited["url"], "colon")
    audit.page("portal", "#upload")
    browser.find_element(By.ID, "file").send_keys(str(upload))
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#upload button[type=submit]"))
    audit.page("verdict of a check", "#verdict .problems")
    click_and_wait(browser, browser.find_element(By.ID, "send"))
    audit.page("portal after sending", ".flash")
    process_inboxes(audited["root"], audited["engine"], ["pa_colon"])
    browser.get(audited["url"] + "/c/pa_colon")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#history a"))
    feedback = browser.current_url.removeprefix(audited["url"])
    both_languages(
        audit,
        [
            ("/c/pa_colon", "portal with its history", "#history"),
            (feedback, "feedback of a submission", "#feedback .problems"),
            ("/c/pa_colon/packs", "packs", None),
            ("/c/pa_colon/calendar", "calendar", "#calendar"),
            ("/c/pa_panama", "another contributor's portal: not found", "main a[href='/']"),
        ],
    )
    audit.check()


def test_every_page_of_an_analyst_passes_the_audit(browser, audited):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    from obsx.warehouse.tables import indicator_value as v

    with audited["engine"].connect() as conn:
        published, withheld = (
            conn.execute(
                sa.select(v.c.indicator_code, v.c.geo_code, v.c.period)
                .where(
                    v.c.indicator_code == "HOMICIDE_COUNT",
                    v.c.disaggregation == "",
                    v.c.conf_status.in_(statuses),
                    v.c.numerator > 0,
                )
                .order_by(v.c.period, v.c.geo_code)
            ).first()
            for statuses in (["F"], ["C", "D"])
        )
    assert published and withheld, "the figures must show a published and a withheld value"

    def explain(row):
        return (
            f"/desk/figures/explain?indicator={row.indicator_code}&geo={row.geo_code}"
            f"&period={row.period}"
        )

    figures = f"/desk/figures?indicator={withheld.indicator_code}&period={withheld.period}"
    audit = Audit(browser, audited["url"])
    sign_in(browser, audited["url"], "analista")
    # A decision, then a bulletin: the pages with what they leave behind.
    browser.get(audited["url"] + "/desk/reconciliation")
    row = browser.find_element(By.XPATH, "//tr[td[1]='0804' and td[2]='2025-02']")
    Select(row.find_element(By.NAME, "source")).select_by_value("forensic")
    row.find_element(By.NAME, "reason").send_keys("NEC-4 confirmado por la fiscalía")
    click_and_wait(browser, row.find_element(By.CSS_SELECTOR, "button"))
    audit.page("reconciliation after a decision", ".flash")
    browser.get(audited["url"] + "/desk/periods")
    bulletin = browser.find_element(By.CSS_SELECTOR, "form[action='/desk/bulletin'] button")
    click_and_wait(browser, bulletin)
    audit.page("periods after building a bulletin", ".flash")
    browser.get(audited["url"] + "/desk")
    years = [
        a.get_attribute("href").removeprefix(audited["url"])
        for a in browser.find_elements(By.CSS_SELECTOR, "nav.years a")
    ]
    both_languages(
        audit,
        [
            ("/desk", "reporting board", "table.board"),
            *[(year, "reporting board of another year", "table.board") for year in years[:1]],
            ("/desk/submissions?contributor=pa_panama", "submissions", "#submissions"),
            ("/desk/reconciliation", "reconciliation", "#reconciliation"),
            (figures, "figures", "#figures td.withheld"),
            (explain(published), "origin of a published figure", "#files"),
            (explain(withheld), "origin of a withheld figure", "#explain-withheld"),
            ("/desk/changes", "changes since the bulletin", "#changes-intro"),
            ("/desk/corrections", "corrections held", "#corrections"),
            ("/desk/periods", "periods and bulletins", "a[href^='/desk/bulletin/']"),
            ("/admin/users", "the accounts: forbidden", "main a[href='/']"),
        ],
    )
    audit.check()


def test_the_accounts_page_of_an_administrator_passes_the_audit(browser, audited):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    audit = Audit(browser, audited["url"])
    sign_in(browser, audited["url"], "admin")
    both_languages(audit, [("/admin/users", "accounts", "#new-username")])
    browser.find_element(By.ID, "new-username").send_keys("david")
    Select(browser.find_element(By.ID, "new-role")).select_by_visible_text("contributor")
    Select(browser.find_element(By.ID, "new-contributors")).select_by_visible_text("pa_colon")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.card button"))
    audit.page("accounts with a new password shown", ".flash")
    audit.check()


def tab(driver) -> dict:
    """TAB pressed on the element that has the focus; what it reaches."""
    from selenium.webdriver.common.keys import Keys

    driver.switch_to.active_element.send_keys(Keys.TAB)
    return driver.execute_script(FOCUSED)


def tab_through(driver, page: str) -> tuple[list[dict], list[str]]:
    """TAB from the start of the page open until the focus leaves it: what it reached, and
    where the focus was not shown."""
    reached, failures = [], []
    for _ in range(300):
        focused = tab(driver)
        if focused["what"] == "body" or (reached and focused["what"] == reached[0]["what"]):
            return reached, failures
        reached.append(focused)
        failures += [f"{page}: {focused['what']}: {p}" for p in focused["problems"]]
    raise AssertionError(f"{page}: 300 TABs and the focus is still in the page")


def test_a_keyboard_alone_signs_in_and_goes_through_the_desk_with_the_focus_shown(browser, audited):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    browser.delete_all_cookies()
    browser.set_window_size(*DESKTOP)
    browser.get(audited["url"] + "/login")
    failures, reached = [], []
    # From the start of the page: the name, the password, then the button; typed as reached.
    for _ in range(12):
        focused = tab(browser)
        reached.append(focused)
        failures += [f"/login: {focused['what']}: {p}" for p in focused.get("problems", [])]
        if focused.get("id") == "username":
            browser.switch_to.active_element.send_keys("analista")
        elif focused.get("id") == "password":
            browser.switch_to.active_element.send_keys(PASSWORD)
        elif focused.get("form") == "/login" and focused["tag"] == "button":
            break
    sign_in_form = [
        f.get("id") or f["tag"]
        for f in reached
        if f.get("form") == "/login" and f["what"] != "body"
    ]
    assert sign_in_form == ["username", "password", "button"], (
        f"TAB from the start of /login reached, in order: {[f['what'] for f in reached]}"
    )
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    WebDriverWait(browser, 60).until(lambda d: d.current_url.endswith("/desk"))

    # The desk from its start: skip link, navigation, language, sign-out, and on; then the
    # forms of the reconciliation and of the figures.
    reached, shown = tab_through(browser, "/desk")
    failures += shown
    assert [f["href"] for f in reached if f["nav"]] == [
        "/desk",
        "/desk/reconciliation",
        "/desk/figures",
        "/desk/changes",
        "/desk/corrections",
        "/desk/periods",
    ], f"TAB from the start of /desk reached: {[f['what'] for f in reached]}"
    for path in ("/desk/reconciliation", "/desk/figures"):
        browser.get(audited["url"] + path)
        reached, shown = tab_through(browser, path)
        assert any(f["tag"] == "select" for f in reached), [f["what"] for f in reached]
        failures += shown
    assert not failures, f"{len(failures)} focus indicators missing or faint:\n" + "\n".join(
        failures
    )


def test_the_audit_finds_what_it_looks_for(browser, audited):
    """The audit itself, on a page made to fail each check once: it can fail."""
    browser.delete_all_cookies()
    browser.set_window_size(*DESKTOP)
    browser.get(audited["url"] + "/login")
    # Styles set through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    browser.execute_script(
        """
        document.documentElement.lang = "";
        document.title = "";
        document.querySelector("label[for=username]").remove();
        document.querySelector("meta[name=viewport]").remove();
        const main = document.querySelector("main");
        const add = (html) => main.appendChild(document.createRange().createContextualFragment(html));
        add('<h1>Otra</h1><img src="/static/x.png"><a href="/x"></a><button></button>');
        add('<p id="grey">gris</p><div id="dark"><span>azul</span></div>');
        add('<table><tr><td id="wide">' + "ancho ".repeat(100) + "</td></tr></table>");
        document.getElementById("grey").style.color = "#999";
        document.getElementById("dark").style.background = "#10375c";
        document.querySelector("#dark span").style.color = "#0b4f8a";
        document.getElementById("wide").style.whiteSpace = "nowrap";
        const sheet = document.styleSheets[0];
        sheet.insertRule("#username:focus-visible{outline:none}", sheet.cssRules.length);
        sheet.insertRule("#password:focus-visible{outline-color:#f5a300}", sheet.cssRules.length);
        """
    )
    found = browser.execute_script(AUDIT, False)["found"]
    browser.set_window_size(*PHONE)
    phone = browser.execute_script(AUDIT, True)["found"]
    browser.set_window_size(*DESKTOP)
    checks = sorted({check for check, _, _ in found})
    assert checks == ["alt", "contrast", "h1", "label", "lang", "name", "title"], found
    by_check = {
        check: [f"{element}: {detail}" for c, element, detail in found if c == check]
        for check in checks
    }
    assert any(
        'p#grey "gris"' in f and "#999999 on #ffffff: 2.85:1" in f for f in by_check["contrast"]
    )
    assert any('span "azul"' in f and "on #10375c" in f for f in by_check["contrast"])
    assert any("input#username" in f for f in by_check["label"])
    assert len(by_check["name"]) == 2
    assert {check for check, _, _ in phone} >= {"viewport", "phone"}
    assert [e.split(" ")[0] for c, e, _ in phone if c == "phone"] == ["table"], phone
    focus = {}
    for _ in range(12):
        focused = tab(browser)
        focus[focused.get("id") or focused["what"]] = focused.get("problems")
        if "username" in focus and "password" in focus:
            break
    assert focus["username"] and focus["username"][0].startswith("no focus indicator"), focus
    assert focus["password"] == [
        "focus outline #f5a300 on #ffffff (form.card.narrow"
        ' "Contraseña Iniciar sesión" in main#main): 2.07:1 < 3:1'
    ], focus
