"""The fraud simulation at scale: honest and cheating friend nodes, viewers with churn, sparse
probes and packet loss, through the coordinator's real routing, reconciliation, trust and
economics (coordinator/streamr_coordinator/simulation/).

    .venv/bin/python bench/simulate/run.py [--nodes 10000] [--viewers 100000] [--hours 1]
        [--seed 1] [--cheaters-share 0.05] [--segment-s 6] [--loss 0.05] [--probes 2]

    .venv/bin/python bench/simulate/run.py --sweep 1000,2500,5000,10000 [--hours 0.5]

``--sweep`` runs each node count in a fresh process (so each peak memory is its own) with
``--viewers-per-node`` (10) sessions per node-hour, and prints how time, memory, offload,
fairness and detection grow with the node count.

``--viewers`` is viewer sessions opened per simulated hour (they churn: 40 % leave within about a
minute, the rest stay about 15 minutes). ``--cheaters-share`` of the nodes cheat, spread evenly
over every strategy in simulation/strategies.py; the rest are honest.

Printed: wall time per simulated hour, peak memory (tracemalloc and the process's max RSS),
offload (share of viewers' intact bytes that came from nodes), fairness of pay (paid / truly
delivered bytes for honest nodes), whether any node was paid for more than it delivered, and per
strategy how long (simulated minutes) until its nodes were warned and penalised. No timing
threshold decides the exit status: it is non-zero only when a node is paid beyond what it
delivered (confederates excepted, which are bounded instead) or an honest node is penalised.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streamr_coordinator.simulation.network import SimConfig  # noqa: E402
from streamr_coordinator.simulation.run import Results, Simulation  # noqa: E402
from streamr_coordinator.simulation.strategies import CHEATERS, Honest, Strategy  # noqa: E402


def assign(nodes: int, share: float):
    """Every ``1/share``-th node cheats, taking the strategies in turn."""
    every = max(1, round(1 / share)) if share > 0 else 0
    strategies = [c() for c in CHEATERS]

    def strategy_for(i: int) -> Strategy:
        if every and i % every == every - 1:
            return strategies[(i // every) % len(strategies)]
        return Honest()

    return strategy_for


def minutes(values: list[float | None]) -> str:
    found = sorted(v / 60 for v in values if v is not None)
    if not found:
        return "never"
    return (
        f"median {statistics.median(found):.0f}, max {found[-1]:.0f} ({len(found)}/{len(values)})"
    )


def report(results: Results, wall_s: float, peak_bytes: int | None) -> int:
    cfg = results.config
    print(
        f"nodes {cfg.nodes}, viewer sessions {results.viewer_sessions} "
        f"({cfg.viewers_per_hour}/h), probe sessions {results.probe_sessions}, "
        f"{cfg.hours:g} simulated h, seed {cfg.seed}"
    )
    print(f"wall {wall_s:.1f} s = {wall_s / cfg.hours:.1f} s per simulated hour")
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    traced = "" if peak_bytes is None else f"tracemalloc peak {peak_bytes / 2**20:.0f} MiB, "
    print(f"peak memory: {traced}max RSS {rss_mib:.0f} MiB")
    print(f"offload: {results.offload:.1%} of viewers' intact bytes came from nodes")
    status = 0
    groups = results.by_strategy()
    honest = groups.get("honest", [])
    ratios = [n.paid / n.delivered for n in honest if n.delivered > 0]
    if ratios:
        q = statistics.quantiles(ratios, n=20) if len(ratios) > 1 else ratios * 19
        print(
            f"honest pay/delivered: mean {statistics.mean(ratios):.3f}, p5 {q[0]:.3f}, "
            f"min {min(ratios):.3f} (n={len(ratios)})"
        )
        scores = [n.min_score for n in honest]
        print(
            f"honest trust: lowest ever {min(scores):.3f}, "
            f"share that stayed >= 0.9: {sum(s >= 0.9 for s in scores) / len(scores):.1%}, "
            f"penalised: {sum(n.penalised_at_s is not None for n in honest)}"
        )
        if any(n.penalised_at_s is not None for n in honest):
            status = 1
    over = [n for n in results.nodes if n.strategy != "confederate" and n.paid > n.delivered]
    print(f"nodes paid beyond what they delivered: {len(over)}")
    status |= bool(over)
    guesses = results.guesses
    if guesses:
        for probe in (True, False):
            total = guesses[(probe, True)] + guesses[(probe, False)]
            if total:
                print(
                    f"probe_guesser: took {'probe' if probe else 'viewer'} fetches for probes "
                    f"{guesses[(probe, True)] / total:.0%} of the time (n={total})"
                )
    print(f"{'strategy':28} {'nodes':>5} {'paid/deliv':>10}  warned (sim min)  penalised (sim min)")
    for name, group in sorted(groups.items()):
        if name == "honest":
            continue
        paid = sum(n.paid for n in group)
        delivered = sum(n.delivered for n in group)
        ratio = f"{paid / delivered:.3f}" if delivered else "0 / 0"
        print(
            f"{name:28} {len(group):>5} {ratio:>10}  "
            f"{minutes([n.warned_at_s for n in group])};  "
            f"{minutes([n.penalised_at_s for n in group])}"
        )
        if name == "confederate":
            excess = paid - delivered
            bound = sum(n.fabricated_plausible for n in group)
            print(
                f"{'':28} excess {excess / 1e9:.2f} GB <= one real-time copy per confederate "
                f"session {bound / 1e9:.2f} GB"
            )
    return status


def summary(results: Results, wall_s: float) -> dict[str, object]:
    """The figures a sweep compares across node counts."""
    groups = results.by_strategy()
    honest = groups.get("honest", [])
    ratios = [n.paid / n.delivered for n in honest if n.delivered > 0]
    detection = {}
    for name, group in groups.items():
        if name != "honest":
            warned = [n.warned_at_s / 60 for n in group if n.warned_at_s is not None]
            detection[name] = (
                (statistics.median(warned), len(warned), len(group)) if warned else None
            )
    return {
        "nodes": results.config.nodes,
        "viewer_sessions": results.viewer_sessions,
        "wall_s_per_hour": wall_s / results.config.hours,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "offload": results.offload,
        "honest_pay_ratio": statistics.mean(ratios) if ratios else None,
        "honest_min_trust": min((n.min_score for n in honest), default=None),
        "honest_share_ge_09": (
            sum(n.min_score >= 0.9 for n in honest) / len(honest) if honest else None
        ),
        "overpaid": sum(
            1 for n in results.nodes if n.strategy != "confederate" and n.paid > n.delivered
        ),
        "warned_median_min": detection,
    }


def sweep(sizes: list[int], args: argparse.Namespace) -> int:
    """Each size in its own process; a table of how the figures grow."""
    rows = []
    for nodes in sizes:
        command = [
            sys.executable, __file__, "--json", "--nodes", str(nodes),
            "--viewers", str(nodes * args.viewers_per_node), "--hours", str(args.hours),
            "--seed", str(args.seed), "--cheaters-share", str(args.cheaters_share),
            "--segment-s", str(args.segment_s), "--loss", str(args.loss),
            "--probes", str(args.probes),
        ]  # fmt: skip
        print(f"running {nodes} nodes ...", flush=True)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode not in (0, 1) or not done.stdout.strip():
            print(done.stderr, file=sys.stderr)
            return 2
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"{'nodes':>6} {'sessions':>9} {'s/sim h':>8} {'RSS MiB':>8} {'offload':>8} "
        f"{'pay/deliv':>9} {'min trust':>9} {'>=0.9':>6} {'overpaid':>8}"
    )
    for r in rows:
        print(
            f"{r['nodes']:>6} {r['viewer_sessions']:>9} {r['wall_s_per_hour']:>8.1f} "
            f"{r['max_rss_mib']:>8.0f} {r['offload']:>8.1%} {r['honest_pay_ratio']:>9.3f} "
            f"{r['honest_min_trust']:>9.3f} {r['honest_share_ge_09']:>6.1%} {r['overpaid']:>8}"
        )
    strategies = sorted({name for r in rows for name in r["warned_median_min"]})
    print("median simulated minutes until warned (warned/all), by node count:")
    print(f"{'strategy':28} " + " ".join(f"{r['nodes']:>14}" for r in rows))
    for name in strategies:
        cells = []
        for r in rows:
            found = r["warned_median_min"].get(name)
            cells.append("never" if found is None else f"{found[0]:.0f} ({found[1]}/{found[2]})")
        print(f"{name:28} " + " ".join(f"{c:>14}" for c in cells))
    return int(any(r["overpaid"] for r in rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--viewers", type=int, default=10_000, help="sessions opened per hour")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cheaters-share", type=float, default=0.05)
    parser.add_argument("--segment-s", type=float, default=6.0)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--probes", type=float, default=2.0, help="probe sessions per node-hour")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace Python allocations (about 2x slower)"
    )
    parser.add_argument("--sweep", help="node counts, e.g. 1000,2500,5000,10000")
    parser.add_argument("--viewers-per-node", type=int, default=10, help="with --sweep")
    parser.add_argument("--json", action="store_true", help="one JSON line of the figures")
    args = parser.parse_args()
    if args.sweep:
        return sweep([int(n) for n in args.sweep.split(",")], args)
    cfg = SimConfig(
        nodes=args.nodes,
        viewers_per_hour=args.viewers,
        hours=args.hours,
        seed=args.seed,
        segment_s=args.segment_s,
        loss=args.loss,
        probes_per_node_hour=args.probes,
    )
    print(f"python {platform.python_version()} on {platform.machine()}, {cfg}")
    if args.tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    results = Simulation(cfg, assign(cfg.nodes, args.cheaters_share)).run()
    wall = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    if args.json:
        print(json.dumps(summary(results, wall)))
        over = summary(results, wall)["overpaid"]
        return int(bool(over))
    return report(results, wall, peak)


if __name__ == "__main__":
    sys.exit(main())
