"""The search for the fewest float ops that meet an accuracy budget.

1. The fully quantized model is scored; if it meets the budget, nothing stays float.
2. One instrumented pass ranks the candidates (`rank`): compare's own SQNR drop of every op and
   how well its output fits its int8 grid, on the fully quantized model. Candidates are each op
   with the ops reading its output, and scale-sharing groups (`graph.OpGraph.units`).
3. A galloping search finds how many of the top-ranked units must stay float: the sets grow by
   rank; the top 1, 2, 4, 8, ... units until one set meets the budget, then bisection below it.
   About 2 log2(k) variants for the k units needed; when even everything float misses the
   budget, the best effort is returned.
4. Pruning quantizes each kept op again, least sensitive first, and keeps it quantized when the
   budget still holds. Each op that stays float gets its gain: the metric lost without it.
5. For an integer-only accelerator (`accelerator=True`) pruning never adds an integer partition,
   and float islands are then joined into one region when that still meets the budget with fewer
   partitions (each island is a round trip off the accelerator).

Every variant is scored once (`Evaluator`); all of them form the candidates of the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdoctor.audit.checks import float_ops
from quantdoctor.audit.islands import integer_partitions
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.budget.graph import OpGraph, Unit
from quantdoctor.budget.objective import Objective
from quantdoctor.budget.session import VariantError, VariantSession
from quantdoctor.compare.analysis import layer_rows

PROFILE_SAMPLES = 64  # the ranking pass runs on at most this many eval samples
HEALTHY_GRID_DB = 40.0  # grid SQNR of a tensor filling its int8 range (a normal spread over +-4 sigma: 41 dB)
Progress = Callable[[str, int], None]
Strategy = Callable[["Evaluator", OpGraph, list[str], dict[str, "str | None"], bool], "SearchOutcome"]


@dataclass
class Candidate:
    """One variant: the ops kept float (`nodes`), how it scored, and what it costs."""

    nodes: frozenset[str]
    step: str  # int8 | grow | all | bisect | prune | join | (a benchmark strategy's own steps)
    metric: float | None
    meets: bool
    float_ops: int = 0
    size: int = 0
    partitions: int = 0
    model_path: Path | None = None
    error: str | None = None

    def to_dict(self, graph: OpGraph) -> dict[str, Any]:
        """JSON: the kept ops by node and layer, the score and the costs."""
        return {"step": self.step, "metric": self.metric, "meets_budget": self.meets,
                "float_ops": self.float_ops, "kept_float": len(self.nodes), "model_bytes": self.size,
                "integer_partitions": self.partitions,
                "nodes": sorted(self.nodes), "layers": sorted({graph.candidate(n).layer or n for n in self.nodes}),
                **({"error": self.error} if self.error else {})}


class Evaluator:
    """Makes, runs and scores variants in the session, each set of float ops once."""

    def __init__(self, session: VariantSession, objective: Objective, progress: Progress | None = None) -> None:
        self.session = session
        self.objective = objective
        self.tried: dict[frozenset[str], Candidate] = {}
        self.progress = progress

    def __call__(self, nodes: frozenset[str], step: str) -> Candidate:
        """The candidate keeping `nodes` in float (scored now, or as it was the first time)."""
        if nodes in self.tried:
            return self.tried[nodes]
        try:
            path, outputs, _ = self.session.variant(sorted(nodes))
        except VariantError as exc:
            candidate = Candidate(nodes, step, None, False, error=str(exc))
        else:
            model = read_tflite(path.read_bytes())
            score = self.objective.score(outputs)
            candidate = Candidate(nodes, step, score, self.objective.meets(score), len(float_ops(model)),
                                  path.stat().st_size, integer_partitions(model), path)
        self.tried[nodes] = candidate
        if self.progress:
            self.progress(step, len(self.tried))
        return candidate

    def failed_superset(self, nodes: frozenset[str]) -> Candidate | None:
        """A variant already scored that keeps at least `nodes` float and still misses the budget."""
        failed = [c for c in self.tried.values() if not c.meets and c.metric is not None and nodes <= c.nodes]
        return max(failed, key=lambda c: c.metric) if failed else None

    @property
    def candidates(self) -> list[Candidate]:
        """Every variant scored so far, in order."""
        return list(self.tried.values())


@dataclass
class SearchOutcome:
    """The chosen variant, whether it meets the budget, and everything tried on the way."""

    chosen: Candidate
    candidates: list[Candidate]
    gains: dict[str, float] = field(default_factory=dict)
    ranking_seconds: float = 0.0
    search_seconds: float = 0.0  # from the first variant to the answer (the worker's start-up not counted)

    @property
    def met_budget(self) -> bool:
        return self.chosen.meets


def search(evaluate: Evaluator, graph: OpGraph, layer_names: list[str], output_layers: dict[str, str | None],
           accelerator: bool = False) -> SearchOutcome:
    """The variant with the fewest float ops (for an accelerator: the fewest integer partitions, then
    float ops) that meets the budget, or the best effort when none does."""
    quantized = evaluate(frozenset(), "int8")
    if quantized.meets or quantized.model_path is None:
        return _outcome(evaluate, accelerator)
    started = time.perf_counter()
    sensitivity = rank(evaluate.session, quantized.model_path, layer_names, output_layers)
    units = graph.units(sensitivity)
    ranking_seconds = time.perf_counter() - started
    prefixes = growing_sets(units)
    meeting = _first_meeting(evaluate, prefixes)
    if meeting is None:
        return _outcome(evaluate, accelerator, ranking_seconds=ranking_seconds)
    chosen, gains = prune(evaluate, evaluate.tried[prefixes[meeting]], sensitivity, accelerator)
    if accelerator:
        join_islands(evaluate, graph, chosen)  # one more candidate; `best` takes it if it has fewer partitions
    return _outcome(evaluate, accelerator, gains, ranking_seconds)


def _first_meeting(evaluate: Evaluator, prefixes: list[frozenset[str]]) -> int | None:
    """The index of the smallest prefix that meets the budget (taken as monotonic), or None when even
    the last (everything float) does not: prefixes 1, 2, 4, 8, ... until one meets, then bisection
    between it and the last that failed. A good ranking needs a short prefix, found in few steps."""
    failing, size = -1, 1
    while True:
        index = min(size, len(prefixes)) - 1
        step = "all" if index == len(prefixes) - 1 else "grow"
        if evaluate(prefixes[index], step).meets:
            meeting = index
            break
        if index == len(prefixes) - 1:
            return None
        failing, size = index, size * 2
    while meeting - failing > 1:
        middle = (failing + meeting) // 2
        if evaluate(prefixes[middle], "bisect").meets:
            meeting = middle
        else:
            failing = middle
    return meeting


def rank(session: VariantSession, quantized: Path, layer_names: list[str],
         output_layers: dict[str, str | None]) -> dict[str, float]:
    """How sensitive every op of the fully quantized model is, in dB, from one instrumented pass:
    the larger of compare's own SQNR drop (what the op's int8 kernel loses) and how far its output
    falls short of a healthy int8 grid (`worst_channel_grid_sqnr_db` under `HEALTHY_GRID_DB`: what
    int8 cannot hold of that tensor, whatever feeds it)."""
    response = session.profile(quantized, min(session.samples, PROFILE_SAMPLES))
    return {row["tensor"]: max(row["own_sqnr_drop_db"], HEALTHY_GRID_DB - row["worst_channel_grid_sqnr_db"])
            for row in layer_rows(response, layer_names, output_layers)}


def growing_sets(units: list[Unit]) -> list[frozenset[str]]:
    """The union of the first k units, for each k that adds an op."""
    sets: list[frozenset[str]] = []
    current: frozenset[str] = frozenset()
    for unit in units:
        if not unit.nodes <= current:
            current = current | unit.nodes
            sets.append(current)
    return sets


def prune(evaluate: Evaluator, chosen: Candidate, sensitivity: dict[str, float],
          accelerator: bool) -> tuple[Candidate, dict[str, float]]:
    """Quantize each kept op again, least sensitive first, where the budget still holds (and, for an
    accelerator, no integer partition is added). Returns the result and each kept op's gain.

    A set contained in one that already failed fails too (the same monotony bisection takes), so it
    is not run again: the op's gain is then measured against that larger set, a lower bound."""
    gains = {}
    for node in sorted(chosen.nodes, key=lambda n: (sensitivity.get(n, 0.0), n)):
        trial = evaluate.failed_superset(chosen.nodes - {node}) or evaluate(chosen.nodes - {node}, "prune")
        if trial.meets and (not accelerator or trial.partitions <= chosen.partitions):
            chosen = trial
        else:
            gains[node] = chosen.metric - trial.metric if trial.metric is not None else None
    return chosen, {node: gain for node, gain in gains.items() if node in chosen.nodes}


