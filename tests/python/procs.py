"""Process helpers shared by the Python client tests: start `$SUBMUX_BIN` (a simulator or
submux itself), read the line that names its address, wait for readiness, stop them all."""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
from typing import List

BIN = os.environ.get("SUBMUX_BIN")
PROCS: List[subprocess.Popen] = []


def start(args: List[str], pattern: str, what: str) -> re.Match:
    """Spawn `BIN args` and return the match of the first stdout line fitting `pattern`."""
    p = subprocess.Popen(
        [BIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"RUST_LOG": "warn", **os.environ},
    )
    PROCS.append(p)
    deadline = time.monotonic() + 20
    assert p.stdout is not None
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"{what} exited early ({p.poll()})")
        m = re.match(pattern, line.strip())
        if m:
            return m
    raise RuntimeError(f"{what} did not start in 20 s")


def wait_ready(base: str) -> None:
    """Poll submux's `/readyz` at `base` (http://HOST:PORT) until it answers 200."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("submux never became ready")
        time.sleep(0.05)


def stop_all() -> None:
    for p in PROCS:
        p.terminate()
