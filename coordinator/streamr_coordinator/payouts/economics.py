"""What a delivered byte is worth, in integer micro-USD. Pure: no database, no framework.

Money is never a float here. Earnings follow *cumulative* paid bytes per (node, stream):
an interval earns ``floor(after * rate / 1e9) - floor(before * rate / 1e9)``, so however the
bytes are split into intervals, their sum is ``floor(total * rate / 1e9)`` and no fraction of
a micro-dollar is ever lost at a boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

MICRO_USD_PER_USD = 1_000_000
BYTES_PER_GB = 1_000_000_000  # the decimal gigabyte, as CDNs bill it
FULL_BPS = 10_000  # basis points: 10_000 = 100 %

# What an operator may set: (lowest, highest, what the bounds mean). Beyond these a value is a
# typo, not a policy (a rate of $10 per GB is already 100 times a CDN's price).
LIMITS: dict[str, tuple[int, int, str]] = {
    "rate_micro_usd_per_gb": (0, 10_000_000, "micro-USD per GB, at most 10 USD per GB"),
    "platform_fee_bps": (0, FULL_BPS, "basis points of the gross, 0 to 10000 (100 %)"),
    "minimum_payout_micro_usd": (0, 1_000_000_000, "micro-USD, at most 1000 USD"),
    "vetting_pay_bps": (0, FULL_BPS, "basis points of full pay, 0 to 10000 (100 %)"),
    "payout_period_s": (60, 366 * 86_400, "seconds, from 60 to 366 days"),
}


@dataclass(frozen=True)
class Economics:
    """The operator's terms. Defaults: 0.05 USD per GB, 10 % fee, 1 USD minimum payout,
    half pay while vetting, one payout cycle a day."""

    rate_micro_usd_per_gb: int = 50_000
    platform_fee_bps: int = 1_000
    minimum_payout_micro_usd: int = 1_000_000
    vetting_pay_bps: int = 5_000
    payout_period_s: int = 86_400

    def problems(self) -> list[str]:
        """Every value outside its bounds, each in words that say what is allowed."""
        found = []
        for f in fields(self):
            value = getattr(self, f.name)
            low, high, meaning = LIMITS[f.name]
            if isinstance(value, bool) or not isinstance(value, int):
                found.append(f"{f.name} must be a whole number ({meaning})")
            elif not low <= value <= high:
                found.append(f"{f.name} is {value}; it must be from {low} to {high} ({meaning})")
        return found


def earned_micro_usd(paid_bytes_cum_before: int, paid_bytes_cum_after: int, rate: int) -> int:
    """What the bytes between two cumulative totals earn at ``rate`` micro-USD per GB."""
    if not 0 <= paid_bytes_cum_before <= paid_bytes_cum_after:
        raise ValueError("cumulative paid bytes must be non-negative and never decrease")
    if rate < 0:
        raise ValueError("the rate must not be negative")
    return (paid_bytes_cum_after * rate) // BYTES_PER_GB - (
        paid_bytes_cum_before * rate
    ) // BYTES_PER_GB


def apply_bps(amount: int, bps: int) -> int:
    """``amount * bps / 10000``, rounded down (what is not owed is simply not owed)."""
    if not 0 <= bps <= FULL_BPS:
        raise ValueError("basis points must be from 0 to 10000")
    return amount * bps // FULL_BPS


def split(gross: int, fee_bps: int) -> tuple[int, int]:
    """(friend, platform) shares of ``gross``; they always add up to ``gross``. The fee is
    rounded down, so a remainder goes to the friend who delivered the bytes."""
    if gross < 0:
        raise ValueError("gross must not be negative")
    fee = apply_bps(gross, fee_bps)
    return gross - fee, fee


@dataclass(frozen=True)
class AccrualQuote:
    """What one reconciled interval is worth, and how much of it the budget covers."""

    earned_micro_usd: int  # at full pay
    owed_micro_usd: int  # after the node's pay factor
    gross_micro_usd: int  # what the budget pays: owed, capped by the budget's balance
    friend_micro_usd: int
    fee_micro_usd: int
    unfunded_micro_usd: int  # owed but not covered by the budget: not owed after all
    unfunded_bytes: int


def quote_accrual(
    *,
    paid_bytes: int,
    cum_bytes_before: int,
    rate_micro_usd_per_gb: int,
    pay_bps: int,
    fee_bps: int,
    budget_micro_usd: int,
) -> AccrualQuote:
    """Price an interval: earn by cumulative bytes, scale by pay factor, cap by the budget,
    split into the friend's share and the platform fee."""
    if paid_bytes < 0 or budget_micro_usd < 0:
        raise ValueError("paid bytes and the budget must not be negative")
    earned = earned_micro_usd(
        cum_bytes_before, cum_bytes_before + paid_bytes, rate_micro_usd_per_gb
    )
    owed = apply_bps(earned, pay_bps)
    gross = min(owed, budget_micro_usd)
    friend, fee = split(gross, fee_bps)
    unfunded = owed - gross
    # The bytes the missing money would have paid for, in proportion (rounded in the
    # streamer's favour only in what is reported, never in what is paid).
    unfunded_bytes = 0 if owed == 0 else paid_bytes - paid_bytes * gross // owed
    return AccrualQuote(earned, owed, gross, friend, fee, unfunded, unfunded_bytes)


def payout_amount(balance_micro_usd: int, minimum_micro_usd: int) -> int:
    """The whole balance once it reaches the minimum (and is positive), else 0: it carries over."""
    if balance_micro_usd > 0 and balance_micro_usd >= minimum_micro_usd:
        return balance_micro_usd
    return 0


def period_bounds(now: datetime, period_s: int) -> tuple[datetime, datetime]:
    """The latest payout period that has ended by ``now``, aligned to the Unix epoch."""
    if period_s <= 0:
        raise ValueError("the payout period must be positive")
    seconds = int(now.timestamp())
    end = seconds - seconds % period_s
    return (
        datetime.fromtimestamp(end - period_s, UTC),
        datetime.fromtimestamp(end, UTC),
    )


def format_usd(micro_usd: int) -> str:
    """Exact decimal dollars from integer micro-USD: 1_234_567 -> '1.234567'. Never a float."""
    sign = "-" if micro_usd < 0 else ""
    whole, fraction = divmod(abs(micro_usd), MICRO_USD_PER_USD)
    return f"{sign}{whole}.{fraction:06d}"
