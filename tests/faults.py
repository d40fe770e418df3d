"""Run the ``pgrad`` command with a SIGKILL at an exact moment of a file write (tests only).

    python tests/faults.py WHEN:FILE:N  pgrad-args...

kills the process the N-th time a file named FILE is about to be renamed into place
(``before``: its temp file is written, the rename not done: a kill inside the write) or has just
been (``after``). ``-`` in place of the spec runs pgrad without a fault. The test envs of
``conftest`` are registered, as in the test process.
"""

from __future__ import annotations

import os
import signal
import sys


def install(spec: str) -> None:
    when, target, n = spec.split(":")
    assert when in ("before", "after"), spec
    seen = 0
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        nonlocal seen
        hit = os.path.basename(dst) == target and (seen := seen + 1) == int(n)
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real_replace(src, dst, *args, **kwargs)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    os.replace = replace


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    import conftest  # noqa: F401  (registers the test envs)

    from pgrad.cli import main

    if sys.argv[1] != "-":
        install(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
