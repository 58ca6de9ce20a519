"""`GET /` serves the playground and its assets without a key; the API behind it still needs one."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def client(app_factory, tmp_path):
    from search_service.store.db import migrate

    url = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(url)
    return app_factory(url, auth="on").test_client()


def test_page_and_assets_are_served_without_a_key(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "search-service playground" in html
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in html and "style=" not in html  # the CSP allows no inline code or style
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', html)
    assert sorted(assets) == ["static/playground.css", "static/playground.js"]
    for asset in assets:
        response = client.get(f"/{asset}")
        assert response.status_code == 200, asset
        assert response.mimetype == ("text/css" if asset.endswith(".css") else "text/javascript")
        assert len(response.get_data()) > 500
        response.close()
    script = client.get("/static/playground.js")
    source = script.get_data(as_text=True)
    script.close()
    assert "Authorization" in source and "Bearer" in source and "sessionStorage" in source
    assert "innerHTML" not in source  # server data is written with textContent only
    for element_id in re.findall(r'\$\("([\w-]+)"\)', source):
        assert f'id="{element_id}"' in html, f"the script uses #{element_id}, the page has none"


def test_the_api_still_needs_a_key_and_the_page_is_not_in_openapi(client):
    response = client.get("/v1/collections")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/static/missing.js").status_code == 404
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)
