"""pytest plugin: which TensorFlow releases a test holds for, and the compatibility subset.

    @pytest.mark.tensorflow("2.16")     # the test holds only on these releases (minor versions)

A test whose converter message or behaviour belongs to some releases says so, rather than being
deleted: on the others it is skipped, naming the release. Its codes and matchers say the same
(`verified_on` on the catalog record), so the whole-suite coverage check only asks for them where
they hold (tests/coverage_markers.py).

The compatibility subset (`-m compat`, what `make compat` runs on the older supported releases) is
every test that proves a catalog matcher (`@pytest.mark.matcher`), every tf_private hook's test,
and the tests marked `@pytest.mark.compat` themselves (the demo and one real run of each command,
in test_supported_environment.py).
"""

from __future__ import annotations

import pytest

from quantdoctor.environment import current

HOOK_TESTS = "test_tf_private.py"


def pytest_configure(config):
    config.addinivalue_line("markers", "tensorflow(*releases): the test holds only on these TensorFlow releases")


def pytest_collection_modifyitems(items):
    running = current().tensorflow_release
    for item in items:
        if item.get_closest_marker("matcher") or item.path.name == HOOK_TESTS:
            item.add_marker(pytest.mark.compat)
        releases = item.get_closest_marker("tensorflow")
        if releases is not None and running not in releases.args:
            item.add_marker(pytest.mark.skip(reason=f"holds on TensorFlow {', '.join(releases.args)}; "
                                                    f"this is {current().tensorflow.version}"))
