"""Exit 1 unless exactly one installed distribution ships the `tensorflow` package.

Two of them (say `tensorflow` and `tensorflow-cpu`) write into one directory and break each other;
`make wheel-test` runs this after installing quantdoctor's wheel next to the user's TensorFlow.
"""

from __future__ import annotations

import sys
from importlib import metadata


def tensorflow_distributions() -> list[str]:
    """Every installed distribution with files under `tensorflow/`, as name==version."""
    found = []
    for distribution in metadata.distributions():
        if any(str(path).startswith("tensorflow/") for path in distribution.files or []):
            found.append(f"{distribution.metadata['Name']}=={distribution.version}")
    return sorted(found)


if __name__ == "__main__":
    installed = tensorflow_distributions()
    print(f"TensorFlow distributions installed: {', '.join(installed) or 'none'}")
    sys.exit(0 if len(installed) == 1 else 1)
