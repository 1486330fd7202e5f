"""A snippet run by a new interpreter: for tests about what a process loads or starts when it begins afresh."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.config import PROJECT_ROOT


def run_fresh(code: str, timeout: int = 100, path: tuple[str, ...] = ()) -> str:
    """The output of ``code`` run by a new interpreter with the project root first on its path, and ``path``
    first on PYTHONPATH (which a worker server reads too: it does not take its parent's sys.path); a failure
    shows the snippet's error."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])} if path else None
    out = subprocess.run([sys.executable, "-c", f"import sys\nsys.path.insert(0, {str(PROJECT_ROOT)!r})\n{code}"],
                         capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
