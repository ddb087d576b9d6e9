"""The simulation loop: the real routing, reconciliation, trust and economics, interval by
interval, over the simulated network of ``network.py`` with the behaviours of ``strategies.py``.

Ground truth is kept beside what the coordinator sees: ``Node.delivered`` counts the bytes that
really reached a viewer intact, so every run can check that no node is paid for more than it
delivered, and how long each cheater took to be warned and penalised.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..nodes.relays import RelayCandidate
from ..payouts.economics import Economics, apply_bps, earned_micro_usd, split
from ..verification import trust
from ..verification.reconciliation import (
    DEFAULT,
    ClaimFact,
    IntervalInput,
    ReceiptFact,
    ReconcileParams,
    SegmentWindow,
    SessionFact,
    SessionTotals,
    reconcile,
    segment_window,
    summarize_claims,
    summarize_receipts,
)
from ..viewers.routing import NodeSignals, SessionView, order_sources
from .network import EPOCH, Node, Session, SimConfig, Stream, uplink, watch_time
from .strategies import Honest, Strategy

ORIGIN = "http://origin.sim"
LIVE_START_SEGMENTS = 3  # a player starts this many segments behind the live edge
MAX_FETCH_SOURCES = 3  # nodes a fetch tries before the origin


@dataclass
class NodeReport:
    node_id: str
    strategy: str
    delivered: int = 0  # ground truth
    claimed: int = 0
    paid: int = 0
    friend_micro_usd: int = 0
    min_score: float = 1.0
    final_score: float = 1.0
    level: str = "vetting"
    warned_at_s: float | None = None
    penalised_at_s: float | None = None
    first_discrepancy_s: float | None = None
    fabricated_plausible: int = 0  # what fabricated sessions could at most be paid
    probes_judged: int = 0
    probes_failed: int = 0  # judged anything but ok
    viewer_fetches: int = 0
    viewer_failed: int = 0  # anything but ok


@dataclass
class Results:
    config: SimConfig
    nodes: list[NodeReport]
    node_bytes: int = 0  # delivered intact by nodes
    origin_bytes: int = 0
    viewer_sessions: int = 0
    probe_sessions: int = 0
    probe_fetches: int = 0
    # (probe?, guessed probe?) -> fetches, for nodes that guess
    guesses: dict[tuple[bool, bool], int] = field(default_factory=lambda: defaultdict(int))

    @property
    def offload(self) -> float:
        total = self.node_bytes + self.origin_bytes
        return self.node_bytes / total if total else 0.0

    def by_strategy(self) -> dict[str, list[NodeReport]]:
        out: dict[str, list[NodeReport]] = defaultdict(list)
        for n in self.nodes:
            out[n.strategy].append(n)
        return out


class _NodeBook:
    """What the coordinator keeps per node, plus the interval's inputs as they arrive."""

    __slots__ = (
        "before",
        "claims",
        "next_claims",
        "next_receipts",
        "outcomes",
        "probe_sessions",
        "receipts",
        "report",
        "state",
    )

    def __init__(self, report: NodeReport, state: trust.TrustState) -> None:
        self.report = report
        self.state = state
        self.before: dict[str, SessionTotals] = {}
        # Claims per session, summed as the node's reports would (one line per session each).
        self.claims: dict[str, list[int]] = {}
        self.next_claims: dict[str, list[int]] = {}
        self.receipts: list[ReceiptFact] = []
        self.next_receipts: list[ReceiptFact] = []
        self.outcomes = [0, 0, 0]  # viewers' ok, failed, mismatched fetches this interval
        # Probe session -> (its first fetch this interval, the judged outcomes of its fetches).
        self.probe_sessions: dict[str, tuple[datetime, list[str]]] = {}


