from __future__ import annotations

import routerdc_llamaindex

EXPECTED_ALL = ["RouterDCLLM", "RouterDCSelector", "RouterDCSelectorResult"]


def test_all_names_the_public_api() -> None:
    assert sorted(routerdc_llamaindex.__all__) == EXPECTED_ALL


def test_every_public_name_is_importable() -> None:
    for name in EXPECTED_ALL:
        assert getattr(routerdc_llamaindex, name).__name__ == name


def test_public_classes_are_the_llama_index_kinds_apps_expect() -> None:
    from llama_index.core.base.base_selector import BaseSelector, SelectorResult
    from llama_index.core.llms import LLM
    from llama_index.core.llms.function_calling import FunctionCallingLLM

    assert issubclass(routerdc_llamaindex.RouterDCSelector, BaseSelector)
    assert issubclass(routerdc_llamaindex.RouterDCSelectorResult, SelectorResult)
    assert issubclass(routerdc_llamaindex.RouterDCLLM, LLM)
    assert issubclass(routerdc_llamaindex.RouterDCLLM, FunctionCallingLLM)
