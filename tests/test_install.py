"""The test environment `make test` builds: one TensorFlow, and the QAT test tools next to it."""

from __future__ import annotations

from importlib import metadata

TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel")


def test_exactly_one_tensorflow_distribution_is_installed():
    """tf-keras declares `tensorflow`: installed with its dependencies it would put a second TensorFlow
    next to the pinned tensorflow-cpu, two distributions writing one package directory."""
    installed = []
    for name in TENSORFLOW_DISTRIBUTIONS:
        try:
            installed.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    assert installed == ["tensorflow-cpu==2.21.0"]


def test_qat_test_tools_are_the_pinned_ones_and_not_package_dependencies():
    assert metadata.version("tf-keras").startswith("2.21.")
    assert metadata.version("tensorflow-model-optimization") == "0.8.1"
    requirements = metadata.requires("quantdoctor") or []
    runtime = [r for r in requirements if "extra ==" not in r]
    assert not [r for r in runtime if r.startswith(("tf-keras", "tensorflow-model-optimization"))]
