"""A test card: ffmpeg publishes a moving test pattern with a tone, exactly as OBS would.

H.264 + AAC over RTMP to ``<server>/<stream key>``, in real time (``-re``), with a keyframe
exactly every 2 seconds so that every HLS fragment starts on one. ffmpeg only takes the
destination on its command line, so the key is visible in the process list for as long as
ffmpeg runs (OBS, which holds it in memory, does not have that problem); this module keeps it
out of everything it prints, including ffmpeg's own error messages.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable

KEY_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{1,256}$")
KEYFRAME_INTERVAL_S = 2
HIDDEN = "(stream key)"


class PublishError(Exception):
    """The test card cannot be published; the message says why."""


def ffmpeg_command(
    url: str,
    seconds: float | None = None,
    size: str = "1280x720",
    fps: int = 30,
    video_kbps: int = 2500,
    ffmpeg: str = "ffmpeg",
) -> list[str]:
    gop = str(KEYFRAME_INTERVAL_S * fps)
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={fps}",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        *(["-t", f"{seconds:g}"] if seconds else []),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        f"{video_kbps}k",
        "-maxrate",
        f"{video_kbps}k",
        "-bufsize",
        f"{2 * video_kbps}k",
        # A keyframe every 2 s exactly, never an extra one at a scene cut.
        "-g",
        gop,
        "-keyint_min",
        gop,
        "-sc_threshold",
        "0",
        "-force_key_frames",
        f"expr:gte(t,n_forced*{KEYFRAME_INTERVAL_S})",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-f",
        "flv",
        url,
    ]


def destination(server: str, key: str) -> str:
    if not server.startswith("rtmp://"):
        raise PublishError(f"the RTMP server must look like rtmp://host:1935/live, not {server!r}")
    if not KEY_PATTERN.fullmatch(key):
        raise PublishError(
            "the stream key looks wrong (copy it exactly as the coordinator showed it)"
        )
    return f"{server.rstrip('/')}/{key}"


def publish(
    server: str,
    key: str,
    seconds: float | None = None,
    size: str = "1280x720",
    fps: int = 30,
    echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> None:
    """Publish until ``seconds`` have passed (or Ctrl-C); PublishError if ffmpeg fails."""
    url = destination(server, key)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise PublishError("ffmpeg is not installed; run scripts/bootstrap.sh")
    command = ffmpeg_command(url, seconds, size=size, fps=fps, ffmpeg=ffmpeg)
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    last = ""
    try:
        assert process.stderr is not None
        for line in process.stderr:
            line = line.rstrip().replace(key, HIDDEN)
            if line:
                last = line
                echo(f"ffmpeg: {line}")
        status = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)  # ffmpeg finishes the FLV stream cleanly
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        return
    if status != 0:
        hint = ""
        if "Input/output error" in last or "Connection refused" in last:
            hint = (
                " — is the ingest running at that address, is the key the stream's current one, "
                "and is the stream READY (not LIVE elsewhere or ARCHIVED)?"
            )
        raise PublishError(f"ffmpeg stopped with status {status}: {last or 'no message'}{hint}")
