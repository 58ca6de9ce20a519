"""`GET /`: the web playground (one HTML page; its JS and CSS are the app's `/static/` files).

The page holds no data: it calls the public API from the browser with the key the user pastes,
so `/` and `/static/` are open endpoints (`auth.POLICIES`) and never rate limited.
"""

from flask import Blueprint, Response

from search_service.api.docs import static_page

bp = Blueprint("playground", __name__)

# Everything comes from this origin; no inline script or style, no framing, no plugins.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


@bp.get("/")
def index():
    return Response(
        static_page("playground.html"),
        mimetype="text/html",
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )
