"""The node's HTTP surface on a real socket: live HLS, caching, ranges, sessions, bad input."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import m3u8
import pytest

from streamr_protocol.playlist import parse

from .support import STREAM, running_node

BASE = f"/hls/{STREAM}"


@pytest.fixture
def node(tmp_path):
    with running_node(tmp_path) as node:
        yield node


def raw(port: int, data: bytes, *, timeout: float = 5.0, until_close: bool = False) -> bytes:
    """Send raw bytes; return the answer once the server closes or one response is complete."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            head, sep, body = answer.partition(b"\r\n\r\n")
            if sep and not until_close and b"Connection: keep-alive" in head:
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def still_serving(node) -> None:
    response = httpx.get(f"{node.url}{BASE}/index.m3u8")
    assert response.status_code == 200
    assert response.text.startswith("#EXTM3U")


# ---------------------------------------------------------------- live playlist


def test_playlist_is_a_valid_sliding_live_window(node):
    node.add_segments(100, 3)
    first = httpx.get(f"{node.url}{BASE}/index.m3u8")
    assert first.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert first.headers["cache-control"] == "no-cache"
    parsed = m3u8.loads(first.text)
    assert parsed.media_sequence == 100
    assert parsed.target_duration == 2
    assert [s.uri for s in parsed.segments] == ["100.ts", "101.ts", "102.ts"]
    assert not parsed.is_endlist

    node.add_segments(103, 6)
    later = parse(httpx.get(f"{node.url}{BASE}/index.m3u8").text)
    assert later.media_sequence == 103  # six listed: 103..108
    assert [s.uri for s in later.segments] == [f"{n}.ts" for n in range(103, 109)]
    # Segments that left the list stay fetchable for a while (players with a stale playlist).
    assert httpx.get(f"{node.url}{BASE}/101.ts").status_code == 200

    node.call(node.window.end)
    ended = m3u8.loads(httpx.get(f"{node.url}{BASE}/index.m3u8").text)
    assert ended.is_endlist


def test_a_new_broadcast_after_the_end_continues_the_numbers_with_a_discontinuity(node):
    node.add_segments(10, 3)
    node.call(node.window.end)
    node.add_segments(50, 1)
    text = httpx.get(f"{node.url}{BASE}/index.m3u8").text
    parsed = parse(text)
    assert not parsed.ended
    assert parsed.media_sequence == 13  # the node's numbers never go back
    assert parsed.segments[0].uri == "50.ts" and parsed.segments[0].discontinuity


def test_discontinuity_sequence_counts_tags_that_left_the_list(node):
    node.add_segments(0, 2)
    node.call(node.window.mark_discontinuity)
    node.add_segments(20, 7)  # 20 carries the tag; six more push it out of the list
    text = httpx.get(f"{node.url}{BASE}/index.m3u8").text
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in text
    assert "#EXT-X-DISCONTINUITY\n" not in text


