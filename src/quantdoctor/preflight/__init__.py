"""Checks before conversion, run in quantdoctor's own process (no TensorFlow import).

- `data_checks`: NumPy checks of the calibration and eval samples against the model's inputs.
- `predict`: the verdict from the op inventory (traced in the worker by
  `convert.graph_inventory`), the op support table `op_support.json` and the data findings.

The table is written at development time by `devtools.op_probe` (through
`scripts/probe_op_support.py`), which imports TensorFlow.
"""
