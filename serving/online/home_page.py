"""The service's own page at ``/``: what it answers and how to ask, with nothing from outside.

BentoML's index page is its Swagger UI with BentoML's title and links and a third-party tag
manager script; on an internal API for customer data a page should load nothing from
elsewhere and say what this service is. The OpenAPI document stays at ``/docs.json``.
"""

from __future__ import annotations

from html import escape

#: The request the page shows (any customer id of the served run answers).
EXAMPLE = (
    "curl -s -X POST http://HOST:PORT/score -H 'Content-Type: application/json' "
    '-H \'X-API-Key: KEY\' -d \'{"customers": [{"customer_id": "C0049000"}]}\''
)

_ROWS: tuple[tuple[str, str], ...] = (
    (
        "POST /score",
        "Future value (CLV over the model's horizon), churn probability, value and risk "
        "segments, the next action and the reasons, for up to a few hundred customers per "
        "request: by customer id (answered from the last batch run) or with the customer's "
        "order history inline. Every answer names the batch run it came from (run_id).",
    ),
    ("GET /readyz", "200 once the model and the run's answers are loaded; 503 with the reason."),
    ("GET /livez", "200 while the process answers at all."),
    ("GET /metrics", "Prometheus metrics."),
    ("GET /docs.json", "The OpenAPI document of the API, errors included."),
)

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;"
    "color:#1b2430;line-height:1.5}code,pre{background:#f1f4f8;border-radius:4px}"
    "pre{padding:.8rem;white-space:pre-wrap}td{padding:.3rem .8rem .3rem 0;vertical-align:top}"
    "td:first-child{white-space:nowrap;font-family:monospace}"
)


def home_page() -> bytes:
    """The page's HTML (UTF-8): no script, no external stylesheet, font or image."""
    rows = "".join(
        f"<tr><td>{escape(path)}</td><td>{escape(what)}</td></tr>" for path, what in _ROWS
    )
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>customer-value: customer lifetime value and churn</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>customer-value</h1>"
        "<p>Predicts, for every customer of the shop, what they will spend over the model's "
        "horizon and how likely they are to order nothing in it, and says why. Answers come "
        "from the champion model of the shop's MLflow registry and the last batch run.</p>"
        f"<h2>Endpoints</h2><table>{rows}</table>"
        f"<h2>Example</h2><pre>{escape(EXAMPLE)}</pre>"
        '<p>Errors are JSON: <code>{"error": "..."}</code>, with <code>detail</code> '
        "listing each invalid field of a 400.</p>"
        "</body></html>"
    )
    return html.encode()