def test_playlist_etag_and_conditional_get(node):
    node.add_segments(0, 2)
    first = httpx.get(f"{node.url}{BASE}/index.m3u8")
    etag = first.headers["etag"]
    again = httpx.get(f"{node.url}{BASE}/index.m3u8", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    node.add_segments(2, 1)
    changed = httpx.get(f"{node.url}{BASE}/index.m3u8", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_blocking_reload_answers_when_the_segment_arrives(node):
    node.add_segments(0, 2)  # media sequence 0..1 listed

    def later() -> None:
        time.sleep(0.5)
        node.add_segments(2, 1)

    threading.Thread(target=later).start()
    started = time.monotonic()
    response = httpx.get(f"{node.url}{BASE}/index.m3u8", params={"_HLS_msn": "2"}, timeout=10)
    assert response.status_code == 200
    assert "2.ts" in response.text
    assert time.monotonic() - started >= 0.4  # it was held, not answered at once
    too_far = httpx.get(f"{node.url}{BASE}/index.m3u8", params={"_HLS_msn": "99"})
    assert too_far.status_code == 400


def test_no_segments_yet_is_404_with_a_reason(node):
    response = httpx.get(f"{node.url}{BASE}/index.m3u8")
    assert response.status_code == 404
    assert "not live" in response.json()["error"]["message"]


# ---------------------------------------------------------------- segments


def test_segment_bytes_etag_head_and_cors(node):
    (data,) = node.add_segments(7, 1)
    response = httpx.get(f"{node.url}{BASE}/7.ts", headers={"Origin": "https://viewer.example"})
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "video/mp2t"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["accept-ranges"] == "bytes"
    etag = response.headers["etag"]
    assert httpx.get(f"{node.url}{BASE}/7.ts", headers={"If-None-Match": etag}).status_code == 304

    head = httpx.head(f"{node.url}{BASE}/7.ts")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))
    assert head.content == b""

    preflight = httpx.options(
        f"{node.url}{BASE}/7.ts",
        headers={"Origin": "https://x", "Access-Control-Request-Headers": "range"},
    )
    assert preflight.status_code == 204
    assert "Range" in preflight.headers["access-control-allow-headers"]
    assert "GET" in preflight.headers["access-control-allow-methods"]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, None),
        ("bytes=-500", -500, None),
        ("bytes=10-999999999", 10, None),
    ],
)
def test_ranges(node, header, start, end):
    (data,) = node.add_segments(1, 1)
    response = httpx.get(f"{node.url}{BASE}/1.ts", headers={"Range": header})
    assert response.status_code == 206
    expected = data[start : (end + 1 if end is not None else None)]
    assert response.content == expected
    first = start if start >= 0 else len(data) + start
    assert response.headers["content-range"] == (
        f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    )


@pytest.mark.parametrize(
    "header", ["bytes=500-100", "bytes=999999999-", "bytes=abc", "bytes=-", "bytes=-0", "bytes=5"]
)
def test_bad_ranges_are_416_and_the_node_keeps_serving(node, header):
    (data,) = node.add_segments(1, 1)
    response = httpx.get(f"{node.url}{BASE}/1.ts", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(data)}"
    assert response.json()["error"]["message"]
    still_serving(node)


def test_other_range_units_and_multiple_ranges_get_the_whole_segment(node):
    (data,) = node.add_segments(1, 1)
    for header in ("items=0-5", "bytes=0-5,10-20"):
        response = httpx.get(f"{node.url}{BASE}/1.ts", headers={"Range": header})
        assert response.status_code == 200 and response.content == data


def test_unknown_segment_and_wrong_stream_are_404(node):
    node.add_segments(1, 1)
    assert httpx.get(f"{node.url}{BASE}/999.ts").status_code == 404
    other = httpx.get(f"{node.url}/hls/another/index.m3u8")
    assert other.status_code == 404
    assert STREAM in other.json()["error"]["message"]


# ---------------------------------------------------------------- sessions and accounting


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_bytes_are_counted_per_session_and_without_one_not_paid(node):
    datas = node.add_segments(1, 2)
    token = node.signer.session_token("viewer-1")
    for name in ("1.ts", "2.ts"):
        assert httpx.get(f"{node.url}{BASE}/{name}", params={"session": token}).status_code == 200
    header = {"X-Streamr-Session": node.signer.session_token("viewer-2")}
    assert httpx.get(f"{node.url}{BASE}/1.ts", headers=header).status_code == 200
    ranged = {**header, "Range": "bytes=0-999"}
    assert httpx.get(f"{node.url}{BASE}/2.ts", headers=ranged).status_code == 206
    assert httpx.get(f"{node.url}{BASE}/1.ts").status_code == 200  # no session: served
    assert httpx.head(f"{node.url}{BASE}/1.ts", params={"session": token}).status_code == 200

    expected = len(datas[0]) + len(datas[1])
    assert _wait_for(lambda: node.ledger.totals["unattributed_bytes"] == len(datas[0]))
    (report,) = node.call(node.ledger.cut)
    lines = {line.session_id: line for line in report.sessions}
    assert lines["viewer-1"].bytes == expected and lines["viewer-1"].segments == 2
    assert lines["viewer-2"].bytes == len(datas[0]) + 1000
    assert lines["viewer-2"].segments == 1  # a range is bytes, not a whole segment
    assert report.unattributed_bytes == len(datas[0])
    assert report.unattributed_requests == 1


