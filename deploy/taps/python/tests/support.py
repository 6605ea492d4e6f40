"""Shared test helpers: the package on sys.path, torch (or a clear failure), a private nats-server."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# the tests provoke warnings on purpose (rejected commands, -ERR); keep the output readable
logging.getLogger("latentwatch_tap").setLevel(logging.ERROR)

TORCH_HINT = (
    "torch is missing for {python}: install it with "
    "`apt-get install --no-install-recommends python3-torch` (Debian/Ubuntu) "
    "or `pip install torch`, or point PYTHON at an interpreter that has it"
)


def require_torch():
    """Import torch, or fail (not skip) with how to install it."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise AssertionError(TORCH_HINT.format(python=sys.executable)) from err
    return torch


def find_nats_server() -> str:
    for cand in (os.environ.get("NATS_SERVER"), "/usr/sbin/nats-server", shutil.which("nats-server")):
        if cand and os.path.exists(cand):
            return cand
    raise AssertionError(
        "nats-server is missing: `apt-get install nats-server` or set NATS_SERVER to the binary"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """A nats-server on 127.0.0.1 and a free port; ``config`` is config-file text, or
    ``config_path`` a config file (``env`` adds environment variables, e.g. passwords).
    :meth:`kill` stops the process only; :meth:`start` runs it again on the same port."""

    def __init__(self, config: Optional[str] = None, config_path: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None, port: Optional[int] = None):
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory()
        self.args = [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.port)]
        if config is not None:
            path = os.path.join(self._tmp.name, "server.conf")
            with open(path, "w") as f:
                f.write(config)
            self.args += ["-c", path]
        elif config_path is not None:
            self.args += ["-c", config_path]
        self.env = {**os.environ, **(env or {})}
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    self.stop()
                    raise AssertionError(f"nats-server did not start on port {self.port}: {err}")
                time.sleep(0.02)

    def kill(self) -> None:
        """Stop the server (SIGTERM, as an operator's restart would), keep the port and config."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()

    def stop(self) -> None:
        self.kill()
        self._tmp.cleanup()


def wait_until(cond: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {what} within {timeout} s, found it still false")
        time.sleep(0.002)


def f32le(values: List[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def decode_payload(payload: bytes, dtype: str) -> List[float]:
    """Independent decoder for checks: f32 as is, bf16 by shifting into the top half, f16 via struct 'e'."""
    if dtype == "f32":
        return list(struct.unpack(f"<{len(payload) // 4}f", payload))
    if dtype == "f16":
        return list(struct.unpack(f"<{len(payload) // 2}e", payload))
    halves = struct.unpack(f"<{len(payload) // 2}H", payload)
    return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]


class Recorder:
    """Collects messages from a subscription (thread-safe enough for tests: list append)."""

    def __init__(self):
        self.msgs: List = []

    def __call__(self, msg) -> None:
        self.msgs.append(msg)

    def json(self) -> List[Dict]:
        return [json.loads(m.data) for m in self.msgs]
