"""Routing data: queries, a per-LLM score matrix with missing entries, optional costs and tasks.

Three layouts are read, from Python records, JSON/JSONL/CSV files or pandas DataFrames:

1. RouterDC: ``{"question" | "query": str, "scores": {llm: score}}`` (optional ``"costs"``,
   ``"task"``), one record per query.
2. Wide: one row per query, one score column per LLM and optional ``<llm>|total_cost`` columns
   (the RouterBench CSV layout).
3. Long logs: one row per (query, llm, score), optional ``cost`` and ``task``, as an app writes
   them; rows of the same query are grouped, repeated (query, llm) pairs averaged.

Which columns are what can be said outright: ``llm_columns=[...]`` for a wide table,
``llm_column=``, ``score_column=`` and ``cost_column=`` for a long one, ``query_column=`` for
either (a nested JSON export is flattened first, so ``"inputs.question"`` names a field of a
LangSmith run). Left unsaid, a wide table's LLMs are guessed only when no numeric column looks
like metadata (a name such as ``feedback.*``, ``total_cost``, ``latency_s``, or values outside
[0, 1]); otherwise the reader refuses and names the columns. The columns taken are logged.

Every reader checks what it reads and raises :class:`~core.errors.DataError` (a ``ValueError``)
or :class:`~core.errors.DataTypeError` (a ``TypeError``) naming the row and the field. LLM names
are stripped of surrounding spaces, and names that differ only by case or spaces are refused:
they would otherwise become separate LLMs.
"""

from __future__ import annotations

import ast
import csv
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, DataTypeError

if TYPE_CHECKING:
    import pandas as pd

    from .log import LoggedData

logger = logging.getLogger(__name__)

QUERY_FIELDS = ("query", "question", "prompt")
LLM_FIELDS = ("llm", "model")
TASK_FIELDS = ("task", "eval_name")
COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"
# Columns of wide files that are bookkeeping, never an LLM's score.
_WIDE_METADATA = {"sample_id", "cluster_id", "oracle_model_to_route_to", "index", "id"}
# Numeric columns whose name says they are not an LLM's score: a wide table that has one is
# ambiguous unless the caller names its LLM columns.
_METADATA_NAME = re.compile(
    r"(^|[._\s-])(feedback|cost|costs|price|latency|duration|tokens?|seconds|time|timestamp"
    r"|id|index|count|total)($|[._\s-])|(_s|_ms|_sec|_id)$",
    re.IGNORECASE,
)


