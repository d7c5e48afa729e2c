"""Money: stored as integer cents, shown as a decimal string with exactly two places.

    format_cents(1250)      -> "12.50"
    parse_cents("12.5")     -> 1250
    parse_cents("12.345")   -> ValueError (no silent rounding)

`Amount` (input) and `AmountOut` (output) are Pydantic types for schemas. Amounts are never
floats: a float cannot hold 0.10 exactly.
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

CENTS_PER_UNIT = 100
# 10 trillion credits minus a cent: far below BIGINT's range, so no arithmetic on stored
# amounts overflows.
MAX_CENTS = 10**15 - 1
_MAX_TEXT = 32
_PATTERN = r"^-?\d{1,13}(\.\d{1,2})?$"
_AMOUNT = re.compile(_PATTERN.strip("^$"))
_CENT = Decimal("0.01")
_MAX_AMOUNT = Decimal(MAX_CENTS).scaleb(-2)


def format_cents(cents: int) -> str:
    """1250 -> "12.50", -5 -> "-0.05"."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), CENTS_PER_UNIT)
    return f"{sign}{units}.{rest:02d}"


def parse_cents(value: str | int | Decimal) -> int:
    """A decimal amount ("12.5", "-3", 12, Decimal("0.01")) as integer cents.

    Strings must look like `-?digits[.d[d]]`: no exponent, no more than two decimal places
    (no silent rounding). Floats, NaN and amounts beyond `MAX_CENTS` raise `ValueError`.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValueError('an amount must be a decimal string such as "12.50"')
    if isinstance(value, str):
        if len(value) > _MAX_TEXT or not _AMOUNT.fullmatch(value.strip()):
            raise ValueError('an amount must be a decimal string such as "12.50"')
        value = Decimal(value.strip())
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("not a valid amount")
        if value.copy_abs() > _MAX_AMOUNT:  # copy_abs: no context, no Overflow
            raise ValueError(f"an amount is at most {format_cents(MAX_CENTS)}")
        if value != value.quantize(_CENT, rounding=ROUND_DOWN):
            raise ValueError("an amount has at most two decimal places")
        return int(value * CENTS_PER_UNIT)
    if abs(value) > MAX_CENTS // CENTS_PER_UNIT:
        raise ValueError(f"an amount is at most {format_cents(MAX_CENTS)}")
    return value * CENTS_PER_UNIT


def _validate(value: Any) -> int:
    return parse_cents(value)


Amount = Annotated[
    int,
    BeforeValidator(_validate),
    WithJsonSchema({"type": "string", "pattern": _PATTERN, "examples": ["12.50"]}),
]
"""Input: a decimal string (or integer) in, integer cents out."""

AmountOut = Annotated[
    int,
    PlainSerializer(format_cents, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _PATTERN, "examples": ["12.50"]}),
]
"""Output: integer cents rendered as a decimal string with two places."""
