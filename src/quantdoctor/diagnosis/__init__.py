"""diagnosis: the diagnose pipeline.

`pipeline` (intake, data checks, isolated conversion, audit, report), `classify_failure` and
`mlir` (the converter's error text as catalog findings), `confirmation` (data findings the
converter's own error confirms) and `process_failures` (a worker that crashed, hung or ran out
of memory).
"""