@dataclass(frozen=True, eq=False)
class RoutingData:
    """Queries and how well each candidate LLM answered them.

    Attributes:
        queries: the query texts, ``N`` of them.
        llm_names: the candidate LLMs, ``T`` of them, in column order.
        scores: ``(N, T)`` float array in [0, 1]; NaN where an LLM was not scored on a query.
        costs: optional ``(N, T)`` dollars per call; NaN where unknown.
        tasks: optional task (or cluster) label per query; used to stratify splits,
            to report per-task accuracy, and optionally as clusters.

    Example:
        >>> data = RoutingData.from_records([
        ...     {"query": "2+2?", "scores": {"small": 1.0, "large": 1.0}},
        ...     {"query": "Prove Fermat", "scores": {"small": 0.0, "large": 0.3}},
        ... ])
        >>> data.scores.shape
        (2, 2)
    """

    queries: list[str]
    llm_names: list[str]
    scores: np.ndarray
    costs: np.ndarray | None = None
    tasks: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.queries) == 0:
            raise DataError("routing data is empty: it needs at least one query")
        _check_llm_names(self.llm_names)
        expected = (len(self.queries), len(self.llm_names))
        if self.scores.shape != expected:
            raise DataError(f"scores has shape {self.scores.shape}, expected {expected}")
        if self.costs is not None and self.costs.shape != expected:
            raise DataError(f"costs has shape {self.costs.shape}, expected {expected}")
        if self.tasks is not None and len(self.tasks) != len(self.queries):
            raise DataError(f"tasks has {len(self.tasks)} labels for {len(self.queries)} queries")
        for row, query in enumerate(self.queries):
            _check_query(query, f"row {row}")
        observed = ~np.isnan(self.scores)
        bad = observed & ((self.scores < 0) | (self.scores > 1) | ~np.isfinite(self.scores))
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise DataError(
                f"row {row}, field 'scores[{self.llm_names[col]!r}]': score must be a finite "
                f"number in [0, 1], got {self.scores[row, col]!r}"
            )
        empty = np.flatnonzero(~observed.any(axis=1))
        if empty.size:
            raise DataError(f"row {int(empty[0])}, field 'scores': the query has no score at all")

    # ------------------------------------------------------------------ shape and slicing

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def mask(self) -> np.ndarray:
        """``(N, T)`` bool: True where a score is known."""
        return ~np.isnan(self.scores)

    def unscored_llms(self) -> list[str]:
        """The LLMs with no score on any query (a router cannot learn when to pick them)."""
        scored = np.any(self.mask, axis=0).tolist()  # (T,)
        return [name for col, name in enumerate(self.llm_names) if not scored[col]]

    def mean_costs(self) -> dict[str, float] | None:
        """Mean known cost per LLM in dollars, or None when the data has no costs."""
        if self.costs is None:
            return None
        means: dict[str, float] = {}
        for col, name in enumerate(self.llm_names):
            known = self.costs[:, col][~np.isnan(self.costs[:, col])]
            if known.size:
                means[name] = float(known.mean())
        return means or None

    def subset(self, indices: Sequence[int] | np.ndarray) -> RoutingData:
        """The rows at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return RoutingData(
            queries=[self.queries[i] for i in idx],
            llm_names=list(self.llm_names),
            scores=self.scores[idx],
            costs=None if self.costs is None else self.costs[idx],
            tasks=None if self.tasks is None else [self.tasks[i] for i in idx],
        )

    def split_indices(self, fraction: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (rest, held_out) with ``fraction`` of the rows held out.

        Stratified by task when tasks are known, so every task keeps its share; seeded.
        """
        if not 0.0 < fraction < 1.0:
            raise DataError(f"split fraction must lie in (0, 1), got {fraction!r}")
        rng = np.random.default_rng(seed)
        groups = self.tasks if self.tasks is not None else [""] * len(self)
        held: list[int] = []
        for task in dict.fromkeys(groups):
            rows = np.array([i for i, t in enumerate(groups) if t == task])
            rng.shuffle(rows)
            held.extend(rows[: round(fraction * len(rows))].tolist())
        if not held or len(held) == len(self):
            raise DataError(
                f"cannot hold out {fraction:.0%} of {len(self)} queries: one side would be empty"
            )
        held_set = set(held)
        rest = np.array([i for i in range(len(self)) if i not in held_set])
        return rest, np.array(sorted(held))

    def split(self, fraction: float, *, seed: int = 0) -> tuple[RoutingData, RoutingData]:
        """Split into (rest, held_out); see :meth:`split_indices`."""
        rest, held = self.split_indices(fraction, seed=seed)
        return self.subset(rest), self.subset(held)

    @staticmethod
    def concat(parts: Sequence[RoutingData]) -> RoutingData:
        """Stack several data sets; LLMs missing from a part are NaN (not scored) there."""
        if not parts:
            raise DataError("nothing to concatenate: no routing data given")
        names = list(dict.fromkeys(name for part in parts for name in part.llm_names))
        columns = {name: col for col, name in enumerate(names)}
        any_costs = any(part.costs is not None for part in parts)
        scores, costs, queries, tasks = [], [], [], []
        for part in parts:
            block = np.full((len(part), len(names)), np.nan)
            cost_block = np.full_like(block, np.nan)
            cols = [columns[name] for name in part.llm_names]
            block[:, cols] = part.scores
            if part.costs is not None:
                cost_block[:, cols] = part.costs
            scores.append(block)
            costs.append(cost_block)
            queries.extend(part.queries)
            tasks.extend(part.tasks if part.tasks is not None else [""] * len(part))
        return RoutingData(
            queries=queries,
            llm_names=names,
            scores=np.concatenate(scores),
            costs=np.concatenate(costs) if any_costs else None,
            tasks=tasks if any(t for t in tasks) else None,
        )

    # ------------------------------------------------------------------ readers

    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        *,
        llm_names: Sequence[str] | None = None,
        task: str | None = None,
        source: str = "records",
        query_column: str | None = None,
        llm_columns: Sequence[str] | Mapping[str, str] | None = None,
        llm_column: str | None = None,
        score_column: str | None = None,
        cost_column: str | None = None,
    ) -> RoutingData:
        """Read the RouterDC layout or long logs from a list of dicts (the layout is detected).

        Args:
            records: ``{"query": ..., "scores": {...}}`` dicts, or long-log rows
                ``{"query": ..., "llm": ..., "score": ...}``.
            llm_names: the LLMs, in order. When given, a score for any other LLM is an error;
                when omitted, the LLMs are those seen, in order of first appearance.
            task: task label for rows that carry none.
            source: how error messages name where the rows came from.
            query_column, llm_columns, llm_column, score_column, cost_column: say which fields
                are what, as in :meth:`from_pandas`; nested records (a LangSmith export) are
                flattened first, so ``"inputs.question"`` names ``record["inputs"]["question"]``.

        Example:
            >>> runs = [{"inputs": {"question": "2+2?"}, "model": "small",
            ...          "feedback": {"correct": 1.0}}, ...]          # doctest: +SKIP
            >>> RoutingData.from_records(runs, query_column="inputs.question",
            ...     llm_column="model", score_column="feedback.correct")  # doctest: +SKIP
        """
        rows = list(records)
        if not rows:
            raise DataError(f"{source}: routing data is empty: it needs at least one query")
        first = rows[0]
        if not isinstance(first, Mapping):
            raise DataTypeError(f"{source}, row 0: expected a dict, got {type(first).__name__}")
        mapping = (query_column, llm_columns, llm_column, score_column, cost_column)
        if any(option is not None for option in mapping):
            import pandas as pd

            for row, item in enumerate(rows):
                if not isinstance(item, Mapping):
                    where = f"{source}, row {row}"
                    raise DataTypeError(f"{where}: expected a dict, got {type(item).__name__}")
            return cls.from_pandas(
                pd.json_normalize(rows),
                llm_names=llm_names,
                task=task,
                source=source,
                query_column=query_column,
                llm_columns=llm_columns,
                llm_column=llm_column,
                score_column=score_column,
                cost_column=cost_column,
            )
        if "scores" in first:
            return _from_routerdc_records(rows, llm_names, task, source)
        if any(f in first for f in LLM_FIELDS) and "score" in first:
            return _from_long_records(rows, llm_names, task, source)
        raise DataError(
            f"{source}, row 0: unknown layout with fields {sorted(first)}; expected 'scores' "
            f"(one record per query) or 'llm' and 'score' (one row per query and LLM); "
            "or say which fields are what: llm_column=, score_column= (one row per answer) "
            "or llm_columns=[...] (one score field per LLM)"
        )

    @classmethod
    def from_pandas(
        cls,
        frame: pd.DataFrame,
        *,
        llm_names: Sequence[str] | None = None,
        query_column: str | None = None,
        task: str | None = None,
        source: str = "DataFrame",
        llm_columns: Sequence[str] | Mapping[str, str] | None = None,
        llm_column: str | None = None,
        score_column: str | None = None,
        cost_column: str | None = None,
    ) -> RoutingData:
        """Read a DataFrame in the wide, long or RouterDC layout.

        Args:
            frame: the table.
            llm_names: the LLMs, in order (for a wide frame: its LLM columns).
            query_column: the column of query texts (default: ``query``, ``question`` or
                ``prompt``).
            task: task label for rows that carry none.
            source: how error messages name where the table came from.
            llm_columns: a wide frame's score columns, one per LLM: a list of column names,
                or ``{column: llm_name}`` to rename them. A ``<column>|total_cost`` column,
                when there is one, is its cost.
            llm_column, score_column, cost_column: a long frame's columns (one row per
                answer): which LLM answered, its score in [0, 1] and, optionally, its cost in
                dollars. Rows whose score is empty are not scored.

        Without ``llm_columns``, a wide frame's LLM columns are ``llm_names`` when given, else
        those with a ``<llm>|total_cost`` or ``<llm>|model_response`` sibling, else its numeric
        columns that are not bookkeeping (``sample_id``, ``id``, ``Unnamed: ...``), provided
        none of them looks like metadata (``feedback.*``, ``*_cost``, ``latency*``, ``*_s``,
        values outside [0, 1]): then the reader refuses, naming them, rather than guess.

        Raises:
            DataError: an ambiguous table, a named column that is not there, a bad cell
                (named by row, column and value).
        """
        columns = [str(c) for c in frame.columns]
        if llm_column is not None or score_column is not None or cost_column is not None:
            rows = _long_records(frame, query_column, llm_column, score_column, cost_column, source)
            return cls.from_records(rows, llm_names=llm_names, task=task, source=source)
        if llm_columns is None and (
            "scores" in columns or (any(f in columns for f in LLM_FIELDS) and "score" in columns)
        ):
            records = frame.to_dict(orient="records")
            if query_column is not None:
                _require_columns(columns, {"query_column": query_column}, source)
                records = [{**r, "query": r[query_column]} for r in records]
            return cls.from_records(records, llm_names=llm_names, task=task, source=source)
        return _from_wide_frame(frame, llm_names, llm_columns, query_column, task, source)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        llm_names: Sequence[str] | None = None,
        task: str | None = None,
        query_column: str | None = None,
        llm_columns: Sequence[str] | Mapping[str, str] | None = None,
        llm_column: str | None = None,
        score_column: str | None = None,
        cost_column: str | None = None,
    ) -> RoutingData:
        """Read a ``.json``, ``.jsonl`` or ``.csv`` file (UTF-8).

        A JSON file holds a list of records, or ``{"llm_names": [...], "records": [...]}``
        which declares its LLMs. Rows without a task get the file's stem as their task.
        ``query_column``, ``llm_columns``, ``llm_column``, ``score_column`` and
        ``cost_column`` say which columns (or, in JSON, flattened fields such as
        ``"inputs.question"``) are what; see :meth:`from_pandas`.
        """
        path = Path(path)
        if path.is_dir():
            raise DataError(f"{path}: is a folder, not a data file; pass the files inside it")
        if not path.is_file():
            raise DataError(f"{path}: no such data file")
        task = task if task is not None else path.stem
        options: dict[str, Any] = {
            "query_column": query_column,
            "llm_columns": llm_columns,
            "llm_column": llm_column,
            "score_column": score_column,
            "cost_column": cost_column,
        }
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".jsonl", ".json"):
            raise DataError(f"{path}: unknown file type {suffix!r}; use .json, .jsonl or .csv")
        text = _read_text(path)
        if suffix == ".csv":
            frame = _read_csv(path, text)
            return cls.from_pandas(
                frame, llm_names=llm_names, task=task, source=str(path), **options
            )
        if suffix == ".jsonl":
            records = []
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise DataError(f"{path}, line {number}: not valid JSON ({err})") from err
            return cls.from_records(
                records, llm_names=llm_names, task=task, source=str(path), **options
            )
        try:
            content = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from err
        if isinstance(content, dict):
            if "records" not in content:
                raise DataError(f"{path}: a JSON object needs a 'records' list")
            records = content["records"]
            if not isinstance(records, list):
                raise DataTypeError(
                    f"{path}, field 'records': expected a list of records, got {records!r}"
                )
            declared = content.get("llm_names", llm_names)
            return cls.from_records(
                records, llm_names=declared, task=task, source=str(path), **options
            )
        if not isinstance(content, list):
            raise DataTypeError(
                f"{path}: expected a JSON list of records, got {type(content).__name__}"
            )
        return cls.from_records(
            content, llm_names=llm_names, task=task, source=str(path), **options
        )

    @classmethod
    def from_files(
        cls, paths: Sequence[str | Path], *, llm_names: Sequence[str] | None = None
    ) -> RoutingData:
        """Read several files (each one a task, by default) and stack them."""
        return cls.concat([cls.from_file(p, llm_names=llm_names) for p in paths])

    @classmethod
    def from_log(cls, path: str | Path, **options: Any) -> LoggedData:
        """The outcomes of a routing log, weighted for its logging policy; see
        :meth:`core.data.log.RoutingLog.to_routing_data` (``weighting``, ``clip``)."""
        from .log import RoutingLog

        if not Path(path).is_file():
            raise DataError(f"{path}: no such routing log")
        return RoutingLog(path).to_routing_data(**options)


