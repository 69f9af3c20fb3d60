"""The speed benchmark's queries have exactly the token lengths it reports."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerBase

from benchmarks.speed import LONG_TOKENS, SHORT_TOKENS, build_queries, fallback_words
from core.routing.encoder import load_tokenizer, resolve_encoder


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return load_tokenizer(resolve_encoder(None))


@pytest.mark.parametrize("tokens", [SHORT_TOKENS, LONG_TOKENS])
def test_build_queries_yields_distinct_queries_of_the_requested_token_length(
    tokenizer: PreTrainedTokenizerBase, tokens: int
) -> None:
    queries = build_queries(tokenizer, fallback_words(), 8, tokens)
    assert len(set(queries)) == 8
    assert [len(ids) for ids in tokenizer(queries)["input_ids"]] == [tokens] * 8


def test_build_queries_gives_each_query_its_own_length_when_given_a_list(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    lengths = [12, 77, 300]
    queries = build_queries(tokenizer, fallback_words(), 3, lengths)
    assert [len(ids) for ids in tokenizer(queries)["input_ids"]] == lengths


def test_build_queries_rejects_a_length_with_no_room_for_words(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    with pytest.raises(ValueError, match="special tokens"):
        build_queries(tokenizer, ["word"], 1, 2)
