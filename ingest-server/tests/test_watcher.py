"""The origin watcher against files written the way nginx-rtmp writes them, reporting to a fake
coordinator that is a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from streamr_ingest import watcher as watcher_module
from streamr_ingest.coordinator_client import CoordinatorClient
from streamr_ingest.watcher import OriginWatcher, SegmentRegistrar
from tests.ingest import SECRET, STREAM, FakeCoordinator


class HlsWriter:
    """Writes segments and playlists like nginx-rtmp: a segment grows in place, then it is
    closed and only then listed; the playlist is replaced atomically (write, rename)."""

    def __init__(self, hls_dir: Path, stream: str = STREAM, window: int = 6) -> None:
        self.dir = hls_dir / stream
        self.dir.mkdir(parents=True, exist_ok=True)
        self.window = window
        self.listed: list[tuple[int, float, bool]] = []  # (sequence, duration s, discontinuity)
        self.contents: dict[int, bytes] = {}

    def grow(self, sequence: int, data: bytes) -> None:
        with (self.dir / f"{sequence}.ts").open("ab") as handle:
            handle.write(data)
        self.contents[sequence] = self.contents.get(sequence, b"") + data

    def finish(self, sequence: int, duration: float = 2.0, discontinuity: bool = False) -> None:
        if sequence not in self.contents:
            self.grow(sequence, os.urandom(1000) + sequence.to_bytes(4, "big"))
        self.listed.append((sequence, duration, discontinuity))
        self.listed = self.listed[-self.window :]
        self.write_playlist()

    def write_playlist(self) -> None:
        first = self.listed[0][0] if self.listed else 0
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        lines.append("#EXT-X-TARGETDURATION:2")
        for sequence, duration, discontinuity in self.listed:
            if discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines += [f"#EXTINF:{duration:.3f},", f"{sequence}.ts"]
        temporary = self.dir / "index.m3u8.bak"
        temporary.write_text("\n".join(lines) + "\n")
        os.replace(temporary, self.dir / "index.m3u8")

    def sha(self, sequence: int) -> str:
        return hashlib.sha256(self.contents[sequence]).hexdigest()


def run(
    hls_dir: Path,
    fake: FakeCoordinator,
    scenario: Callable[[OriginWatcher], Awaitable[None]],
    secret: str = SECRET,
    **options: float,
) -> None:
    """Run ``scenario`` with a watcher and a registrar (sending in the background)."""

    async def main() -> None:
        client = CoordinatorClient(fake.url, secret)
        registrar = SegmentRegistrar(client, backoff_s=(0.01, 0.05))
        sender = asyncio.create_task(registrar.run())
        try:
            await scenario(OriginWatcher(hls_dir, registrar, **options))
        finally:
            sender.cancel()
            await client.close()

    asyncio.run(main())


def test_finished_segments_are_reported_with_hash_size_duration_and_discontinuity(
    tmp_path, fake_coordinator
):
    hls = HlsWriter(tmp_path)
    hls.finish(0, 1.920, discontinuity=True)
    hls.finish(1, 2.037)

    async def scenario(watcher: OriginWatcher) -> None:
        assert await watcher.scan() == 2
        assert await watcher.scan() == 0  # unchanged playlist: nothing read again
        hls.finish(2)
        assert await watcher.scan() == 1
        assert await watcher.registrar.drained(10)

    run(tmp_path, fake_coordinator, scenario)
    stored = fake_coordinator.segments
    assert sorted(stored) == [(STREAM, 0), (STREAM, 1), (STREAM, 2)]
    assert stored[(STREAM, 0)] == {
        "stream": STREAM,
        "sequence": 0,
        "name": "0.ts",
        "duration_ms": 1920,
        "size": len(hls.contents[0]),
        "sha256": hls.sha(0),
        "discontinuity": True,
    }
    assert stored[(STREAM, 1)]["duration_ms"] == 2037
    assert not stored[(STREAM, 1)]["discontinuity"]
    for call in fake_coordinator.calls("/segments"):
        assert call.headers["x-streamr-ingest-secret"] == SECRET


def test_a_growing_segment_is_never_hashed_until_it_is_listed(
    tmp_path, fake_coordinator, monkeypatch
):
    hashed: list[str] = []
    real_digest = watcher_module.digest

    def recording_digest(path: Path) -> tuple[int, str]:
        hashed.append(path.name)
        return real_digest(path)

    monkeypatch.setattr(watcher_module, "digest", recording_digest)
    hls = HlsWriter(tmp_path)
    hls.finish(0)

    async def scenario(watcher: OriginWatcher) -> None:
        await watcher.scan()
        for _ in range(5):  # nginx is still writing 1.ts
            hls.grow(1, os.urandom(4096))
            await watcher.scan()
            assert "1.ts" not in hashed
        hls.grow(1, b"the end")
        await watcher.scan()
        assert "1.ts" not in hashed  # complete on disk, but not listed yet
        hls.finish(1)
        await watcher.scan()
        assert await watcher.registrar.drained(10)

    run(tmp_path, fake_coordinator, scenario)
    assert hashed == ["0.ts", "1.ts"]
    assert fake_coordinator.segments[(STREAM, 1)]["sha256"] == hls.sha(1)
    assert fake_coordinator.segments[(STREAM, 1)]["size"] == 5 * 4096 + len(b"the end")


def test_a_restarted_watcher_reports_every_listed_segment_again(tmp_path, fake_coordinator):
    hls = HlsWriter(tmp_path)
    for sequence in range(3):
        hls.finish(sequence)

    async def first_run(watcher: OriginWatcher) -> None:
        await watcher.scan()
        assert await watcher.registrar.drained(10)
        # The coordinator goes away; two more segments are found but never delivered before
        # the watcher is killed.
        fake_coordinator.fail_next = 10_000
        hls.finish(3)
        hls.finish(4)
        await watcher.scan()
        assert not await watcher.registrar.drained(0.3)

    run(tmp_path, fake_coordinator, first_run)
    assert fake_coordinator.sequences(STREAM) == [0, 1, 2]
    fake_coordinator.fail_next = 0
    before = len(fake_coordinator.calls("/segments"))

    async def second_run(watcher: OriginWatcher) -> None:
        assert await watcher.scan() == 5
        assert await watcher.registrar.drained(10)

    run(tmp_path, fake_coordinator, second_run)
    assert fake_coordinator.sequences(STREAM) == [0, 1, 2, 3, 4]
    resent = fake_coordinator.calls("/segments")[before:]
    # Everything listed went again; the coordinator answered "known" for 0-2.
    assert sorted(s["sequence"] for c in resent for s in c.body["segments"]) == [0, 1, 2, 3, 4]


def test_reports_are_retried_until_the_coordinator_takes_them(tmp_path, fake_coordinator, caplog):
    caplog.set_level(logging.INFO, "streamr.ingest.watcher")
    fake_coordinator.fail_next = 3
    hls = HlsWriter(tmp_path)
    hls.finish(0)

    async def scenario(watcher: OriginWatcher) -> None:
        await watcher.scan()
        assert await watcher.registrar.drained(10)

    run(tmp_path, fake_coordinator, scenario)
    assert fake_coordinator.sequences(STREAM) == [0]
    assert len(fake_coordinator.calls("/segments")) == 4
    events = [r.getMessage() for r in caplog.records]
    assert events.count("segment reports held back; retrying") == 1
    assert "segment reports flowing again" in events


def test_a_refused_secret_keeps_segments_pending(tmp_path, fake_coordinator, caplog):
    hls = HlsWriter(tmp_path)
    hls.finish(0)

    async def scenario(watcher: OriginWatcher) -> None:
        await watcher.scan()
        assert not await watcher.registrar.drained(0.3)
        assert watcher.registrar.pending == 1

    run(tmp_path, fake_coordinator, scenario, secret="wrong-" + "w" * 40)
    assert fake_coordinator.segments == {}
    reasons = [getattr(r, "reason", "") for r in caplog.records]
    assert any("refuses the ingest secret" in reason for reason in reasons)
    assert not any("wrong-" in reason for reason in reasons)


def test_a_conflicting_segment_is_dropped_and_the_rest_kept(tmp_path, fake_coordinator, caplog):
    fake_coordinator.segments[(STREAM, 1)] = {"sha256": "0" * 64}
    hls = HlsWriter(tmp_path)
    for sequence in range(3):
        hls.finish(sequence)

    async def scenario(watcher: OriginWatcher) -> None:
        await watcher.scan()
        assert await watcher.registrar.drained(10)
        hls.finish(3)
        await watcher.scan()
        assert await watcher.registrar.drained(10)

    run(tmp_path, fake_coordinator, scenario)
    assert fake_coordinator.segments[(STREAM, 1)] == {"sha256": "0" * 64}
    assert fake_coordinator.sequences(STREAM) == [0, 1, 2, 3]
    assert fake_coordinator.segments[(STREAM, 2)]["sha256"] == hls.sha(2)
    refusals = [r for r in caplog.records if "already registered" in r.getMessage()]
    assert [r.sequence for r in refusals] == [1]


def test_segments_of_an_unknown_stream_are_dropped_after_one_warning(
    tmp_path, fake_coordinator, caplog
):
    hls = HlsWriter(tmp_path, stream="bob-live")

    async def scenario(watcher: OriginWatcher) -> None:
        for sequence in range(3):
            hls.finish(sequence)
            await watcher.scan()
            assert await watcher.registrar.drained(10)

    run(tmp_path, fake_coordinator, scenario)
    assert fake_coordinator.segments == {}
    assert len(fake_coordinator.calls("/segments")) == 3
    warnings = [r for r in caplog.records if "knows no such stream" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].stream == "bob-live"


def test_many_segments_go_in_batches_below_the_coordinator_body_limit(tmp_path, fake_coordinator):
    hls = HlsWriter(tmp_path, window=450)
    for sequence in range(450):
        hls.grow(sequence, sequence.to_bytes(4, "big"))
        hls.listed.append((sequence, 2.0, False))
    hls.write_playlist()

    async def scenario(watcher: OriginWatcher) -> None:
        assert await watcher.scan() == 450
        assert await watcher.registrar.drained(20)

    run(tmp_path, fake_coordinator, scenario)
    assert fake_coordinator.sequences(STREAM) == list(range(450))
    calls = fake_coordinator.calls("/segments")
    assert all(len(c.body["segments"]) <= 200 for c in calls)
    assert all(len(json.dumps(c.body)) < 64 * 1024 for c in calls)


def test_retention_deletes_segments_only_after_they_left_the_playlist(tmp_path, fake_coordinator):
    now = [1000.0]
    hls = HlsWriter(tmp_path, window=3)
    for sequence in range(3):
        hls.finish(sequence)
    (hls.dir / "notes.txt").write_text("not ours")

    async def scenario(watcher: OriginWatcher) -> None:
        async def tick(seconds: float) -> None:
            now[0] += seconds
            await watcher.scan()

        await tick(0)
        hls.finish(3)  # 0.ts leaves the list
        await tick(1.0)
        await tick(9.0)
        assert (hls.dir / "0.ts").exists()  # unlisted for 9 s < 10 s
        await tick(1.0)
        assert not (hls.dir / "0.ts").exists()
        await tick(100.0)  # the stream is away for long: listed segments stay
        assert sorted(p.name for p in hls.dir.iterdir()) == [
            "1.ts",
            "2.ts",
            "3.ts",
            "index.m3u8",
            "notes.txt",
        ]

    run(tmp_path, fake_coordinator, scenario, retention_s=10.0, clock=lambda: now[0])


def test_restarted_numbering_is_reported_as_new_segments(tmp_path, fake_coordinator, caplog):
    hls = HlsWriter(tmp_path)
    for sequence in range(10, 13):
        hls.finish(sequence)

    async def scenario(watcher: OriginWatcher) -> None:
        await watcher.scan()
        assert await watcher.registrar.drained(10)
        for path in hls.dir.iterdir():
            path.unlink()
        fresh = HlsWriter(tmp_path)
        fresh.finish(0)
        await watcher.scan()
        assert await watcher.registrar.drained(10)

    run(tmp_path, fake_coordinator, scenario)
    assert fake_coordinator.sequences(STREAM) == [0, 10, 11, 12]
    assert any(r.getMessage() == "segment numbering restarted" for r in caplog.records)


@pytest.mark.parametrize("name", ["Bad_Name", "x", ".hidden", "a" * 41])
def test_directories_that_are_not_stream_names_are_ignored(tmp_path, fake_coordinator, name):
    HlsWriter(tmp_path, stream=name).finish(0)

    async def scenario(watcher: OriginWatcher) -> None:
        assert await watcher.scan() == 0

    run(tmp_path, fake_coordinator, scenario)