# ---------------------------------------------------------------------- checks


def _check_llm_names(names: Sequence[str]) -> None:
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise DataTypeError(f"LLM names must be non-empty strings, got {name!r}")
        if name != name.strip():
            raise DataError(f"LLM name {name!r} has surrounding spaces; use {name.strip()!r}")
    if len(names) < 2:
        raise DataError(f"routing needs at least two LLMs, got {list(names)!r}")
    seen: dict[str, str] = {}
    for name in names:
        if name in seen.values():
            raise DataError(f"duplicate LLM name {name!r} in {list(names)!r}")
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise DataError(
                f"LLM names {other!r} and {name!r} differ only by case: one LLM or two? "
                "Spell each LLM one way"
            )


def _clean_names(raw: Iterable[object], where: str) -> dict[object, str]:
    """Each distinct raw LLM name and its stripped form; names that differ only by case or
    surrounding spaces are refused, naming both."""
    cleaned: dict[object, str] = {}
    by_key: dict[str, object] = {}
    for name in dict.fromkeys(raw):
        if not isinstance(name, str) or not name.strip():
            raise DataTypeError(f"{where}: LLM names must be non-empty strings, got {name!r}")
        clean = name.strip()
        other = by_key.setdefault(clean.casefold(), name)
        if other != name:
            raise DataError(
                f"{where}: LLM names {other!r} and {name!r} differ only by case or spaces: "
                "one LLM or two? Spell each LLM one way"
            )
        cleaned[name] = clean
    return cleaned


