"""The environment quantdoctor runs models in: which TensorFlow, Keras, LiteRT, ... is installed,
whether each is in the range quantdoctor supports and was verified on, and which interpreter runs
models.

Everything is read from the installed packages' metadata: nothing here imports TensorFlow, so
`quantdoctor env`, the check before any work and the report header cost milliseconds.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from quantdoctor.errors import UsageError
from quantdoctor.litert import LITERT_PACKAGE, has_litert

# TensorFlow releases quantdoctor supports (oldest, newest), by minor release. TF 2.15 and older
# carry Keras 2 inside TensorFlow: the export and layer hooks in tf_private are Keras 3's.
SUPPORTED_TENSORFLOW = ("2.16", "2.21")
# The releases the catalog is verified on: `make test` runs the whole suite on the newest, `make compat`
# the catalog's tests on a middle one. A catalog check, matcher or tf_private hook verified elsewhere says
# so itself (its `verified_on`). `make compat` also runs on 2.16, but TensorFlow 2.16 aborts converting
# most Keras 3 models through from_keras_model (QD909): there the tests convert Keras' own export instead,
# so the catalog does not count as verified on the path most users take.
VERIFIED_TENSORFLOW = ("2.18", "2.21")
INSTALL_HINT = 'pip install "quantdoctor[tensorflow-cpu]" (or "quantdoctor[tensorflow]" for the GPU build)'


@dataclass(frozen=True)
class Package:
    """One package of the environment: the distribution installed, its version, and the range
    (oldest, newest release prefix, both included) the test suite ran it on. For TensorFlow the
    range is the supported one, and `verified_releases` the releases the suite really ran on."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    verified_range: tuple[str, str]
    verified_releases: tuple[str, ...] | None = None

    @property
    def in_verified_range(self) -> bool | None:
        """Whether the installed version was verified; None when it is not installed."""
        if self.version is None:
            return None
        if self.verified_releases is not None:
            return minor(self.version) in self.verified_releases
        return within(self.version, *self.verified_range)

    def to_dict(self) -> dict[str, Any]:
        """The package in the report header's `environment`."""
        return {"distribution": self.distribution, "version": self.version,
                "verified_range": list(self.verified_range), "in_verified_range": self.in_verified_range,
                **({"verified_releases": list(self.verified_releases)} if self.verified_releases else {})}


# Distribution names that install the `tensorflow` package (looked up first: scanning every
# installed distribution for the others takes a second).
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-macos", "tensorflow-intel",
                            "tensorflow-aarch64", "tf-nightly", "tf-nightly-cpu", "tf-nightly-macos")
# name, import name, distributions that provide it (the first found counts), verified range.
_PACKAGES = (
    ("TensorFlow", "tensorflow", TENSORFLOW_DISTRIBUTIONS, SUPPORTED_TENSORFLOW),
    ("Keras", "keras", ("keras",), ("3.15", "3.15")),
    ("tf_keras", "tf_keras", ("tf-keras", "tf-keras-nightly"), ("2.18", "2.21")),
    ("tfmot", "tensorflow_model_optimization", ("tensorflow-model-optimization", "tf-model-optimization-nightly"),
     ("0.8", "0.8")),
    ("LiteRT", LITERT_PACKAGE, ("ai-edge-litert", "ai-edge-litert-nightly"), ("1.2", "2.3")),
    ("NumPy", "numpy", ("numpy",), ("2.0", "2.4")),  # 2.0 with TF 2.18, 2.4 with 2.21
)
PYTHON_RANGE = ("3.10", "3.12")


def release(version: str, parts: int = 2) -> tuple[int, ...]:
    """The leading numeric release parts of a version: '2.18.0rc1' -> (2, 18); missing parts are 0."""
    numbers = []
    for piece in version.split(".")[:parts]:
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        numbers.append(int(digits or 0))
    return tuple(numbers + [0] * (parts - len(numbers)))


def within(version: str, oldest: str, newest: str) -> bool:
    """Whether `version` lies between the release prefixes `oldest` and `newest`, both included."""
    low, high = oldest.count(".") + 1, newest.count(".") + 1
    return release(version, low) >= release(oldest, low) and release(version, high) <= release(newest, high)


def minor(version: str) -> str:
    """'2.18.1' -> '2.18'."""
    return ".".join(map(str, release(version)))


def _tensorflow_distributions() -> list[str]:
    """The installed distributions that provide the `tensorflow` package: the known names, else any
    distribution shipping it (a fork under another name)."""
    found = [name for name in TENSORFLOW_DISTRIBUTIONS if _version(name) is not None]
    if not found and importlib.util.find_spec("tensorflow") is not None:
        found = sorted(dict.fromkeys(importlib.metadata.packages_distributions().get("tensorflow", [])))
    return found


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(distributions: tuple[str, ...] | list[str]) -> tuple[str | None, str | None]:
    for name in distributions:
        version = _version(name)
        if version is not None:
            return name, version
    return None, None


