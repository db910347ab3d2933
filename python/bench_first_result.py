"""Time from ``pip install ./python`` in a fresh virtual environment to a first verified NumPy
result, with the relay and a native worker already built (and started before the clock).

Creates a virtual environment in a temp dir (timed apart), then times ``pip install ./python``
and ``python examples/numpy_matmul.py`` (a (256, 128) @ (128, 192) product through the client,
checked against NumPy) with that environment's Python. Prints a Markdown table.

    python3 python/bench_first_result.py            # pip's cache as it is (warm after a first run)
    python3 python/bench_first_result.py --cold     # pip install --no-cache-dir (from PyPI)

Runs with any Python 3.9+ (it needs nothing installed); the binaries come from
``GLOWWORM_RELAY_BIN`` and ``GLOWWORM_WORKER_BIN``, else ``target/debug/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

from servers import REPO, Relay, Worker, clean_env  # noqa: E402


def timed(command: list[str], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="pip install --no-cache-dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        dir = Path(tmp)
        relay = Relay(dir)
        key = relay.create_key("first")
        relay.start()
        worker = Worker(relay.url, dir)
        try:
            venv = dir / "venv"
            made = timed([sys.executable, "-m", "venv", str(venv)])
            python = str(venv / "bin" / "python")
            pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            if args.cold:
                pip.append("--no-cache-dir")
            installed = timed([*pip, str(REPO / "python")])
            env = clean_env()
            env.update(GLOWWORM_RELAY=relay.url, GLOWWORM_API_KEY=key)
            started = time.perf_counter()
            run = subprocess.run(
                [python, str(REPO / "examples" / "numpy_matmul.py")],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            first = time.perf_counter() - started
        finally:
            worker.stop()
            relay.stop()

    cache = "no pip cache (--no-cache-dir)" if args.cold else "pip's cache as it was"
    print(f"Python {sys.version.split()[0]}, {cache}; {run.stdout.strip()}\n")
    print("| Step | Seconds |")
    print("| --- | --- |")
    print(f"| python -m venv (not counted) | {made:.1f} |")
    print(f"| pip install ./python | {installed:.1f} |")
    print(
        f"| python examples/numpy_matmul.py (import, submit, wait, verified result) | {first:.1f} |"
    )
    print(f"| **pip install to first verified result** | **{installed + first:.1f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
