"""isolation: running quantdoctor's worker processes.

The runner (a child process per job, its limits, timeout and signals), the request/response
protocol, cleanup on Ctrl-C, and reading how a dead worker died (`crash`, with the `Matcher`
record for recognised messages). The lowest layer above the seams: it knows nothing of models.
"""
