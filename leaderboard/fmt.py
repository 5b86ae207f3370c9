"""Printed values: the one rounding rule used by gates and by every table.

Challenge reports print values rounded half up from their decimal representation (26.895 is
printed 26.90). Binary floats make ``round(26.895, 2)`` give 26.89, so rounding here goes
through ``Decimal(repr(x))``: the shortest decimal that round-trips, i.e. the number as typed.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal


def printed(value: float, digits: int) -> float:
    """``value`` rounded half up to ``digits`` decimals, as a table prints it."""
    if value is None or not math.isfinite(value):
        return value
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP))


def text(value: float, digits: int, thousands: bool = False) -> str:
    """The printed string of ``value`` (``-`` when missing, ``inf`` kept)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1e12:  # e.g. exp(2 F/F0) of a model far off the baseline: scientific, not 290 digits
        return f"{float(value):.{max(digits, 2)}e}"
    rounded = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{rounded:,.{digits}f}" if thousands else f"{rounded:.{digits}f}"


def significant(value: float, digits: int = 4, sci_above: float = 1e4) -> str:
    """``value`` to ``digits`` significant digits; scientific notation at or beyond ``sci_above``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    rounded = float(f"{value:.{digits}g}")
    if abs(rounded) >= sci_above:
        return f"{value:.{digits - 1}e}"
    if rounded == 0:
        return "0"
    decimals = max(digits - 1 - math.floor(math.log10(abs(rounded))), 0)
    return f"{rounded:.{decimals}f}"
