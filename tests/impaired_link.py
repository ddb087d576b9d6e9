"""A point-to-point IP link with packet loss and latency, in user space: what
``tc qdisc add dev ... root netem loss 5% delay 40ms`` does, for kernels built without netem
(this machine's has no sch_netem, no tc classifiers or actions, no netfilter).

    python -m tests.impaired_link HOST_IF NODE_IF --loss 0.05 --delay-ms 40 --stats FILE

Creates two TUN devices and copies every IP packet from one to the other. Packets read from
``NODE_IF`` (what the far end sends, once ``NODE_IF`` is moved into a namespace) are dropped
with probability ``loss`` and delivered after ``delay-ms``; the other direction is untouched,
as with netem on the far end's interface. Prints ``ready`` once both devices exist; writes its
counters to ``--stats`` (JSON) every second and at exit; the devices vanish when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import random
import signal
import struct
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def write_stats(path: Path, stats: dict[str, int]) -> None:
    # A few bytes a second on a local disk: not worth a thread.
    path.write_text(json.dumps(stats))


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    host, node = open_tun(args.host_if), open_tun(args.node_if)
    stats = {"to_node": 0, "from_node": 0, "dropped_from_node": 0}
    delay_s = args.delay_ms / 1000

    def deliver(fd: int, packet: bytes) -> None:
        with contextlib.suppress(OSError):  # the device went down: lost, as on a wire
            os.write(fd, packet)

    def from_host() -> None:
        try:
            packet = os.read(host, 65535)
        except BlockingIOError:
            return
        stats["to_node"] += 1
        deliver(node, packet)

    def from_node() -> None:
        try:
            packet = os.read(node, 65535)
        except BlockingIOError:
            return
        stats["from_node"] += 1
        if random.random() < args.loss:
            stats["dropped_from_node"] += 1
            return
        loop.call_later(delay_s, deliver, host, packet)

    loop.add_reader(host, from_host)
    loop.add_reader(node, from_node)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    stats_path = Path(args.stats)
    while not stop.is_set():
        write_stats(stats_path, stats)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    write_stats(stats_path, stats)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host_if")
    parser.add_argument("node_if")
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--delay-ms", type=float, default=40.0)
    parser.add_argument("--stats", required=True)
    asyncio.run(main(parser.parse_args()))
