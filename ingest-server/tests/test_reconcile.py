"""Reconciliation: what nginx-rtmp really publishes, told to a (fake, real-HTTP) coordinator."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streamr_ingest.coordinator_client import CoordinatorClient
from streamr_ingest.reconcile import Reconciler, StatUnavailable, publishing_streams
from tests.ingest import SECRET

# rtmp_stat of Debian's nginx-rtmp while OBS published key 'sk_secretkey' (application 'live')
# and its relay published 'pub1' (application 'hls'); 'idle' has a player but no publisher.
STAT = """<?xml version="1.0" encoding="utf-8" ?>
<rtmp><nginx_version>1.22.1</nginx_version><nginx_rtmp_version>1.1.4</nginx_rtmp_version>
<server>
<application><name>live</name><live>
<stream><name>sk_secretkey</name><time>3726</time>
<client><id>17</id><address>127.0.0.1:19350/hls/pub1</address><flashver>ngx-local-relay</flashver>
<active/></client>
<client><id>13</id><address>127.0.0.1</address><publishing/><active/></client>
<nclients>2</nclients><publishing/><active/></stream>
<nclients>2</nclients></live></application>
<application><name>hls</name><live>
<stream><name>pub1</name><time>3638</time>
<client><id>18</id><address>127.0.0.1</address><flashver>LNX.11,1,102,55</flashver>
<publishing/><active/></client>
<nclients>1</nclients><publishing/><active/></stream>
<stream><name>idle</name><client><id>19</id><address>127.0.0.1</address></client></stream>
<nclients>1</nclients></live></application>
</server></rtmp>
"""


def test_only_publishing_streams_of_the_hls_application_count():
    assert publishing_streams(STAT) == ["pub1"]
    assert publishing_streams(STAT, application="live") == ["sk_secretkey"]
    assert publishing_streams("<rtmp><server/></rtmp>") == []


def test_garbage_is_a_stat_error():
    with pytest.raises(StatUnavailable, match="not XML"):
        publishing_streams("<html>502 Bad Gateway")


def test_sync_posts_what_is_publishing_and_survives_failures(fake_coordinator, caplog):
    caplog.set_level(logging.INFO)

    async def main() -> None:
        client = CoordinatorClient(fake_coordinator.url, SECRET)
        reconciler = Reconciler("http://127.0.0.1:9/stat", client)
        try:
            assert await reconciler.sync_once() is None  # no nginx at all
            assert await reconciler.sync_once() is None
            reconciler.read_stat = _stat_says(["pub1"])  # type: ignore[method-assign]
            assert await reconciler.sync_once() == []
            assert await reconciler.sync_once() == []
            await reconciler.nothing_publishing()
        finally:
            await reconciler.close()
            await client.close()

    asyncio.run(main())
    bodies = [call.body for call in fake_coordinator.calls("/sync")]
    # The first sync that gets through is complete (nginx just started), later ones are not,
    # and the last one, as the ingest stops, is complete again.
    assert bodies == [
        {"publishing": ["pub1"], "complete": True},
        {"publishing": ["pub1"], "complete": False},
        {"publishing": [], "complete": True},
    ]
    events = [record.getMessage() for record in caplog.records]
    assert events.count("reconciliation failed; will retry") == 1
    assert "reconciliation works again" in events


def _stat_says(names: list[str]):
    async def read_stat() -> list[str]:
        return names

    return read_stat
