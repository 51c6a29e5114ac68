"""isolation: running quantdoctor's worker processes.

The runner (a child process per job, its limits, timeout and signals), the request/response
protocol, cleanup on Ctrl-C, and reading how a dead worker died (`crash`, with the `Matcher`
record for recognised messages), and `prefork`: workers forked from a process that imported
TensorFlow once. The lowest layer above the seams: it knows nothing of models.
"""

from pathlib import Path

# The directory quantdoctor is imported from: every worker, cold or forked, imports this same copy.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
