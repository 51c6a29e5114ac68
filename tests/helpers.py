"""Assertions shared by the catalog tests."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

from quantdoctor.report.model import Finding, Report

QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))


def run(*args: str, **popen: Any) -> subprocess.CompletedProcess:
    """The `quantdoctor` command run as a user runs it; `popen` goes to subprocess.run (cwd, env)."""
    return subprocess.run([QUANTDOCTOR, *args], capture_output=True, text=True, timeout=600, **popen)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def only(report: Report, code: str) -> Finding:
    """The single finding with `code`; fails listing what was found otherwise."""
    matches = [f for f in report.findings if f.code == code]
    assert len(matches) == 1, f"expected one {code}, got {[f.code for f in report.findings]}"
    return matches[0]


def root(report: Report) -> Finding:
    """The root cause; fails when there is none."""
    assert report.root_cause is not None, f"no root cause among {[f.code for f in report.findings]}"
    return report.root_cause


def assert_finding(finding: Finding, code: str, category: str, severity: str, **location: str | None) -> None:
    """Exact code, category, severity, and the location fields given."""
    assert (finding.code, finding.category, finding.severity) == (code, category, severity), finding
    for key, value in location.items():
        assert getattr(finding.location, key) == value, f"{key}: {finding.location}"
