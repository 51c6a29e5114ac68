"""Accuracy budgets: the INT8 model with the fewest float ops that meets a metric budget.

`fix(..., max_drop=...)` checks the budget (`run.budget_objective`), runs its repair rounds, then
`run.search_budget` converts the repaired model once through the calibrating quantizer (or takes
it from the conversion cache) and `run.budget_search` makes variants with ops kept in float in an
isolated worker (`session`, `worker`): ranked from one instrumented pass, searched by galloping,
bisection and pruning (`search`) over ops with their readers and scale-sharing groups (`graph`),
judged by an `objective`. `script` is the end of fix's script that makes the chosen model again
with public TensorFlow API.
"""
