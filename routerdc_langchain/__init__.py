"""routerdc for LangChain: route each call to the LLM a RouterDC router picks.

- ``RunnableRouter``: a runnable for chains (``prompt | RunnableRouter(...) | parser``).
- ``ChatRouterDC``: a chat model, for code that expects one (agents, tools, structured output).
- ``RouterDCMiddleware``: a LangChain v1 agent middleware that picks the model of each model
  call (needs ``langchain>=1``: ``pip install routerdc[langchain-agents]``).
- ``RouterDCDecisionModel``: a decision model (``langchain_core.decisions``) for LangChain's
  ``ModelRouterMiddleware``.

Example:
    >>> from routerdc_langchain import RunnableRouter                 # doctest: +SKIP
    >>> router = RunnableRouter(                                      # doctest: +SKIP
    ...     router=core.load("my-router"),
    ...     runnables={"gpt-4o": ChatOpenAI(...), "llama-3-8b": ChatOllama(...)},
    ... )
    >>> (prompt | router | StrOutputParser()).invoke({"question": "..."})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routerdc_langchain._shadow import check_core_is_ours

check_core_is_ours()

from core.errors import AllLLMsFailedError, LLMTimeoutError  # noqa: E402
from routerdc_langchain.chat_model import ChatRouterDC  # noqa: E402
from routerdc_langchain.runnable import RunnableRouter  # noqa: E402

if TYPE_CHECKING:
    from routerdc_langchain.decision import RouterDCDecisionModel
    from routerdc_langchain.middleware import RouterDCMiddleware

__all__ = [
    "AllLLMsFailedError",
    "ChatRouterDC",
    "LLMTimeoutError",
    "RouterDCDecisionModel",
    "RouterDCMiddleware",
    "RunnableRouter",
]

# Imported on first use: the middleware needs the optional ``langchain`` package, the
# decision model a langchain_core recent enough to have ``langchain_core.decisions``.
_LAZY = {
    "RouterDCMiddleware": "routerdc_langchain.middleware",
    "RouterDCDecisionModel": "routerdc_langchain.decision",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'routerdc_langchain' has no attribute {name!r}")
