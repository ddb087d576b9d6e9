"""The prober against real HTTP servers on 127.0.0.1 playing friend nodes: one that serves the
attested bytes, one that alters them, one that stalls, one that has nothing. Each probe is a
real viewer session (opened, polled, receipted) and is recorded; its requests look like the
watch page's."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from streamr_coordinator.database import utcnow
from streamr_coordinator.verification import prober
from streamr_coordinator.verification.models import Probe, TrustEvent, TrustState
from streamr_coordinator.verification.trust_service import SETTLE_S, update_trust
from streamr_coordinator.viewers.models import Receipt, ViewerSession
from streamr_protocol.viewer_sessions import HEADER

from .conftest import Api
from .verification_app import attest, vclient  # noqa: F401 - fixture

SEGMENTS = [(seq, os.urandom(3000 + seq)) for seq in range(1, 6)]
FAST = prober.Timings(first_byte_s=0.5, progress_s=0.5, min_deadline_s=1.0, not_yet_retries=1,
                      not_yet_wait_s=0.05, retry_wait_s=0.05)  # fmt: skip


@dataclass
class FakeNodes:
    """One server, many nodes: ``/<mode>/<node id>/...`` answers as ``mode`` says."""

    url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    failed_once: set[str] = field(default_factory=set)  # flaky: paths already failed
    release: threading.Event = field(default_factory=threading.Event)

    def node_url(self, node_id: str, mode: str) -> str:
        return f"{self.url}/{mode}/{node_id}"


@pytest.fixture(scope="module")
def fake_nodes() -> Iterator[FakeNodes]:
    data = {f"{seq}.ts": body for seq, body in SEGMENTS}
    nodes: FakeNodes

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path).path.strip("/").split("/")
            nodes.requests.append((self.path, dict(self.headers.items())))
            mode, node_id = parts[0], parts[1]
            if parts[2:] == ["health"]:
                body = f'{{"status": "ok", "node_id": "{node_id}"}}'.encode()
                return self._send(200, body, "application/json")
            if len(parts) != 5 or parts[2] != "hls" or parts[4] not in data or mode == "missing":
                return self._send(404, b"{}", "application/json")
            body = data[parts[4]]
            if mode == "flaky" and self.path not in nodes.failed_once:
                nodes.failed_once.add(self.path)  # the first ask of each segment, per session
                return self._send(503, b"busy", "text/plain")
            if mode == "altered":
                body = body[:100] + bytes([body[100] ^ 1]) + body[101:]
            if mode == "slow":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:10])
                self.wfile.flush()
                nodes.release.wait(5)  # never finishes within the page's limits
                return None
            return self._send(200, body, "video/mp2t")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    nodes = FakeNodes(f"http://127.0.0.1:{server.server_address[1]}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield nodes
    nodes.release.set()
    server.shutdown()


@dataclass
class Live:
    api: Api
    stream: str
    nodes: dict[str, str]  # mode -> node id


@pytest.fixture
def live(vclient, fake_nodes) -> Live:  # noqa: F811
    api = Api(vclient)
    owner, friend = api.register(), api.register("friend")
    stream, _ = api.create_stream(owner)
    api.set_status(owner, stream, "LIVE")
    attest(vclient, stream, SEGMENTS)
    code = api.invite(owner, stream, max_uses=10)
    nodes = {}
    for mode in ("good", "altered", "slow", "missing", "flaky"):
        node = api.register_node(friend, code, name=f"{mode} node")
        api.heartbeat(node, public_url=fake_nodes.node_url(node.id, mode))
        assert api.check_reachability(node)["status"] == "reachable"
        nodes[mode] = node.id
    return Live(api, stream, nodes)


def probe(live: Live, mode: str, segments: int = 3) -> prober.ProbeReport:
    ctx = live.api.client.app.state.ctx

    async def run() -> prober.ProbeReport:
        target = next(t for t in await prober.probe_targets(ctx) if t.node_id == live.nodes[mode])
        return await prober.probe_target(ctx, target, segments=segments, timings=FAST)

    return live.api.client.portal.call(run)


def rows(live: Live, query):
    async def run():
        async with live.api.client.app.state.ctx.sessions() as session:
            return list(await session.scalars(query))

    return live.api.client.portal.call(run)


def test_an_honest_node_passes_and_the_probe_is_a_viewer_in_every_way(live, fake_nodes):
    report = probe(live, "good")
    assert report.outcomes == {"ok": 3}
    probes = rows(live, select(Probe).where(Probe.node_id == live.nodes["good"]))
    assert [p.outcome for p in probes] == ["ok"] * 3
    sizes = {f"{seq}.ts": len(body) for seq, body in SEGMENTS}
    for p in probes:
        assert p.bytes == sizes[p.segment] and p.ttfb_ms is not None and p.throughput_bps > 0
        assert p.reason == "scheduled" and p.session_id == report.session_id
    # Near the live edge, in order, as hls.js starts.
    sequences = [p.sequence for p in sorted(probes, key=lambda p: p.id)]
    assert sequences == list(range(sequences[0], sequences[0] + 3))
    assert sequences[0] >= len(SEGMENTS) - 4

    session = rows(live, select(ViewerSession).where(ViewerSession.id == report.session_id))[0]
    assert session.is_probe and session.sources_polls >= 1 and session.client_network is None
    receipts = rows(live, select(Receipt).where(Receipt.session_id == report.session_id))
    assert sorted((r.sequence, r.outcome, r.bytes) for r in receipts) == sorted(
        (p.sequence, "ok", p.bytes) for p in probes
    )

    # What the node saw: the page's path and query, a browser's headers, nothing else.
    seen = [
        (path, h) for path, h in fake_nodes.requests if f"/good/{live.nodes['good']}/hls/" in path
    ]
    assert len(seen) == 3
    origin = prober.page_origin(None, "127.0.0.1", 8000)
    for path, headers in seen:
        query = parse_qs(urlsplit(path).query)
        assert set(query) == {"session"} and query["session"][0].count(".") == 1
        lowered = {k.lower(): v for k, v in headers.items()}
        assert lowered["user-agent"].startswith("Mozilla/5.0")
        assert lowered["origin"] == origin and lowered["accept"] == "*/*"
        assert "referer" not in lowered and HEADER.lower() not in lowered
        assert "accept-language" in lowered and "python" not in str(lowered).lower()
    # One kept-alive connection per probe session, one browser profile throughout.
    assert len({h.get("User-Agent") for _, h in seen}) == 1


def test_altered_bytes_are_a_mismatch_and_take_the_node_out_of_routing(live):
    before = [s["node_id"] for s in live.api.open_session(live.stream)["sources"]]
    assert live.nodes["altered"] in before
    report = probe(live, "altered", segments=2)
    assert report.outcomes == {"mismatch": 2}
    receipts = rows(live, select(Receipt).where(Receipt.session_id == report.session_id))
    assert {r.outcome for r in receipts} == {"mismatch"}
    after = [s["node_id"] for s in live.api.open_session(live.stream)["sources"]]
    assert live.nodes["altered"] not in after and live.nodes["good"] in after


def test_a_stalling_node_times_out_and_one_without_segments_is_missing(live):
    stalled = probe(live, "slow", segments=1)
    assert stalled.outcomes == {"timeout": 1}
    assert stalled.fetches[0].bytes == 10 and stalled.fetches[0].receipt_outcome == "stall"
    missing = probe(live, "missing", segments=1)
    assert missing.outcomes == {"missing": 1}
    assert missing.fetches[0].receipt_outcome == "error"


def test_probes_feed_trust(live):
    probe(live, "good")
    probe(live, "altered", segments=1)
    ctx = live.api.client.app.state.ctx
    later = utcnow().replace(microsecond=0)
    from datetime import timedelta

    result = live.api.client.portal.call(
        lambda: update_trust(ctx, later + timedelta(seconds=SETTLE_S + 1))
    )
    assert result.get("probes", 0) >= 4, result
    good = rows(live, select(TrustState).where(TrustState.node_id == live.nodes["good"]))[0]
    bad = rows(live, select(TrustState).where(TrustState.node_id == live.nodes["altered"]))[0]
    assert good.probes_passed == 3 and bad.probes_passed == 0
    assert good.alpha / (good.alpha + good.beta) > bad.alpha / (bad.alpha + bad.beta)
    events = rows(live, select(TrustEvent).where(TrustEvent.node_id == live.nodes["altered"]))
    assert [e.source for e in events] == ["probe"] and events[0].failure > 0
    # Each probe is read once: a second update finds nothing new for these nodes.
    again = live.api.client.portal.call(
        lambda: update_trust(ctx, later + timedelta(seconds=SETTLE_S + 2))
    )
    assert again.get("probes") == 0, again


def test_targeted_probe_of_a_node_that_is_not_serving_is_skipped(live):
    ctx = live.api.client.app.state.ctx
    report = live.api.client.portal.call(lambda: prober.probe_now(ctx, "no-such-node"))
    assert report.skipped == "no such node" and not report.fetches


def test_schedule_is_random_per_node_and_forgets_departed_nodes():
    schedule = prober.Schedule()
    assert schedule.take_due(["a", "b"], 0.0, 120.0) == []  # first sight: a random time ahead
    first = dict(schedule.due)
    assert all(t > 0 for t in first.values()) and first["a"] != first["b"]
    assert sorted(schedule.take_due(["a", "b"], 1e9, 120.0)) == ["a", "b"]
    assert all(t > 1e9 for t in schedule.due.values())
    assert schedule.take_due(["b"], 1e9, 120.0) == [] and set(schedule.due) == {"b"}


@pytest.mark.parametrize(
    ("origin", "url", "site"),
    [
        ("https://watch.example.com", "https://node.example.com:8443/x", "same-site"),
        ("https://watch.example.com", "https://198.51.100.7:8443/x", "cross-site"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:9001/x", "same-site"),
        ("https://a.example", "https://a.example/x", "same-origin"),
    ],
)
def test_fetch_site_as_a_browser_computes_it(origin, url, site):
    assert prober.fetch_site(origin, url) == site


def test_headers_follow_the_browser_and_the_scheme():
    profile = prober.PROFILES[0]
    plain = dict(prober.browser_headers(profile, "https://w.example", "http://198.51.100.7/x"))
    secure = dict(
        prober.browser_headers(profile, "https://w.example.com", "https://n.example.com/x")
    )
    assert "Sec-Fetch-Mode" not in plain and "sec-ch-ua" not in plain
    assert secure["Sec-Fetch-Mode"] == "cors" and secure["Sec-Fetch-Site"] == "same-site"
    assert secure["Host"] == "n.example.com" and secure["Origin"] == "https://w.example.com"
    assert prober.page_origin("https://w.example:443/watch", "h", 1) == "https://w.example"


def test_a_failed_fetch_is_asked_once_more_and_only_the_answer_is_judged(live, fake_nodes):
    report = probe(live, "flaky")
    assert report.outcomes == {"ok": 3}
    assert all(f.attempts == 2 and f.retried[0].outcome == "error" for f in report.fetches)
    probes = rows(live, select(Probe).where(Probe.node_id == live.nodes["flaky"]))
    assert [(p.outcome, p.attempts) for p in probes] == [("ok", 2)] * 3
    assert all(p.detail.startswith("attempt 1: error (HTTP 503)") for p in probes)
    assert len({p.recorded_at for p in probes}) == 1  # the session is read whole by trust
    # The node saw each segment asked twice on the same session; the page receipts both.
    seen = [path for path, _ in fake_nodes.requests if f"/flaky/{live.nodes['flaky']}/hls/" in path]
    assert len(seen) == 6 and len(set(seen)) == 3
    receipts = rows(live, select(Receipt).where(Receipt.session_id == report.session_id))
    assert sorted((r.sequence, r.outcome) for r in receipts) == sorted(
        [(p.sequence, "error") for p in probes] + [(p.sequence, "ok") for p in probes]
    )


def test_a_mismatch_is_never_asked_again(live, fake_nodes):
    report = probe(live, "altered", segments=1)
    assert report.outcomes == {"mismatch": 1} and report.fetches[0].attempts == 1
    path = next(p for p, _ in fake_nodes.requests if f"/altered/{live.nodes['altered']}/hls/" in p)
    assert sum(p == path for p, _ in fake_nodes.requests) == 1


def test_a_probe_session_is_one_trust_observation_after_retries(live):
    probe(live, "flaky")
    probe(live, "slow", segments=2)  # timed out twice per segment: judged failed
    ctx = live.api.client.app.state.ctx
    from datetime import timedelta

    later = utcnow() + timedelta(seconds=SETTLE_S + 1)
    live.api.client.portal.call(lambda: update_trust(ctx, later))
    flaky = rows(live, select(TrustEvent).where(TrustEvent.node_id == live.nodes["flaky"]))
    assert [(e.source, e.success, e.failure) for e in flaky] == [("probe", 1.0, 0.0)]
    assert "1 observation(s)" in flaky[0].detail and "3 after a retry" in flaky[0].detail
    state = rows(live, select(TrustState).where(TrustState.node_id == live.nodes["flaky"]))[0]
    assert state.probes_passed == 3
    slow = rows(live, select(TrustEvent).where(TrustEvent.node_id == live.nodes["slow"]))
    assert [(e.source, e.success, e.failure) for e in slow] == [("probe", 0.0, 1.0)]
    slow_rows = rows(live, select(Probe).where(Probe.node_id == live.nodes["slow"]))
    assert {(p.outcome, p.attempts) for p in slow_rows} == {("timeout", 2)}