def _check_query(query: object, where: str, field: str = "query") -> str:
    if not isinstance(query, str):
        raise DataTypeError(f"{where}, field {field!r}: expected a string, got {query!r}")
    if not query.strip():
        raise DataError(f"{where}, field {field!r}: the query is empty")
    return query


def _score(value: object, where: str) -> float:
    """A score in [0, 1], or NaN for a missing one (None)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataTypeError(f"{where}: score must be a number, got {value!r}")
    score = float(value)
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise DataError(f"{where}: score must be a finite number in [0, 1], got {value!r}")
    return score


def _cost(value: object, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataTypeError(f"{where}: cost must be a number, got {value!r}")
    cost = float(value)
    if math.isnan(cost):
        return math.nan
    if not math.isfinite(cost) or cost < 0:
        raise DataError(f"{where}: cost must be a finite number >= 0, got {value!r}")
    return cost


def _query_of(record: Mapping[str, Any], where: str) -> str:
    for name in QUERY_FIELDS:
        if name in record:
            return _check_query(_unwrap_prompt(record[name]), where, name)
    raise DataError(f"{where}: no query field; expected one of {list(QUERY_FIELDS)}")


def _unwrap_prompt(value: object) -> object:
    """RouterBench stores prompts as a Python list literal (``"['text']"``): unwrap it."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        if isinstance(parsed, list) and parsed and all(isinstance(p, str) for p in parsed):
            return "\n".join(parsed)
    return value


