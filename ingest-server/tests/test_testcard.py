"""The test card publishes exactly as OBS should be set up: H.264 + AAC, 2 s keyframes."""

from __future__ import annotations

import pytest

from streamr_ingest.testcard import PublishError, destination, ffmpeg_command, publish


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize("fps", [25, 30, 60])
def test_keyframes_every_two_seconds_and_never_at_scene_cuts(fps):
    command = ffmpeg_command("rtmp://127.0.0.1:1935/live/k", fps=fps)
    assert option(command, "-g") == option(command, "-keyint_min") == str(2 * fps)
    assert option(command, "-sc_threshold") == "0"
    assert option(command, "-force_key_frames") == "expr:gte(t,n_forced*2)"
    assert option(command, "-c:v") == "libx264" and option(command, "-c:a") == "aac"
    assert option(command, "-f") == "lavfi"  # test pattern and tone are generated
    assert f"testsrc2=size=1280x720:rate={fps}" in command
    assert "sine=frequency=440:sample_rate=48000" in command
    assert command.count("-re") == 2  # real time, like a live source
    assert command[-3:] == ["-f", "flv", "rtmp://127.0.0.1:1935/live/k"]
    assert "-t" not in command
    assert option(ffmpeg_command("rtmp://h/live/k", seconds=9), "-t") == "9"


def test_destination_is_server_slash_key_and_checks_both():
    assert (
        destination("rtmp://127.0.0.1:1935/live/", "sk_abc") == "rtmp://127.0.0.1:1935/live/sk_abc"
    )
    with pytest.raises(PublishError, match="rtmp://host:1935/live"):
        destination("http://127.0.0.1/live", "sk_abc")
    with pytest.raises(PublishError, match="stream key looks wrong"):
        destination("rtmp://127.0.0.1/live", "sk abc/../x")


def test_ffmpeg_failures_never_show_the_key():
    key = "sk_never_shown_0123456789"
    shown: list[str] = []
    with pytest.raises(PublishError) as caught:
        # Nothing listens on port 9: ffmpeg fails, naming the URL it tried.
        publish("rtmp://127.0.0.1:9/live", key, seconds=1, size="160x90", echo=shown.append)
    assert key not in str(caught.value)
    assert key not in "".join(shown)
    assert "(stream key)" in str(caught.value)
