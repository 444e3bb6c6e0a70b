"""A process whose wall clock runs ahead or behind, through Debian's libfaketime (LD_PRELOAD).

Only the wall clock moves (``time.time()``, ``datetime.now()``, SQLite's ``now``); the monotonic clock stays
true, as on a machine whose NTP is off. `.ci/system-packages` installs ``libfaketime``.
"""

from __future__ import annotations

import glob
import os


def libfaketime() -> str:
    """The path of libfaketime's multi-threaded library; a clear error when it is not installed."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        raise RuntimeError("libfaketime is not installed (Debian: apt-get install libfaketime; .ci/system-packages)")
    return found[0]


def skewed_env(seconds: float, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) for a child whose wall clock is ``seconds`` off."""
    env = dict(os.environ if base is None else base)
    env.update(
        LD_PRELOAD=libfaketime(),
        FAKETIME=f"{seconds:+.0f}",
        FAKETIME_DONT_FAKE_MONOTONIC="1",  # else every timed wait on a lock or event hangs
    )
    return env
