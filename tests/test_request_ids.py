"""Request ids made by the server: unique within a process and across processes."""

from __future__ import annotations

import subprocess
import sys

from switchboard.convert import new_request_id


def test_unique_within_a_process() -> None:
    """A hundred thousand ids in a row are all different and 24 hex digits long."""
    ids = [new_request_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids[:1000])


def test_unique_across_processes() -> None:
    """Two processes (as two workers, or a restart) never make the same first ids."""
    code = "from switchboard.convert import new_request_id as n; print(n(), n())"
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True) for _ in range(2)]
    first, second = (set(r.stdout.split()) for r in runs)
    assert len(first | second) == 4