class Simulation:
    def __init__(
        self,
        cfg: SimConfig,
        strategy_for: Callable[[int], Strategy] | None = None,
        *,
        reconcile_params: ReconcileParams = DEFAULT,
        trust_params: trust.TrustParams = trust.DEFAULT_PARAMS,
        economics: Economics = Economics(),
    ) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)  # noqa: S311 - a seeded simulation
        self.rp = reconcile_params
        self.tp = trust_params
        self.econ = economics
        strategy_for = strategy_for or (lambda _: Honest())
        n_streams = max(1, -(-cfg.nodes // cfg.nodes_per_stream))
        self.streams = [Stream(f"s{i}", cfg, self.rng) for i in range(n_streams)]
        self.nodes: dict[str, Node] = {}
        self.books: dict[str, _NodeBook] = {}
        self.by_stream: dict[str, list[Node]] = defaultdict(list)
        for i in range(cfg.nodes):
            stream = self.streams[i % n_streams]
            strategy = strategy_for(i)
            node = Node(f"n{i}", stream, uplink(self.rng, cfg), strategy)
            self.nodes[node.node_id] = node
            self.by_stream[stream.stream_id].append(node)
            report = NodeReport(node.node_id, strategy.name)
            self.books[node.node_id] = _NodeBook(report, trust.initial(EPOCH, trust_params))
        self.signals: dict[str, NodeSignals] = {}
        self.sessions: list[Session] = []
        self.fabricated: dict[str, list[Session]] = defaultdict(list)  # node -> its fakes
        self.registry: dict[str, Session] = {}  # every session the coordinator issued
        self.ended_with: dict[str, list[tuple[Session, float]]] = defaultdict(list)  # ghosts
        self.requests: dict[str, int] = defaultdict(int)  # what a node sees: per session
        self.results = Results(cfg, [b.report for b in self.books.values()])
        self._ids = itertools.count()

    # --- sessions -----------------------------------------------------------------------------

    def _new_session(self, stream: Stream, opened_s: float, **kw) -> Session:
        s = Session(
            f"v{next(self._ids)}",
            stream,
            opened_s,
            opened_s + watch_time(self.rng, self.cfg),
            kw.pop("network", f"viewer-{self.rng.randrange(1 << 30)}"),
            **kw,
        )
        self.registry[s.session_id] = s
        return s

    def _route(self, s: Session) -> None:
        nodes = self.by_stream[s.stream.stream_id]
        candidates = [
            RelayCandidate(
                n.node_id,
                f"http://{n.node_id}.sim",
                n.connections,
                n.connections * self.cfg.bitrate_bps,
                int(n.uplink_bps),
            )
            for n in nodes
        ]
        view = SessionView(
            sticky_node_id=s.sources[0] if s.sources else None, avoid=frozenset(s.avoid)
        )
        ordered = order_sources(candidates, ORIGIN, signals=self.signals, session=view)
        s.sources = [src.node_id for src in ordered if src.node_id is not None]
        if s.sources:  # presence sees the new connection within seconds
            self.nodes[s.sources[0]].connections += 1

    def _arrivals(self, start_s: float) -> None:
        cfg = self.cfg
        span = cfg.interval_s
        for _ in range(_poisson(self.rng, cfg.viewers_per_hour * span / 3600)):
            s = self._new_session(
                self.rng.choice(self.streams), start_s + self.rng.uniform(0, span)
            )
            self._route(s)
            self.sessions.append(s)
            self.results.viewer_sessions += 1
        node_ids = list(self.nodes)
        for _ in range(_poisson(self.rng, cfg.probes_per_node_hour * len(node_ids) * span / 3600)):
            node = self.nodes[self.rng.choice(node_ids)]
            s = self._new_session(node.stream, start_s + self.rng.uniform(0, span), is_probe=True)
            # The probed node first (as if routing had picked it), then what routing gives any
            # viewer: from then on the probe session moves on a failure exactly like one.
            s.sources = [node.node_id]
            self._route(s)
            self.sessions.append(s)
            self.results.probe_sessions += 1
        for node in self.nodes.values():
            st = node.strategy
            if not st.fabricate:
                continue
            alive = [f for f in self.fabricated[node.node_id] if f.ends_s > start_s]
            while len(alive) < st.fabricated_sessions:
                own = st.fabricate == "own_network"
                kw = {"network": node.network} if own else {}
                s = self._new_session(
                    node.stream, start_s, polls=st.fabricate != "remote_no_playback", **kw
                )
                s.sources = [node.node_id]
                alive.append(s)
            self.fabricated[node.node_id] = alive

    # --- fetching -----------------------------------------------------------------------------

    def _fetch_all(self, start_s: float, end_s: float) -> None:
        rng = self.rng
        for node in self.nodes.values():
            node.connections = 0
        for s in self.sessions:
            if s.sources and s.sources[0] not in s.avoid:
                self.nodes[s.sources[0]].connections += 1
        for s in self.sessions:
            s.failed = False
            for seg in self._segments_for(s, start_s, end_s):
                t = max(s.stream.attested_at_s(seg.sequence), s.opened_s) + rng.uniform(0.05, 0.5)
                self._fetch(s, seg.sequence, seg.size, t, end_s)
        for node_id, fakes in self.fabricated.items():
            node = self.nodes[node_id]
            for s in fakes:
                for seg in self._segments_for(s, start_s, end_s):
                    t = max(s.stream.attested_at_s(seg.sequence), s.opened_s) + rng.uniform(
                        0.05, 0.5
                    )
                    # Forged: nothing is sent, an ok receipt and a claim are made up.
                    sent_s = s.deliver_receipt(t + rng.uniform(0.5, 5))  # in order, as a page
                    self._receipt(node_id, s, seg.sequence, seg.size, "ok", sent_s, end_s)
                    self._claim(node, s, seg.size, t, end_s)
                    self.books[node_id].report.fabricated_plausible += seg.size

    def _segments_for(self, s: Session, start_s: float, end_s: float) -> list:
        """The segments a session fetches in the interval: from the live edge (a few behind
        when it just opened) to the interval's end or its own."""
        stream, seg_s = s.stream, self.cfg.segment_s
        first_s = start_s if s.opened_s < start_s else s.opened_s - LIVE_START_SEGMENTS * seg_s
        last_s = min(end_s, s.ends_s)
        k = max(0, math.ceil((first_s - stream.offset_s) / seg_s - 1))
        out = []
        while stream.attested_at_s(k) < last_s:
            if (seg := stream.segments.get(k)) is not None and stream.attested_at_s(k) >= first_s:
                out.append(seg)
            k += 1
        return out

    def _fetch(self, s: Session, seq: int, size: int, t: float, end_s: float) -> None:
        rng, res = self.rng, self.results
        tried = 0
        for node_id in s.sources:
            if node_id in s.avoid or tried >= MAX_FETCH_SOURCES:
                continue
            tried += 1
            node = self.nodes[node_id]
            outcome = self._request(s, node, seq, size, t, end_s)
            if s.is_probe:
                book = self.books[node_id]
                at = EPOCH + timedelta(seconds=t)
                judged = outcome
                if outcome in ("error", "stall"):
                    # As verification/prober.py does: an error or a timeout is asked of the same
                    # node once more, a second later; only that answer is judged.
                    t += 1.0
                    judged = self._request(s, node, seq, size, t, end_s, retry=True)
                book.probe_sessions.setdefault(s.session_id, (at, []))[1].append(judged)
                book.report.probes_judged += 1
                book.report.probes_failed += judged != "ok"
                if judged == "ok" and outcome != "ok":
                    node.delivered += size
                    res.node_bytes += size
                    # ...and then moves on from it as a viewer's page would have: a probe
                    # session must keep a viewer's path through routing (and so its age mix at
                    # every node), or a node could tell probes by their age.
                    s.avoid.add(node_id)
                    s.failed = True
                    return
            if outcome == "ok":
                node.delivered += size
                res.node_bytes += size
                return
            s.avoid.add(node_id)
            s.failed = True
            t += rng.uniform(0.2, 1.0)
        res.origin_bytes += size

    def _request(
        self,
        s: Session,
        node: Node,
        seq: int,
        size: int,
        t: float,
        end_s: float,
        retry: bool = False,
    ) -> str:
        """One request of ``s`` to ``node``: what the node sends, claims and is receipted.
        ``guesses`` counts fetches, not the prober's retry of one (a tell of its own, which
        verification/prober.py's docstring names)."""
        rng, res = self.rng, self.results
        st = node.strategy
        age = t - s.opened_s
        key = (node.node_id, s.session_id)
        self.requests[key] += 1
        intent = st.intent(age, self.requests[key], rng)
        if hasattr(st, "guesses_probe") and not retry:
            res.guesses[(s.is_probe, st.guesses_probe(age, self.requests[key]))] += 1
        outcome = self._attempt(node, intent)
        self._claim(node, s, st.claim(intent, outcome, size, rng), t, end_s)
        got = (
            size
            if outcome in ("ok", "mismatch")
            else (rng.randrange(size) if outcome == "stall" else 0)
        )
        # The page sends its batch every 5 s, one batch at a time and in fetch order: the delay
        # varies, but a session's receipts arrive in order (``Session.deliver_receipt``).
        sent_s = s.deliver_receipt(t + rng.uniform(0.5, 5.0))
        # A viewer's batch can be lost on the way; the prober records its own receipts in the
        # coordinator's database (verification/prober.py), so a probe's never are.
        if s.is_probe or not s.batch_lost(sent_s, rng, self.cfg.receipt_batch_loss):
            self._receipt(node.node_id, s, seq, got, outcome, sent_s, end_s)
        if s.is_probe:
            # Every fetch of a probe session makes it look like any viewer's (its receipts
            # count too); the prober's judgement is ``_fetch``'s.
            res.probe_fetches += 1
        else:
            book = self.books[node.node_id]
            book.outcomes[{"ok": 0, "mismatch": 2}.get(outcome, 1)] += 1
            book.report.viewer_fetches += 1
            book.report.viewer_failed += outcome != "ok"
        return outcome

    def _attempt(self, node: Node, intent: str) -> str:
        """What the viewer gets: the node's intent, unless the network loses it."""
        rng = self.rng
        if intent == "ok" and rng.random() < self.cfg.loss + node.overload_failure():
            return "stall" if rng.random() < 0.5 else "error"
        return intent

    def _claim(self, node: Node, s: Session, nbytes: int, t: float, end_s: float) -> None:
        if nbytes <= 0:
            return
        report_s = self.cfg.report_interval_s
        arrives = (int(t // report_s) + 1) * report_s + 0.5
        book = self.books[node.node_id]
        line = (book.claims if arrives < end_s else book.next_claims).setdefault(
            s.session_id, [0, 0]
        )
        line[0] += nbytes
        line[1] += 1

    def _receipt(
        self, node_id: str, s: Session, seq: int, nbytes: int, outcome: str, t: float, end_s: float
    ) -> None:
        book = self.books[node_id]
        r = ReceiptFact(s.session_id, seq, nbytes, outcome, EPOCH + timedelta(seconds=t))
        (book.receipts if t < end_s else book.next_receipts).append(r)

    def _ghosts(self, start_s: float, end_s: float) -> None:
        """Claims a ghost-claiming node keeps making for sessions that left it."""
        for node_id, gone in self.ended_with.items():
            node = self.nodes[node_id]
            keep = [(s, until) for s, until in gone if until > start_s]
            self.ended_with[node_id] = keep
            for s, _ in keep:
                for seg in s.stream.recent:
                    self._claim(node, s, seg.size, s.stream.attested_at_s(seg.sequence), end_s)

    # --- the coordinator's side -------------------------------------------------------------

    def _session_fact(self, node: Node, sid: str) -> SessionFact | None:
        s = self.registry.get(sid)
        if s is None:
            return None
        return SessionFact(sid, s.opened_at(), s.network == node.network, int(s.polls), s.is_probe)

    def _reconcile(self, start_s: float, end_s: float) -> None:
        start, end = EPOCH + timedelta(seconds=start_s), EPOCH + timedelta(seconds=end_s)
        econ = self.econ
        windows: dict[str, SegmentWindow] = {}  # per stream: the same for all its nodes
        for node_id, node in self.nodes.items():
            book = self.books[node_id]
            rep = book.report
            # The service's rule (trust_service.py): one observation per probe session.
            obs = [
                o
                for at, outcomes in book.probe_sessions.values()
                if (o := trust.probe_session_observation(outcomes, at, self.tp)) is not None
            ]
            if book.claims or book.receipts:
                sids = book.claims.keys() | {r.session_id for r in book.receipts}
                at = end - timedelta(seconds=1)
                claims = [
                    ClaimFact(sid, nbytes, segments, at)
                    for sid, (nbytes, segments) in book.claims.items()
                    for _ in range(node.strategy.report_copies)  # a replay under a new id
                ]
                facts = {sid: f for sid in sids if (f := self._session_fact(node, sid)) is not None}
                # The same summaries the coordinator's SQL computes (reconcile_service).
                receipts = summarize_receipts(
                    book.receipts, node.stream.segments, book.before, self.rp
                )
                stream_id = node.stream.stream_id
                window = windows.get(stream_id)
                if window is None:
                    window = windows[stream_id] = segment_window(
                        node.stream.segments, start, end, self.rp
                    )
                verdict = reconcile(
                    IntervalInput(
                        node_id,
                        node.stream.stream_id,
                        start,
                        end,
                        node.stream.segments,
                        facts,
                        summarize_claims(claims),
                        receipts,
                        book.before,
                        self.cfg.report_interval_s,
                        window,
                    ),
                    self.rp,
                )
                book.before = dict(verdict.after)
                standing = trust.standing(book.state, end, self.tp, econ.vetting_pay_bps)
                gross = apply_bps(
                    earned_micro_usd(
                        rep.paid, rep.paid + verdict.paid_bytes, econ.rate_micro_usd_per_gb
                    ),
                    standing.pay_bps,
                )
                rep.friend_micro_usd += split(gross, econ.platform_fee_bps)[0]
                rep.paid += verdict.paid_bytes
                rep.claimed += verdict.claimed_bytes
                if (
                    verdict.discrepancies
                    and rep.first_discrepancy_s is None
                    and any(d.kind not in ("duplicate_receipt",) for d in verdict.discrepancies)
                ):
                    rep.first_discrepancy_s = end_s
                if (o := trust.verdict_observation(end, verdict, self.tp)) is not None:
                    obs.append(o)
            ok, failed, mismatched = book.outcomes
            if (o := trust.viewer_observation(end, ok, failed, mismatched, self.tp)) is not None:
                obs.append(o)
            book.state = (
                trust.observe(book.state, obs, self.tp)
                if obs
                else trust.review(book.state, end, self.tp)
            )
            standing = trust.standing(book.state, end, self.tp, econ.vetting_pay_bps)
            rep.min_score = min(rep.min_score, standing.score)
            rep.final_score, rep.level = standing.score, standing.level
            if standing.level in ("warned", "penalised") and rep.warned_at_s is None:
                rep.warned_at_s = end_s
            if standing.level == "penalised" and rep.penalised_at_s is None:
                rep.penalised_at_s = end_s
            self.signals[node_id] = NodeSignals(
                flagged=mismatched > 0, trust=standing.routing_weight
            )
            rep.delivered = node.delivered
            book.claims, book.next_claims = book.next_claims, {}
            book.receipts, book.next_receipts = book.next_receipts, []
            book.outcomes = [0, 0, 0]
            book.probe_sessions = {}

    def _prune(self, now_s: float) -> None:
        keep_s = self.rp.max_receipt_age_s + 2 * self.cfg.interval_s
        alive = []
        for s in self.sessions:
            if s.ends_s > now_s:
                alive.append(s)
                continue
            for node_id in s.sources[:1]:
                if self.nodes[node_id].strategy.ghost_s:
                    self.ended_with[node_id].append(
                        (s, s.ends_s + self.nodes[node_id].strategy.ghost_s)
                    )
        self.sessions = alive
        if int(now_s) % 600 == 0:  # a coordinator keeps totals longer; memory is the point here
            horizon = (
                now_s - keep_s - max((st.strategy.ghost_s for st in self.nodes.values()), default=0)
            )
            for sid in [k for k, s in self.registry.items() if s.ends_s < horizon]:
                del self.registry[sid]
            live = set(self.registry)
            for book in self.books.values():
                book.before = {k: v for k, v in book.before.items() if k in live}
            self.requests = defaultdict(
                int, {k: v for k, v in self.requests.items() if k[1] in live}
            )

    def step(self, index: int) -> None:
        start_s = index * self.cfg.interval_s
        end_s = start_s + self.cfg.interval_s
        for stream in self.streams:
            stream.recent = stream.advance(end_s, self.rp.max_receipt_age_s + self.cfg.interval_s)
        self._arrivals(start_s)
        self._fetch_all(start_s, end_s)
        self._ghosts(start_s, end_s)
        self._reconcile(start_s, end_s)
        for s in self.sessions:
            first = self.signals.get(s.sources[0]) if s.sources else None
            if (
                s.failed
                or not s.sources
                or (first is not None and (first.flagged or not first.trust))
            ):
                self._route(s)
            s.avoid.clear()  # a session avoids a failed node for 30 s: about one interval
        self._prune(end_s)

    def run(self, progress: Callable[[int], None] | None = None) -> Results:
        intervals = int(self.cfg.hours * 3600 // self.cfg.interval_s)
        for i in range(intervals):
            self.step(i)
            if progress:
                progress(i)
        return self.results


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a rounded normal for large ones."""
    if mean > 50:
        return max(0, round(rng.gauss(mean, mean**0.5)))
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def simulate(
    cfg: SimConfig, strategy_for: Callable[[int], Strategy] | None = None, **kw
) -> Results:
    return Simulation(cfg, strategy_for, **kw).run()
