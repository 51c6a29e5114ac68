"""What `fix` changes, as data: calls of `transforms` functions and converter settings.

A `Plan` is the user's model, data and settings plus the changes made so far. Data steps run in
quantdoctor's process on the recorded samples; model steps run where the Keras model lives (the
conversion worker for a model file, this process for a Keras object); settings are a `Recipe`.
The script generator writes the same plan as plain code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

from quantdoctor.edits import transforms
from quantdoctor.errors import InternalError
from quantdoctor.intake import data as data_intake
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.recipe import Recipe


@dataclass(frozen=True)
class Step:
    """One call `function(subject, *args)` of a `transforms` function, answering finding `code`.

    `kind` says what the call does: "model" returns a new Keras model; on each sample, "map"
    returns the changed sample, "filter" whether to keep it, "expand" the samples it becomes.
    """

    code: str
    kind: str
    function: str
    args: tuple = ()
    note: str = ""

    def call(self, subject: Any) -> Any:
        """Run the step on a model or a sample."""
        return getattr(transforms, self.function)(subject, *self.args)

    def source(self, subject: str) -> str:
        """The call as Python source, e.g. `cast_to(sample, {0: 'float32'})`: the arguments (which hold
        names from the user's files) as `repr()` literals, the function a `transforms` function's name."""
        if not (self.function.isidentifier() and callable(getattr(transforms, self.function, None))):
            raise InternalError(f"not a transforms function, so not written as code: {self.function!r}")
        return f"{self.function}({', '.join([subject, *map(repr, self.args)])})"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "kind": self.kind, "function": self.function, "args": list(self.args),
                "note": self.note}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(data["code"], data["kind"], data["function"], tuple(data["args"]), data.get("note", ""))


@dataclass(frozen=True)
class SettingsChange:
    """Converter settings a repair changed: the recipe fields and their values before."""

    code: str
    note: str
    before: dict[str, Any]


@dataclass
class Plan:
    """The settings and target fix converts with, and the steps applied to the model and data."""

    recipe: Recipe
    target: str | None
    model_steps: list[Step] = field(default_factory=list)
    data_steps: list[Step] = field(default_factory=list)
    settings_changes: list[SettingsChange] = field(default_factory=list)

    def copy(self) -> Plan:
        """A plan that can change without changing this one."""
        return replace(self, recipe=Recipe.from_dict(self.recipe.to_dict()), model_steps=list(self.model_steps),
                       data_steps=list(self.data_steps), settings_changes=list(self.settings_changes))

    def add_data_step(self, step: Step) -> None:
        """Append a data step; an "expand" step stays last, where the script's loop yields."""
        expanding = [i for i, s in enumerate(self.data_steps) if s.kind == "expand"]
        self.data_steps.insert(expanding[0] if expanding and step.kind != "expand" else len(self.data_steps), step)

    def change_settings(self, code: str, note: str, **values: Any) -> None:
        """Set recipe fields, remembering their values before for the script's comments."""
        before = {name: getattr(self.recipe, name) for name in values}
        for name, value in values.items():
            setattr(self.recipe, name, value)
        self.settings_changes.append(SettingsChange(code, note, before))


def samples_through(samples: Iterable[Any], steps: list[Step]) -> Iterator[Any]:
    """The samples after the data steps, in order (as the script's representative_dataset yields them)."""
    for sample in samples:
        yield from _through(sample, steps)


def _through(sample: Any, steps: list[Step]) -> Iterator[Any]:
    for position, step in enumerate(steps):
        if step.kind == "map":
            sample = step.call(sample)
        elif step.kind == "filter":
            if not step.call(sample):
                return
        elif step.kind == "expand":
            for item in step.call(sample):
                yield from _through(item, steps[position + 1:])
            return
    yield sample


def apply_data_steps(calibration: CalibrationSet | None, steps: list[Step]) -> CalibrationSet | None:
    """The calibration set the plan feeds the converter: the user's samples through the data steps."""
    if calibration is None or not steps:
        return calibration
    samples = []
    for sample in calibration.samples:
        if sample.holds_non_arrays:  # no step changes what is not an array (QD211): kept as the user made it
            samples.append(sample)
            continue
        changed = data_intake.from_generator(lambda original=sample.replay(): samples_through([original], steps),
                                             max_samples=2 ** 31)
        samples += changed.samples
    return replace(calibration, samples=samples, available=None)


def edit_model(model: Any, steps: list[dict[str, Any]] | list[Step]) -> Any:
    """The Keras model after the model steps (the conversion worker calls this with JSON steps)."""
    for step in steps:
        model = (step if isinstance(step, Step) else Step.from_dict(step)).call(model)
    return model
