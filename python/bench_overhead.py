"""The Python client's overhead against the ``glowworm`` CLI on one matmul, side by side.

Starts one relay (``glowworm-relay``, a temp SQLite file, ``--no-demo``, no per-key rate
limit) and one native worker, then alternates runs of the same (n, n) @ (n, n) product:

- CLI: ``glowworm submit matmul --a a.npy --b b.npy --out c.npy``, the process's wall time
  (the .npy inputs written beforehand; the result read back and checked afterwards, untimed);
- Python: what ``Client.matmul(a, b)`` does, from the arrays to the array, timed in its three
  steps: ``submit_matmul`` (checks, .npy encoding, upload), ``wait``, ``result`` (download,
  decoding, hash check).

Each result is checked against NumPy's ``a @ b``. Prints a Markdown table and the ratio of the
medians (Python / CLI). Both poll the job every 0.5 s, so a run's time is quantized by that.

    python python/bench_overhead.py                      # 1024 x 1024 @ 1024 x 1024, 3 runs each
    python python/bench_overhead.py --size 512 --runs 5

The binaries come from ``--relay-bin``, ``--worker-bin`` and ``--cli-bin``, else
``GLOWWORM_RELAY_BIN``... as for the tests, else ``target/release/`` when built there, else
``target/debug/``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

from servers import REPO, Relay, Worker, clean_env  # noqa: E402

import glowworm  # noqa: E402


def default_binary(variable: str, name: str) -> str:
    """``$variable``, else target/release/name when built, else target/debug/name."""
    release = REPO / "target" / "release" / name
    return os.environ.get(variable) or str(
        release if release.is_file() else REPO / "target/debug" / name
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="n of (n, n) @ (n, n) (1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each client (3)")
    parser.add_argument(
        "--relay-bin", default=default_binary("GLOWWORM_RELAY_BIN", "glowworm-relay")
    )
    parser.add_argument(
        "--worker-bin", default=default_binary("GLOWWORM_WORKER_BIN", "glowworm-worker")
    )
    parser.add_argument("--cli-bin", default=default_binary("GLOWWORM_CLI_BIN", "glowworm"))
    args = parser.parse_args()
    os.environ.update(GLOWWORM_RELAY_BIN=args.relay_bin, GLOWWORM_WORKER_BIN=args.worker_bin)

    n = args.size
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    expected = a @ b

    with tempfile.TemporaryDirectory() as tmp:
        dir = Path(tmp)
        np.save(dir / "a.npy", a)
        np.save(dir / "b.npy", b)
        # No per-key rate limit: a lavapipe worker on 64 x 64 tiles asks for more than the
        # default 100 requests per second, and a result refused with 429 is dropped by the
        # worker, leaving its unit leased until the lease expires (60 s) for whichever client
        # happens to be waiting.
        relay = Relay(dir, "--rate-per-key", "0")
        key = relay.create_key("bench")
        relay.start()
        worker = Worker(relay.url, dir)
        client = glowworm.Client(relay.url, key)
        env = clean_env()
        env.update(GLOWWORM_RELAY=relay.url, GLOWWORM_API_KEY=key)
        times: dict[str, list[float]] = {"CLI": [], "Python": []}
        steps: list[tuple[float, float, float]] = []
        try:
            # A small job first, so the worker has its adapter and kernels ready for both.
            small = rng.standard_normal((64, 64), dtype=np.float32)
            client.matmul(small, small, progress=False)
            for run in range(args.runs):
                for name in ("CLI", "Python") if run % 2 == 0 else ("Python", "CLI"):
                    out = dir / f"c{run}.npy"
                    started = time.perf_counter()
                    if name == "CLI":
                        subprocess.run(
                            [
                                args.cli_bin,
                                "submit",
                                "matmul",
                                "--a",
                                str(dir / "a.npy"),
                                "--b",
                                str(dir / "b.npy"),
                                "--out",
                                str(out),
                            ],
                            env=env,
                            check=True,
                            capture_output=True,
                        )
                        elapsed = time.perf_counter() - started
                        c = np.load(out)
                    else:
                        job = client.submit_matmul(a, b)
                        submitted = time.perf_counter()
                        done = client.wait(job, progress=False)
                        waited = time.perf_counter()
                        c = client.result(done)
                        elapsed = time.perf_counter() - started
                        steps.append(
                            (submitted - started, waited - submitted, started + elapsed - waited)
                        )
                    np.testing.assert_allclose(c, expected, rtol=1e-3, atol=1e-3)
                    times[name].append(elapsed)
                    print(f"run {run + 1} {name}: {elapsed:.2f} s", file=sys.stderr)
        finally:
            worker.stop()
            relay.stop()

    cli, python = statistics.median(times["CLI"]), statistics.median(times["Python"])
    print(
        f"({n}, {n}) @ ({n}, {n}), {args.runs} runs each, alternating; relay {args.relay_bin}, "
        f"worker {args.worker_bin}, CLI {args.cli_bin}\n"
    )
    print("| Client | Runs (s) | Median (s) |")
    print("| --- | --- | --- |")
    for name, median in (("CLI", cli), ("Python", python)):
        print(f"| {name} | {', '.join(f'{t:.2f}' for t in times[name])} | {median:.2f} |")
    submit, wait, result = (statistics.median(step[i] for step in steps) for i in range(3))
    print(
        f"\nPython's steps (medians): submit {submit:.2f} s, wait {wait:.2f} s, "
        f"result {result:.2f} s"
    )
    print(f"Python / CLI (medians): {python / cli:.3f} ({python - cli:+.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