@dataclass(frozen=True)
class Environment:
    """The installed packages and the interpreter that runs models, as `quantdoctor env` prints them."""

    python: str
    packages: tuple[Package, ...]
    tensorflow_distributions: tuple[str, ...]
    interpreter: str

    def package(self, name: str) -> Package:
        """The package by its display name ('TensorFlow', 'LiteRT', ...)."""
        return next(p for p in self.packages if p.name == name)

    @property
    def tensorflow(self) -> Package:
        """The installed TensorFlow (version None when there is none)."""
        return self.package("TensorFlow")

    @property
    def tensorflow_release(self) -> str | None:
        """The installed TensorFlow's minor release ('2.18'), or None without TensorFlow."""
        return minor(self.tensorflow.version) if self.tensorflow.version else None

    def verified(self, releases: tuple[str, ...] = VERIFIED_TENSORFLOW) -> bool:
        """Whether the installed TensorFlow is one of `releases`."""
        return self.tensorflow_release in releases

    def catalog_note(self, releases: tuple[str, ...] = VERIFIED_TENSORFLOW) -> str | None:
        """"catalog verified on TensorFlow 2.18 and 2.21; you run 2.16.2: messages may differ", or
        None on a verified release."""
        if self.tensorflow_release is None or self.verified(releases):
            return None
        return (f"catalog verified on TensorFlow {releases_text(releases)}; you run {self.tensorflow.version}: "
                "messages may differ")

    @property
    def interpreter_note(self) -> str | None:
        """What the report header says when LiteRT's own package is missing."""
        if has_litert():
            return None
        return "LiteRT (ai-edge-litert) is not installed: models run in TensorFlow's own tf.lite.Interpreter"

    def to_dict(self) -> dict[str, Any]:
        """The report header's `environment`."""
        return {
            "python": {"version": self.python, "in_verified_range": within(self.python, *PYTHON_RANGE),
                       "verified_range": list(PYTHON_RANGE)},
            **{p.module: p.to_dict() for p in self.packages},
            "tensorflow_distributions": list(self.tensorflow_distributions),
            "interpreter": self.interpreter,
            "catalog_verified_on": list(VERIFIED_TENSORFLOW),
            "catalog_verified": self.verified(),
            "notes": self.notes(),
        }

    def notes(self) -> list[str]:
        """What a report says under its headline about the environment: an unverified TensorFlow, no LiteRT."""
        return [note for note in (self.catalog_note(), self.interpreter_note) if note]


def releases_text(releases: tuple[str, ...]) -> str:
    """('2.16', '2.18', '2.21') -> '2.16, 2.18 and 2.21'."""
    return releases[0] if len(releases) == 1 else f"{', '.join(releases[:-1])} and {releases[-1]}"


@lru_cache(maxsize=1)
def current() -> Environment:
    """The environment of this Python: the one quantdoctor's worker processes run in too."""
    tf_distributions = _tensorflow_distributions()
    packages = []
    for name, module, distributions, verified_range in _PACKAGES:
        distribution, version = _installed(tf_distributions if module == "tensorflow" else distributions)
        releases = VERIFIED_TENSORFLOW if module == "tensorflow" else None
        packages.append(Package(name, module, distribution, version, verified_range, releases))
    interpreter = ("ai_edge_litert.interpreter.Interpreter (LiteRT)" if has_litert()
                   else "tf.lite.Interpreter (TensorFlow's own)")
    return Environment(platform.python_version(), tuple(packages), tuple(tf_distributions), interpreter)


class UnsupportedEnvironmentError(UsageError):
    """TensorFlow is missing, or of a release quantdoctor does not support."""


def require_tensorflow() -> None:
    """Raise UnsupportedEnvironmentError, one line, unless a supported TensorFlow is installed."""
    environment = current()
    tensorflow = environment.tensorflow
    supported = f"TensorFlow {SUPPORTED_TENSORFLOW[0]} to {SUPPORTED_TENSORFLOW[1]}"
    if tensorflow.version is None:
        if importlib.util.find_spec("tensorflow") is not None:
            return  # built from source, without package metadata: let through, its version unknown
        raise UnsupportedEnvironmentError(f"TensorFlow is not installed in {sys.executable}: quantdoctor needs "
                                          f"{supported}; install it with {INSTALL_HINT}")
    if not within(tensorflow.version, *SUPPORTED_TENSORFLOW):
        raise UnsupportedEnvironmentError(
            f"{tensorflow.distribution} {tensorflow.version} is installed; quantdoctor supports {supported}: "
            f"run it in a virtual environment with {INSTALL_HINT}")


def require_model_reader() -> None:
    """Raise UnsupportedEnvironmentError unless a .tflite schema can be read: LiteRT's own package, or
    a supported TensorFlow's copy of it."""
    if not has_litert():
        require_tensorflow()
