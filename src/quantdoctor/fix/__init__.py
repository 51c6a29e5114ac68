"""fix: from a failing conversion to a verified model, and the standalone script that makes it.

- `transforms`: the data and Keras model changes, plain functions the script copies verbatim.
- `plan`: the changes as data (steps and converter settings).
- `repairs`: the registry, one repair per catalog code.
- `rounds`: diagnose, repair, convert again, within a bound on the rounds.
- `verify`: the checks a model passes before it is returned (LiteRT runs it, isolated).
- `script`: the standalone script.
- `run`: `quantdoctor.fix`, the public entry point.

Nothing is imported here: `diagnose` reads the registry without loading the rest.
"""
