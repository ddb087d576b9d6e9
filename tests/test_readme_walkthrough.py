"""The README's walk-through, run exactly as written against a real coordinator process."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def walkthrough_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Walk-through", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_walkthrough_runs_as_written(start_demo):
    assert shutil.which("jq"), "jq is installed by scripts/bootstrap.sh"
    demo = start_demo("--no-test-card")
    base, env = demo.coordinator, {**demo.env, "RTMP": demo.rtmp, "ORIGIN": demo.origin}
    env["NODE_PORT"] = str(free_port())
    api_block, cli_block = walkthrough_blocks()

    def run(block: str) -> str:
        """One README block, in bash with errors fatal, from the repository root."""
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            env={**env, "COORD": base},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr + result.stdout
        return result.stdout

    out = run(api_block)
    assert '"presence_ttl_s"' in out
    assert '"registered": 1' in out and '"online": 1' in out
    assert '"connections": 2' in out
    assert '"LIVE"' in out
    assert "#EXT-X-MEDIA-SEQUENCE" in out and ".ts" in out
    assert re.search(r'"sha256": "[0-9a-f]{64}"', out)
    assert "Joined stream 'ann-live'" in out
    assert "running:      yes" in out and "online:       yes" in out

    # What the walk-through claims is really there, seen through the API.
    assert httpx.get(f"{base}/api/v1/streams/ann-live/nodes").json()["registered"] == 2
    deadline = time.monotonic() + 30  # the last comment: OFFLINE once the test card stopped
    while httpx.get(f"{base}/api/v1/streams/ann-live").json()["status"] != "OFFLINE":
        assert time.monotonic() < deadline, "the stream did not go OFFLINE"
        time.sleep(0.5)

    out = run(cli_block)
    assert "stream key:  sk_" in out
    assert "streamr-node join" in out
    assert re.search(r"ann-talks\s+READY\s+Ann talks", out)
    assert re.search(r"ann-live\s+OFFLINE\s+Ann plays chess", out)
    created = httpx.get(f"{base}/api/v1/streams/ann-talks")
    assert created.status_code == 200, "the CLI and the server share one database"
