"""`/`: a small page pointing at the docs, the admin, health and metrics."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from agora import __version__
from agora.config import Settings
from agora.db.session import Database

router = APIRouter(include_in_schema=False)

LINKS = (
    ("/docs", "API documentation (Swagger UI, try the endpoints)"),
    ("/redoc", "API reference (ReDoc)"),
    ("/admin/", "Admin (superusers)"),
    ("/health/ready", "Readiness: does the database answer?"),
    ("/metrics", "Prometheus metrics"),
)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Agora</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;
       padding: 0 1rem; color: #222; }}
code {{ background: #f3f3f3; padding: 0 .25rem; }}
li {{ margin: .25rem 0; }}
</style>
</head>
<body>
<h1>Agora <small>{version}</small></h1>
<p>Community marketplace: members, forum, market and credits.</p>
<ul>
{links}
</ul>
<p>Database: <code id="database">{backend}</code></p>
</body>
</html>
"""


def database_label(db: Database) -> str:
    """Backend and driver, e.g. `postgresql (asyncpg)`: never the URL, so never a password."""
    dialect = db.engine.dialect
    return f"{dialect.name} ({dialect.driver})"


@router.get("/", response_class=HTMLResponse)
async def landing(request: Request) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    links = "\n".join(
        f'<li><a href="{href}">{escape(href)}</a>: {escape(text)}</li>'
        for href, text in LINKS
        if href != "/metrics" or settings.metrics_enabled
    )
    page = PAGE.format(
        version=escape(__version__),
        links=links,
        backend=escape(database_label(request.app.state.db)),
    )
    return HTMLResponse(page)
