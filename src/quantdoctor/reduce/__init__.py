"""reduce: the smallest part of a Keras model that fails to convert the same way.

The worker-side cutting lives in `edits` (`call_graph`, `cut`); the generic repairs tried on the
culprit live in `fix` (`generic_repairs`, `search_repair`).

- `signature`: when two failed conversions are "the same failure".
- `search`: bisection, then delta debugging, over the calls.
- `run`: `qd.reduce`, the conversions of one reduction.
- `repro`: the standalone script that rebuilds the culprit layers and fails the same way.
- `render`: the terminal view.
"""
