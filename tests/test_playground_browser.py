"""The web playground end to end in headless Chromium: key, collection, upload, job status, search.

A real waitress server and a real ingestion worker (threads, the session's MiniLM embedder and
tiny reranker) behind `RAG_AUTH=on`. Needs Debian's `chromium` and `chromium-driver`
(`scripts/test.sh` installs them with apt-get when missing) and selenium; skips without them.
The answered page is saved as test-artifacts/playground-results.png, the final one as playground.png.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.documents import DOCUMENTS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("RAG_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("RAG_TEST_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", "--window-size=1280,1700"]
LIGHTHOUSE = (
    "# Skerryvore lighthouse\n\nThe keeper of the Skerryvore lighthouse rewound the clockwork that turns "
    "the great lens every four hours through the winter storms, and logged each rewinding in a "
    "brass-bound book.\n"
)
QUERY = "How often did the Skerryvore keeper rewind the clockwork of the lens?"


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.skip(f"no headless Chromium: {', '.join(missing)} missing; install it with "
                    "`apt-get install -y chromium chromium-driver` (scripts/test.sh does this)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never runs, nothing is downloaded.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def stack(app_factory, tmp_path, tiny_reranker):
    from search_service.store import keys as key_store
    from search_service.store.db import migrate
    from tests.support.live_server import live_server, live_worker

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    app = app_factory(url, tiny_reranker, auth="on")
    services = app.extensions["search_service"]
    with services.database.session() as session:
        key = key_store.create_key(session, name="playground", role="write", collections="*")[1]
    with live_server(app) as base, live_worker(services):
        yield base, key


def headers(driver) -> list[str]:
    return [th.text for th in driver.find_elements("css selector", "#results thead th")]


def text_of(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def test_playground_upload_index_search_with_citations(browser, stack, tmp_path):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, key = stack
    files = []
    for name, text in {**DOCUMENTS, "lighthouse.md": LIGHTHOUSE}.items():
        path = tmp_path / "upload" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        files.append(str(path))
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)
    by_id = lambda element_id: browser.find_element("id", element_id)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        browser.get(f"{base}/")
        wait.until(lambda d: "needs an API key" in text_of(d, "auth-status"))
        before_key = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert before_key == []  # it asked /healthz whether a key is needed: no 401 before one is entered

        by_id("api-key").send_keys(key)
        by_id("key-form").submit()
        wait.until(lambda d: "Connected with key" in text_of(d, "auth-status"))
        assert browser.execute_script("return sessionStorage.getItem('search-service.api-key')") == key

        by_id("new-collection").send_keys("bad name!")  # the API's error shape, shown on the page
        by_id("collection-form").submit()
        wait.until(lambda d: d.find_element("id", "error").is_displayed())
        assert "invalid" in text_of(browser, "error") and "HTTP 400" in text_of(browser, "error")

        by_id("new-collection").clear()
        by_id("new-collection").send_keys("playground")
        by_id("collection-form").submit()
        wait.until(lambda d: Select(d.find_element("id", "collection")).first_selected_option.text == "playground")
        assert not by_id("error").is_displayed()

        by_id("files").send_keys("\n".join(files))
        by_id("upload-form").submit()

        def statuses(d):
            rows = d.find_elements("css selector", "#jobs tbody tr")
            return [row.get_attribute("data-status") for row in rows]

        wait.until(lambda d: len(statuses(d)) == len(files) and all(s in ("indexed", "failed") for s in statuses(d)))
        assert statuses(browser) == ["indexed"] * len(files)
        wait.until(lambda d: text_of(d, "collection-info").startswith(f"{len(files)} document(s)"))

        by_id("query").send_keys(QUERY)
        by_id("search-form").submit()
        wait.until(lambda d: d.find_elements("css selector", "#results tbody tr"))
        rows = browser.find_elements("css selector", "#results tbody tr")
        assert len(rows) == 5
        found = [row.get_attribute("data-document-id") for row in rows]
        assert "lighthouse.md" in found
        row = rows[found.index("lighthouse.md")]
        cells = dict(zip(headers(browser), [cell.text for cell in row.find_elements("tag name", "td")]))
        assert headers(browser) == ["#", "dense rank", "dense score", "rerank score", "score", "document", "passage"]
        assert cells["dense rank"].split()[0] == "1"  # the distinctive passage is the dense retriever's first
        assert cells["rerank score"] != "–" and cells["dense score"] != "–"  # side by side
        assert "Skerryvore" in cells["passage"]
        assert "Skerryvore lighthouse\n" in cells["passage"]  # the heading keeps its own line
        assert "dense candidates, reranked by tiny-reranker" in text_of(browser, "search-info")

        context = text_of(browser, "context-text")
        assert context.startswith("[1] ") and "Skerryvore" in context
        citations = browser.find_elements("css selector", "#citations li")
        assert citations and "lighthouse.md" in [c.get_attribute("data-document-id") for c in citations]
        assert any(c.text.startswith("[1] ") for c in citations)
        assert not by_id("error").is_displayed()

        Select(by_id("mode")).select_by_value("hybrid")  # label and columns follow the mode
        by_id("rerank").click()
        by_id("search-form").submit()
        wait.until(lambda d: "hybrid, not reranked (fusion order)" in text_of(d, "search-info"))
        assert headers(browser) == ["#", "dense rank", "dense score", "sparse rank", "sparse score",
                                    "fusion score", "score", "document", "passage"]
        by_id("rerank").click()
        by_id("search-form").submit()
        wait.until(lambda d: "hybrid candidates, reranked by tiny-reranker" in text_of(d, "search-info"))
        assert "rerank score" in headers(browser) and "fusion score" in headers(browser)

        by_id("new-collection").send_keys("second")  # another collection: the old answers go
        by_id("collection-form").submit()
        wait.until(lambda d: Select(d.find_element("id", "collection")).first_selected_option.text == "second")
        assert not by_id("results").is_displayed() and not by_id("context").is_displayed()
        assert text_of(browser, "search-info") == ""
        Select(by_id("collection")).select_by_visible_text("playground")
        by_id("search-form").submit()
        wait.until(lambda d: d.find_elements("css selector", "#results tbody tr"))

        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "playground-results.png"))  # the answered page

        problems = [entry["message"] for entry in browser.get_log("browser")
                    if entry["level"] == "SEVERE" and "status of 401" not in entry["message"]
                    and "status of 400" not in entry["message"]]
        assert problems == []  # no CSP violation, no script error

        by_id("api-key").clear()  # a rejected key: nothing of what the last key saw stays
        by_id("api-key").send_keys("rag_bogus_0000000000000000")
        by_id("key-form").submit()
        wait.until(lambda d: "rejected this key" in text_of(d, "auth-status"))
        assert not by_id("results").is_displayed() and not browser.find_elements("css selector", "#results tbody tr")
        assert not by_id("context").is_displayed()
        assert not by_id("jobs").is_displayed() and not browser.find_elements("css selector", "#jobs tbody tr")
    finally:  # the whole page, also when an assertion failed
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, min(int(height) + 200, 6000))
        browser.save_screenshot(str(ARTIFACTS / "playground.png"))
