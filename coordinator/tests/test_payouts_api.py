"""Payouts on SQLite and PostgreSQL: economics set by operators, stream budgets, accrual of
reconciled intervals, payout cycles (concurrent and interrupted ones included), statements and
CSV. The coordinator here runs no background jobs, so each test decides when jobs run."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, StatementError

from streamr_coordinator.bulk import insert_rows
from streamr_coordinator.main import create_app
from streamr_coordinator.payouts import books, ledger
from streamr_coordinator.payouts.accrual import accrue_pending, full_pay
from streamr_coordinator.payouts.budgets import BudgetLevel, budget_state
from streamr_coordinator.payouts.cycle import run_cycle, settle_node
from streamr_coordinator.payouts.economics import BYTES_PER_GB, format_usd, period_bounds
from streamr_coordinator.payouts.ledger import AccountKind, TransactionKind
from streamr_coordinator.payouts.models import (
    Accrual,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Payout,
)
from streamr_coordinator.verification.models import Reconciliation

from .conftest import Account, Api, Node, assert_error, make_settings

DEFAULTS = {
    "rate_micro_usd_per_gb": 50_000,
    "platform_fee_bps": 1_000,
    "minimum_payout_micro_usd": 1_000_000,
    "vetting_pay_bps": 5_000,
    "payout_period_s": 86_400,
}


@pytest.fixture(scope="module")
def pay_client(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory
) -> Iterator[TestClient]:
    url = None
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    settings = make_settings(tmp_path_factory.mktemp("payouts"), url, run_background_jobs=False)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def admin(pay_client: TestClient) -> Account:
    return Api(pay_client).make_admin()


@dataclass
class Setup:
    api: Api
    owner: Account
    friend: Account
    stream: str
    stream_id: str
    node: Node

    def run(self, fn: Any) -> Any:
        return self.api.client.portal.call(fn)


def make_setup(client: TestClient) -> Setup:
    api = Api(client)
    owner, friend = api.register(), api.register("friend")
    name, _ = api.create_stream(owner)
    stream_id = client.get(f"/api/v1/streams/{name}", headers=owner.headers).json()["id"]
    node = api.register_node(friend, api.invite(owner, name), name="friend's node")
    return Setup(api, owner, friend, name, stream_id, node)


@pytest.fixture
def setup(pay_client: TestClient) -> Setup:
    return make_setup(pay_client)


def ctx(s: Setup) -> Any:
    return s.api.client.app.state.ctx


def fund(s: Setup, amount: int, **extra: Any) -> dict[str, Any]:
    response = s.api.client.post(
        f"/api/v1/streams/{s.stream}/budget",
        json={"amount_micro_usd": amount, **extra},
        headers=s.owner.headers,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


_start = datetime(2026, 1, 1, tzinfo=UTC)


def add_intervals(s: Setup, node_id: str, sizes: list[int]) -> list[int]:
    """Reconciled intervals as verification writes them, one minute each."""

    async def insert() -> list[int]:
        async with ctx(s).sessions() as session:
            last = await session.scalar(
                select(func.max(Reconciliation.interval_start)).where(
                    Reconciliation.node_id == node_id
                )
            )
            begin = last + timedelta(minutes=1) if last else _start
            rows = [
                Reconciliation(
                    node_id=node_id,
                    stream_id=s.stream_id,
                    interval_start=begin + timedelta(minutes=i),
                    interval_end=begin + timedelta(minutes=i + 1),
                    claimed_bytes=size,
                    receipted_bytes=size,
                    plausible_bytes=size,
                    paid_bytes=size,
                    outcome="agree" if size else "idle",
                    excluded_sessions=0,
                )
                for i, size in enumerate(sizes)
            ]
            session.add_all(rows)
            await session.commit()
            return [r.id for r in rows]

    return s.run(insert)


def accrue(s: Setup, pay_factors: Any = full_pay) -> Any:
    async def go() -> Any:
        return await accrue_pending(ctx(s).sessions, ctx(s).settings, pay_factors=pay_factors)

    return s.run(go)


def balance(s: Setup, key: str) -> int:
    async def go() -> int:
        async with ctx(s).sessions() as session:
            return await books.balance_of(session, key)

    return s.run(go)


def accruals_of(s: Setup, node_id: str) -> list[Accrual]:
    async def go() -> list[Accrual]:
        async with ctx(s).sessions() as session:
            return list(
                await session.scalars(
                    select(Accrual).where(Accrual.node_id == node_id).order_by(Accrual.seq)
                )
            )

    return s.run(go)


def ledger_sum(s: Setup) -> int:
    async def go() -> int:
        async with ctx(s).sessions() as session:
            return int(await session.scalar(select(func.sum(LedgerAccount.balance))) or 0)

    return s.run(go)


EARN = lambda node_id: ledger.account_key(AccountKind.NODE_EARNINGS, node_id)  # noqa: E731
BUDGET = lambda stream_id: ledger.account_key(AccountKind.STREAM_BUDGET, stream_id)  # noqa: E731


# --- economics -------------------------------------------------------------------------------


def test_operators_set_economics_in_versions(pay_client: TestClient, admin: Account):
    api = Api(pay_client)
    friend = api.register("friend")
    assert_error(pay_client.get("/api/v1/admin/economics", headers=friend.headers), 403)
    view = pay_client.get("/api/v1/admin/economics", headers=admin.headers).json()
    for name, value in DEFAULTS.items():
        assert view["current"][name] == value

    for body, field in (
        ({"platform_fee_bps": -1}, "platform_fee_bps"),
        ({"rate_micro_usd_per_gb": 10**12}, "rate_micro_usd_per_gb"),
        ({"payout_period_s": 0}, "payout_period_s"),
        ({"vetting_pay_bps": 1.5}, "vetting_pay_bps"),
    ):
        response = pay_client.post("/api/v1/admin/economics", json=body, headers=admin.headers)
        assert field in assert_error(response, 422)["message"]
    nothing = pay_client.post("/api/v1/admin/economics", json={}, headers=admin.headers)
    assert "Nothing to change" in assert_error(nothing, 422)["message"]

    try:
        changed = pay_client.post(
            "/api/v1/admin/economics",
            json={"rate_micro_usd_per_gb": 80_000, "note": "test"},
            headers=admin.headers,
        )
        assert changed.status_code == 201, changed.text
        body = changed.json()
        assert body["rate_micro_usd_per_gb"] == 80_000 and body["rate_usd_per_gb"] == "0.080000"
        assert body["platform_fee_bps"] == view["current"]["platform_fee_bps"]
        assert body["set_by"] == f"account:{admin.id}" and body["version"] is not None

        s = make_setup(pay_client)
        fund(s, 10_000_000)
        add_intervals(s, s.node.id, [BYTES_PER_GB])
        accrue(s)
        (line,) = accruals_of(s, s.node.id)
        assert line.economics_version == body["version"] and line.rate_micro_usd_per_gb == 80_000
        assert line.gross_micro_usd == 80_000
        history = pay_client.get("/api/v1/admin/economics", headers=admin.headers).json()
        assert history["history"][0]["version"] == body["version"]
    finally:
        restored = pay_client.post("/api/v1/admin/economics", json=DEFAULTS, headers=admin.headers)
        assert restored.status_code == 201, restored.text


# --- budgets ---------------------------------------------------------------------------------


def test_streamers_fund_budgets_once_per_funding_id(setup: Setup):
    s, client = setup, setup.api.client
    for amount in (0, -5, 1.5, "ten"):
        response = client.post(
            f"/api/v1/streams/{s.stream}/budget",
            json={"amount_micro_usd": amount},
            headers=s.owner.headers,
        )
        assert "amount_micro_usd" in assert_error(response, 422)["message"]
    first = fund(s, 2_000_000, funding_id="invoice-7")
    again = client.post(
        f"/api/v1/streams/{s.stream}/budget",
        json={"amount_micro_usd": 2_000_000, "funding_id": "invoice-7"},
        headers=s.owner.headers,
    )
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert first["duplicate"] is False and first["budget"]["balance_micro_usd"] == 2_000_000
    assert first["budget"]["state"] == "ok" and first["budget"]["balance_usd"] == "2.000000"

    for who in (s.owner, s.friend):  # the friend has a node in the stream: they are told
        seen = client.get(f"/api/v1/streams/{s.stream}/budget", headers=who.headers)
        assert seen.status_code == 200 and seen.json()["funded_micro_usd"] == 2_000_000
    stranger = s.api.register()
    assert_error(client.get(f"/api/v1/streams/{s.stream}/budget", headers=stranger.headers), 403)
    assert_error(
        client.post(
            f"/api/v1/streams/{s.stream}/budget",
            json={"amount_micro_usd": 5},
            headers=s.friend.headers,
        ),
        403,
    )


def test_a_stream_without_funds_is_exhausted_and_says_why(setup: Setup):
    async def go() -> Any:
        async with ctx(setup).sessions() as session:
            return await budget_state(session, setup.stream_id)

    state = setup.run(go)
    assert state.state is BudgetLevel.EXHAUSTED and "no budget yet" in state.message


# --- accrual ---------------------------------------------------------------------------------


def test_accrual_is_exact_traceable_and_idempotent(setup: Setup):
    s = setup
    fund(s, 10_000_000)
    thirds = [333_333_333, 0, 333_333_333, 333_333_334]  # 1 GB in all, with an idle minute
    ids = add_intervals(s, s.node.id, thirds)
    run = accrue(s)
    assert run.intervals >= 4
    lines = accruals_of(s, s.node.id)
    assert [a.reconciliation_id for a in lines] == ids
    assert sum(a.gross_micro_usd for a in lines) == 50_000  # floor over the total, not per line
    # The fee is rounded down per interval: a fraction of a micro-dollar goes to the friend.
    assert [a.fee_micro_usd for a in lines] == [a.gross_micro_usd // 10 for a in lines]
    assert sum(a.friend_micro_usd + a.fee_micro_usd for a in lines) == 50_000
    friend_total = sum(a.friend_micro_usd for a in lines)
    assert friend_total == 45_002
    assert [a.cum_bytes_before for a in lines] == [0, 333_333_333, 333_333_333, 666_666_666]
    assert balance(s, EARN(s.node.id)) == friend_total
    assert balance(s, BUDGET(s.stream_id)) == 10_000_000 - 50_000

    async def trace() -> list[tuple[int, str, int]]:
        """Each accrual line to the ledger transaction that moved its money, with the sum of
        that transaction's entries."""
        async with ctx(s).sessions() as session:
            total = (
                select(LedgerEntry.transaction_id, func.sum(LedgerEntry.amount).label("total"))
                .group_by(LedgerEntry.transaction_id)
                .subquery()
            )
            rows = await session.execute(
                select(Accrual.reconciliation_id, LedgerTransaction.key, total.c.total)
                .join(LedgerTransaction, LedgerTransaction.id == Accrual.transaction_id)
                .join(total, total.c.transaction_id == LedgerTransaction.id)
                .where(Accrual.reconciliation_id.in_(ids))
            )
            return [(r, k, int(t)) for r, k, t in rows]

    traced = s.run(trace)
    # One ledger transaction per (node, stream) and run pays every interval that earned; the
    # idle minute has its line but no money and no transaction.
    key = f"accrue:{s.node.id}:{s.stream_id}:{ids[0]}-{ids[-1]}"
    assert sorted(traced) == [(i, key, 0) for i in ids if i != ids[1]]
    assert lines[1].transaction_id is None

    again = accrue(s)
    assert again.intervals == 0
    assert balance(s, EARN(s.node.id)) == friend_total
    assert ledger_sum(s) == 0


