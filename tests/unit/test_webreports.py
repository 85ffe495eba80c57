"""Report pages: behind a login, no CDN, sandboxed. A real GX report, with a batch whose data tries
to run script in it, served by the app the plugin mounts in Airflow's API server (the real Airflow
check is exercised in tests/e2e/test_trigger.py)."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
from fastapi import Depends, HTTPException, Request
from fastapi.testclient import TestClient

from mlcicd import synthetic, validation
from mlcicd.plugin import webreports

TOKEN = "good-token"
HOSTILE = "</script><script>alert(document.cookie)</script>"


async def stand_in_login(request: Request) -> None:
    """What airflow_reader decides, without an API server: a bearer token or the UI's cookie."""
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ") or request.cookies.get("_token")
    if sent != TOKEN:
        raise HTTPException(status_code=401, detail="Not authenticated")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    docs = tmp_path_factory.mktemp("docs")
    reference = synthetic.generate(3000, 1)
    suite = validation.infer_suite(reference, "churn", "churned")
    df = synthetic.generate(3000, 2)
    df.loc[:4, "contract"] = HOSTILE  # a cell value GX writes into its page unescaped
    checked = validation.validate(df, suite, run_name="hostile", docs_dir=docs)
    page = docs.joinpath(checked.report_path).relative_to(docs) if checked.report_path else None
    client = TestClient(webreports.create_app(docs, dependencies=[Depends(stand_in_login)]))
    return client, page, docs


def get(client, path: str, **kw):
    return client.get(f"/{path}", **kw)


def test_no_token_no_page(served):
    client, page, _ = served
    assert get(client, page.as_posix()).status_code == 401
    assert get(client, page.as_posix(), headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert get(client, "index.html").status_code == 401 and get(client, "").status_code == 401


def test_library_assets_and_gx_static_files_are_public_for_the_sandboxed_page(served):
    """The sandboxed page's requests carry no cookie (opaque origin; Airflow's is SameSite=Lax), and
    its fonts and crossorigin scripts need CORS: these files hold no data, so anyone may have them."""
    client, _, docs = served
    for path in (
        "_assets/jquery.min.js",
        "_assets/fontawesome/webfonts/fa-solid-900.woff2",
        "static/styles/data_docs_default_styles.css",
    ):
        r = get(client, path)
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*", path
    (docs / "static" / "leak.html").write_text("<p>not a static asset</p>")
    assert get(client, "static/leak.html").status_code == 404  # pages never go out without a login


def test_with_a_token_the_page_is_local_and_sandboxed(served):
    client, page, docs = served
    for auth in ({"headers": {"Authorization": f"Bearer {TOKEN}"}}, {"cookies": {"_token": TOKEN}}):
        client.cookies.clear()
        r = get(client, page.as_posix(), **auth)
        assert r.status_code == 200
        csp = r.headers["Content-Security-Policy"]
        assert (
            "sandbox allow-scripts;" in csp + ";"
            and "allow-same-origin" not in csp
            and "allow-popups" not in csp
        )
        assert "connect-src 'none'" in csp and "default-src 'none'" in csp and "http" not in csp
    client.cookies.clear()
    html = r.text
    # No script, stylesheet, font or image from another origin is left in the page.
    external = re.findall(r"""<(?:script|link|img)[^>]*(?:src|href)=["'](https?:)?//""", html)
    assert external == [], external
    assert "great-expectations-web-assets" not in html
    local = re.findall(r"""<(?:script|link)[^>]*(?:src|href)=["']([^"'#]+)["']""", html)
    assert any("_assets/vega.min.js" in u for u in local)
    for link in (u for u in local if webreports.ASSET_ROUTE in u):  # every asset rewritten is served
        url = urljoin(f"/{page.as_posix()}", link)
        assert client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, url


def test_the_hostile_value_is_in_the_page_which_is_why_it_is_sandboxed(served):
    """GX does not escape it; the sandbox (no same origin, no connections) is what contains it."""
    client, page, _ = served
    html = get(client, page.as_posix(), headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert HOSTILE in html  # if GX starts escaping, this test says so: the policy could then tighten


@pytest.mark.parametrize("path", ["../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "_assets/../../settings.py",
                                  "_assets/%2e%2e/webreports.py", "no/such/page.html"])  # fmt: skip
def test_nothing_outside_the_folders_is_served(served, path):
    """Sent raw, as a server like uvicorn passes them on: an HTTP client normalises ``../`` away before
    sending (httpx does), which would only ask for missing pages."""
    client, _, _ = served
    status, text = raw_get(client.app, f"/{path}", {"authorization": f"Bearer {TOKEN}"})
    assert status == 404 and "root:" not in text and "import" not in text


def raw_get(app, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """``GET path`` straight to the ASGI app, the path exactly as given (no client in between)."""
    import asyncio
    from urllib.parse import unquote

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "server": ("test", 80),
        "client": ("test", 1),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body.decode(errors="replace")


def test_the_page_rewrites_cannot_scan_to_the_end_of_a_long_value_from_each_start():
    """Issue 28, finding 6: a batch value repeating ``url(https://great-expectations-web-assets.s3/x``
    with no ')' made each occurrence scan to the end of the page (20,000 repeats: 26 s). Every repeat in
    the patterns is bounded, so the cost is linear in the page; and such a value is left as it is."""
    import re._parser as parser

    from mlcicd.plugin import webreports

    def unbounded(tokens) -> bool:
        for op, arg in tokens:
            if op in (parser.MAX_REPEAT, parser.MIN_REPEAT):
                low, high, sub = arg
                if high == parser.MAXREPEAT or unbounded(sub):
                    return True
            elif op == parser.SUBPATTERN and unbounded(arg[-1]):
                return True
            elif op == parser.BRANCH and any(unbounded(b) for b in arg[1]):
                return True
        return False

    assert [p.pattern for p in webreports.PAGE_PATTERNS if unbounded(parser.parse(p.pattern))] == []
    assert unbounded(parser.parse(r"url\([^)]*\)"))  # the check sees the old pattern's repeat
    value = "url(https://great-expectations-web-assets.s3/x" * 20_000
    assert webreports.localize(value, 1) == value