def _task_of(record: Mapping[str, Any], default: str | None) -> str | None:
    for name in TASK_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value:
            return value
    return default


def _resolve_names(
    declared: Sequence[str] | None, seen: Iterable[str], source: str = "data"
) -> list[str]:
    if declared is not None and (isinstance(declared, str) or not isinstance(declared, Sequence)):
        raise DataTypeError(f"{source}: llm_names must be a list of LLM names, got {declared!r}")
    if declared is not None:
        names = [n.strip() if isinstance(n, str) else n for n in declared]
    else:
        names = list(dict.fromkeys(seen))
    _check_llm_names(names)
    logger.info("%s: LLMs %s", source, names)
    return names


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not UTF-8 text (byte {err.object[err.start : err.start + 1]!r} at offset "
            f"{err.start}); save the file as UTF-8"
        ) from err
    except OSError as err:
        raise DataError(f"{path}: cannot read the data file ({err})") from err


def _read_csv(path: Path, text: str) -> pd.DataFrame:
    """The CSV as a frame, after checking that every row has the header's number of fields."""
    import io

    import pandas as pd

    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{path}: duplicate columns {repeated}")
    for fields in reader:
        if fields and len(fields) != len(header):
            raise DataError(
                f"{path}, line {reader.line_num}: {len(fields)} fields where the header has "
                f"{len(header)} ({header}); a comma inside a field needs quotes"
            )
    try:
        return pd.read_csv(io.StringIO(text))
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from err


def _require_columns(columns: Sequence[str], named: Mapping[str, str], source: str) -> None:
    for option, column in named.items():
        if column not in columns:
            raise DataError(f"{source}: no column {column!r} ({option}); columns: {list(columns)}")