def test_an_exhausted_budget_pays_what_is_left_and_no_more(setup: Setup):
    s = setup
    fund(s, 30_000)
    add_intervals(s, s.node.id, [BYTES_PER_GB, BYTES_PER_GB])
    accrue(s)
    first, second = accruals_of(s, s.node.id)
    assert (first.gross_micro_usd, first.unfunded_micro_usd) == (30_000, 20_000)
    assert first.unfunded_bytes == 400_000_000
    assert (second.gross_micro_usd, second.unfunded_micro_usd) == (0, 50_000)
    assert second.unfunded_bytes == BYTES_PER_GB
    assert balance(s, BUDGET(s.stream_id)) == 0
    assert balance(s, EARN(s.node.id)) == 27_000

    budget = s.api.client.get(f"/api/v1/streams/{s.stream}/budget", headers=s.owner.headers)
    assert budget.json()["state"] == "exhausted"
    assert budget.json()["unfunded_bytes"] == BYTES_PER_GB + 400_000_000
    assert budget.json()["unfunded_micro_usd"] == 70_000
    assert "used up" in budget.json()["message"]

    fund(s, 1_000_000)  # money again: paid from now on, the unfunded past stays unpaid
    add_intervals(s, s.node.id, [BYTES_PER_GB])
    accrue(s)
    assert accruals_of(s, s.node.id)[-1].gross_micro_usd == 50_000
    state = s.api.client.get(f"/api/v1/streams/{s.stream}/budget", headers=s.owner.headers)
    assert state.json()["state"] == "ok"


