"""The routing log: what an app's router decided, what answered, and how it went.

One SQLite file (standard library, WAL mode) holds one row per routed call: its id, time, query
(or, with ``store_queries=False``, only the frozen encoder's pooled vector), the LLMs allowed,
the probabilities and ranking, the LLM chosen, whether exploration chose it and with what
probability (the propensity), the LLM that answered after fallbacks, latency, cost, the
router's version and LLM set, and the outcome once it arrives. Many threads (one connection
each) and several processes may write at once; each write is one transaction, so a row that
was committed is there after any crash and a row that was not is not there at all.

Reading it back for training (:meth:`RoutingLog.to_routing_data`, also
``core.RoutingData.from_log``) gives one observed score per query, for the LLM that answered,
and inverse-propensity weights ``min(1 / propensity, clip)`` that ``core.fit`` uses in its
neighbour means (self-normalised), so the LLMs the router already favours do not look better
than they are (Tsiourvas et al., 2025, correct logged routing data for the logging policy with
a doubly robust estimate, Dudík et al., 2011; here the neighbour means are the outcome model
and the weights enter them, without a separate residual term).

Example:
    >>> log = core.RoutingLog("routing.db")                          # doctest: +SKIP
    >>> decision = router.route(query, explore=0.05, log=log)        # doctest: +SKIP
    >>> log.record_outcome(run_id, 1.0)  # a thumbs-up                # doctest: +SKIP
    >>> better = core.fit(core.RoutingData.from_log("routing.db"))   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import DataError, DataTypeError, UnknownLLMError, UnknownRunError
from .dataset import RoutingData

if TYPE_CHECKING:
    from ..routing.base import BaseRouter, Decision
    from ..training.trainer import EncodingCache

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Inverse-propensity weights are capped here: an explored call (propensity epsilon / (C - 1),
# 0.017 at epsilon 0.1 and 7 LLMs: weight 60 unclipped) counts at most three times a greedy
# one. The cap bounds the variance a few lucky explored calls add (the clipped-IPS trade-off):
# on the paper's data a cap of 10 let them take over whole neighbourhoods and the retrained
# router lost 7 points in the second round; 3 did not (benchmarks/feedback.py, one seed).
DEFAULT_WEIGHT_CLIP = 3.0
# How a query stored only as a vector is named in RoutingData (its queries must be strings).
VECTOR_QUERY_PREFIX = "<query vector of run "
Weighting = Literal["ips", "none"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    run_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    query TEXT,
    query_vector BLOB,
    allowed TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    ranking TEXT NOT NULL,
    chosen TEXT NOT NULL,
    explored INTEGER NOT NULL,
    propensity REAL NOT NULL,
    answered_by TEXT,
    latency_s REAL,
    cost REAL,
    router_version TEXT,
    llm_fingerprint TEXT NOT NULL,
    score REAL,
    outcome_time REAL,
    CHECK (query IS NOT NULL OR query_vector IS NOT NULL)
);
"""
_CALL_COLUMNS = (
    "run_id",
    "created",
    "query",
    "query_vector",
    "allowed",
    "probabilities",
    "ranking",
    "chosen",
    "explored",
    "propensity",
    "answered_by",
    "latency_s",
    "cost",
    "router_version",
    "llm_fingerprint",
    "score",
    "outcome_time",
)


@dataclass(frozen=True)
class LoggedCall:
    """One row of the log, as read back."""

    run_id: str
    created: float
    query: str | None
    query_vector: np.ndarray | None
    allowed: list[str]
    probabilities: dict[str, float]
    ranking: list[str]
    chosen: str
    explored: bool
    propensity: float
    answered_by: str | None
    latency_s: float | None
    cost: float | None
    router_version: str | None
    llm_fingerprint: str
    score: float | None
    outcome_time: float | None

    @property
    def answering_llm(self) -> str:
        """The LLM whose answer the outcome scores: the one that answered, else the chosen one."""
        return self.answered_by or self.chosen


