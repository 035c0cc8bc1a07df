"""The service's web page in a real headless browser: Debian's chromium driven by Playwright.

``make test`` installs chromium (apt-get); the test skips, saying why, only where apt-get
itself is unavailable, and fails where apt-get exists but chromium was not installed.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from mtrs.serve.app import create_app

from .conftest import Models

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def base_url(models: Models) -> Iterator[str]:
    app = create_app(models.a)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _browser_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None:
        pytest.skip("no /usr/bin/chromium and no apt-get to install it (make test installs it)")
    pytest.fail(f"{CHROMIUM} is missing although apt-get exists: run `make browser`")


def _merged(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all(
        "section[data-list=merged] li", "els => els.map(e => e.dataset.item)"
    )


def _wait_newer(page, seq: str) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        f"document.body.dataset.ready && document.body.dataset.ready !== '{seq}'"
    )
    return str(page.evaluate("document.body.dataset.ready"))


def test_page_ranks_live_with_sliders_and_events(base_url: str, tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(base_url + "/")
            seq = _wait_newer(page, "")
            assert "shared_bottom" in page.inner_text("#model")
            users = page.eval_on_selector_all("#user-select option", "els => els.map(e => e.value)")
            assert len(users) >= 5
            # Pick users until moving the sliders changes the merged list (it must, for some).
            changed = None
            for user in users[:5]:
                page.select_option("#user-select", user)
                seq = _wait_newer(page, seq)
                before = _merged(page)
                assert len(before) == 10
                page.eval_on_selector(
                    "#w-click", "el => { el.value = '0'; el.dispatchEvent(new Event('input')); }"
                )
                seq = _wait_newer(page, seq)
                after = _merged(page)
                page.eval_on_selector(
                    "#w-click", "el => { el.value = '1'; el.dispatchEvent(new Event('input')); }"
                )
                seq = _wait_newer(page, seq)
                if after != before:
                    changed = (user, before, after)
                    break
            assert changed is not None, "moving the click weight to 0 never changed the list"
            # Every list is shown side by side with the merged one.
            lists = page.eval_on_selector_all(
                "section[data-list]", "els => els.map(e => e.dataset.list)"
            )
            assert lists[0] == "merged" and {"click", "purchase"} <= set(lists)
            # Post an event ("the user clicked this"): the item is seen now, so it leaves the list.
            top = _merged(page)[0]
            page.click(f"section[data-list=merged] li[data-item='{top}'] button.event")
            seq = _wait_newer(page, seq)
            assert top not in _merged(page)
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