def test_a_budget_shared_by_nodes_is_capped_interval_by_interval_in_time_order(setup: Setup):
    """Two nodes, one run, one ledger transaction each: the budget pays intervals in time
    order until it is gone; each line says what it got and what was unfunded."""
    s = setup
    other = s.api.register_node(s.friend, s.api.invite(s.owner, s.stream), name="other")
    fund(s, 120_000)
    add_intervals(s, s.node.id, [BYTES_PER_GB, BYTES_PER_GB])  # minutes 0 and 1
    add_intervals(s, other.id, [BYTES_PER_GB, BYTES_PER_GB])  # minutes 0 and 1 too
    run = accrue(s)
    assert run.intervals >= 4 and s.stream_id in run.exhausted_streams
    mine, theirs = accruals_of(s, s.node.id), accruals_of(s, other.id)
    # Minute 0 of both is paid in full (100_000), minute 1 gets the 20_000 left, in id order.
    assert [a.gross_micro_usd for a in mine] == [50_000, 20_000]
    assert [a.gross_micro_usd for a in theirs] == [50_000, 0]
    assert [a.unfunded_micro_usd for a in mine + theirs] == [0, 30_000, 0, 50_000]
    assert balance(s, BUDGET(s.stream_id)) == 0
    for node_id, lines in ((s.node.id, mine), (other.id, theirs)):
        assert balance(s, EARN(node_id)) == sum(a.friend_micro_usd for a in lines)
        assert len({a.transaction_id for a in lines if a.owed_micro_usd}) == 1
    assert ledger_sum(s) == 0


