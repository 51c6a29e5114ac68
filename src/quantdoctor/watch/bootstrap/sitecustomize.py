"""`quantdoctor run`'s bootstrap, imported by the child Python at start-up (its directory is first on
PYTHONPATH). It must cost nothing when the script never touches TensorFlow:

- it installs one import trigger and imports nothing heavy;
- when the script first imports tensorflow, ai_edge_litert or tensorflow_model_optimization, the
  trigger loads quantdoctor from the tree `quantdoctor run` came from (nothing else is added to
  the script's sys.path) and starts the run's watch session;
- then it hands over to the environment's own sitecustomize, if there is one, as if it had not
  been there.

It acts only as Python's start-up `sitecustomize`, and watches only a process `quantdoctor run`
started (its options in the environment): imported under its package name (a tool walking the
package), it does nothing.
"""

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE = os.path.dirname(os.path.dirname(_HERE))  # .../quantdoctor
_TRIGGERS = frozenset({"tensorflow", "ai_edge_litert", "tensorflow_model_optimization"})


class _Trigger:
    """Starts quantdoctor's session on the first import of a watched package, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _TRIGGERS and self in sys.meta_path:
            sys.meta_path.remove(self)
            _start()
        return None  # the import itself proceeds as usual


def _start():
    try:
        if "quantdoctor" not in sys.modules:
            spec = importlib.util.spec_from_file_location(
                "quantdoctor", os.path.join(_PACKAGE, "__init__.py"), submodule_search_locations=[_PACKAGE])
            module = importlib.util.module_from_spec(spec)
            sys.modules["quantdoctor"] = module
            spec.loader.exec_module(module)
        from quantdoctor.watch.session import start_run_session

        start_run_session()
    except Exception as exc:  # the script runs on, unwatched
        sys.modules.pop("quantdoctor", None)
        print(f"quantdoctor run: cannot watch this Python ({type(exc).__name__}: {exc}); the script runs unwatched",
              file=sys.stderr)


def _chain_to_the_environments_sitecustomize():
    """Import the sitecustomize this one shadows, with this directory out of the way for good."""
    while _HERE in sys.path:
        sys.path.remove(_HERE)
    this = sys.modules.pop("sitecustomize", None)
    try:
        importlib.import_module("sitecustomize")
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise
        if this is not None:
            sys.modules["sitecustomize"] = this


if __name__ == "sitecustomize":
    if os.environ.get("QUANTDOCTOR_RUN_OPTIONS") is not None:  # watch/session.py's RUN_OPTIONS_VARIABLE
        sys.meta_path.insert(0, _Trigger())
    _chain_to_the_environments_sitecustomize()
