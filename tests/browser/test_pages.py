"""The operator dashboard and the customer chat in a real browser, over the real app."""

from __future__ import annotations

import random
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.audience.imports import demo_phone
from tests.deployments.test_signup import deliver
from tests.utils import mail_samples
from tests.utils.campaigns import create_campaign, import_audience, launch
from tests.utils.stack import Stack, unique_domain

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def no_sideways_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


PASSWORD = "a browser's password"
# Each console section, and an element only it shows.
SECTIONS = {"campaigns": "#campaigns-table", "audience": "#gen-button",
            "chat": "#sessions-table", "marketing": "#marketing-stats",
            "journeys": "#journeys-table",
            "reports": "#report-show", "signup": "#signup-state",
            "integrations": "#webhook-form", "system": "#system-health",
            "audit": "#audit-table"}


def open_section(page: Page, section: str) -> None:
    page.click(f"#sections a[data-section={section}]")
    expect(page.locator(SECTIONS[section])).to_be_visible()


def throughput_points(page: Page) -> int:
    """Points of the campaign's throughput chart, once it has any (polled: the page's
    CSP refuses the string evaluation of Playwright's wait_for_function)."""
    for _ in range(100):
        points = page.evaluate("(() => { const c = window.Chart && Chart.getChart("
                               "'throughput-chart'); return c ? c.data.datasets[0].data"
                               ".length : 0; })()")
        if points:
            return points
        page.wait_for_timeout(100)
    return 0


@pytest.fixture(scope="module")
def operator(stack: Stack) -> str:
    """An admin user the browser signs in as (made with the bootstrap token)."""
    name = f"browser-{uuid.uuid4().hex[:6]}"
    with stack.client() as client:
        made = client.post("/api/users", json={"username": name, "password": PASSWORD,
                                               "role": "admin"})
    assert made.status_code == 201, made.text
    return name


def sign_in(page: Page, stack: Stack, username: str, password: str = PASSWORD,
            section: str = "campaigns") -> None:
    """Sign in on the console's `section` (its URL: /#/<section>)."""
    page.goto(f"{stack.base_url}/#/{section}")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#signin-button")


def test_a_wrong_password_shows_an_error_on_the_form(browser, stack: Stack,
                                                      operator: str) -> None:
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, stack, operator, "definitely not the password")
    expect(page.locator("#signin-error")).to_have_text("Wrong user name or password.")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    page.close()


def test_the_first_admin_is_made_with_the_admin_token_then_signs_in(browser,
                                                                    stack: Stack) -> None:
    page = browser.new_page(viewport=DESKTOP)
    page.goto(stack.base_url + "/")
    page.click("#first-admin summary")
    name = f"first-{uuid.uuid4().hex[:6]}"
    page.fill("#bootstrap-token", stack.token)
    page.fill("#new-admin", name)
    page.fill("#new-admin-password", PASSWORD)
    page.click("#first-admin-button")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#whoami")).to_have_text(f"{name} · admin")
    open_section(page, "audit")
    expect(page.locator("#audit-table")).to_contain_text("user.create")
    page.close()


def test_pages_are_served_under_a_strict_content_security_policy(browser,
                                                                stack: Stack) -> None:
    """No inline script or style is allowed, so a page that needed one would show a
    violation (checked after every browser test); the headers are on every reply."""
    page = browser.new_page(viewport=DESKTOP)
    for path in ("/", "/chat/", "/api/health", "/unsubscribe/not-a-token"):
        headers = page.goto(stack.base_url + path).headers
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "'unsafe-inline'" not in policy, path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    # A script the page did not ship is refused, and the refusal is what the
    # per-test check looks for.
    page.goto(stack.base_url + "/")
    page.evaluate("""() => { const s = document.createElement('script');
                             s.textContent = 'window.injected = 1';
                             document.head.appendChild(s); }""")
    assert page.evaluate("window.injected") is None
    page.wait_for_timeout(200)
    assert any("script-src" in text for text in browser.violations), browser.violations
    browser.violations.clear()
    page.close()