@pytest.mark.parametrize("kind", ["forged", "expired", "other stream", "garbage", "unknown key"])
def test_bad_session_tokens_are_403_and_the_node_keeps_serving(node, kind, tmp_path):
    from .support import Signer

    node.add_segments(1, 1)
    token = {
        "forged": Signer().session_token("v"),
        "expired": node.signer.session_token("v", ttl_s=-5),
        "other stream": node.signer.session_token("v", stream="elsewhere"),
        "garbage": "not.a-token",
        "unknown key": node.signer.session_token("v", key_id="another"),
    }[kind]
    response = httpx.get(f"{node.url}{BASE}/1.ts", params={"session": token})
    assert response.status_code == 403
    assert "open a new session" in response.json()["error"]["message"]
    still_serving(node)
    assert node.ledger.totals["attributed_bytes"] == 0


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /hls/teststream/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /hls/teststream/%2e%2e%2f%2e%2e%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /hls/teststream/.hidden HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /hls/teststream/a%00b.ts HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /hls/teststream/%ff%fe.ts HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413),
        (b"PUT /hls/teststream/1.ts HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"DELETE /stats HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        (
            b"GET /hls/teststream/1.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n"
            b"Range: bytes=2-3\r\n\r\n",
            400,
        ),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 150 + b"\r\n", 431),
        (b"GET /hls/teststream/index.m3u8?_HLS_msn=abc HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /hls/teststream/index.m3u8?session=%ff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ],
)
def test_bad_requests_get_a_4xx_and_the_node_keeps_serving(node, request_bytes, status):
    node.add_segments(1, 1)
    answer = raw(node.port, request_bytes)
    assert status_of(answer) == status, answer[:300]
    assert 400 <= status < 500 or status in (501, 505)
    assert b'"message"' in answer  # a reason a person can act on
    still_serving(node)


def test_a_slow_request_head_is_dropped_and_the_node_keeps_serving(node, monkeypatch):
    import streamr_node.http as http_module

    monkeypatch.setattr(http_module, "HEAD_TIMEOUT_S", 0.5)
    node.add_segments(1, 1)
    answer = raw(node.port, b"GET /health HTTP/1.1\r\nHost: x\r\n", timeout=5)
    assert status_of(answer) == 408
    still_serving(node)


def test_keep_alive_and_pipelining_on_one_connection(node):
    datas = node.add_segments(1, 2)
    pipelined = (
        b"GET /hls/teststream/1.ts HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /hls/teststream/2.ts HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = raw(node.port, pipelined, until_close=True)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert datas[0] in answer and datas[1] not in answer
    with httpx.Client() as client:
        for _ in range(5):
            assert client.get(f"{node.url}{BASE}/2.ts").content == datas[1]
        assert len(client._transport._pool.connections) == 1


def test_egress_cap_turns_viewers_away_with_retry_after(tmp_path):
    with running_node(tmp_path, egress_cap_bps=1_000_000) as node:
        node.add_segments(1, 1, size=500_000)  # 4 Mbit in one response: over a 1 Mbit/s cap
        assert httpx.get(f"{node.url}{BASE}/1.ts").status_code == 200
        assert _wait_for(lambda: node.app.meter.bits_per_second() > 1_000_000)
        refused = httpx.get(f"{node.url}{BASE}/1.ts")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "2"
        assert "egress cap" in refused.json()["error"]["message"]
        assert httpx.get(f"{node.url}/health").status_code == 200  # status stays visible