def join_islands(evaluate: Evaluator, graph: OpGraph, chosen: Candidate) -> Candidate:
    """Keep float the ops between float islands too, when that meets the budget with fewer partitions."""
    between = graph.between(chosen.nodes)
    if not between:
        return chosen
    joined = evaluate(chosen.nodes | between, "join")
    return joined if joined.meets and joined.partitions < chosen.partitions else chosen


def best(candidates: list[Candidate], accelerator: bool) -> Candidate:
    """The variant meeting the budget with the fewest float ops (for an accelerator: partitions first),
    or, when none meets it, the best scoring one."""
    meeting = [c for c in candidates if c.meets]
    if meeting:
        return min(meeting, key=lambda c: ((c.partitions if accelerator else 0), c.float_ops, -c.metric, c.size))
    scored = [c for c in candidates if c.metric is not None] or candidates
    return max(scored, key=lambda c: (c.metric if c.metric is not None else float("-inf"), -c.float_ops))


def pareto(candidates: list[Candidate]) -> list[Candidate]:
    """Variants no other beats on both float ops (fewer) and metric (higher), by float ops."""
    scored = sorted((c for c in candidates if c.metric is not None), key=lambda c: (c.float_ops, -c.metric))
    front: list[Candidate] = []
    for candidate in scored:
        if not front or candidate.metric > front[-1].metric:
            front.append(candidate)
    return front


def _outcome(evaluate: Evaluator, accelerator: bool, gains: dict[str, float] | None = None,
             ranking_seconds: float = 0.0) -> SearchOutcome:
    candidates = evaluate.candidates
    return SearchOutcome(best(candidates, accelerator), candidates, gains or {}, ranking_seconds)
