"""reduce: the smallest part of a Keras model that fails to convert the same way, and repair by search.

- `graph`: a Keras model as a flat list of layer calls (worker side).
- `cut`: a sub-model of some calls, calibrated on the real activations before the cut (worker side).
- `signature`: when two failed conversions are "the same failure".
- `search`: bisection, then delta debugging, over the calls.
- `run`: `qd.reduce`, the conversions of one reduction.
- `repro`: the standalone script that rebuilds the culprit layers and fails the same way.
- `repair`, `fix_search`: `fix`'s generic repairs on the culprit, each verified.
- `render`: the terminal view.
"""
