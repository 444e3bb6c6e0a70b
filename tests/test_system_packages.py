"""`.ci/system-packages`, the set-up step of `make test` and CI: without root or sudo it installs nothing and
stops with one line naming the missing Debian packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "system-packages"
NOBODY = 65534


def _run_as_nobody(script: Path, path_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "/bin/bash", str(script)],
        env={"PATH": str(path_dir), "PYTHON": sys.executable, "HOME": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _dpkg_has(package: str) -> bool:
    return subprocess.run(["dpkg", "-s", package], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user (CI runs as root)")
def test_without_root_or_sudo_it_names_the_missing_packages_in_one_line_and_installs_nothing():
    # A PATH with the shell and dpkg only: every command-detected package is "not installed", and no sudo.
    # In a folder of its own that the unprivileged user can read (pytest's tmp_path is root's alone).
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        root.chmod(0o755)
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for tool in ("bash", "dpkg", "dpkg-query", "id", "cat", "tee"):
            os.symlink(shutil.which(tool), bin_dir / tool)
        script = root / "system-packages"
        shutil.copy(SCRIPT, script)
        script.chmod(0o755)
        result = _run_as_nobody(script, bin_dir)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    named = lines[0].split("not installed: ", 1)[1].split(" (")[0].split()
    # Found by command, so missing on this PATH; postgresql and the MySQL headers are found through dpkg.
    assert {"mariadb-server", "redis-server", "chromium", "gcc", "pkg-config", "make"} <= set(named)
    for package in ("postgresql", "default-libmysqlclient-dev"):
        assert (package in named) == (not _dpkg_has(package)), package
    assert "apt-get install " + " ".join(named) in lines[0]
