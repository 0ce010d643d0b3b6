"""Installing a missing tool from Debian's packages, as the test setup does for servers."""

from __future__ import annotations

import os
import shutil
import subprocess


class Unavailable(Exception):
    """The tool is missing and cannot be installed from here; the message says why."""


def ensure_command(names: tuple[str, ...], package: str) -> str:
    """The path of the first of `names` on PATH, installing `package` when none is.

    Installs only as root with apt-get at hand (the machines and CI of this project);
    elsewhere raises `Unavailable` naming the package to install. apt-get waits for
    the dpkg lock, so two test processes installing at once take turns.
    """
    found = _which(names)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(f"{names[0]} is not installed: install Debian's `{package}` package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    try:
        subprocess.run(
            ["apt-get", *wait, "update", "-qq"], check=True, env=env, capture_output=True
        )
        subprocess.run(
            ["apt-get", *wait, "install", "-y", "-qq", "--no-install-recommends", package],
            check=True,
            env=env,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        raise Unavailable(
            f"installing `{package}` failed: {exc.stderr.decode(errors='replace')[-2000:]}"
        ) from exc
    found = _which(names)
    if not found:
        raise Unavailable(f"{names[0]} still missing after installing `{package}`")
    return found


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        if found := shutil.which(name):
            return found
    return None
