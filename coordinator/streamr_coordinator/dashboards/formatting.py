"""How numbers and times read on the pages. Display only: money has its own module."""

from __future__ import annotations

from datetime import UTC, datetime

_BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
_BIT_UNITS = ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s")


def _scaled(value: int, units: tuple[str, ...]) -> str:
    amount = float(value)
    for unit in units:
        if abs(amount) < 1000 or unit == units[-1]:
            return f"{value} {unit}" if unit == units[0] else f"{amount:.1f} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")


def format_bytes(value: int | None) -> str:
    """Decimal units, as CDNs bill them: 1 GB is 10^9 bytes."""
    return "—" if value is None else _scaled(value, _BYTE_UNITS)


def format_bps(value: int | None) -> str:
    return "—" if value is None else _scaled(value, _BIT_UNITS)


def format_when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def slug(value: object) -> str:
    """A CSS class fragment for a shown value: "at capacity" -> "at-capacity"."""
    text = "".join(c if c.isascii() and c.isalnum() else "-" for c in str(value).lower())
    return "-".join(part for part in text.split("-") if part) or "none"


def format_duration(seconds: float) -> str:
    """``21600`` -> ``"6 hours"``, ``60`` -> ``"1 minute"``, ``45`` -> ``"45 seconds"``."""
    whole = int(seconds)
    for size, unit in ((3600, "hour"), (60, "minute")):
        if whole >= size and whole % size == 0:
            count = whole // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{whole} second{'s' if whole != 1 else ''}"
