"""Where the model comes from, and how each round gets it with the plan's model steps applied.

A Keras file is loaded (and edited) by the conversion worker, never written; a Keras object
(given directly or behind a `from_keras_model` converter) is edited here, on a clone, and exported
to the round's own temporary directory. Other models (SavedModels, concrete functions) cannot be
edited: model repairs stop there with an instruction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantdoctor import tf_private
from quantdoctor.edits.plan import Step, edit_model
from quantdoctor.errors import EditFailed
from quantdoctor.intake import model as model_intake
from quantdoctor.intake.model import ModelSource
from quantdoctor.intake.user_input import model_source


@dataclass
class ModelOrigin:
    """The user's model as fix found it: a Keras file path, a Keras object, or another source."""

    model: Any
    keras_object: Any = None
    path: Path | None = None  # the model's file or SavedModel directory, when it has one
    signature_keys: list[str] | None = None

    @classmethod
    def of(cls, model: Any, signature_keys: list[str] | None = None) -> ModelOrigin:
        """Classify what the user passed (a converter stands for the model it was built from)."""
        if model_intake.is_converter(model):
            keras_model = tf_private.converter_keras_model(model)
            if keras_model is not None:
                return cls(model, keras_object=keras_model)
            saved_model = None if tf_private.converter_functions(model) else getattr(model, "saved_model_dir", None)
            return cls(model, path=Path(saved_model) if saved_model else None,
                       signature_keys=tf_private.converter_signature_keys(model) or None)
        if model_intake.is_keras_model(model):
            return cls(model, keras_object=model)
        return cls(model, path=Path(model) if isinstance(model, (str, Path)) else None, signature_keys=signature_keys)

    @property
    def keras_path(self) -> Path | None:
        """The Keras file, when the model is one."""
        return self.path if self.path and self.path.suffix.lower() in model_intake.KERAS_SUFFIXES else None

    @property
    def editable(self) -> bool:
        """Whether model repairs apply: a Keras model, as a file or an object."""
        return self.keras_object is not None or self.keras_path is not None

    def invalid_input_names(self, steps: list[Step]) -> list[Any]:
        """The Keras object's inputs the converter's export would fail on, before the model steps rename them."""
        if self.keras_object is None or any(step.function == "with_input_names" for step in steps):
            return []
        inputs = getattr(self.keras_object, "inputs", None) or []  # a bare layer (TFSMLayer) has none
        return [x for x in inputs if not model_intake.is_valid_tf_name(x.name)]

    def source(self, steps: list[Step], workdir: Path) -> ModelSource:
        """The model for one round, with the model steps applied (the user's file is never written)."""
        if self.keras_object is not None:
            try:
                edited = edit_model(self.keras_object, steps)
            except Exception as exc:  # quantdoctor's edit, on a model it does not fit: never the user's error
                if tf_private.changed_in(exc):
                    raise
                raise EditFailed(f"quantdoctor's edit of the model failed: {type(exc).__name__}: {exc}") from exc
            like = self.model if model_intake.is_converter(self.model) else None
            return model_intake.from_keras_model(edited, workdir, like=like)
        if self.keras_path is not None:
            source = model_intake.from_path(self.keras_path)
            source.edits = [step.to_dict() for step in steps]
            return source
        if model_intake.is_converter(self.model):
            return model_intake.from_converter(self.model, workdir)
        source = model_source(self.model, workdir)
        if self.signature_keys:
            source.signature_keys = list(self.signature_keys)
        return source
