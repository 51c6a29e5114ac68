"""Accuracy budgets: the INT8 model with the fewest float ops that meets a metric budget.

`fix_accuracy` (public as `quantdoctor.fix_accuracy`) converts once through the calibrating
quantizer (or takes the conversion from the cache), then `budget_search` makes variants with ops
kept in float in an isolated worker (`session`, `worker`), ranks the ops from one instrumented
pass and searches by bisection and pruning (`search`), over single ops and scale-sharing groups
(`graph`), judged by an `objective`. `script` writes the standalone script that makes the chosen
model again with public TensorFlow API.
"""
