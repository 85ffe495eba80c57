"""The report pages (GX Data Docs, shift and scan reports) as the Airflow API server serves them:
behind Airflow's login, with their assets served from here, under a Content-Security-Policy.

GX writes the data it validates into its pages without escaping it (a cell value or column name
such as ``</script><script>...`` runs as script), and its pages need inline scripts. So the policy
does not try to tell GX's scripts from injected ones: it puts every page in a **sandbox** with an
opaque origin. A script in a report can draw its tables and charts, but cannot read Airflow's
cookies or storage, cannot call Airflow's API as the viewer (no connections at all), cannot post
forms, and can load nothing from any other origin. The CDN links GX writes are rewritten to local
copies (:file:`webassets/README.md`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.requests import Request

ASSETS = Path(__file__).parent / "webassets"
ASSET_ROUTE = "_assets"
CSP = "; ".join(
    (
        "default-src 'none'",
        # 'unsafe-inline'/'unsafe-eval' run only inside the sandbox below (GX's tables, vega's charts).
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'none'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'self'",
        "sandbox allow-scripts",  # no popups: a page cannot open windows, only navigate itself
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}
_CDN = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
}  # fmt: skip
_ASSET_LINK = re.compile(r"""(src|href)=(["'])(""" + "|".join(map(re.escape, _CDN)) + r""")\2""")
# Pages carry a batch's values (GX's unexpected lists): every repeat is bounded (GX's own tags and URLs
# are far shorter), so that a long value with many starts and no end costs a bounded scan per start,
# not one to the end of the page (quadratic: a 1 MB value took minutes).
_SPAN = 400
_DARK_THEME = re.compile(rf"""<link[^>]{{0,{_SPAN}}}bootstrap-dark@[^>]{{0,{_SPAN}}}>""")
_S3_LOGO = re.compile(
    rf"""https://great-expectations-web-assets\.s3[^"')\s]{{0,{_SPAN}}}/logo-long\.png[^"')\s]{{0,{_SPAN}}}"""
)
_S3_ANY = re.compile(rf"""url\(['"]?https://great-expectations-web-assets\.s3[^)]{{0,{_SPAN}}}\)""")
PAGE_PATTERNS = (_ASSET_LINK, _DARK_THEME, _S3_LOGO, _S3_ANY)


def localize(html: str, depth: int) -> str:
    """``html`` with GX's CDN links pointing at the local assets; ``depth`` is the page's folder depth
    below the reports' root (links are relative, so the prefix the reports are mounted at is free)."""
    up = "../" * depth
    html = _ASSET_LINK.sub(lambda m: f"{m[1]}={m[2]}{up}{ASSET_ROUTE}/{_CDN[m[3]]}{m[2]}", html)
    html = _DARK_THEME.sub("", html)
    html = _S3_LOGO.sub(f"{up}static/images/logo-long.png", html)
    return _S3_ANY.sub("none", html)


# Public: library files and GX's own images, fonts and styles, none of them data. A sandboxed page
# has an opaque origin, so its requests for them carry no cookie (Airflow's is SameSite=Lax) and
# fonts and `crossorigin` scripts need CORS: they are served to anyone, with `*`.
PUBLIC = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=86400",
          "X-Content-Type-Options": "nosniff"}  # fmt: skip


def create_app(folder: Path, dependencies: Sequence[Any] = ()) -> Any:
    """The ASGI app serving ``folder``; ``dependencies`` (FastAPI ``Depends``) guard every page (all
    but the public assets)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    root, assets = folder.resolve(), ASSETS.resolve()
    app = FastAPI(title="mlcicd reports", docs_url=None, redoc_url=None, openapi_url=None)

    def inside(base: Path, relative: str) -> Path:
        path = (base / relative).resolve()
        if not path.is_relative_to(base):
            raise HTTPException(status_code=404)
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            raise HTTPException(status_code=404)
        return path

    @app.get(f"/{ASSET_ROUTE}/{{relative:path}}")
    def asset(relative: str) -> Any:
        return FileResponse(inside(assets, relative), headers=PUBLIC)

    @app.get("/static/{relative:path}")
    def gx_static(relative: str) -> Any:
        path = inside(root / "static", relative)
        if path.suffix.lower() in (".html", ".htm"):
            raise HTTPException(status_code=404)
        return FileResponse(path, headers=PUBLIC)

    @app.get("/{relative:path}", dependencies=list(dependencies))
    def page(relative: str) -> Any:
        path = inside(root, relative)
        if path.suffix.lower() in (".html", ".htm"):
            depth = len(path.relative_to(root).parts) - 1
            return HTMLResponse(localize(path.read_text(errors="replace"), depth), headers=HEADERS)
        return FileResponse(path, headers=HEADERS)

    return app


async def airflow_reader(request: Request) -> None:
    """FastAPI dependency: the caller has a valid Airflow token (the UI's cookie or a bearer header)
    and may read DAGs; 401/403 otherwise, as Airflow's own API answers."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException
    from fastapi.security.utils import get_authorization_scheme_param

    scheme, credentials = get_authorization_scheme_param(request.headers.get("Authorization"))
    token = credentials if scheme.lower() == "bearer" else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    user = await resolve_user_from_token(token)
    if not get_auth_manager().is_authorized_dag(method="GET", user=user):
        raise HTTPException(status_code=403, detail="this user may not read DAG runs, nor their reports")