def _long_records(
    frame: pd.DataFrame,
    query_column: str | None,
    llm_column: str | None,
    score_column: str | None,
    cost_column: str | None,
    source: str,
) -> list[dict[str, Any]]:
    """Long-layout rows (query, llm, score, cost, task) taken from the named columns."""
    columns = [str(c) for c in frame.columns]
    if llm_column is None or score_column is None:
        raise DataError(
            f"{source}: a long table needs both llm_column= and score_column= "
            f"(got llm_column={llm_column!r}, score_column={score_column!r})"
        )
    query_column = query_column or next((c for c in QUERY_FIELDS if c in columns), None)
    if query_column is None:
        raise DataError(
            f"{source}: no query column; expected one of {list(QUERY_FIELDS)} or query_column="
        )
    named = {"query_column": query_column, "llm_column": llm_column, "score_column": score_column}
    if cost_column is not None:
        named["cost_column"] = cost_column
    _require_columns(columns, named, source)

    def cells(column: str) -> list[Any]:  # NaN (an empty cell) as None: not scored, no cost
        return [None if isinstance(v, float) and math.isnan(v) else v for v in frame[column]]

    long = {"query": cells(query_column), "llm": cells(llm_column), "score": cells(score_column)}
    if cost_column is not None:
        long["cost"] = cells(cost_column)
    task_column = next((c for c in TASK_FIELDS if c in columns), None)
    if task_column is not None:
        long["task"] = cells(task_column)
    logger.info(
        "%s: query %r, LLM %r, score %r, cost %r",
        source,
        query_column,
        llm_column,
        score_column,
        cost_column,
    )
    return [dict(zip(long, row, strict=True)) for row in zip(*long.values(), strict=True)]


# ---------------------------------------------------------------------- layouts


def _from_routerdc_records(
    rows: list[Any], declared: Sequence[str] | None, task: str | None, source: str
) -> RoutingData:
    seen: list[str] = []
    for row, record in enumerate(rows):
        where = f"{source}, row {row}"
        if not isinstance(record, Mapping):
            raise DataTypeError(f"{where}: expected a dict, got {type(record).__name__}")
        scores = record.get("scores")
        if not isinstance(scores, Mapping):
            raise DataTypeError(
                f"{where}, field 'scores': expected a dict of LLM -> score, got {scores!r}"
            )
        costs = record.get("costs")
        if costs is not None and not isinstance(costs, Mapping):
            raise DataTypeError(
                f"{where}, field 'costs': expected a dict of LLM -> dollars, got {costs!r}"
            )
        for field, values in (("scores", scores), ("costs", costs or {})):
            for key in values:
                if not isinstance(key, str):
                    raise DataTypeError(
                        f"{where}, field {field!r}: LLM names must be strings, got {key!r} "
                        f"({type(key).__name__})"
                    )
        seen.extend(scores)
    cleaned = _clean_names(seen, source)
    names = _resolve_names(declared, cleaned.values(), source)
    index = {name: col for col, name in enumerate(names)}
    score_matrix = np.full((len(rows), len(names)), np.nan)
    cost_matrix = np.full_like(score_matrix, np.nan)
    queries, tasks = [], []
    for row, record in enumerate(rows):
        where = f"{source}, row {row}"
        queries.append(_query_of(record, where))
        tasks.append(_task_of(record, task))
        for field, values in (("scores", record["scores"]), ("costs", record.get("costs") or {})):
            for llm, value in values.items():
                col = index.get(llm.strip())
                if col is None:
                    raise DataError(
                        f"{where}, field {field!r}: unknown LLM {llm!r}; known: {names}"
                    )
                check = _score if field == "scores" else _cost
                score_or_cost = check(value, f"{where}, field '{field}[{llm!r}]'")
                (score_matrix if field == "scores" else cost_matrix)[row, col] = score_or_cost
        if np.isnan(score_matrix[row]).all():
            raise DataError(f"{where}, field 'scores': the query has no score at all")
    has_costs = not np.isnan(cost_matrix).all()
    return RoutingData(
        queries=queries,
        llm_names=names,
        scores=score_matrix,
        costs=cost_matrix if has_costs else None,
        tasks=_tasks_or_none(tasks),
    )


