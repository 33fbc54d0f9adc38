"""The reports in a real browser: Debian's Chromium, headless, driven by Playwright (`make test`
installs chromium when missing). Each page is opened from its file with every request recorded
(and anything but the file itself refused, as the machine's network is closed); the tests take
screenshots, check they are not blank and that the page asked for nothing, read the numbers
from the DOM and check them against summary.json and table.md, and print the page."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from test_report_study import report_of, table_md_rows

from cnnlab.cli import main

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CNNLAB_CHROMIUM", "/usr/bin/chromium"))
# Headless, and nothing that would reach for the network on its own.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Chromium context with a fresh profile; yields open(path) -> (page, requests, console messages)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` (as root) or `apt-get install -y chromium` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=ARGS, viewport=VIEWPORT)

        def open_page(path: Path):
            page = context.new_page()
            requests: list[str] = []  # every request the page made (even one its CSP then blocked)
            sent: list[str] = []  # those that got past the page's own checks, towards the network
            failed: dict[str, str] = {}
            console: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: failed.__setitem__(r.url, r.failure or ""))
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))

            def route(r):  # anything but the file itself is recorded, then refused (the network is closed)
                sent.append(r.request.url)
                r.continue_() if r.request.url == path.as_uri() else r.abort()

            page.route("**/*", route)
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_load_state("networkidle")
            return page, {"requests": requests, "sent": sent, "failed": failed}, console

        yield open_page
        context.close()


def not_blank(png: bytes) -> None:
    from PIL import Image, ImageStat

    gray = Image.open(io.BytesIO(png)).convert("L")
    stat = ImageStat.Stat(gray)
    dark = sum(gray.histogram()[:200]) / (gray.width * gray.height)
    assert stat.stddev[0] > 20 and dark > 0.02, (stat.stddev, dark)


def test_run_report_in_chromium(browser, report_run, tmp_path):
    import json

    assert main(["report", str(report_run)]) == 0
    path = report_run / "report.html"
    page, net, console = browser(path)
    assert net["requests"] == net["sent"] == [path.as_uri()], net
    assert not [m for m in console if "Content Security Policy" in m or m.startswith("error")], console
    top = page.screenshot()
    (tmp_path / "run-top.png").write_bytes(top)
    not_blank(top)
    not_blank(page.screenshot(full_page=True))
    # The answer is at the top: the lead line and the headline table are in the first screen.
    headline = page.locator("#headline").bounding_box()
    assert headline is not None and headline["y"] + headline["height"] < VIEWPORT["height"]
    summary = json.loads((report_run / "summary.json").read_text())
    assert page.locator("p.lead").inner_text().startswith(f"Test accuracy {summary['test_acc'] * 100:.2f}%")
    shown = page.locator("#headline [data-key]").evaluate_all(
        "els => els.map(e => [e.dataset.key, e.dataset.value, e.innerText])")
    assert {k for k, _, _ in shown} >= {"val_acc", "test_acc", "best.test_acc.value", "best_test_error"}
    for key, value, text in shown:
        node = summary
        for part in key.removeprefix("1-").split("."):
            node = node[part]
        expected = 1 - node if key.startswith("1-") else node
        assert float(value) == pytest.approx(expected, abs=1e-12) and text == f"{expected * 100:.2f}%", key
    # Every figure decoded and laid out.
    sizes = page.locator("img").evaluate_all("els => els.map(e => [e.complete, e.naturalWidth])")
    assert sizes and all(done and width > 100 for done, width in sizes)
    # Printed, the folded config is shown and the page is a PDF of several pages.
    assert not page.locator("details pre").first.is_visible()
    page.emulate_media(media="print")
    assert page.locator("details pre").first.is_visible()
    pdf = page.pdf()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") > 2
    assert net["requests"] == [path.as_uri()]


def test_study_report_in_chromium(browser, report_study, tmp_path):
    path = report_study / "report.html"
    report_of(report_study)
    page, net, console = browser(path)
    assert net["requests"] == net["sent"] == [path.as_uri()], net
    assert not [m for m in console if "Content Security Policy" in m], console
    shot = page.screenshot(full_page=True)
    (tmp_path / "study.png").write_bytes(shot)
    not_blank(shot)
    rows = page.locator("#study-table tr").evaluate_all(
        "trs => trs.map(tr => Array.from(tr.children).map(c => c.innerText.trim()))")
    assert rows == table_md_rows(report_study)
    table = page.locator("#study-table").bounding_box()
    assert table is not None and table["y"] < VIEWPORT["height"]
    # The variant links lead to their sections.
    page.locator("#study-table a").first.click()
    assert page.evaluate("location.hash") == "#variant-base"


def test_the_request_check_catches_a_page_that_loads_something(browser, report_run, tmp_path):
    """The control: the same page with an external image is caught by the recorder without the
    report's Content-Security-Policy, and blocked by it (no request at all) with it."""
    assert main(["report", str(report_run), "--out", str(tmp_path / "report.html")]) == 0
    text = (tmp_path / "report.html").read_text()
    image = '<img src="http://192.0.2.1/pixel.png">'  # TEST-NET-1: never routed
    no_csp = tmp_path / "no-csp.html"
    no_csp.write_text(text.replace('<meta http-equiv="Content-Security-Policy"', '<meta name="x"').replace(
        "<main>", "<main>" + image))
    _, net, _ = browser(no_csp)
    assert "http://192.0.2.1/pixel.png" in net["requests"] and "http://192.0.2.1/pixel.png" in net["sent"]
    with_csp = tmp_path / "with-csp.html"
    with_csp.write_text(text.replace("<main>", "<main>" + image))
    _, net, console = browser(with_csp)
    assert net["sent"] == [with_csp.as_uri()]  # the policy stopped it inside the page
    assert net["failed"] == {"http://192.0.2.1/pixel.png": "csp"}
    assert any("violates the following Content Security Policy directive" in m for m in console), console
