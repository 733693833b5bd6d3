"""End-to-end: the chat page at ``/`` in headless Chromium uploads an image and streams an answer.

Needs Debian's ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it); driven
with playwright-python against the system browser (never ``playwright install``).
"""

from __future__ import annotations

import shutil

import pytest
from serve_helpers import png_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_page_uploads_an_image_and_streams_the_answer(make_server, tmp_path):
    from playwright.sync_api import sync_playwright

    server = make_server()
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes(96, 64))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            # only the loopback server may be reached
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith(server.url) else route.abort())  # fmt: skip
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('model').textContent === 'oryx-test'")
            page.set_input_files("#file", str(image))
            page.select_option("#compression", "2")
            page.fill("#prompt", "What is in this picture?")
            page.fill("#max-tokens", "6")
            page.click("#send")
            page.wait_for_selector("#answer[data-done='1']", timeout=60_000)
            assert page.text_content("#status") == "done"
            visual = int(page.text_content("#visual-tokens"))
            completion = int(page.text_content("#completion-tokens"))
            assert visual > 0 and 1 <= completion <= 6
            assert page.text_content("#answer") is not None
            assert "What is in this picture?" in page.text_content("#log")
        finally:
            browser.close()
    engine = server.engine.stats
    assert engine.requests == 1 and engine.model_calls == 1
