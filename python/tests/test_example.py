"""examples/numpy_matmul.py, run as a requester runs it, against a real relay and worker."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, Setup, clean_env


def test_the_numpy_matmul_example_matches_numpy(setup: Setup) -> None:
    env = clean_env()
    env.update(GLOWWORM_RELAY=setup.url, GLOWWORM_API_KEY=setup.key)
    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / "numpy_matmul.py"), "100", "60", "70"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "(100, 60) @ (60, 70) matches NumPy: max abs error" in run.stdout, run.stdout
    assert "job " in run.stderr, run.stderr  # the progress bar
