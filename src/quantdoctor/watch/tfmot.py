"""The tfmot side of run/watch: quantization-aware training calls that fail, explained.

`quantize_model`, `quantize_apply`, `quantize_annotate_model` and `quantize_annotate_layer`
raise the same exception as ever (the script's error handling is untouched); before it
propagates, quantdoctor reports what it means, and on Python 3.11+ adds it as a note, shown under
the traceback:
- QD216: a Keras 3 model or layer given to tfmot, which works on tf_keras (Keras 2) objects only
  and says "`model` can only be a `keras.Model` instance";
- QD415: a layer tfmot has no QuantizeConfig for ("Layer layer_normalization:<class ...> is not
  supported"): it names the layer, every other unsupported layer of the model, and the fixes.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any, Callable

from quantdoctor import catalog, tf_private
from quantdoctor.report.model import Finding, Location
from quantdoctor.watch import session
from quantdoctor.watch.patches import PatchSet
from quantdoctor.watch.sources import caller_line

_UNSUPPORTED_LAYER = re.compile(r"Layer (?P<layer>[^\s:]+):<class '(?P<cls>[\w.]+)'> is not supported")
_busy = threading.local()


def install(module: Any, patches: PatchSet) -> None:
    """Wrap tfmot's quantize entry points as `module` holds them (the API module re-exports them)."""
    for name, function in tf_private.tfmot_quantize_functions(module).items():
        original = getattr(function, "__wrapped__", function) if getattr(function, "quantdoctor_wrapper", False) \
            else function
        setattr(module, name, original)  # a re-export of a function wrapped already: undo restores the original
        patches.replace(module, name, _explained(original))


MODULES = {name: install for name in tf_private.TFMOT_QUANTIZE_MODULES}


def _explained(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        if session.active() is None or getattr(_busy, "active", False):
            return original(*args, **kwargs)
        _busy.active = True
        try:
            return original(*args, **kwargs)
        except Exception as exc:
            target = args[0] if args else next(iter(kwargs.values()), None)
            session.guarded("explaining a tfmot error", _explain)(original.__name__, target, exc)
            raise
        finally:
            _busy.active = False
    call.quantdoctor_wrapper = True  # type: ignore[attr-defined]
    return call


def _explain(function: str, target: Any, exc: Exception) -> None:
    finding = _keras3_finding(function, target, exc) or _unsupported_layer_finding(function, target, exc)
    if finding is None:
        return
    session.record_finding(finding)
    if hasattr(exc, "add_note"):
        exc.add_note(f"quantdoctor: {finding.code} {finding.message}\nfix: {finding.fix.summary}")


def _keras3_finding(function: str, target: Any, exc: Exception) -> Finding | None:
    cls = type(target)
    if cls.__module__.partition(".")[0] != "keras":
        return None
    where = caller_line()
    name = getattr(target, "name", None)
    return catalog.get("QD216").finding(
        f"{where or 'The script'}: tfmot's {function}() was given the Keras 3 {cls.__name__} '{name}'; tfmot works on "
        f"tf_keras (Keras 2) objects only, hence \"{_first_line(exc)}\".",
        location=Location(layer=name if function == "quantize_annotate_layer" else None),
        evidence={"function": function, "class": f"{cls.__module__}.{cls.__qualname__}", "error": _first_line(exc),
                  **({"source": where.to_dict()} if where else {})})


def _unsupported_layer_finding(function: str, target: Any, exc: Exception) -> Finding | None:
    found = _UNSUPPORTED_LAYER.search(str(exc))
    if found is None:
        return None
    layer, class_path = found["layer"], found["cls"]
    class_name = class_path.rsplit(".", 1)[-1]
    unsupported = [other for other in getattr(target, "layers", []) if other.name != layer and _unsupported(other)]
    others = [f"{other.name} ({type(other).__name__})" for other in unsupported]
    also = f" The model's other layers without one: {', '.join(others)}." if others else ""
    classes = list(dict.fromkeys([class_name] + [type(other).__name__ for other in unsupported]))
    where = caller_line()
    return catalog.get("QD415").finding(
        f"{where or 'The script'}: tfmot's {function}() has no QuantizeConfig for layer '{layer}' ({class_name}), "
        f"so it refuses the whole model.{also}",
        location=Location(layer=layer), fix_code=_annotate_code(classes),
        evidence={"function": function, "layer": layer, "class": class_path, "other_unsupported_layers": others,
                  "error": _first_line(exc), **({"source": where.to_dict()} if where else {})})


def _unsupported(layer: Any) -> bool:
    if type(layer).__name__ == "InputLayer" or hasattr(layer, "quantize_config"):
        return False
    try:
        return not tf_private.tfmot_supports(layer)
    except tf_private.TensorFlowChanged:  # quantdoctor's side: said as an internal error (`session.guarded`)
        raise
    except Exception:  # a layer the registry cannot even inspect: leave it out of the list
        return False


def _annotate_code(class_names: list[str]) -> str:
    classes = ", ".join(f"tf_keras.layers.{name}" for name in class_names)
    return ("# quantize the layers tfmot supports; the others stay float\n"
            "def annotate(layer):\n"
            f"    if isinstance(layer, ({classes},)):\n"
            "        return layer\n"
            "    return tfmot.quantization.keras.quantize_annotate_layer(layer)\n"
            "\n"
            "annotated = tf_keras.models.clone_model(model, clone_function=annotate)\n"
            "q_aware_model = tfmot.quantization.keras.quantize_apply(annotated)")


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0][:300]
