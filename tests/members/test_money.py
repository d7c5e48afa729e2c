"""agora.money: cents in the database, two-place decimal strings in the API."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agora.money import MAX_CENTS, format_cents, parse_cents


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (1250, "12.50"),
        (100, "1.00"),
        (-5, "-0.05"),
        (MAX_CENTS, "9999999999999.99"),
    ],
)
def test_format_and_parse_round_trip(cents: int, text: str) -> None:
    assert format_cents(cents) == text
    assert parse_cents(text) == cents


def test_parse_accepts_short_forms_and_exact_numbers() -> None:
    assert parse_cents("12.5") == 1250
    assert parse_cents("12") == 1200
    assert parse_cents(3) == 300
    assert parse_cents(Decimal("0.10")) == 10


@pytest.mark.parametrize(
    "bad",
    [
        "12.345",
        "1e3",
        "nan",
        "inf",
        "",
        "12,50",
        "1\x00",
        0.1,
        True,
        "10000000000000.00",
        Decimal("1e999999999"),
        Decimal("NaN"),
        Decimal("0.001"),
        10**13,
    ],
)
def test_parse_refuses_inexact_or_out_of_range(bad: object) -> None:
    with pytest.raises(ValueError, match="amount"):
        parse_cents(bad)  # type: ignore[arg-type]
