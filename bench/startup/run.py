"""Startup: from opening the watch page to its first video frame, through a friend's node and
from the origin alone, side by side.

    .venv/bin/python bench/startup/run.py [--runs 10]

(every option: --help). docs/benchmarks.md has the figures and what they mean.

Two real `streamr demo` networks run at once on free loopback ports
(bench/offload/demo_network.py): one with three friend nodes, one with ``--nodes 0``. The watch
page has no option to skip nodes (viewers/static/watch.js); with no node the coordinator
routes the page to the origin alone, and the page plays it through the same verified loader
(signed index, SHA-256 of every segment, receipts). With nodes, the first source is a node.

Each run opens the watch page in a new Chromium context (Debian's /usr/bin/chromium through
Playwright: no cache, no cookies) and measures inside the page, with ``performance.now()``,
whose zero is the navigation's start:

* **first frame**: the ``presentationTime`` of the first ``requestVideoFrameCallback`` on the
  video, the moment the first frame was handed to the compositor;
* ``playing``: the first ``playing`` event of the video;
* on the way, from the page's resource timing: the document parsed (``DOMContentLoaded``), the
  viewer session opened (the ``POST .../sessions`` answer's ``responseEnd``), hls.js loaded,
  the first segment's bytes received (the earliest ``responseEnd`` of a ``.ts`` fetch), and the
  source of the segments played before the first frame (``window.streamrWatch.bytes``).

The two cases alternate run by run (node, origin, node, ...), so a slow moment of the machine
hits both alike; one discarded warm-up run of each goes first. The table shows the median and
the range over ``--runs`` runs.

The exit status is non-zero when a demo fails to start or stop cleanly, or a page shows no
frame within 30 s; never because of the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.offload.demo_network import STREAM, BenchError, DemoNetwork, run_demo  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-gpu"]
VIEWPORT = {"width": 1280, "height": 800}
FIRST_FRAME_TIMEOUT_S = 30

# Runs before the page's own scripts in every document (an init script is not subject to the
# page's Content-Security-Policy). Media events do not bubble, but capturing listeners on the
# document see them.
PROBE = """
(() => {
  const marks = {};
  window.__startup = marks;
  document.addEventListener("playing", () => { marks.playing ??= performance.now(); }, true);
  document.addEventListener("loadstart", (event) => {
    marks.loadstart ??= performance.now();
    const video = event.target;
    if (marks.watching || !video.requestVideoFrameCallback) return;
    marks.watching = true;
    video.requestVideoFrameCallback((now, frame) => {
      marks.frame = frame.presentationTime;
      marks.frameCallback = now;
      marks.bytes = JSON.parse(JSON.stringify(window.streamrWatch?.bytes ?? null));
    });
  }, true);
})();
"""

COLLECT = """() => {
  const resources = performance.getEntriesByType("resource");
  const first = (match) => {
    const found = resources.filter(match).map((entry) => entry.responseEnd);
    return found.length ? Math.min(...found) : null;
  };
  const navigation = performance.getEntriesByType("navigation")[0];
  return {
    ...window.__startup,
    dom: navigation ? navigation.domContentLoadedEventEnd : null,
    session: first((e) => e.name.endsWith("/sessions") && e.initiatorType === "fetch"),
    hls: first((e) => e.name.includes("/static/vendor/hls.js/")),
    segment: first((e) => new URL(e.name).pathname.endsWith(".ts")),
    source: window.streamrWatch?.source ?? null,
    mode: window.streamrWatch?.mode ?? null,
  };
}"""


@dataclass
class Case:
    label: str
    demo: DemoNetwork
    runs: list[dict[str, Any]]


def one_run(browser, case: Case) -> dict[str, Any]:
    context = browser.new_context(viewport=VIEWPORT)
    try:
        context.add_init_script(PROBE)
        page = context.new_page()
        page.goto(f"{case.demo.coordinator}/watch/{STREAM}", wait_until="commit")
        deadline = time.monotonic() + FIRST_FRAME_TIMEOUT_S
        while True:
            marks = page.evaluate("window.__startup ?? {}")
            if "frame" in marks and "playing" in marks:
                break
            if time.monotonic() > deadline:
                state = page.evaluate("JSON.stringify(window.streamrWatch ?? null)")
                raise BenchError(
                    f"{case.label}: no frame within {FIRST_FRAME_TIMEOUT_S} s: {state}"
                )
            page.wait_for_timeout(100)
        return page.evaluate(COLLECT)
    finally:
        context.close()


def summary(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    median = statistics.median(present)
    return f"{median:,.0f} ms ({min(present):,.0f}-{max(present):,.0f})"


def report(cases: list[Case]) -> None:
    rows = [
        ("first frame (presentationTime)", "frame"),
        ("'playing' event", "playing"),
        ("  document parsed (DOMContentLoaded)", "dom"),
        ("  hls.js loaded", "hls"),
        ("  viewer session opened", "session"),
        ("  first segment received", "segment"),
    ]
    table = [("", [c.label for c in cases])]
    for name, key in rows:
        table.append((name, [summary([r.get(key) for r in c.runs]) for c in cases]))
    table.append(
        (
            "runs / from a node before the first frame",
            [
                f"{len(c.runs)} / "
                f"{sum(1 for r in c.runs if (r.get('bytes') or {}).get('node', 0) > 0)}"
                for c in cases
            ],
        )
    )
    table.append(
        (
            "runs with origin bytes before the first frame",
            [
                str(sum(1 for r in c.runs if (r.get("bytes") or {}).get("origin", 0) > 0))
                for c in cases
            ],
        )
    )
    width = max(len(name) for name, _ in table)
    cols = [max(len(values[i]) for _, values in table) for i in range(len(cases))]
    print()
    for number, (name, values) in enumerate(table):
        cells = [v.ljust(c) for v, c in zip(values, cols, strict=True)]
        print(name.ljust(width) + " | " + " | ".join(cells))
        if number == 0:
            print("-" * width + "-+-" + "-+-".join("-" * c for c in cols))
    print("\n(median over the runs, min-max in brackets; milliseconds from navigation start)")
    for case in cases:
        frames = ", ".join(f"{r['frame']:.0f}" for r in case.runs)
        print(f"{case.label}, first frame each run: {frames}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs of each case")
    parser.add_argument("--nodes", type=int, default=3, choices=range(1, 11), metavar="1-10")
    args = parser.parse_args()
    print(
        f"startup: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
        flush=True,
    )
    from playwright.sync_api import sync_playwright

    settings = {"viewer_sessions_per_minute": 1000}
    try:
        with contextlib.ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamr-startup-")))
            (work / "nodes").mkdir()
            (work / "origin").mkdir()
            print(f"starting streamr demo --nodes {args.nodes} and --nodes 0 ...", flush=True)
            with_nodes = stack.enter_context(run_demo(work / "nodes", args.nodes, **settings))
            origin_only = stack.enter_context(run_demo(work / "origin", 0, **settings))
            cases = [
                Case(f"through a node ({args.nodes} nodes)", with_nodes, []),
                Case("origin only (--nodes 0)", origin_only, []),
            ]
            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            stack.callback(browser.close)
            for case in cases:  # warm-up, discarded: Chromium's and the servers' first time
                one_run(browser, case)
            for number in range(args.runs):
                for case in cases:
                    case.demo.check_alive()
                    case.runs.append(one_run(browser, case))
                last = [f"{c.label.split(' (')[0]} {c.runs[-1]['frame']:.0f} ms" for c in cases]
                print(f"run {number + 1}/{args.runs}: " + ", ".join(last), flush=True)
            report(cases)
    except (BenchError, subprocess.SubprocessError) as exc:
        print(f"startup: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