def test_two_accrual_runs_at_once_accrue_each_interval_once(setup: Setup):
    s = setup
    fund(s, 10_000_000)
    ids = add_intervals(s, s.node.id, [BYTES_PER_GB, 2 * BYTES_PER_GB, 3 * BYTES_PER_GB])

    async def twice() -> list[Any]:
        async def one() -> Any:
            return await accrue_pending(ctx(s).sessions, ctx(s).settings, pay_factors=full_pay)

        return list(await asyncio.gather(one(), one()))

    runs = s.run(twice)
    assert sum(r.intervals for r in runs) == 3  # one run did it all, the other nothing
    lines = accruals_of(s, s.node.id)
    assert [a.reconciliation_id for a in lines] == ids and [a.seq for a in lines] == [1, 2, 3]
    assert sum(a.gross_micro_usd for a in lines) == 300_000
    assert balance(s, EARN(s.node.id)) == 270_000
    assert balance(s, BUDGET(s.stream_id)) == 10_000_000 - 300_000
    assert accrue(s).intervals == 0
    assert ledger_sum(s) == 0


def test_vetting_nodes_are_paid_the_vetting_share_by_default(setup: Setup):
    """The default pay factor is verification's standing: a new node is vetting."""
    s = setup
    fund(s, 1_000_000)
    add_intervals(s, s.node.id, [2 * BYTES_PER_GB])
    accrue(s, pay_factors=None)
    (line,) = accruals_of(s, s.node.id)
    assert line.pay_bps == DEFAULTS["vetting_pay_bps"]
    assert (line.earned_micro_usd, line.owed_micro_usd) == (100_000, 50_000)
    assert line.unfunded_micro_usd == 0  # not owed is not unfunded


def test_concurrent_posts_of_one_key_post_once(setup: Setup):
    s = setup
    fund(s, 1_000_000)

    async def post_twice() -> list[bool]:
        async def one() -> bool:
            async with ctx(s).sessions() as session:
                posted = await books.post(
                    session,
                    key=f"test:{s.stream_id}",
                    kind=TransactionKind.ACCRUAL,
                    accounts=[
                        books.stream_budget(s.stream_id),
                        books.node_earnings(s.node.id, s.stream_id, s.friend.id),
                        books.platform_account(AccountKind.PLATFORM_FEES),
                    ],
                    build=lambda _b: ledger.accrual(
                        f"test:{s.stream_id}", s.stream_id, s.node.id, 900, 100
                    ),
                    actor="test",
                )
                await session.commit()
                return posted.created

        return list(await asyncio.gather(one(), one()))

    assert sorted(s.run(post_twice)) == [False, True]
    assert balance(s, BUDGET(s.stream_id)) == 1_000_000 - 1_000
    assert balance(s, EARN(s.node.id)) == 900
    assert ledger_sum(s) == 0