def test_dashboard_generate_launch_and_watch(browser, stack: Stack, operator: str,
                                             screenshot_dir: Path) -> None:
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, stack, operator)
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#preview")).to_contain_text("Subject: Ana, your Basic plan can do more")

    open_section(page, "audience")
    page.fill("#gen-count", "200")
    page.click("#gen-button")
    expect(page.locator("#gen-result")).to_contain_text("Created 200 customers", timeout=60_000)
    tag = page.input_value("#audience-tag")
    assert tag.startswith("demo-")
    open_section(page, "campaigns")

    page.fill("#workers", "2")
    page.fill("#batch-size", "10")
    page.check("#track-clicks")  # the text body's only link is the unsubscribe link: kept
    page.click("#launch-button")
    expect(page.locator("#campaign-detail")).to_be_visible()
    expect(page.locator("#detail-progress")).to_have_text("100%", timeout=180_000)
    expect(page.locator("#detail-status")).to_have_text("completed")
    expect(page.locator("#detail-sent")).to_have_text("200")
    expect(page.locator("#detail-clicked")).to_have_text("0 (0.0%)")  # tracked, none yet
    expect(page.locator("#detail-opened")).to_have_text("–")  # not tracked
    funnel = page.locator("#funnel-table tbody tr")  # per channel: email sent 200
    expect(funnel).to_have_count(1)
    expect(funnel.first).to_contain_text("email")
    expect(funnel.first.locator("td").nth(1)).to_have_text("200")
    assert int(page.inner_text("#worker-count")) > 1
    # The chart shows the same spread: more than one bar in "sent by worker".
    bars = page.evaluate("Chart.getChart('workers-chart').data.labels.length")
    assert bars > 1
    assert throughput_points(page) >= 2  # the series it had, from the launch on
    campaign_id = page.evaluate("location.hash").rsplit("/", 1)[1]
    page.screenshot(path=str(screenshot_dir / "dashboard-desktop.png"))

    # The outbox: these 200 arrived (filter on the batch id in their addresses).
    open_section(page, "system")
    page.fill("#outbox-filter", tag.removeprefix("demo-"))
    page.click("#outbox-refresh")
    expect(page.locator("#outbox-total")).to_contain_text("200 matching", timeout=30_000)
    page.locator("#outbox-table tbody tr").first.click()
    expect(page.locator("#outbox-raw")).to_contain_text("List-Unsubscribe: <")
    expect(page.locator("#system-health")).to_contain_text("MongoDB")
    relay = page.locator("#routes-table tbody tr", has_text="relay")
    expect(relay).to_contain_text("in service")  # the relay that carried the campaign

    # Opened after it ended, by its own URL: the detail, and the series it had.
    phone = browser.new_page(viewport=PHONE)
    sign_in(phone, stack, operator, section=f"campaigns/{campaign_id}")
    expect(phone.locator("#app")).to_be_visible()
    expect(phone.locator("#detail-progress")).to_have_text("100%")
    assert throughput_points(phone) >= 2
    assert no_sideways_scroll(phone)
    phone.locator("#campaign-detail").scroll_into_view_if_needed()
    phone.wait_for_timeout(600)  # let the progress bar's transition finish for the picture
    phone.screenshot(path=str(screenshot_dir / "dashboard-phone.png"), full_page=False)
    page.close()
    phone.close()


