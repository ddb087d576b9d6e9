"""The watch page as HTML: served for every stream, the streamer's text escaped (never markup),
scripts only from this coordinator (hls.js from npm's copy), and a policy that runs nothing
inline."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import quote

import pytest

from streamr_coordinator.viewers.page import HLS_JS_PREFIX, SCRIPTS_PREFIX

from .conftest import Api

INJECTIONS = [
    '</script><script>alert("t")</script>',
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "<!-- & ' \" -->",
    "\u2028 \u2029 </SCRIPT >",
]


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parse(text: str) -> Elements:
    parser = Elements()
    parser.feed(text)
    return parser


def page_config(text: str) -> dict:
    found = re.search(r'<script type="application/json" id="watch-config">(.*?)</script>', text)
    assert found, "the page carries its settings as JSON"
    return json.loads(found.group(1))


def test_the_page_for_a_live_stream(api: Api):
    owner = api.register()
    name, _ = api.create_stream(owner, title="Ann plays chess")
    api.set_status(owner, name, "LIVE")
    response = api.client.get(f"/watch/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Ann plays chess · StreamrP2P</title>" in response.text
    assert 'name="viewport"' in response.text, "sized for phones"
    assert page_config(response.text) == {
        "stream": name,
        "title": "Ann plays chess",
        "status": "LIVE",
        "api": "/api/v1",
    }
    srcs = [attrs.get("src") for tag, attrs in parse(response.text).tags if tag == "script"]
    assert srcs == [None, f"{HLS_JS_PREFIX}/hls.min.js", f"{SCRIPTS_PREFIX}/watch.js"]


def test_a_stream_that_is_not_live_still_has_its_page(api: Api):
    owner = api.register()
    name, _ = api.create_stream(owner)
    response = api.client.get(f"/watch/{name}")
    assert response.status_code == 200
    assert page_config(response.text)["status"] == "READY"


@pytest.mark.parametrize("title", INJECTIONS)
def test_a_title_is_text_never_markup(api: Api, title: str):
    owner = api.register()
    name, _ = api.create_stream(owner, title=title)
    response = api.client.get(f"/watch/{name}")
    assert response.status_code == 200
    text = response.text
    assert title.strip() not in text or "<" not in title
    parsed = parse(text)
    assert [tag for tag, _ in parsed.tags if tag in ("img", "svg")] == []
    assert all(not key.startswith("on") for _, attrs in parsed.tags for key in attrs), (
        "an event handler attribute"
    )
    # Three scripts, as always: the settings, hls.js, the page. The title ended none of them.
    assert [t for t, _ in parsed.tags].count("script") == 3
    assert page_config(text)["title"] == title.strip()
    json_part = re.search(r'id="watch-config">(.*?)</script>', text, re.S).group(1)
    assert "<" not in json_part and ">" not in json_part and "&" not in json_part


def test_an_unknown_stream_is_a_404_page_that_escapes_the_name(api: Api):
    raw = "<img src=x onerror='alert(1)'>"
    response = api.client.get(f"/watch/{quote(raw, safe='')}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert raw not in response.text
    assert "&lt;img src=x onerror=&#x27;alert(1)&#x27;&gt;" in response.text
    assert [tag for tag, _ in parse(response.text).tags if tag in ("img", "script")] == []


def test_the_page_runs_no_inline_script_and_loads_nothing_from_elsewhere(api: Api):
    owner = api.register()
    name, _ = api.create_stream(owner)
    response = api.client.get(f"/watch/{name}")
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    for tag, attrs in parse(response.text).tags:
        for attribute in ("src", "href"):
            value = attrs.get(attribute)
            assert value is None or value.startswith(("/", "data:")), f"{tag} loads {value}"


def test_the_scripts_and_hls_js_are_served_here(api: Api):
    entry = api.client.get(f"{SCRIPTS_PREFIX}/watch.js")
    assert entry.status_code == 200
    assert "javascript" in entry.headers["content-type"]
    # Every module the page imports, and every module they import, is served.
    seen, todo = set(), ["watch.js"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        response = api.client.get(f"{SCRIPTS_PREFIX}/{module}")
        assert response.status_code == 200, module
        todo += re.findall(r'from "\./([\w-]+\.js)"', response.text)
    assert {"loader.js", "verify.js", "segment-index.js", "sources.js", "receipts.js"} <= seen
    assert api.client.get(f"{SCRIPTS_PREFIX}/watch.css").status_code == 200
    hls = api.client.get(f"{HLS_JS_PREFIX}/hls.min.js")
    assert hls.status_code == 200 and len(hls.content) > 100_000


def test_the_page_is_not_part_of_the_api_schema(client):
    assert not [path for path in client.app.openapi()["paths"] if path.startswith("/watch")]