def test_bulk_inserts_keep_order_constraints_and_the_transaction(setup: Setup):
    """``bulk.insert_rows`` (COPY on PostgreSQL, executemany on SQLite) writes rows in their
    order inside the caller's transaction; a violated constraint is the usual IntegrityError
    and rolls back with everything else; a naive datetime is refused before anything is sent."""
    s = setup
    key = f"test:bulk:{s.node.id}"
    at = _start + timedelta(days=400)

    def line(reconciliation_id: int, seq: int, tx: int, when: datetime) -> dict[str, Any]:
        return {
            "reconciliation_id": reconciliation_id,
            "node_id": s.node.id,
            "stream_id": s.stream_id,
            "seq": seq,
            "interval_start": when,
            "interval_end": when + timedelta(minutes=1),
            "paid_bytes": 1_000,
            "cum_bytes_before": 0,
            "economics_version": None,
            "rate_micro_usd_per_gb": 1,
            "platform_fee_bps": 0,
            "pay_bps": 10_000,
            "earned_micro_usd": 0,
            "owed_micro_usd": 0,
            "gross_micro_usd": 0,
            "friend_micro_usd": 0,
            "fee_micro_usd": 0,
            "unfunded_micro_usd": 0,
            "unfunded_bytes": 0,
            "transaction_id": tx,
            "accrued_at": at,
        }

    async def attempt(lines: list[tuple[int, int]], naive: bool = False) -> None:
        async with ctx(s).sessions() as session:
            claimed = await books.claim_keys(
                session,
                [
                    {
                        "key": key,
                        "kind": TransactionKind.ACCRUAL.value,
                        "created_at": at,
                        "reconciliation_id": None,
                        "payout_id": None,
                        "stream_id": s.stream_id,
                        "node_id": s.node.id,
                        "actor": "test",
                        "memo": "",
                    }
                ],
            )
            when = at.replace(tzinfo=None) if naive else at
            rows = [line(r, q, claimed[key], when) for r, q in lines]
            try:
                await insert_rows(session, Accrual.__table__, rows)
            except Exception:
                await session.rollback()
                raise
            await session.commit()

    def transactions() -> int:
        async def go() -> int:
            async with ctx(s).sessions() as session:
                query = select(func.count()).where(LedgerTransaction.key == key)
                return await session.scalar(query) or 0

        return s.run(go)

    with pytest.raises(IntegrityError):  # one reconciliation accrued twice
        s.run(lambda: attempt([(900_001, 1), (900_001, 2)]))
    with pytest.raises((ValueError, StatementError), match="naive datetime"):
        s.run(lambda: attempt([(900_001, 1)], naive=True))
    assert transactions() == 0 and accruals_of(s, s.node.id) == []

    s.run(lambda: attempt([(900_003, 1), (900_002, 2), (900_001, 3)]))
    written = accruals_of(s, s.node.id)
    assert [(a.reconciliation_id, a.seq) for a in written] == [
        (900_003, 1),
        (900_002, 2),
        (900_001, 3),
    ]
    assert [a.id for a in written] == sorted(a.id for a in written)  # ids in the rows' order
    assert all(a.interval_start == at and a.accrued_at == at for a in written)
    assert transactions() == 1


# --- payout cycles ---------------------------------------------------------------------------


def earn(s: Setup, node: Node, gigabytes: int) -> int:
    add_intervals(s, node.id, [gigabytes * BYTES_PER_GB])
    accrue(s)
    return balance(s, EARN(node.id))


def payouts_of(s: Setup, node_id: str) -> list[Payout]:
    async def go() -> list[Payout]:
        async with ctx(s).sessions() as session:
            return list(await session.scalars(select(Payout).where(Payout.node_id == node_id)))

    return s.run(go)


def cycle(s: Setup, now: datetime) -> Any:
    async def go() -> Any:
        return await run_cycle(ctx(s).sessions, ctx(s).settings, now=now)

    return s.run(go)


