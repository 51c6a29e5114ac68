"""pytest plugin: every catalog code and every converter-message matcher is proven by a real test.

Mark the real-model test that triggers a code or a matcher:

    @pytest.mark.code("QD201")                  # one or more catalog codes
    @pytest.mark.matcher("set-tensor-type")     # one or more names from classify_failure.MATCHERS

A mark counts only when its test PASSED in this run and, while it ran (fixtures included), the
code's finding was really created (`Check.finding`) or the matcher really matched
(`Matcher.search`) in the pytest process (a pytest-xdist worker's reports carry it to the
controller). So a mark on a test whose assertion is never reached,
or on a test that does not trigger what it claims, covers nothing. Findings made in a child
process (a `quantdoctor` CLI run) are invisible here: mark an in-process test (`qd.diagnose`,
`qd.audit`, `qd.compare`).

At the end of a run of the WHOLE suite, a code or matcher without such a test fails the session
(exit status 1) and the summary lists what is missing. The check is skipped when the run is
narrowed, since the proving test may simply not have been selected: explicit paths or node ids
other than the suite's own directory, `-k`, `-m`, `--lf`, `--sw`, `--deselect`, `--ignore`,
`--collect-only`, or any test deselected by another plugin. A marker naming an unknown code or
matcher is an error in every run.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

# User properties that carry a test's marks and what it produced in its reports: under pytest-xdist
# the tests run in worker processes, and the controller judges the run from their reports.
MARKED = "quantdoctor-marked"
PRODUCED = "quantdoctor-produced"
KINDS = {"code": "a catalog code such as QD201", "matcher": "a matcher name from classify_failure.MATCHERS"}


def known() -> dict[str, set[str]]:
    """What a mark may name: every catalog code and every matcher."""
    from quantdoctor import catalog
    from quantdoctor.diagnosis.classify_failure import MATCHERS

    return {"code": set(catalog.CHECKS), "matcher": {matcher.name for matcher in MATCHERS}}


def required() -> dict[str, set[str]]:
    """What must be covered: every catalog code and matcher verified on the running TensorFlow release
    (`verified_on`; one that belongs to other releases is proven by a test marked for those)."""
    from quantdoctor import catalog
    from quantdoctor.diagnosis.classify_failure import MATCHERS
    from quantdoctor.environment import current

    running = current().tensorflow_release
    return {"code": {code for code, check in catalog.CHECKS.items() if running in check.verified_on},
            "matcher": {matcher.name for matcher in MATCHERS if running in matcher.verified_on}}


def install(config: pytest.Config, suite_root: Path) -> None:
    """Register the markers and the coverage check for tests under `suite_root`."""
    for kind, what in KINDS.items():
        config.addinivalue_line("markers", f"{kind}(*names): the test triggers {what} with a real model")
    config.pluginmanager.register(CoverageCheck(config, suite_root), "quantdoctor-coverage-markers")


class CoverageCheck:
    """Records marks, passes and what each test really produced; judges at session end."""

    def __init__(self, config: pytest.Config, suite_root: Path):
        self.config = config
        self.suite_root = suite_root.resolve()
        self.marks: dict[str, set[tuple[str, str]]] = {}
        self.produced: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.passed: set[str] = set()
        self.deselected = 0
        self.current: pytest.Item | None = None
        self.missing: list[str] = []
        self._restore: list[tuple[type, str, Any]] = []

    # -- recording ---------------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from quantdoctor.catalog.check import Check
        from quantdoctor.isolation.matcher import Matcher

        check = self

        def finding(self_check: Any, *args: Any, **kwargs: Any) -> Any:
            check.record("code", self_check.code)
            return original_finding(self_check, *args, **kwargs)

        def search(self_matcher: Any, text: str) -> Any:
            found = original_search(self_matcher, text)
            if found is not None:
                check.record("matcher", self_matcher.name)
            return found

        original_finding, original_search = Check.finding, Matcher.search
        self._restore = [(Check, "finding", original_finding), (Matcher, "search", original_search)]
        Check.finding, Matcher.search = finding, search

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)

    def record(self, kind: str, name: str) -> None:
        if self.current is not None:
            self.produced[self.current.nodeid].add((kind, name))
            self.current.user_properties.append((PRODUCED, (kind, name)))

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        names = known()
        for item in items:
            marks = set()
            for mark in item.iter_markers():
                if mark.name not in KINDS:
                    continue
                unknown = [name for name in mark.args if name not in names[mark.name]]
                if not mark.args or unknown or mark.kwargs:
                    raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{mark.name}{mark.args} must name "
                                            f"{KINDS[mark.name]}; unknown: {unknown or 'none given'}")
                marks |= {(mark.name, name) for name in mark.args}
            self.marks[item.nodeid] = marks
            item.user_properties.extend((MARKED, mark) for mark in sorted(marks))

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> None:
        self.current = item

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.current = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self.passed.add(report.nodeid)
        for key, value in report.user_properties:  # what a pytest-xdist worker saw, for the controller
            if key == MARKED:
                self.marks.setdefault(report.nodeid, set()).add(tuple(value))
            elif key == PRODUCED:
                self.produced[report.nodeid].add(tuple(value))

    # -- judging -----------------------------------------------------------------------------
    def whole_suite(self) -> bool:
        """True when this run selected every test of the suite (see the module docstring)."""
        option = self.config.option
        narrowing = (option.keyword, option.markexpr, getattr(option, "lf", False),
                     getattr(option, "stepwise", False), getattr(option, "deselect", None),
                     getattr(option, "ignore", None), getattr(option, "ignore_glob", None),
                     option.collectonly)
        if any(narrowing) or self.deselected:
            return False
        if self.config.args_source == pytest.Config.ArgsSource.TESTPATHS:
            return True  # no path given: the configured testpaths, the whole suite
        roots = {self.suite_root, self.suite_root.parent}
        here = self.config.invocation_params.dir
        return all("::" not in arg and (here / arg).resolve() in roots for arg in self.config.args)

    def uncovered(self) -> list[str]:
        """One line per code or matcher without a passing marked test that produced it."""
        covered = {mark for nodeid in self.passed for mark in self.marks.get(nodeid, set())
                   if mark in self.produced[nodeid]}
        lines = []
        for kind, names in required().items():
            for name in sorted(names):
                if (kind, name) in covered:
                    continue
                claimed = sorted(nodeid for nodeid, marks in self.marks.items() if (kind, name) in marks)
                why = (f"marked tests passed without producing it or did not pass: {', '.join(claimed)}" if claimed
                       else f"no test carries @pytest.mark.{kind}({name!r})")
                lines.append(f"{kind} {name}: {why}")
        return lines

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if session.exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not self.whole_suite():
            return  # interrupted, or a usage error: nothing to judge
        self.missing = self.uncovered()
        if self.missing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.missing:
            terminalreporter.section("catalog coverage", sep="=", red=True, bold=True)
            terminalreporter.line("Every catalog code and matcher needs a real-model test that passed and produced it:")
            for line in self.missing:
                terminalreporter.line(f"  {line}")
