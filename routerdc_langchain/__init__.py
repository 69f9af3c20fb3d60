"""routerdc for LangChain: route each call to the LLM a RouterDC router picks.

- ``RunnableRouter``: a runnable for chains (``prompt | RunnableRouter(...) | parser``).
- ``ChatRouterDC``: a chat model, for code that expects one (agents, tools, structured output).

Example:
    >>> from routerdc_langchain import RunnableRouter                 # doctest: +SKIP
    >>> router = RunnableRouter(                                      # doctest: +SKIP
    ...     router=core.load("my-router"),
    ...     runnables={"gpt-4o": ChatOpenAI(...), "llama-3-8b": ChatOllama(...)},
    ... )
    >>> (prompt | router | StrOutputParser()).invoke({"question": "..."})  # doctest: +SKIP
"""

from __future__ import annotations

from routerdc_langchain._routing import AllLLMsFailedError
from routerdc_langchain.chat_model import ChatRouterDC
from routerdc_langchain.runnable import RunnableRouter

__all__ = ["AllLLMsFailedError", "ChatRouterDC", "RunnableRouter"]
