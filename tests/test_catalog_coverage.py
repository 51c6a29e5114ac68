"""The catalog coverage check itself (coverage_markers.py): every catalog code and every matcher must
be proven by a passing real-model test that produced it. These tests run small fake suites with
pytester, each in a pytest process of its own, so the check is shown to fail where it should, and to
stay quiet on narrowed runs.

The fake suites run in subprocesses: an in-process run would restore `sys.modules` afterwards, and a
module first imported inside it would be imported again as a new object by later tests of this
process (the suite's own check would then watch a `Check` class no test uses), so this file would
have to run last in its pytest-xdist worker. Run apart, it runs in any order."""

from __future__ import annotations

import gc
import importlib
import pkgutil
from pathlib import Path

import coverage_markers
import pytest

import quantdoctor
from quantdoctor.diagnosis.classify_failure import MATCHERS
from quantdoctor.isolation.matcher import Matcher

CONFTEST = """
import sys
from pathlib import Path

sys.path.insert(0, {here!r})  # the suite's own plugin, imported from the suite's directory

import coverage_markers

coverage_markers.required = lambda: {required!r}  # the fake catalog


def pytest_configure(config):
    coverage_markers.install(config, suite_root=Path(__file__).parent)
"""

SUITE = """
import pytest

from quantdoctor import catalog
from quantdoctor.diagnosis.classify_failure import MATCHERS

SET_TENSOR_TYPE = next(m for m in MATCHERS if m.name == "set-tensor-type")


@pytest.mark.code("QD201")
def test_produces_qd201():
    catalog.get("QD201").finding("float64 samples")


@pytest.mark.matcher("set-tensor-type")
def test_matches():
    assert SET_TENSOR_TYPE.search("Got value of type FLOAT64 but expected type FLOAT32 for input 0, name: x:0")


@pytest.mark.code("QD202")
def test_claims_qd202_but_never_produces_it():
    catalog.get("QD201").finding("not QD202")
"""


def fake_conftest(pytester: pytest.Pytester, codes: set[str]) -> None:
    """The fake suite's conftest: the coverage plugin, with a catalog of `codes` and one matcher."""
    here = str(Path(coverage_markers.__file__).parent)
    pytester.makeconftest(CONFTEST.format(here=here, required={"code": codes, "matcher": {"set-tensor-type"}}))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The fake suite run in a pytest process of its own."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.fixture
def fake_catalog(pytester):
    """A catalog of two codes and one matcher, and a suite that proves all but QD202."""
    fake_conftest(pytester, {"QD201", "QD202"})
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_a_marked_test_that_does_not_produce_its_code_fails_the_whole_run(fake_catalog):
    result = run(fake_catalog)
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*catalog coverage*",
                                 "*code QD202: marked tests passed without producing it or did not pass: "
                                 "test_suite.py::test_claims_qd202_but_never_produces_it"])
    assert "QD201" not in result.stdout.str().split("catalog coverage")[1]


def test_under_xdist_the_controller_judges_the_marks_and_findings_the_workers_report(fake_catalog):
    """What `make test` runs: two pytest-xdist workers. Marks and findings live in the workers; the
    controller, which judges the run, learns them from the tests' reports."""
    result = run(fake_catalog, "-n", "2")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*code QD202: marked tests passed without producing it or did not pass: "
                                 "test_suite.py::test_claims_qd202_but_never_produces_it"])
    assert "QD201" not in result.stdout.str().split("catalog coverage")[1]


def test_a_code_without_any_marked_test_is_named(fake_catalog):
    fake_conftest(fake_catalog, {"QD201", "QD202", "QD203"})
    result = run(fake_catalog)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*code QD203: no test carries @pytest.mark.code('QD203')"])


def test_a_failing_marked_test_covers_nothing(fake_catalog):
    fake_catalog.makepyfile(test_suite=SUITE.replace('catalog.get("QD201").finding("float64 samples")',
                                                      'catalog.get("QD201").finding("x"); assert False'))
    result = run(fake_catalog)
    result.stdout.fnmatch_lines(["*code QD201: marked tests passed without producing it or did not pass: "
                                 "test_suite.py::test_produces_qd201"])


@pytest.mark.parametrize("narrowing", [["-k", "produces"], ["-m", "code"], ["test_suite.py::test_matches"],
                                       ["--deselect", "test_suite.py::test_matches"]])
def test_narrowed_runs_are_not_judged(fake_catalog, narrowing):
    result = run(fake_catalog, *narrowing)
    assert result.ret == pytest.ExitCode.OK
    assert "catalog coverage" not in result.stdout.str()


def test_the_whole_suite_directory_given_explicitly_is_judged(fake_catalog):
    result = run(fake_catalog, str(fake_catalog.path))
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_plain_run_of_the_configured_testpaths_is_judged(fake_catalog):
    """What `make test` does: `pytest` with no path, the suite's testpaths from the configuration."""
    fake_catalog.makeini("[pytest]\ntestpaths = .\n")
    result = run(fake_catalog)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "code QD202" in result.stdout.str()


def test_a_marker_naming_an_unknown_code_is_an_error_even_in_a_narrowed_run(fake_catalog):
    fake_catalog.makepyfile(test_typo="""
import pytest

@pytest.mark.code("QD2O1")
def test_typo():
    pass
""")
    result = run(fake_catalog, "-k", "typo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_typo.py::test_typo: @pytest.mark.code*must name a catalog code*QD2O1*"])


def test_every_matcher_object_is_in_the_registry_under_a_unique_name():
    """A matcher created anywhere in quantdoctor but left out of MATCHERS would escape the check."""
    for module in pkgutil.walk_packages(quantdoctor.__path__, "quantdoctor."):
        importlib.import_module(module.name)
    names = [matcher.name for matcher in MATCHERS]
    assert len(names) == len(set(names)), names
    made = {id(obj) for obj in gc.get_objects() if isinstance(obj, Matcher)}
    assert made == {id(matcher) for matcher in MATCHERS}