def test_chat_refusal_brings_an_offer_card_to_accept(browser, stack: Stack, operator: str,
                                                     screenshot_dir: Path) -> None:
    page = browser.new_page(viewport=DESKTOP)
    page.goto(stack.base_url + "/chat")
    bot = page.locator(".bubble.bot")
    expect(bot.last).to_contain_text("Are you already a client?")
    with page.expect_response(lambda r: r.request.method == "DELETE") as cleared:
        page.click("#clear")
    assert cleared.value.ok
    # One greeting, and not the first one: the conversation was cleared and began again.
    expect(page.locator(".bubble")).to_have_count(1)
    expect(page.locator(".bubble").first).not_to_have_attribute("data-seq", "1")
    expect(bot.last).to_contain_text("Are you already a client?")

    for answer, reply in (("1", "Would you like an upgrade?"),
                          ("1", "Do you accept the Turbo plan"),
                          ("2", "No problem, thank you for your time")):
        page.fill("#text", answer)
        page.press("#text", "Enter")
        expect(bot.last).to_contain_text(reply)
    expect(page.locator(".options")).to_have_count(0)  # the conversation has ended

    # No reload from here: the counter-offer arrives over the WebSocket.
    card = page.locator(".offer-card")
    expect(card).to_be_visible(timeout=20_000)
    expect(card).to_contain_text("20% off the Turbo plan")
    page.screenshot(path=str(screenshot_dir / "chat-desktop.png"))
    card.locator(".accept-offer").click()
    expect(bot.last).to_contain_text("Offer accepted!")

    phone = browser.new_page(viewport=PHONE)
    phone.goto(stack.base_url + "/chat")
    expect(phone.locator(".bubble.bot").last).to_contain_text("Are you already a client?")
    phone.locator(".options button").first.click()  # the options are buttons too
    expect(phone.locator(".bubble.bot").last).to_contain_text("Would you like an upgrade?")
    assert no_sideways_scroll(phone)
    phone.screenshot(path=str(screenshot_dir / "chat-phone.png"))
    page.close()
    phone.close()


def test_reports_panel_shows_figures_charts_and_downloads(browser, stack: Stack, operator: str,
                                                          screenshot_dir: Path) -> None:
    page = browser.new_page(viewport=DESKTOP, accept_downloads=True)
    sign_in(page, stack, operator, section="reports")
    expect(page.locator("#app")).to_be_visible()
    page.click("#report-show")
    figures = page.locator("#report-figures")
    expect(figures).to_contain_text("Delivery rate")
    expect(figures).to_contain_text("Open rate")
    expect(figures).to_contain_text("Net")
    expect(figures).to_contain_text("BRL")
    assert page.evaluate("Chart.getChart('funnel-chart') !== undefined")
    assert page.evaluate("Chart.getChart('revenue-chart') !== undefined")
    with page.expect_download() as download:
        page.click("button.download[data-kind='billing'][data-format='xlsx']")
    assert re.fullmatch(r"operator-comms-billing-\d{4}-\d\d-\d\d-to-\d{4}-\d\d-\d\d\.xlsx",
                        download.value.suggested_filename)
    page.locator("#reports").screenshot(path=str(screenshot_dir / "reports-desktop.png"))
    page.close()


def test_signup_panel_shows_the_review_queue(browser, stack: Stack, operator: str,
                                             screenshot_dir: Path) -> None:
    domain = unique_domain("panel")
    odd = mail_samples.reply(f"visitor@{domain}", "Do you sell phones in Recife?",
                             subject="Lojas em Recife")
    keen = mail_samples.reply(f"keen@{domain}", "Quero me cadastrar", subject="Cadastro")
    with stack.client() as api:
        deliver(stack, api, odd.raw, keen.raw)
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, stack, operator, section="signup")
    expect(page.locator("#signup-state")).to_contain_text("watcher running")
    review = page.locator("#review-table")
    expect(review).to_contain_text("Lojas em Recife", timeout=30_000)
    expect(review).to_contain_text("no signup or unsubscribe keyword")
    expect(page.locator("#inbound-table")).to_contain_text(f"keen@{domain}")
    expect(page.locator("#inbound-table")).to_contain_text("customer created")
    page.locator("#signup").screenshot(path=str(screenshot_dir / "signup-desktop.png"))
    page.close()


def test_the_dashboard_shows_a_chat_online_while_its_page_is_open(browser, stack: Stack,
                                                                  operator: str) -> None:
    """Presence: the chat hub knows which sessions have a socket open, on any replica."""
    chat = browser.new_page(viewport=DESKTOP)
    chat.goto(stack.base_url + "/chat")
    expect(chat.locator(".bubble.bot").last).to_contain_text("Are you already a client?")
    session_id = chat.evaluate("JSON.parse(localStorage.getItem('comms-chat')).id")
    dashboard = browser.new_page(viewport=DESKTOP)
    sign_in(dashboard, stack, operator, section="chat")
    row = dashboard.locator(f'#sessions-table tr[data-session="{session_id}"]')
    expect(row).to_contain_text("● online", timeout=30_000)
    chat.close()  # the socket closes with the page
    expect(row).to_contain_text("offline", timeout=30_000)
    dashboard.close()


