"""routerdc for LlamaIndex: pick the LLM per query with a trained RouterDC router.

- :class:`RouterDCSelector` selects among query engines or retrievers (one per LLM) for
  ``RouterQueryEngine`` and ``RouterRetriever``.
- :class:`RouterDCLLM` is an ``LLM`` that holds several LLMs and sends each call to the one the
  router picks; use it as ``Settings.llm``, in query engines and in agents.

Example:
    >>> import core
    >>> from routerdc_llamaindex import RouterDCLLM
    >>> llm = RouterDCLLM(router=core.load("my-router"), llms={"llama-3-8b": a, "gpt-4": b})
    ... # doctest: +SKIP
"""

from __future__ import annotations

from routerdc_llamaindex._shadow import check_core_is_ours

check_core_is_ours()

from routerdc_llamaindex.llm import RouterDCLLM  # noqa: E402
from routerdc_llamaindex.selector import RouterDCSelector, RouterDCSelectorResult  # noqa: E402

__all__ = ["RouterDCLLM", "RouterDCSelector", "RouterDCSelectorResult"]