def test_a_cycle_pays_the_minimum_and_carries_the_rest_over(setup: Setup):
    s = setup
    fund(s, 100_000_000)
    small = s.api.register_node(s.friend, s.api.invite(s.owner, s.stream), name="small")
    big_balance = earn(s, s.node, 30)  # 1.35 USD after the fee: over the minimum
    small_balance = earn(s, small, 1)  # 0.045 USD: under it
    sent_before = balance(s, "payouts_sent")
    now = datetime(2030, 1, 10, 12, tzinfo=UTC)

    cycle(s, now)
    (paid,) = payouts_of(s, s.node.id)
    (carried,) = payouts_of(s, small.id)
    start, end = period_bounds(now, DEFAULTS["payout_period_s"])
    assert (paid.status, paid.amount_micro_usd, paid.period_start) == ("sent", big_balance, start)
    assert (carried.status, carried.amount_micro_usd) == ("carried_over", 0)
    assert carried.balance_micro_usd == small_balance and carried.period_end == end
    assert balance(s, EARN(s.node.id)) == 0
    assert balance(s, EARN(small.id)) == small_balance
    assert balance(s, "payouts_sent") == sent_before + big_balance

    again = cycle(s, now)
    assert again.sent == 0 and again.carried_over == 0
    assert len(payouts_of(s, s.node.id)) == 1 and len(payouts_of(s, small.id)) == 1
    assert balance(s, "payouts_sent") == sent_before + big_balance
    assert ledger_sum(s) == 0


def test_two_workers_running_one_cycle_pay_each_node_once(setup: Setup):
    s = setup
    fund(s, 500_000_000)
    nodes = [s.node] + [
        s.api.register_node(s.friend, s.api.invite(s.owner, s.stream), name=f"n{i}")
        for i in range(4)
    ]
    owed = {n.id: earn(s, n, 25 + i) for i, n in enumerate(nodes)}
    sent_before = balance(s, "payouts_sent")
    now = datetime(2030, 2, 10, 12, tzinfo=UTC)

    async def two_at_once() -> None:
        await asyncio.gather(
            run_cycle(ctx(s).sessions, ctx(s).settings, now=now),
            run_cycle(ctx(s).sessions, ctx(s).settings, now=now),
        )

    s.run(two_at_once)
    for node in nodes:
        (payout,) = payouts_of(s, node.id)
        assert payout.amount_micro_usd == owed[node.id] and payout.status == "sent"
        assert balance(s, EARN(node.id)) == 0
    assert balance(s, "payouts_sent") == sent_before + sum(owed.values())
    assert ledger_sum(s) == 0


def test_a_cycle_killed_midway_completes_without_paying_twice(setup: Setup):
    s = setup
    fund(s, 500_000_000)
    second = s.api.register_node(s.friend, s.api.invite(s.owner, s.stream), name="second")
    owed = {s.node.id: earn(s, s.node, 30), second.id: earn(s, second, 40)}
    sent_before = balance(s, "payouts_sent")
    now = datetime(2030, 3, 10, 12, tzinfo=UTC)
    start, end = period_bounds(now, DEFAULTS["payout_period_s"])

    async def killed_worker() -> None:
        """Settled the first node, then died inside the second node's transaction."""
        async with ctx(s).sessions() as session:
            accounts = {
                a.node_id: a
                for a in await session.scalars(
                    select(LedgerAccount).where(LedgerAccount.node_id.in_(list(owed)))
                )
            }
        economics = ctx(s).settings
        from streamr_coordinator.payouts.terms import from_settings

        async with ctx(s).sessions() as session:
            await settle_node(session, accounts[s.node.id], from_settings(economics), start, end)
        session = ctx(s).sessions()
        await books.lock_balances(session, [accounts[second.id].id])
        await session.execute(
            books.insert_ignoring_duplicates(session, Payout).values(
                node_id=second.id, period_start=start, period_end=end, status="sent",
                amount_micro_usd=owed[second.id], balance_micro_usd=owed[second.id],
                minimum_micro_usd=0, created_at=now,
            )
        )  # fmt: skip
        await session.close()  # the process died: its open transaction is rolled back

    s.run(killed_worker)
    assert len(payouts_of(s, s.node.id)) == 1 and payouts_of(s, second.id) == []

    cycle(s, now)  # the worker again, or another one
    for node_id, amount in owed.items():
        (payout,) = payouts_of(s, node_id)
        assert payout.amount_micro_usd == amount
        assert balance(s, EARN(node_id)) == 0
    assert balance(s, "payouts_sent") == sent_before + sum(owed.values())
    assert ledger_sum(s) == 0


# --- statements ------------------------------------------------------------------------------


