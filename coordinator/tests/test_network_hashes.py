"""Viewer and node network hashes: keyed HMAC of the /24 or /48, no address stored anywhere."""

from __future__ import annotations

import stat
from datetime import timedelta

import pytest
from sqlalchemy import select

from streamr_coordinator.verification.models import NodeNetwork
from streamr_coordinator.verification.networks import (
    KEY_FILE_NAME,
    NetworkHasher,
    load_network_key,
    network_of,
    record_networks,
    url_address,
)
from streamr_coordinator.viewers.models import ViewerSession

from .conftest import Api
from .verification_app import PUBLIC, from_address, vclient  # noqa: F401 - fixture

KEY = b"k" * 32


def hasher(key: bytes = KEY) -> NetworkHasher:
    return NetworkHasher(key, sessions=None)  # type: ignore[arg-type] - hashing needs no DB


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("198.51.100.7", "198.51.100.0/24"),
        ("198.51.100.255", "198.51.100.0/24"),
        ("::ffff:198.51.100.7", "198.51.100.0/24"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
        ("[2001:db8:abcd:ffff::9]", "2001:db8:abcd::/48"),
        ("fe80::1%eth0", "fe80::/48"),
        ("127.0.0.1", None),
        ("::1", None),
        ("0.0.0.0", None),  # noqa: S104 - an address to hash, not a bind
        ("testclient", None),
        ("", None),
        (None, None),
        ("1.2.3.4.5", None),
    ],
)
def test_network_of(address, network):
    assert network_of(address) == network


def test_hash_is_per_network_keyed_and_reveals_no_address():
    h = hasher()
    same = h.hash("198.51.100.7")
    assert same == h.hash("198.51.100.200") and len(same) == 32
    assert int(same, 16) >= 0  # hex
    assert same != h.hash("198.51.101.7")
    assert h.hash("2001:db8:abcd:1::1") == h.hash("2001:db8:abcd:ffff::2")
    assert h.hash("2001:db8:abcd:1::1") != h.hash("2001:db8:abce:1::1")
    assert hasher(b"x" * 32).hash("198.51.100.7") != same, "another key, another hash"
    assert "198.51.100" not in same and h.hash("127.0.0.1") is None
    assert "k" * 32 not in repr(h)


def test_key_lives_in_the_data_dir_unless_configured(tmp_path):
    first = load_network_key(tmp_path, None)
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_network_key(tmp_path, None) == first, "the same key after a restart"
    assert load_network_key(tmp_path, "c" * 40) == b"c" * 40
    with pytest.raises(ValueError, match="at least 32"):
        load_network_key(tmp_path, "short")


def test_url_address_only_for_address_literals():
    assert url_address("http://198.51.100.7:8080/") == "198.51.100.7"
    assert url_address("http://[2001:db8::1]:80") == "2001:db8::1"
    assert url_address("https://node.example.com") is None
    assert url_address("http://127.0.0.1:9") is None
    assert url_address(None) is None


def _rows(client, query):
    async def run():
        async with client.app.state.ctx.sessions() as session:
            return list(await session.scalars(query))

    return client.portal.call(run)


def test_sessions_keep_a_network_hash_and_nodes_their_networks(vclient):  # noqa: F811
    api = Api(vclient)
    ctx = vclient.app.state.ctx
    owner, friend = api.register(), api.register("friend")
    stream, _ = api.create_stream(owner)
    api.set_status(owner, stream, "LIVE")
    with from_address(vclient, "198.51.100.7"):
        node = api.register_node(friend, api.invite(owner, stream), public_url="http://192.0.2.5:9")
    # Heartbeats and reports: recorded in the background, at most once a minute per network.
    with from_address(vclient, "198.51.100.8"):
        api.heartbeat(node, public_url="http://192.0.2.5:9")
        api.heartbeat(node, public_url="http://192.0.2.5:9")
    with from_address(vclient, "2001:db8:1:2::3"):
        report = api.usage_report(stream, sessions=[])
        response = vclient.post(f"/api/v1/nodes/{node.id}/usage", json=report, headers=node.headers)
        assert response.status_code == 200, response.text
    vclient.portal.call(ctx.networks.drain)
    networks = _rows(vclient, select(NodeNetwork).where(NodeNetwork.node_id == node.id))
    assert {n.network for n in networks} == {
        ctx.networks.hash("198.51.100.1"),  # registration and heartbeats: one /24
        ctx.networks.hash("192.0.2.1"),  # its public URL's address
        ctx.networks.hash("2001:db8:1::"),  # the usage report's /48
    }
    # Seen again later: the first sighting stays, the last one moves.
    first = {n.network: n.first_seen_at for n in networks}
    later = max(n.last_seen_at for n in networks) + timedelta(minutes=5)
    again = {(node.id, network): later for network in first}

    async def seen_again() -> None:
        async with ctx.sessions() as session:
            await record_networks(session, again)
            await session.commit()

    vclient.portal.call(seen_again)
    networks = _rows(vclient, select(NodeNetwork).where(NodeNetwork.node_id == node.id))
    assert {n.network: n.first_seen_at for n in networks} == first
    assert {n.last_seen_at for n in networks} == {later}

    session = api.open_session(stream)  # from PUBLIC
    row = _rows(vclient, select(ViewerSession).where(ViewerSession.id == session["session_id"]))[0]
    assert row.client_network == ctx.networks.hash(PUBLIC[0])
    assert row.is_probe is False and row.sources_polls == 0
    stored = " ".join(str(v) for v in vars(row).values())
    assert PUBLIC[0] not in stored, "no viewer address is stored"
    for _ in range(2):
        polled = vclient.get(
            f"/api/v1/sessions/{session['session_id']}/sources",
            headers={"X-Streamr-Session": session["token"]},
        )
        assert polled.status_code == 200, polled.text
    row = _rows(vclient, select(ViewerSession).where(ViewerSession.id == session["session_id"]))[0]
    assert row.sources_polls == 2
