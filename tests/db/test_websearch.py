"""agora.db.websearch: the websearch syntax, parsed once, rendered for both databases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.db.websearch import SearchQuery, Term, parse, to_fts5, to_websearch


def test_words_are_anded_and_lower_cased() -> None:
    assert parse("Rust  ASYNC") == SearchQuery(((Term(("rust",)), Term(("async",))),))


def test_quotes_make_a_phrase_and_a_dash_excludes() -> None:
    query = parse('"Async Rust" -tokio -"green threads"')
    assert query == SearchQuery(
        (
            (
                Term(("async", "rust")),
                Term(("tokio",), excluded=True),
                Term(("green", "threads"), excluded=True),
            ),
        )
    )
    assert query is not None
    assert to_websearch(query) == '"async rust" -"tokio" -"green threads"'
    assert to_fts5(query) == '(("async rust") NOT "tokio" NOT "green threads")'


def test_or_separates_alternatives_and_binds_looser_than_and() -> None:
    query = parse("a b OR c")
    assert query is not None
    assert to_websearch(query) == '"a" "b" or "c"'
    assert to_fts5(query) == '(("a" AND "b")) OR (("c"))'


def test_punctuation_splits_words_like_the_tokenizers() -> None:
    assert parse("foo-bar") == parse('"foo bar"')
    assert parse("don't") == SearchQuery(((Term(("don", "t")),),))


@pytest.mark.parametrize(
    "text", ["", "   ", "!!! ???", "or", "or or", "-excluded", '-"only this"', '""', "-"]
)
def test_nothing_to_look_for_is_none(text: str) -> None:
    assert parse(text) is None


def test_an_alternative_made_only_of_exclusions_is_dropped() -> None:
    query = parse("cats or -dogs")
    assert query is not None
    assert to_fts5(query) == '(("cats"))'


def test_a_quoted_or_is_a_word_and_an_unclosed_quote_runs_to_the_end() -> None:
    query = parse('"or" x "unclosed phrase')
    assert query is not None
    assert to_websearch(query) == '"or" "x" "unclosed phrase"'


def test_fts5_syntax_in_the_input_is_only_words() -> None:
    query = parse('NEAR(a b) title:x* ^start "a"+"b" AND NOT (c)')
    assert query is not None
    words = [w for alt in query.alternatives for t in alt for w in t.words]
    assert words == ["near", "a", "b", "title", "x", "start", "a", "b", "and", "not", "c"]


def test_the_number_of_terms_is_bounded() -> None:
    query = parse(" ".join(f"w{i}" for i in range(100)), max_terms=5)
    assert query is not None
    assert len(query.alternatives[0]) == 5


@given(st.text(max_size=200))
def test_any_text_renders_to_quoted_terms_only(text: str) -> None:
    query = parse(text)
    if query is None:
        return
    rendered = to_fts5(query)
    # Outside the quotes only the operators and parentheses we wrote remain.
    outside = rendered.split('"')[::2]
    assert all(set(part) <= set("()ANDOTR ") for part in outside)