def test_webhooks_panel_adds_an_endpoint_lists_its_dead_letters_and_replays(
        browser, stack: Stack, operator: str) -> None:
    """An endpoint on a closed port: the secret is shown once, its event dies (the test
    stack retries for about a second), the panel shows it dead, and replays it."""
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, stack, operator, section="integrations")
    url = f"http://127.0.0.77:9/browser-{uuid.uuid4().hex[:6]}"  # allowed, closed
    page.fill("#webhook-url", url)
    page.fill("#webhook-events", "campaign.started")
    page.click("#webhook-form button[type=submit]")
    expect(page.locator("#webhook-secret")).to_contain_text("whsec_")

    domain = unique_domain("hookpanel")
    with stack.client() as api:
        import_audience(api, [f"a@{domain}"], tag=domain)
        launch(api, create_campaign(api, domain))
    row = page.locator("#webhooks-table tbody tr", has_text=url)
    expect(row).to_contain_text("disabled", timeout=30_000)
    row.click()
    expect(page.locator("#webhook-messages-table tbody")).to_contain_text("dead")
    row.locator("button", has_text="Replay dead").click()
    expect(page.locator("#webhook-secret")).to_contain_text("1 dead letters sent again")
    page.close()
    with stack.client() as api:  # later tests' launches need not reach a closed port
        for hook in api.get("/api/webhooks").json()["webhooks"]:
            if hook["url"] == url:
                api.delete(f"/api/webhooks/{hook['id']}")


def test_the_outbox_panel_sends_an_sms_as_a_customer_and_shows_the_bots_answer(
        browser, stack: Stack, operator: str) -> None:
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, stack, operator, section="system")
    expect(page.locator("#app")).to_be_visible()
    number = demo_phone(random.Random())  # a number the embedded SMSC does not fail
    page.fill("#sms-from", number)
    page.fill("#sms-text", "hello")
    page.click("#sms-form button[type=submit]")
    answers = page.locator("#sms-table tbody tr", has_text=number)
    expect(answers.first).to_contain_text("Are you already a client? Reply 1 for Yes, 2 for No.",
                                          timeout=30_000)
    expect(page.locator("#sms-text")).to_have_value("")
    page.fill("#sms-from", "not a number")
    page.fill("#sms-text", "1")
    page.click("#sms-form button[type=submit]")
    expect(page.locator("#sms-error")).to_contain_text("body.source")
    page.close()


def test_the_outbox_panel_talks_to_the_bot_on_whatsapp_as_a_customer(
        browser, stack: Stack, operator: str) -> None:
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, stack, operator, section="system")
    expect(page.locator("#app")).to_be_visible()
    number = demo_phone(random.Random())
    page.select_option("#im-app", "whatsapp")
    page.fill("#im-from", number)
    page.fill("#im-text", "hello")
    page.click("#im-form button[type=submit]")
    answers = page.locator("#im-table tbody tr", has_text=number.lstrip("+"))
    expect(answers.first).to_contain_text("Are you already a client?", timeout=30_000)
    expect(answers.first).to_contain_text("Yes · No")  # the reply buttons
    page.fill("#im-from", "not a number")
    page.fill("#im-text", "1")
    page.click("#im-form button[type=submit]")
    expect(page.locator("#im-error")).to_contain_text("body.sender")
    page.close()


def test_each_console_section_opens_by_its_url_and_shows_only_its_own(
        browser, stack: Stack, operator: str) -> None:
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, stack, operator)
    for section, content in SECTIONS.items():
        page.goto(f"{stack.base_url}/#/{section}")
        expect(page.locator(content)).to_be_visible()
        assert page.locator(content).bounding_box()["y"] < DESKTOP["height"]  # no scrolling
        for other, elsewhere in SECTIONS.items():
            if other != section:
                expect(page.locator(elsewhere)).to_be_hidden()
        expect(page.locator(f"#sections a[data-section={section}]")).to_have_attribute(
            "aria-current", "page")
    # A campaign's own URL opens its detail.
    domain = unique_domain("deeplink")
    with stack.client() as api:
        import_audience(api, [f"a@{domain}"], tag=domain)
        campaign_id = create_campaign(api, domain)
        name = api.get(f"/api/campaigns/{campaign_id}").json()["name"]
    page.goto(f"{stack.base_url}/#/campaigns/{campaign_id}")
    expect(page.locator("#detail-name")).to_have_text(name)
    page.close()