def _from_long_records(
    rows: list[Any], declared: Sequence[str] | None, task: str | None, source: str
) -> RoutingData:
    seen: list[str] = []
    parsed: list[tuple[str, str, float, float, str | None]] = []
    for row, record in enumerate(rows):
        where = f"{source}, row {row}"
        if not isinstance(record, Mapping):
            raise DataTypeError(f"{where}: expected a dict, got {type(record).__name__}")
        llm = next((record[f] for f in LLM_FIELDS if f in record), None)
        if not isinstance(llm, str) or not llm.strip():
            raise DataTypeError(f"{where}, field 'llm': expected an LLM name, got {llm!r}")
        if "score" not in record:
            raise DataError(f"{where}, field 'score': missing")
        score = _score(record["score"], f"{where}, field 'score'")
        cost = _cost(record.get("cost"), f"{where}, field 'cost'")
        parsed.append((_query_of(record, where), llm, score, cost, _task_of(record, task)))
        seen.append(llm)
    cleaned = _clean_names(seen, source)
    names = _resolve_names(declared, cleaned.values(), source)
    columns = {raw: names.index(clean) for raw, clean in cleaned.items() if clean in names}
    query_rows: dict[str, int] = {}
    for query, *_ in parsed:
        query_rows.setdefault(query, len(query_rows))
    shape = (len(query_rows), len(names))
    score_sum, score_count = np.zeros(shape), np.zeros(shape)
    cost_sum, cost_count = np.zeros(shape), np.zeros(shape)
    tasks: list[str | None] = [None] * len(query_rows)
    for row, (query, llm, score, cost, row_task) in enumerate(parsed):
        if llm not in columns:
            raise DataError(
                f"{source}, row {row}, field 'llm': unknown LLM {llm!r}; known: {names}"
            )
        r, c = query_rows[query], columns[llm]
        if not math.isnan(score):
            score_sum[r, c] += score
            score_count[r, c] += 1
        if not math.isnan(cost):
            cost_sum[r, c] += cost
            cost_count[r, c] += 1
        tasks[r] = tasks[r] or row_task
    unscored = np.flatnonzero(score_count.sum(axis=1) == 0)
    if unscored.size:
        query = list(query_rows)[int(unscored[0])]
        row = next(i for i, parsed_row in enumerate(parsed) if parsed_row[0] == query)
        raise DataError(f"{source}, row {row}, field 'score': the query has no score at all")
    with np.errstate(invalid="ignore"):
        scores = np.where(score_count > 0, score_sum / np.maximum(score_count, 1), np.nan)
        costs = np.where(cost_count > 0, cost_sum / np.maximum(cost_count, 1), np.nan)
    return RoutingData(
        queries=list(query_rows),
        llm_names=names,
        scores=scores,
        costs=costs if cost_count.any() else None,
        tasks=_tasks_or_none(tasks),
    )


def _from_wide_frame(
    frame: pd.DataFrame,
    declared: Sequence[str] | None,
    llm_columns: Sequence[str] | Mapping[str, str] | None,
    query_column: str | None,
    task: str | None,
    source: str,
) -> RoutingData:
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(f"{source}: duplicate columns {repeated}")
    if len(frame) == 0:
        raise DataError(f"{source}: routing data is empty: it needs at least one query")
    frame = frame.set_axis(columns, axis=1)
    if query_column is not None:
        _require_columns(columns, {"query_column": query_column}, source)
    query_column = query_column or next((c for c in QUERY_FIELDS if c in columns), None)
    if query_column is None:
        raise DataError(
            f"{source}: no query column; expected one of {list(QUERY_FIELDS)} or query_column="
        )
    if declared is not None and llm_columns is not None:
        raise DataError(
            f"{source}: give llm_columns (the score columns) or llm_names, not both; "
            "to name the LLMs differently from their columns, pass llm_columns={column: llm}"
        )
    score_columns = _wide_llm_columns(frame, declared, llm_columns, query_column, source)
    cleaned = _clean_names(score_columns.values(), source)
    names = [cleaned[name] for name in score_columns.values()]
    _check_llm_names(names)
    logger.info("%s: query column %r; LLM score columns %s", source, query_column, score_columns)
    task_column = next((c for c in TASK_FIELDS if c in columns), None)
    scores = np.full((len(frame), len(names)), np.nan)
    costs = np.full_like(scores, np.nan)
    has_costs = any(f"{c}{COST_SUFFIX}" in columns for c in score_columns)
    cells = {c: _numeric_cells(frame[c], c, source) for c in score_columns}
    records = frame.to_dict(orient="records")
    queries, tasks = [], []
    for row, record in enumerate(records):
        where = f"{source}, row {row}"
        queries.append(_check_query(_unwrap_prompt(record[query_column]), where, query_column))
        row_task = record.get(task_column) if task_column else None
        tasks.append(row_task if isinstance(row_task, str) and row_task else task)
        for col, column in enumerate(score_columns):
            value = cells[column][row]
            value = None if pd.isna(value) else value
            scores[row, col] = _score(value, f"{where}, field {column!r}")
            if has_costs:
                cost = record.get(f"{column}{COST_SUFFIX}")
                costs[row, col] = _cost(cost, f"{where}, field '{column}{COST_SUFFIX}'")
        if np.isnan(scores[row]).all():
            raise DataError(f"{where}: the query has no score at all")
    return RoutingData(
        queries=queries,
        llm_names=names,
        scores=scores,
        costs=costs if has_costs else None,
        tasks=_tasks_or_none(tasks),
    )


