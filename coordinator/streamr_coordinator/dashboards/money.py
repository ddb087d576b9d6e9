"""Money on the dashboards: exact integers in millionths of a US dollar, never floats.

A CDN bills delivered bytes by the (decimal) gigabyte; what friend nodes delivered is what the
streamer did not have to buy. Amounts round down, so the dashboards never claim a saving that
did not happen.
"""

from __future__ import annotations

BYTES_PER_GB = 1_000_000_000
MICRO_PER_USD = 1_000_000


def saved_micro_usd(delivered_bytes: int, price_micro_usd_per_gb: int) -> int:
    """What ``delivered_bytes`` would have cost at a CDN, in micro-USD, rounded down."""
    if delivered_bytes < 0 or price_micro_usd_per_gb < 0:
        raise ValueError("bytes and prices are never negative")
    return delivered_bytes * price_micro_usd_per_gb // BYTES_PER_GB


def format_usd(micro_usd: int) -> str:
    """``1234567`` -> ``"$1.234567"``, ``20000`` -> ``"$0.02"``: at least cents, no float."""
    sign = "-" if micro_usd < 0 else ""
    dollars, micro = divmod(abs(micro_usd), MICRO_PER_USD)
    fraction = f"{micro:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}${dollars:,}.{fraction}"