@dataclass(frozen=True, eq=False)
class LoggedData(RoutingData):
    """Routing data read from a log: one observed score per query, with its logging policy.

    Attributes:
        run_ids: the call of each row.
        propensities: ``(N,)`` probability with which the logging policy chose the LLM.
        sample_weights: ``(N,)`` clipped inverse propensities (ones with
            ``weighting="none"``); ``core.fit`` uses them by default.
        vectors: ``(N, D)`` pooled encoder vectors of logs kept without query text, else None.
        vector_key: the (encoder, pooling, max tokens) the vectors came from.
    """

    run_ids: list[str] = field(default_factory=list)
    propensities: np.ndarray | None = None
    sample_weights: np.ndarray | None = None
    vectors: np.ndarray | None = None
    vector_key: tuple[str, str, int] | None = None

    def encoding_cache(self) -> EncodingCache:
        """An encoding cache holding the logged vectors, for ``core.fit(encoding_cache=...)``.

        A log kept without query text can only train a frozen-encoder router on the encoder
        that wrote the vectors.
        """
        from ..training.trainer import EncodingCache

        cache = EncodingCache()
        if self.vectors is not None and self.vector_key is not None:
            import torch

            tensors = torch.from_numpy(np.ascontiguousarray(self.vectors, dtype=np.float32))
            for query, vector in zip(self.queries, tensors, strict=True):
                cache._vectors[(*self.vector_key, query)] = vector
        return cache


def llm_fingerprint(llm_names: Sequence[str]) -> str:
    """A short stable hash of an ordered LLM list: which router column set wrote a row."""
    return hashlib.sha256(json.dumps(list(llm_names)).encode("utf-8")).hexdigest()[:16]


