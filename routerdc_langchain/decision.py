"""RouterDCDecisionModel: RouterDC as a LangChain decision model, for ``ModelRouterMiddleware``.

``langchain.agents.middleware.ModelRouterMiddleware`` asks a decision model (a classifier)
one ``Choice`` question before each agent run: which of its named model choices suits the
latest human message. This answers it with a trained router, offline and in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.decisions import (
    BaseDecisionModel,
    Choice,
    ChoiceAnswer,
    ClassifierResponse,
    Question,
    State,
)
from langchain_core.messages import BaseMessage
from pydantic import ConfigDict, Field

from core import BaseRouter
from core.errors import ConfigError, QueryError, UnknownLLMError
from core.routing.dispatch import RoutingOptions
from routerdc_langchain._routing import query_of, text_of


class RouterDCDecisionModel(BaseDecisionModel):
    """Answers ``Choice`` questions (which model suits this task?) with a RouterDC router.

    A choice's label names one of the router's LLMs, directly or through ``choice_to_llm``;
    the answer's ``probabilities`` are the router's p(LLM | text) over the offered choices and
    its ``confidence`` the chosen one's probability.

    Attributes:
        router: a trained router (any ``core.BaseRouter``).
        choice_to_llm: the router's LLM name for each choice label that is not itself one.
        query_from: the text to route on, from the request's state; by default a string
            state itself, or the last human message of a message or list of messages.
        cost_weight, costs: routing options, as in ``core.Router.route``.

    Example:
        >>> from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware
        >>> middleware = ModelRouterMiddleware(                           # doctest: +SKIP
        ...     choices={"fast": ModelChoice(model=small, criteria="simple tasks"),
        ...              "powerful": ModelChoice(model=large, criteria="hard tasks")},
        ...     instructions="Pick the model the router trusts most.",
        ...     classifier=RouterDCDecisionModel(
        ...         router=core.load("my-router"),
        ...         choice_to_llm={"fast": "llama-3-8b", "powerful": "gpt-4o"},
        ...     ),
        ... )
    """

    model: str = "routerdc"
    router: BaseRouter = Field(exclude=True)
    choice_to_llm: dict[str, str] = Field(default_factory=dict)
    query_from: Callable[[Any], str] | None = None
    cost_weight: float = 0.0
    costs: dict[str, float] | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    @property
    def _provider(self) -> str:
        return "routerdc"

    def _classify(self, state: State, questions: dict[str, Question]) -> ClassifierResponse:
        text = self._text(state)
        answers: dict[str, Any] = {}
        for question_id, question in questions.items():
            if not isinstance(question, Choice):
                raise ConfigError(
                    f"question {question_id!r} is a {question.type!r} question; "
                    "RouterDC answers 'choice' questions only"
                )
            answers[question_id] = self._answer(text, list(question.criteria))
        return ClassifierResponse(model=self.model, answers=answers)

    def _answer(self, text: str, labels: Sequence[str]) -> ChoiceAnswer:
        llm_of = {label: self.choice_to_llm.get(label, label) for label in labels}
        unknown = [label for label, llm in llm_of.items() if llm not in self.router.llm_names]
        if unknown:
            raise UnknownLLMError(
                f"choices {unknown} name no LLM the router knows ({self.router.llm_names}); "
                "map them with choice_to_llm={label: llm_name}"
            )
        label_of = {llm: label for label, llm in llm_of.items()}
        if len(label_of) < len(llm_of):
            raise ConfigError(f"choices {labels} map to the same LLMs more than once: {llm_of}")
        options = RoutingOptions(self.cost_weight, self.costs, allowed=list(label_of))
        names = self.router.llm_names
        decision = self.router.route(text, **options.route_kwargs(names, names))
        return ChoiceAnswer(
            type="choice",
            choice=label_of[decision.llm],
            probabilities={label_of[llm]: p for llm, p in decision.probabilities.items()},
            confidence=min(1.0, max(0.0, decision.probability)),
        )

    def _text(self, state: State) -> str:
        if self.query_from is not None:
            text = self.query_from(state)
        elif isinstance(state, str):
            text = state
        elif isinstance(state, BaseMessage):
            text = text_of(state, "the state's message")
        elif isinstance(state, Sequence) and not isinstance(state, Mapping):
            text = query_of(list(state), None)
        else:
            raise QueryError(
                f"cannot find the text to route on in a {type(state).__name__} state; "
                "pass query_from=... to choose it"
            )
        if not isinstance(text, str) or not text.strip():
            raise QueryError(f"the text to route on is empty or not a string: {text!r}")
        return text
