"""Node.js and the client tests' npm packages (tests/clients/js), installed when missing.

`npm ci` installs exactly what `package-lock.json` pins (integrity hashes checked)
into `tests/clients/js/node_modules` (git-ignored), again whenever the lock file
changes. A lock file held while installing lets parallel test processes share one
install.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
from pathlib import Path

from tests.support.debian import Unavailable, ensure_command

JS_DIR = Path(__file__).resolve().parents[1] / "clients" / "js"
NODE_MODULES = JS_DIR / "node_modules"
_STAMP = NODE_MODULES / ".installed-from-lock"
INSTALL_TIMEOUT = 600


def node() -> str:
    return ensure_command(("node", "nodejs"), "nodejs")


def npm() -> str:
    return ensure_command(("npm",), "npm")


def bin_path(name: str) -> Path:
    """An installed package's command (`tsc`, `openapi-typescript`)."""
    return NODE_MODULES / ".bin" / name


def ensure_node_modules() -> Path:
    """`node_modules` as the lock file pins it; raises `Unavailable` without Node or npm."""
    node()
    lock = (JS_DIR / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()
    guard = (
        Path(tempfile.gettempdir())
        / f"adiuva-npm-{hashlib.sha256(bytes(JS_DIR)).hexdigest()[:16]}.lock"
    )
    with open(guard, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if _STAMP.exists() and _STAMP.read_text() == digest:
            return NODE_MODULES
        result = subprocess.run(
            [npm(), "ci", "--include=dev", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        if result.returncode != 0:
            raise Unavailable(f"npm ci failed in {JS_DIR}:\n{result.stdout}{result.stderr}")
        _STAMP.write_text(digest)
    return NODE_MODULES