class RoutingLog:
    """A routing log in one SQLite file, safe for many threads and processes at once.

    Args:
        path: the database file (created with its folder when missing).
        store_queries: keep each query's text; False keeps only the router encoder's pooled
            vector (float32), for apps that must not store user prompts. Training from such a
            log needs a frozen-encoder router on the same encoder.
        llm_names: the router's LLMs; when given, a log written for another LLM set is refused
            at once. Otherwise the first recorded call fixes them.
        durable: ``synchronous=FULL``: a committed row survives a power loss too, not only a
            crash of the app (``NORMAL``, faster, when False).
        timeout_s: how long a writer waits for another to finish (SQLite busy timeout).

    Raises:
        DataError: the file is not a routing log, has a newer schema, or ``llm_names`` differ
            from the log's.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        store_queries: bool = True,
        llm_names: Sequence[str] | None = None,
        durable: bool = True,
        timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.store_queries = store_queries
        self.durable = durable
        self.timeout_s = timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as conn:
            found = conn.execute("SELECT version FROM schema_version").fetchall()
            if not found:
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif found[0][0] > SCHEMA_VERSION:
                raise DataError(
                    f"{self.path}: field 'schema_version' is {found[0][0]}; this routerdc reads "
                    f"up to {SCHEMA_VERSION}"
                )
            if llm_names is not None:
                self._bind_llms(conn, list(llm_names))

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork: connections never cross one)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=True
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise DataError(f"{self.path}: SQLite refused WAL mode (journal_mode={mode!r})")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise DataError(f"{self.path}: not a routing log ({err})") from err
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or none of it (then re-raised)."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    # ------------------------------------------------------------------ what the log is for

    @property
    def llm_names(self) -> list[str] | None:
        """The router LLMs this log is written for (None before the first call)."""
        row = self._connect().execute("SELECT value FROM log_info WHERE key = 'llm_names'")
        found = row.fetchone()
        return None if found is None else list(json.loads(found[0]))

    def _info(self, conn: sqlite3.Connection, key: str) -> Any:
        found = conn.execute("SELECT value FROM log_info WHERE key = ?", (key,)).fetchone()
        return None if found is None else json.loads(found[0])

    def _bind_llms(self, conn: sqlite3.Connection, llm_names: list[str]) -> str:
        """Fix the log's LLM set, or check that ``llm_names`` is it; the fingerprint."""
        known = self._info(conn, "llm_names")
        if known is None:
            if len(llm_names) < 2 or len(set(llm_names)) != len(llm_names):
                raise DataError(f"field 'llm_names': need 2+ distinct LLMs, got {llm_names!r}")
            conn.execute("INSERT INTO log_info VALUES ('llm_names', ?)", (json.dumps(llm_names),))
        elif list(known) != llm_names:
            raise DataError(
                f"{self.path}: field 'llm_names' is {known!r} (fingerprint "
                f"{llm_fingerprint(known)}); this router's are {llm_names!r} "
                f"(fingerprint {llm_fingerprint(llm_names)}): use a new log for a router "
                "over other LLMs"
            )
        return llm_fingerprint(llm_names)

    def _bind_vector_key(self, conn: sqlite3.Connection, key: tuple[str, str, int]) -> None:
        known = self._info(conn, "vector_key")
        if known is None:
            conn.execute("INSERT INTO log_info VALUES ('vector_key', ?)", (json.dumps(key),))
        elif tuple(known) != tuple(key):
            raise DataError(
                f"{self.path}: field 'vector_key' is {tuple(known)!r}; this router encodes with "
                f"{tuple(key)!r}"
            )

    # ------------------------------------------------------------------ writing

    def record(
        self,
        decision: Decision,
        *,
        query: str | None = None,
        vector: np.ndarray | None = None,
        run_id: str | None = None,
        router: BaseRouter | None = None,
        llm_names: Sequence[str] | None = None,
        router_version: str | None = None,
    ) -> str:
        """Write one routed call; returns its run id.

        Args:
            decision: what the router decided (``route(..., explore=...)`` sets its propensity;
                a decision without one counts as greedy, propensity 1).
            query: the query text (required with ``store_queries``).
            vector: the pooled vector, when the log keeps no text and ``router`` is not given.
            run_id: the caller's id for the call (LangChain run id, ...); a new uuid4 if None.
            router: the router that decided: gives the LLM set, version and, without text, the
                query vector.
            llm_names: the router's LLMs, when ``router`` is not given.
            router_version: a label for the router (default: the routerdc version it was
                saved by).
        """
        vectors = None if vector is None else np.asarray(vector, dtype=np.float32)[None, :]
        return self.record_batch(
            [decision],
            queries=[query],
            run_ids=None if run_id is None else [run_id],
            router=router,
            llm_names=llm_names,
            router_version=router_version,
            vectors=vectors,
        )[0]

    def record_batch(
        self,
        decisions: Sequence[Decision],
        *,
        queries: Sequence[str | None],
        run_ids: Sequence[str] | None = None,
        router: BaseRouter | None = None,
        llm_names: Sequence[str] | None = None,
        router_version: str | None = None,
        vectors: np.ndarray | None = None,
    ) -> list[str]:
        """Write many routed calls in one transaction (all or none); same fields as
        :meth:`record`, one per call. Returns the run ids."""
        count = len(decisions)
        if len(queries) != count:
            raise DataError(f"field 'queries': {len(queries)} queries for {count} decisions")
        ids = [str(uuid.uuid4()) for _ in range(count)] if run_ids is None else list(run_ids)
        if len(ids) != count:
            raise DataError(f"field 'run_ids': {len(ids)} ids for {count} decisions")
        for run_id in ids:
            if not isinstance(run_id, str) or not run_id:
                raise DataTypeError(f"field 'run_id': expected a non-empty string, got {run_id!r}")
        names = _router_llms(router, llm_names)
        version = router_version
        if version is None and router is not None:
            version = getattr(router.config, "version", None) or None
        vector_key = None
        if not self.store_queries:
            if vectors is None:
                if router is None:
                    raise DataError(
                        "field 'vector': this log keeps no query text; pass the query vector "
                        "or the router that encodes it"
                    )
                texts = [q for q in queries if q is not None]
                if len(texts) != count:
                    raise DataError("field 'query': a router needs the query to encode it")
                vectors = router.pooled(texts)
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.shape[0] != count or vectors.ndim != 2:
                raise DataError(f"field 'vector': shape {vectors.shape} for {count} calls")
            if router is not None:
                vector_key = router.encoding_key
        created = time.time()
        rows = []
        for i, decision in enumerate(decisions):
            query = queries[i]
            if self.store_queries and (not isinstance(query, str) or not query.strip()):
                raise DataError(
                    f"call {i}, field 'query': expected a non-empty string, got {query!r}"
                )
            propensity = 1.0 if decision.propensity is None else float(decision.propensity)
            if not 0.0 < propensity <= 1.0:
                raise DataError(
                    f"call {i}, field 'propensity': must lie in (0, 1], got {propensity!r}"
                )
            unknown = [n for n in decision.probabilities if n not in names]
            if decision.llm not in names or unknown:
                raise UnknownLLMError(
                    f"call {i}, field 'llm': {decision.llm!r} / candidates {unknown} are not "
                    f"among the router's LLMs {names}"
                )
            rows.append(
                (
                    ids[i],
                    created,
                    query if self.store_queries else None,
                    None if vectors is None else vectors[i].tobytes(),
                    json.dumps(list(decision.probabilities)),
                    json.dumps(decision.probabilities),
                    json.dumps(list(decision.ranking)),
                    decision.llm,
                    int(decision.explored),
                    propensity,
                    None,
                    None,
                    None,
                    version,
                    llm_fingerprint(names),
                    None,
                    None,
                )
            )
        with self._write() as conn:
            self._bind_llms(conn, names)
            if vector_key is not None:
                self._bind_vector_key(conn, vector_key)
            taken = _existing(conn, ids)
            if taken:
                raise DataError(f"field 'run_id': {taken[0]!r} is already in the log")
            marks = ", ".join("?" * len(_CALL_COLUMNS))
            conn.executemany(f"INSERT INTO calls VALUES ({marks})", rows)
        return ids

    def record_answer(
        self,
        run_id: str,
        *,
        answered_by: str,
        latency_s: float | None = None,
        cost: float | None = None,
    ) -> None:
        """Record which LLM finally answered a call (after fallbacks), how fast, at what cost."""
        for name, value in (("latency_s", latency_s), ("cost", cost)):
            if value is not None and not (
                _is_number(value) and math.isfinite(value) and value >= 0
            ):
                raise DataError(
                    f"run {run_id!r}, field {name!r}: expected a number >= 0, got {value!r}"
                )
        with self._write() as conn:
            names = self._info(conn, "llm_names") or []
            if answered_by not in names:
                raise UnknownLLMError(
                    f"run {run_id!r}, field 'answered_by': {answered_by!r} is not one of the "
                    f"log's LLMs {names}"
                )
            self._require_run(conn, run_id)
            conn.execute(
                "UPDATE calls SET answered_by = ?, latency_s = ?, cost = ? WHERE run_id = ?",
                (answered_by, latency_s, cost, run_id),
            )

    def record_outcome(self, run_id: str, score: float) -> None:
        """Record how a call went: a score in [0, 1] (a thumbs-up is 1, a thumbs-down 0).

        Late outcomes are fine; a repeated one replaces the earlier (the last wins) and the
        replacement is logged at WARNING.
        """
        checked = _check_score(score, f"run {run_id!r}")
        with self._write() as conn:
            previous = self._require_run(conn, run_id)
            conn.execute(
                "UPDATE calls SET score = ?, outcome_time = ? WHERE run_id = ?",
                (checked, time.time(), run_id),
            )
        if previous is not None:
            logger.warning("run %r: outcome %s replaced by %s", run_id, previous, checked)

    def import_outcomes(self, path: str | Path) -> int:
        """Record outcomes in bulk from a ``.csv`` or ``.jsonl`` export with ``run_id`` and
        ``score`` fields. Every row is checked first; one bad row records none. Returns how
        many outcomes were recorded."""
        path = Path(path)
        pairs = list(_read_outcomes(path))
        stamp = time.time()
        replaced = 0
        with self._write() as conn:
            for where, run_id, score in pairs:
                previous = self._require_run(conn, run_id, where=where)
                replaced += previous is not None
                conn.execute(
                    "UPDATE calls SET score = ?, outcome_time = ? WHERE run_id = ?",
                    (score, stamp, run_id),
                )
        if replaced:
            logger.warning("%s: %d outcomes replaced earlier ones", path, replaced)
        return len(pairs)

    def _require_run(
        self, conn: sqlite3.Connection, run_id: object, *, where: str = ""
    ) -> float | None:
        """The run's current score (None when it has none); UnknownRunError if it is absent."""
        found = conn.execute("SELECT score FROM calls WHERE run_id = ?", (run_id,)).fetchone()
        if found is None:
            prefix = f"{where}, " if where else ""
            raise UnknownRunError(f"{prefix}field 'run_id': {run_id!r} is not in {self.path}")
        return None if found[0] is None else float(found[0])

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def calls(self) -> list[LoggedCall]:
        """Every logged call, oldest first."""
        cursor = self._connect().execute(
            f"SELECT {', '.join(_CALL_COLUMNS)} FROM calls ORDER BY created, rowid"
        )
        return [_to_call(row) for row in cursor]

    def to_routing_data(
        self, *, weighting: Weighting = "ips", clip: float = DEFAULT_WEIGHT_CLIP
    ) -> LoggedData:
        """The calls with an outcome, as routing data for ``core.fit``.

        Each row holds one score, for the LLM that answered (NaN for the others), and its cost
        when known. With ``weighting="ips"`` each row carries ``min(1 / propensity, clip)`` as
        its sample weight; ``core.fit`` then takes every neighbour mean weighted (self-normalised
        inverse propensity), so an LLM is judged on the queries it would have met under
        uniform routing, not on those the router already sent it.

        Args:
            weighting: ``"ips"`` (corrected) or ``"none"`` (every weight 1: each outcome counts
                once, through the same estimator).
            clip: the largest weight, >= 1.

        Raises:
            DataError: no call has an outcome yet, or ``clip`` < 1.
        """
        if weighting not in ("ips", "none"):
            raise DataError(f"field 'weighting': expected 'ips' or 'none', got {weighting!r}")
        if not (_is_number(clip) and clip >= 1):
            raise DataError(f"field 'clip': expected a number >= 1, got {clip!r}")
        names = self.llm_names
        scored = [c for c in self.calls() if c.score is not None]
        if names is None or not scored:
            raise DataError(f"{self.path}: no call has an outcome yet; nothing to train on")
        column = {name: i for i, name in enumerate(names)}
        scores = np.full((len(scored), len(names)), np.nan)
        costs = np.full_like(scores, np.nan)
        for row, call in enumerate(scored):
            scores[row, column[call.answering_llm]] = call.score
            if call.cost is not None:
                costs[row, column[call.answering_llm]] = call.cost
        propensities = np.array([c.propensity for c in scored])
        vector_key = None
        with_text = all(c.query is not None for c in scored)
        if with_text:
            queries = [str(c.query) for c in scored]
            vectors = None
        else:
            queries = [f"{VECTOR_QUERY_PREFIX}{c.run_id}>" for c in scored]
            vectors = np.stack([_vector_of(c) for c in scored])
            key = self._info(self._connect(), "vector_key")
            vector_key = None if key is None else (str(key[0]), str(key[1]), int(key[2]))
        if weighting == "ips":
            weights = np.minimum(1.0 / propensities, clip)
        else:
            weights = np.ones(len(scored))
        return LoggedData(
            queries=queries,
            llm_names=list(names),
            scores=scores,
            costs=costs if not np.isnan(costs).all() else None,
            run_ids=[c.run_id for c in scored],
            propensities=propensities,
            sample_weights=weights,
            vectors=vectors,
            vector_key=vector_key,
        )

    def stats(self) -> dict[str, Any]:
        """Calls, outcomes, share of calls per LLM, explored share, and each LLM's observed
        mean score with a 95% Wilson interval (exact for 0/1 outcomes, a close approximation
        for graded ones). Observed means are of the calls each LLM answered, so they carry
        the router's choices; compare LLMs on explored calls for an unbiased view."""
        calls = self.calls()
        names = self.llm_names or []
        total = len(calls)
        outcomes = [c for c in calls if c.score is not None]
        per_llm: dict[str, Any] = {}
        for name in names:
            chosen = sum(c.chosen == name for c in calls)
            own = [
                float(c.score) for c in outcomes if c.answering_llm == name and c.score is not None
            ]
            mean = float(np.mean(own)) if own else None
            low, high = wilson_interval(mean, len(own)) if mean is not None else (None, None)
            per_llm[name] = {
                "calls": chosen,
                "share": chosen / total if total else 0.0,
                "outcomes": len(own),
                "mean_score": mean,
                "interval_95": [low, high],
            }
        return {
            "calls": total,
            "outcomes": len(outcomes),
            "explored_share": sum(c.explored for c in calls) / total if total else 0.0,
            "llms": per_llm,
        }


