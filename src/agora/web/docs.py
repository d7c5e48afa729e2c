"""`/docs` (Swagger UI) and `/redoc`, with their assets served from an installed package.

FastAPI's own pages load their JavaScript and CSS from a CDN, so they stay blank on a
machine with no internet. `fastapi-offline` ships Swagger UI 5 and ReDoc's standalone
bundle as files; only its `static/` directory is used here. (`swagger-ui-bundle` ships
Swagger UI 4.15, which refuses FastAPI's OpenAPI 3.1 documents.)
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

STATIC_DIR = Path(fastapi_offline.__file__).parent / "static"
STATIC_URL = "/static/docs"
SWAGGER_JS = f"{STATIC_URL}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{STATIC_URL}/swagger-ui.css"
REDOC_JS = f"{STATIC_URL}/redoc.standalone.js"
FAVICON = f"{STATIC_URL}/favicon.png"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def install_docs(app: FastAPI) -> None:
    """Serve the docs pages; `app` must be created with `docs_url=None, redoc_url=None`."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
            swagger_js_url=f"{root}{SWAGGER_JS}",
            swagger_css_url=f"{root}{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{FAVICON}",
            # No validator badge: it would fetch an image from an outside service.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{REDOC_JS}",
            redoc_favicon_url=f"{root}{FAVICON}",
            with_google_fonts=False,
        )
        # ReDoc's bundle draws its "powered by" logo from its vendor's CDN, with no option
        # to turn it off: the browser is told not to fetch images from anywhere else.
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page
