"""One error class per failure kind, each subclassing the builtin a caller would catch."""

from __future__ import annotations

import pytest

import core
from core import (
    ConfigError,
    DataError,
    DataTypeError,
    QueryError,
    QueryTypeError,
    RouterDCError,
    RouterFileError,
    RoutingError,
    UnknownLLMError,
)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (DataError, ValueError),
        (DataTypeError, TypeError),
        (ConfigError, ValueError),
        (QueryError, ValueError),
        (QueryTypeError, TypeError),
        (UnknownLLMError, KeyError),
        (RouterFileError, OSError),
        (RoutingError, RuntimeError),
    ],
)
def test_each_error_is_a_routerdc_error_and_the_builtin_a_caller_would_catch(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, RouterDCError)
    assert issubclass(error, builtin)
    assert getattr(core, error.__name__) is error


def test_unknown_llm_error_reads_as_its_message_not_a_quoted_key() -> None:
    assert str(UnknownLLMError("no price for 'x'")) == "no price for 'x'"
    assert str(UnknownLLMError()) == ""