def _wide_llm_columns(
    frame: pd.DataFrame,
    declared: Sequence[str] | None,
    llm_columns: Sequence[str] | Mapping[str, str] | None,
    query_column: str,
    source: str,
) -> dict[str, str]:
    """``{column: llm name}`` of a wide frame's score columns: given, or guessed when the
    guess is safe (see :meth:`RoutingData.from_pandas`)."""
    columns = [str(c) for c in frame.columns]
    given = llm_columns if llm_columns is not None else declared
    if given is not None:
        option = "llm_columns" if llm_columns is not None else "llm_names"
        if isinstance(given, str) or not isinstance(given, (Sequence, Mapping)):
            raise DataTypeError(f"{source}: {option} must be a list of column names, got {given!r}")
        mapping = dict(given) if isinstance(given, Mapping) else {c: c for c in given}
        missing = [c for c in mapping if c not in columns]
        if missing:
            raise DataError(
                f"{source}: no score column for LLMs {missing} ({option}); columns: {columns}"
            )
        return mapping
    suffixed = [c.split("|", 1)[0] for c in columns if c.endswith((COST_SUFFIX, RESPONSE_SUFFIX))]
    named = [c for c in dict.fromkeys(suffixed) if c in columns]
    if named:
        return {c: c for c in named}
    candidates = [
        c
        for c in columns
        if c != query_column
        and c not in _WIDE_METADATA
        and c not in TASK_FIELDS
        and not c.startswith("Unnamed")
        and "|" not in c
    ]
    numeric = [c for c in candidates if frame[c].dtype.kind in "biuf" or _mostly_numeric(frame[c])]
    doubtful = {}
    for column in numeric:
        values = _numeric_cells(frame[column], column, source)
        outside = values[(values < 0) | (values > 1)]
        if _METADATA_NAME.search(column):
            doubtful[column] = "its name"
        elif len(outside) > 1:  # one stray cell is a typo, named below; several, another quantity
            doubtful[column] = (
                f"{len(outside)} values outside [0, 1], e.g. {float(outside.iloc[0])}"
            )
    if doubtful:
        scores_like = [c for c in numeric if c not in doubtful] or ["...", "..."]
        reasons = ", ".join(f"{c!r} ({why})" for c, why in doubtful.items())
        raise DataError(
            f"{source}: cannot tell which columns are LLMs: {reasons} look like metadata, not "
            f"an LLM's score. Numeric columns: {numeric}. Say which are LLMs: "
            f"llm_columns={scores_like!r} (or {{column: llm_name}}); for one row per answer, "
            "llm_column=, score_column= (and cost_column=)"
        )
    return {c: c for c in numeric}


def _mostly_numeric(column: pd.Series) -> bool:
    """Whether a text column holds numbers in at least half of its filled cells: an LLM's
    scores with a stray cell, to be named rather than dropped."""
    import pandas as pd

    if column.dtype.kind != "O":
        return False
    filled = column.dropna()
    if filled.empty or not all(isinstance(v, (str, int, float)) for v in filled):
        return False
    numbers = pd.to_numeric(filled, errors="coerce").notna()
    return bool(numbers.any() and numbers.mean() >= 0.5)


def _numeric_cells(column: pd.Series, name: str, source: str) -> pd.Series:
    """A score column as numbers; a cell that is not a number is named by row and value."""
    import pandas as pd

    if column.dtype.kind in "biuf":
        return column.astype(float)
    numbers = pd.to_numeric(column, errors="coerce")
    bad = column.notna() & numbers.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataTypeError(
            f"{source}, row {row}, field {name!r}: score must be a number, got "
            f"{column.iloc[row]!r}; pass llm_columns=[...] if {name!r} is not an LLM"
        )
    return numbers.astype(float)


def _tasks_or_none(tasks: Sequence[str | None]) -> list[str] | None:
    if all(t is None for t in tasks):
        return None
    return [t or "" for t in tasks]