def wilson_interval(mean: float, count: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``mean`` seen over ``count`` trials (95%)."""
    if count == 0:
        return (0.0, 1.0)
    denominator = 1 + z * z / count
    centre = (mean + z * z / (2 * count)) / denominator
    half = z * math.sqrt(mean * (1 - mean) / count + z * z / (4 * count * count)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


# ---------------------------------------------------------------------- helpers


def _router_llms(router: BaseRouter | None, llm_names: Sequence[str] | None) -> list[str]:
    if router is not None:
        return list(router.llm_names)
    if llm_names is None:
        raise DataError("field 'llm_names': pass the router or its llm_names to log a call")
    return list(llm_names)


def _existing(conn: sqlite3.Connection, ids: Sequence[str]) -> list[str]:
    taken: list[str] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        marks = ", ".join("?" * len(chunk))
        taken += [
            r[0] for r in conn.execute(f"SELECT run_id FROM calls WHERE run_id IN ({marks})", chunk)
        ]
    if len(set(ids)) != len(ids):
        taken += [i for i in dict.fromkeys(ids) if list(ids).count(i) > 1]
    return taken


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_score(score: object, where: str) -> float:
    if not _is_number(score):
        raise DataTypeError(f"{where}, field 'score': expected a number in [0, 1], got {score!r}")
    value = float(score)  # type: ignore[arg-type]
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise DataError(f"{where}, field 'score': must be a finite number in [0, 1], got {score!r}")
    return value


def _read_outcomes(path: Path) -> Iterator[tuple[str, str, float]]:
    """(where, run id, score) of each row of a CSV or JSONL export, every row checked."""
    if not path.is_file():
        raise DataError(f"{path}: no such outcomes file")
    suffix = path.suffix.lower()
    rows: list[tuple[str, Mapping[str, Any]]] = []
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"run_id", "score"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: missing columns {sorted(missing)}")
            for number, record in enumerate(reader, 2):
                value: Any = record["score"]
                with suppress(TypeError, ValueError):  # left as text, the check names it
                    value = float(value)
                rows.append(
                    (f"{path}, line {number}", {"run_id": record["run_id"], "score": value})
                )
    elif suffix == ".jsonl":
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {number}: not valid JSON ({err})") from err
            if not isinstance(parsed, dict):
                raise DataTypeError(f"{path}, line {number}: expected an object, got {parsed!r}")
            rows.append((f"{path}, line {number}", parsed))
    else:
        raise DataError(f"{path}: unknown outcomes file type {suffix!r}; use .csv or .jsonl")
    checked = []
    for where, fields in rows:
        run_id = fields.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise DataError(f"{where}, field 'run_id': expected a non-empty string, got {run_id!r}")
        checked.append((where, run_id, _check_score(fields.get("score"), where)))
    return iter(checked)


def _to_call(row: Sequence[Any]) -> LoggedCall:
    values = dict(zip(_CALL_COLUMNS, row, strict=True))
    blob = values["query_vector"]
    return LoggedCall(
        run_id=values["run_id"],
        created=values["created"],
        query=values["query"],
        query_vector=None if blob is None else np.frombuffer(blob, dtype=np.float32).copy(),
        allowed=json.loads(values["allowed"]),
        probabilities=json.loads(values["probabilities"]),
        ranking=json.loads(values["ranking"]),
        chosen=values["chosen"],
        explored=bool(values["explored"]),
        propensity=float(values["propensity"]),
        answered_by=values["answered_by"],
        latency_s=values["latency_s"],
        cost=values["cost"],
        router_version=values["router_version"],
        llm_fingerprint=values["llm_fingerprint"],
        score=values["score"],
        outcome_time=values["outcome_time"],
    )


def _vector_of(call: LoggedCall) -> np.ndarray:
    if call.query_vector is None:
        raise DataError(
            f"run {call.run_id!r}, field 'query_vector': the call has no text and no vector"
        )
    return call.query_vector
