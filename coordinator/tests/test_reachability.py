"""Reachability checks: the coordinator tries a node's public URL from outside, against real
servers on loopback, and answers every outcome with a status and advice in plain words."""

from __future__ import annotations

import ipaddress

import pytest

from streamr_coordinator.nodes.reachability import Verdict, advice, is_public

from .conftest import Api, Node, assert_error, fresh_rate_window
from .loopback import garbage_port, silent_port, unused_port


@pytest.fixture
def node(api: Api) -> Node:
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    return api.register_node(friend, api.invite(owner, name))


def check(api: Api, node: Node, url: str | None = None) -> dict:
    return api.check_reachability(node, **({"public_url": url} if url else {}))


def node_view(api: Api, node: Node) -> dict:
    response = api.client.get(f"/api/v1/nodes/{node.id}", headers=node.headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_node_that_answers_with_its_id_is_reachable(api, node, nodes_host):
    url = nodes_host.node_url(node.id)
    before = node_view(api, node)
    assert before["reachable"] is None and before["reachability_status"] is None

    verdict = check(api, node, url)
    assert verdict["reachable"] is True and verdict["status"] == "reachable"
    assert verdict["checked_url"] == url and verdict["advice"] == []
    assert f"/ok/{node.id}/health" in nodes_host.requests

    after = node_view(api, node)
    assert after["reachable"] is True and after["reachability_status"] == "reachable"
    assert after["reachability_checked_at"] == verdict["checked_at"]
    assert after["public_url"] == url, "a URL sent with the check becomes the node's URL"


def test_without_a_body_url_the_heartbeat_url_is_checked(api, node, nodes_host):
    api.heartbeat(node, public_url=nodes_host.node_url(node.id))
    verdict = check(api, node)
    assert verdict["status"] == "reachable"
    assert verdict["checked_url"] == nodes_host.node_url(node.id)


def test_no_public_url(api, node):
    verdict = check(api, node)
    assert verdict["status"] == "no_public_url" and verdict["reachable"] is False
    assert verdict["checked_url"] is None
    assert any("--public-url" in line for line in verdict["advice"])
    assert any("--upnp" in line for line in verdict["advice"])
    assert node_view(api, node)["reachability_status"] == "no_public_url"


def test_refused(api, node):
    port = unused_port()
    verdict = check(api, node, f"http://127.0.0.1:{port}")
    assert verdict["status"] == "refused" and verdict["reachable"] is False
    advice_text = " ".join(verdict["advice"])
    assert f"TCP port {port}" in advice_text and "firewall" in advice_text
    assert "streamr-node run --upnp" in advice_text


def test_timeout(api, node, monkeypatch):
    monkeypatch.setattr(api.client.app.state.ctx.settings, "reachability_timeout_s", 0.5)
    with silent_port() as port:
        verdict = check(api, node, f"http://127.0.0.1:{port}")
    assert verdict["status"] == "timeout", verdict
    assert f"TCP port {port}" in " ".join(verdict["advice"])


def test_bytes_that_are_not_http_are_a_bad_response(api, node):
    with garbage_port() as port:
        verdict = check(api, node, f"http://127.0.0.1:{port}")
    assert verdict["status"] == "bad_response", verdict
    assert "not HTTP" in verdict["detail"]


@pytest.mark.parametrize(
    ("mode", "status", "words"),
    [
        ("notjson", "bad_response", "not JSON"),
        ("error", "bad_response", "HTTP 500"),
        ("redirect", "bad_response", "redirects are not followed"),
        ("huge", "bad_response", "64 KiB"),
        ("other", "wrong_node", "node id 'some-other-node'"),
        ("plain", "wrong_node", "not as a StreamrP2P node"),
    ],
)
def test_answers_that_are_not_this_node(api, node, nodes_host, mode, status, words):
    verdict = check(api, node, nodes_host.node_url(node.id, mode))
    assert verdict["status"] == status, verdict
    assert words in verdict["detail"]
    assert verdict["advice"], "every failure says what to do"
    if mode == "redirect":
        assert f"/ok/{node.id}/health" not in nodes_host.requests
    view = node_view(api, node)
    assert view["reachable"] is False and view["reachability_status"] == status


def test_https_to_a_port_that_speaks_plain_http_is_a_bad_response(api, node, nodes_host):
    verdict = check(api, node, nodes_host.node_url(node.id).replace("http://", "https://"))
    assert verdict["status"] == "bad_response" and "TLS" in verdict["detail"]


def test_an_unresolvable_host_name(api, node):
    verdict = check(api, node, "http://no-such-host.invalid:8080")
    assert verdict["status"] == "refused"
    assert "does not resolve" in verdict["detail"]
    assert "host name" in " ".join(verdict["advice"])


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:{port}", "http://localhost:{port}", "http://[::1]:{port}"],
)
def test_private_addresses_are_refused_before_connecting(api, node, nodes_host, monkeypatch, url):
    monkeypatch.setattr(api.client.app.state.ctx.settings, "allow_private_node_urls", False)
    port = nodes_host.url.rsplit(":", 1)[1]
    seen = len(nodes_host.requests)
    verdict = check(api, node, url.format(port=port) + f"/ok/{node.id}")
    assert verdict["status"] == "private_address", verdict
    assert len(nodes_host.requests) == seen, "no connection was made"
    assert any("--public-url" in line for line in verdict["advice"])
    assert node_view(api, node)["reachable"] is False


def test_checks_are_rate_limited_per_node(api, node):
    url = f"http://127.0.0.1:{unused_port()}"
    fresh_rate_window()
    for _ in range(10):
        check(api, node, url)
    response = api.client.post(
        f"/api/v1/nodes/{node.id}/reachability", json={"public_url": url}, headers=node.headers
    )
    assert_error(response, 429)
    assert response.headers["retry-after"] == "60"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104 - an address to judge, not to bind
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_which_addresses_count_as_public(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "status",
    ["no_public_url", "private_address", "refused", "timeout", "bad_response", "wrong_node"],
)
def test_every_failure_has_advice(status):
    lines = advice(Verdict(status, "detail"), "http://203.0.113.7:8090")
    assert lines and all(line.strip() for line in lines)
    if status in ("private_address", "refused", "timeout", "wrong_node"):
        assert any("port 8090" in line for line in lines)