def test_statements_show_each_party_their_own_money(setup: Setup, admin: Account):
    s, client = setup, setup.api.client
    other_friend = s.api.register("friend")
    tricky = '=SUM(A1) "quoted", node'
    mine = s.api.register_node(s.friend, s.api.invite(s.owner, s.stream), name=tricky)
    theirs = s.api.register_node(other_friend, s.api.invite(s.owner, s.stream), name="theirs")
    fund(s, 2_000_000, note="paid by bank transfer")
    earn(s, mine, 3)
    earn(s, theirs, 1)

    statement = client.get("/api/v1/statements/friend", headers=s.friend.headers)
    assert statement.status_code == 200, statement.text
    body = statement.json()
    assert {a["node_id"] for a in body["accruals"]} == {mine.id}
    (line,) = body["accruals"]
    assert (line["paid_bytes"], line["gross_micro_usd"]) == (3 * BYTES_PER_GB, 150_000)
    assert (line["fee_micro_usd"], line["net_micro_usd"], line["net_usd"]) == (
        15_000,
        135_000,
        "0.135000",
    )
    assert line["rate_micro_usd_per_gb"] == 50_000 and line["pay_bps"] == 10_000
    rec_id = line["reconciliation_id"]
    assert line["transaction_key"] == f"accrue:{mine.id}:{s.stream_id}:{rec_id}-{rec_id}"
    assert {n["node_id"] for n in body["nodes"]} == {s.node.id, mine.id}
    assert body["totals"]["net_micro_usd"] == 135_000 and body["budgets"] == []

    as_csv = client.get("/api/v1/statements/friend?format=csv", headers=s.friend.headers)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    (row,) = [r for r in rows if r["line"] == "accrual"]
    assert row["node_name"] == "'" + tricky  # quoted, and never a formula
    assert int(row["amount_micro_usd"]) == 135_000 and row["amount_usd"] == "0.135000"
    assert row["amount_usd"] == format_usd(int(row["amount_micro_usd"]))

    other = client.get("/api/v1/statements/friend", headers=other_friend.headers).json()
    assert {a["node_id"] for a in other["accruals"]} == {theirs.id}
    assert_error(
        client.get(
            f"/api/v1/statements/friend?account_id={s.friend.id}", headers=other_friend.headers
        ),
        403,
    )
    assert_error(client.get("/api/v1/statements/streamer", headers=s.friend.headers), 403)

    streamer = client.get("/api/v1/statements/streamer", headers=s.owner.headers).json()
    (budget,) = streamer["budgets"]
    assert budget["stream"] == s.stream and budget["spent_micro_usd"] == 200_000
    assert [f["amount_micro_usd"] for f in streamer["fundings"]] == [2_000_000]
    assert streamer["fundings"][0]["note"] == "paid by bank transfer"
    assert {(x["node_id"], x["gross_micro_usd"]) for x in streamer["spend"]} == {
        (mine.id, 150_000),
        (theirs.id, 50_000),
    }
    streamer_csv = client.get(
        "/api/v1/statements/streamer", params={"format": "csv"}, headers=s.owner.headers
    )
    kinds = [r["line"] for r in csv.DictReader(io.StringIO(streamer_csv.text))]
    assert kinds.count("funding") == 1 and kinds.count("accrual") == 2

    assert_error(client.get("/api/v1/statements/operator", headers=s.owner.headers), 403)
    operator = client.get("/api/v1/statements/operator", headers=admin.headers).json()
    assert operator["totals"]["ledger_sum_micro_usd"] == 0
    assert operator["totals"]["platform_fees_micro_usd"] >= 20_000
    assert s.stream in {b["stream"] for b in operator["budgets"]}
    naive = client.get(
        "/api/v1/statements/operator?since=2026-01-01T00:00:00", headers=admin.headers
    )
    assert "time zone" in assert_error(naive, 400)["message"]


def test_a_node_sees_its_earnings_and_its_streams_budget(setup: Setup):
    s, client = setup, setup.api.client
    fund(s, 100_000)
    earn(s, s.node, 1)
    for headers in (s.node.headers, s.friend.headers, s.owner.headers):
        response = client.get(f"/api/v1/nodes/{s.node.id}/earnings", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["node"]["balance_micro_usd"] == 45_000 and body["node"]["below_minimum"]
        assert body["budget"]["balance_micro_usd"] == 50_000
        assert body["economics"]["rate_micro_usd_per_gb"] == 50_000
        assert body["pay_bps_last"] == 10_000 and len(body["recent"]) == 1
