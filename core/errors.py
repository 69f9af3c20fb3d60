"""Errors raised by routerdc, one class per failure kind.

Each subclasses the builtin a caller would naturally catch, so ``except ValueError``
keeps working for code that does not know about routerdc.
"""

from __future__ import annotations

from collections.abc import Mapping


class RouterDCError(Exception):
    """Base class of every error routerdc raises on purpose."""


class DataError(RouterDCError, ValueError):
    """Routing data is malformed; the message names the row and the field."""


class DataTypeError(RouterDCError, TypeError):
    """Routing data has a value of the wrong type; the message names the row and the field."""


class ConfigError(RouterDCError, ValueError):
    """A configuration value is out of its allowed range."""


class QueryError(RouterDCError, ValueError):
    """A query given to the router cannot be routed (empty, or not a string)."""


class UnknownLLMError(RouterDCError, KeyError):
    """An LLM name the router does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownRunError(RouterDCError, KeyError):
    """A run id that is not in the routing log."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class RouterFileError(RouterDCError, OSError):
    """A saved router is missing a file, is truncated, or does not match its config."""


class RoutingError(RouterDCError, RuntimeError):
    """The router computed something it cannot route on (NaN or infinite logits)."""


class QueryTypeError(RouterDCError, TypeError):
    """A query given to the router is not a string."""


class AllLLMsFailedError(RouterDCError, RuntimeError):
    """Every LLM tried for one call raised (the chosen one and each fallback).

    Attributes:
        errors: each LLM tried, in the order tried, and the error it raised.
    """

    def __init__(self, errors: Mapping[str, BaseException]) -> None:
        self.errors = dict(errors)
        tried = "\n".join(f"  {llm}: {type(e).__name__}: {e}" for llm, e in self.errors.items())
        super().__init__(f"all {len(self.errors)} LLMs tried failed:\n{tried}")


class LLMTimeoutError(RouterDCError, TimeoutError):
    """An LLM did not answer (or, for a stream, send its first chunk) within its timeout."""
