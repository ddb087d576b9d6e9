"""Money on the dashboards: exact integers in millionths of a US dollar, never floats.

A CDN bills delivered bytes by the (decimal) gigabyte; what friend nodes delivered is what the
streamer did not have to buy. Amounts round down, so the dashboards never claim a saving that
did not happen.
"""

from __future__ import annotations

import re

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


BPS_PER_PERCENT = 100
# ASCII digits only: Python's \d would also take other scripts' digits.
_AMOUNT = re.compile(r"^([0-9]{1,12})(?:\.([0-9]{1,6}))?$")
_PERCENT = re.compile(r"^([0-9]{1,3})(?:\.([0-9]{1,2}))?$")


def bps_percent(bps: int) -> str:
    """Basis points as percent text: ``1000`` -> ``"10%"``, ``1250`` -> ``"12.5%"``."""
    whole, rest = divmod(bps, BPS_PER_PERCENT)
    return f"{whole}%" if rest == 0 else f"{whole}.{rest:02d}".rstrip("0") + "%"


def plain_usd(micro_usd: int) -> str:
    """What a form field shows and takes back: ``50000`` -> ``"0.05"``, no sign or commas."""
    return format_usd(micro_usd).lstrip("$").replace(",", "")


def parse_usd(text: str) -> int:
    """A dollar amount as typed (``"12.50"``, ``"$1,000"``) -> micro-USD, exactly (no float).

    Raises ValueError for anything else: negative, more than six decimals, not a number.
    """
    cleaned = text.strip().removeprefix("$").replace(",", "").strip()
    found = _AMOUNT.fullmatch(cleaned)
    if found is None:
        raise ValueError(f"not a dollar amount: {text[:40]!r}")
    whole, fraction = found.group(1), found.group(2) or ""
    return int(whole) * MICRO_PER_USD + int(fraction.ljust(6, "0"))


def parse_percent(text: str) -> int:
    """A percentage as typed (``"10"``, ``"12.5 %"``) -> basis points, exactly."""
    cleaned = text.strip().removesuffix("%").strip()
    found = _PERCENT.fullmatch(cleaned)
    if found is None:
        raise ValueError(f"not a percentage: {text[:40]!r}")
    whole, fraction = found.group(1), found.group(2) or ""
    return int(whole) * BPS_PER_PERCENT + int(fraction.ljust(2, "0"))