def test_the_chat_page_offers_notifications_through_its_service_worker(browser,
                                                                       stack: Stack) -> None:
    """The page's side of web push: the button registers the service worker under
    /chat/ and asks for a subscription. Headless Chromium refuses push registration here
    (it would need Google's FCM): the page says so instead of failing silently. The
    rest (a subscription's push, decrypted) is proven with the local push service in
    tests/deployments/test_webpush.py."""
    page = browser.new_page(viewport=DESKTOP, permissions=["notifications"])
    page.goto(stack.base_url + "/chat")
    page.get_by_role("button", name="Get notifications").click()
    banner = page.locator("#banner")
    expect(banner).to_contain_text(re.compile(
        r"Notifications are not available in this browser|Tell us who you are"),
        timeout=20_000)
    script = page.evaluate("""navigator.serviceWorker.getRegistration('/chat/').then(
        (r) => r && (r.active || r.waiting || r.installing).scriptURL)""")
    assert script == f"{stack.base_url}/chat/push-sw.js"


def test_the_journey_view_shows_who_is_at_each_step_and_pauses_it(
        browser, stack: Stack, operator: str) -> None:
    """Three customers enter a journey through the API; the view shows them at its
    wait, its steps as a list with where each goes; Pause stops entries."""
    domain = unique_domain("jview")
    key, event = f"view-{uuid.uuid4().hex[:6]}", f"joined_{uuid.uuid4().hex[:6]}"
    with stack.client() as api:
        import_audience(api, [f"{n}@{domain}" for n in "abc"], tag=domain)
        customers = [c["id"] for c in api.get("/api/customers", params={
            "tag": domain, "limit": 10}).json()["customers"]]
        assert api.post("/api/journeys", json={"key": key, "definition": {
            "name": "Browser journey", "entry": {"event": event}, "steps": [
                {"id": "hello", "type": "send", "channel": "email", "subject": "Hi",
                 "text": "Hello"},
                {"id": "ab", "type": "split", "arms": [{"name": "A", "weight": 1},
                                                       {"name": "B", "weight": 1}]},
                {"id": "later", "type": "wait", "seconds": 3600}]}}).status_code == 201
        api.post(f"/api/journeys/{key}/publish").raise_for_status()
        api.post("/api/journeys/events", json={"events": [
            {"id": f"{key}-{c}", "type": event, "customer_id": c} for c in customers]})
    page = browser.new_page(viewport=DESKTOP)
    sign_in(page, stack, operator)
    page.goto(f"{stack.base_url}/#/journeys/{key}")
    expect(page.locator("#journey-name")).to_have_text("Browser journey (v1, published)")
    steps = page.locator("#journey-steps tbody tr")
    expect(steps).to_have_count(3)
    expect(steps.nth(0)).to_contain_text("hello")
    expect(steps.nth(0).locator("td").nth(2)).to_have_text("ab")
    expect(steps.nth(2).locator("td").nth(3)).to_have_text("3", timeout=30_000)
    expect(steps.nth(0).locator("td").nth(4)).to_have_text("done: 3")
    arms = page.locator("#journey-arms tbody tr")  # the split's arms, none converted yet
    expect(arms).to_have_count(2)
    went = [int(arms.nth(n).locator("td").nth(2).inner_text()) for n in range(2)]
    assert sum(went) == 3
    expect(arms.nth(0).locator("td").nth(3)).to_have_text("0")
    listed = page.locator("#journeys-table tbody tr", has_text=key)
    expect(listed.locator("td").nth(5)).to_have_text("3")
    page.click("#journey-pause")
    expect(page.locator("#journey-name")).to_have_text("Browser journey (v1, paused)",
                                                       timeout=10_000)
    page.close()
