"""A real relay and real native workers, as processes: what the tests and the benchmarks run.

The relay is the ``glowworm-relay`` binary on 127.0.0.1 (a free port, a SQLite file in a
directory of the caller's, no demo jobs); a worker is the ``glowworm-worker`` binary, on the
machine's Vulkan adapter (lavapipe on a machine without a GPU). Their paths come from
``GLOWWORM_RELAY_BIN``, ``GLOWWORM_WORKER_BIN`` and ``GLOWWORM_CLI_BIN`` (``cargo xtask test``
sets them), else ``target/debug/`` of this repository.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]


class ServerError(RuntimeError):
    """A binary is missing or a relay did not start."""


def binary(variable: str, name: str) -> Path:
    """The path of a built binary: ``$variable``, else ``target/debug/name``; a
    :class:`ServerError` (a test fails, it is not skipped) when it does not exist."""
    path = Path(os.environ.get(variable) or REPO / "target" / "debug" / name)
    if not path.is_file():
        raise ServerError(
            f"{path} does not exist: build it (cargo build -p glowworm-relay -p glowworm-worker "
            f"-p glowworm-cli --bins) or set {variable}"
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This process's environment without GLOWWORM_ variables, with a runtime dir for wgpu's
    Vulkan loader."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GLOWWORM_")}
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp/glowworm-xdg")
    runtime.mkdir(parents=True, exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env["NO_COLOR"] = "1"
    return env


class Relay:
    """A ``glowworm-relay`` process with its database in ``dir``; ``restart`` keeps its port."""

    def __init__(self, dir: Path, *extra: str) -> None:
        self.bin = binary("GLOWWORM_RELAY_BIN", "glowworm-relay")
        self.dir = dir
        self.database = dir / "relay.sqlite"
        # Port 0 lets the relay pick a free port; restarts keep the one it picked.
        self.port = 0
        self.url = ""
        self.extra = extra
        self.process: subprocess.Popen[str] | None = None
        self.log: IO[str] | None = None

    def create_key(self, name: str, budget: int = 10**15) -> str:
        """A new requester's API key, from ``glowworm-relay keys create``, with ``budget``
        credits granted (``glowworm-relay budget grant``; 0: none)."""
        key = self.admin("keys", "create", "--name", name)
        assert key.startswith("gw_"), key
        if budget:
            self.admin("budget", "grant", name, str(budget), "--memo", "tests")
        return key

    def admin(self, *args: str) -> str:
        """Runs ``glowworm-relay ARGS --database ...`` (keys, budget); its stdout."""
        out = subprocess.run(
            [str(self.bin), *args, "--database", str(self.database)],
            capture_output=True,
            text=True,
            env=clean_env(),
        )
        if out.returncode != 0:
            raise ServerError(f"glowworm-relay {' '.join(args)} failed: {out.stderr}")
        return out.stdout.strip()

    def start(self) -> None:
        self.log = open(self.dir / "relay.log", "a")
        self.process = subprocess.Popen(
            [
                str(self.bin),
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--database",
                str(self.database),
                "--no-demo",
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=clean_env(),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on http://" in line:
            self.url = line.split("listening on ", 1)[1].strip()
            self.port = int(self.url.rsplit(":", 1)[1])
        else:
            self.stop()
            log = (self.dir / "relay.log").read_text()
            raise ServerError(f"the relay did not start: {line!r}\n{log}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def restart(self, away: float = 0.0) -> None:
        """Stops the relay and, ``away`` seconds later, starts it again on the same port."""
        self.stop()
        time.sleep(away)
        self.start()


class Worker:
    """A ``glowworm-worker`` process working for ``relay``, logging to ``dir/worker.log``."""

    def __init__(self, relay_url: str, dir: Path, name: str = "worker") -> None:
        bin = binary("GLOWWORM_WORKER_BIN", "glowworm-worker")
        self.log_path = dir / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [str(bin), "--relay", relay_url, "--key", str(dir / f"{name}.key"), "--in-flight", "2"],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
