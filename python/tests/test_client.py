"""The client against a real relay and real native workers; results checked against NumPy."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, Relay, Setup, Worker, binary, clean_env, free_port

import glowworm

#: f32 products of k terms against NumPy's: relative error well under 1e-4 for these sizes.
RTOL, ATOL = 1e-4, 1e-4


def random(rows: int, cols: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, cols), dtype=np.float32)


def test_matmul_returns_numpys_product(setup: Setup) -> None:
    client = glowworm.Client(setup.url, setup.key)
    # 130 x 100 cut into tiles of 64: 3 x 2 = 6 units.
    a, b = random(130, 70, 1), random(70, 100, 2)
    c = client.matmul(a, b, progress=False, timeout=300)
    assert c.shape == (130, 100) and c.dtype == np.float32
    np.testing.assert_allclose(c, a @ b, rtol=RTOL, atol=ATOL)

    job = client.jobs()[0]
    assert (job.kind, job.state, job.units_total, job.units_verified) == ("matmul", "done", 6, 6)
    assert job.describe() == "matmul (130, 70) @ (70, 100)"
    assert job.shape == (130, 100) and job.output_hash is not None
    assert client.job(job.id) == job


def test_progress_bar_goes_to_stderr(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    client = glowworm.Client(setup.url, setup.key)
    a, b = random(64, 32, 3), random(32, 96, 4)
    c = client.matmul(a, b, timeout=300)
    np.testing.assert_allclose(c, a @ b, rtol=RTOL, atol=ATOL)
    out, err = capsys.readouterr()
    assert out == ""
    job = client.jobs()[0]
    assert f"job {job.id}: 100%" in err and "2/2" in err and "unit" in err, err
    # Not a terminal: plain lines, without carriage returns or escape codes.
    assert "\r" not in err and "\x1b" not in err, repr(err)


def test_results_download_as_npy_or_raw_bytes(setup: Setup, tmp_path: Path) -> None:
    client = glowworm.Client(setup.url, setup.key)
    a, b = random(40, 24, 5), random(24, 8, 6)
    job = client.submit_matmul(a, b)
    assert job.state == "queued" and job.units_total == 1
    done = client.wait(job, progress=False, timeout=300)
    npy = client.download(done, tmp_path / "c.npy")
    raw = client.download(done.id, tmp_path / "c.f32")
    np.testing.assert_allclose(np.load(npy), a @ b, rtol=RTOL, atol=ATOL)
    assert np.array_equal(np.fromfile(raw, dtype="<f4").reshape(40, 8), np.load(npy))
    assert np.array_equal(client.result(done.id), np.load(npy))
    assert not list(tmp_path.glob("*.part"))


def test_a_kernel_from_a_wgsl_file_and_its_spec(setup: Setup) -> None:
    client = glowworm.Client(setup.url, setup.key)
    saxpy = REPO / "examples" / "saxpy"
    rng = np.random.default_rng(7)
    x = rng.standard_normal(1024, dtype=np.float32)
    y = rng.standard_normal(1024, dtype=np.float32)
    # The spec names its shader as "wgsl_file"; two workers compute each unit and must agree.
    out = client.kernel(saxpy / "saxpy.json", {"x": x, "y": y}, progress=False, timeout=300)
    assert out.shape == (1024,) and out.dtype == np.float32
    np.testing.assert_allclose(out, 2 * x + y, rtol=1e-6, atol=1e-6)

    # The same shader given as a .wgsl path next to a spec dict, and raw bytes as an input.
    spec = {
        "name": "saxpy",
        "inputs": [{"name": "x", "binding": 0}, {"name": "y", "binding": 1}],
        "output": {"binding": 2, "bytes": 256},
        "workgroups": [1, 1, 1],
        "units": 2,
    }
    ones = np.ones(128, dtype=np.float32)
    job = client.submit_kernel(spec, {"x": x[:128], "y": ones.tobytes()}, wgsl=saxpy / "saxpy.wgsl")
    assert job.kind == "kernel" and job.units_total == 2
    client.wait(job, progress=False, timeout=300)
    np.testing.assert_allclose(client.result(job), 2 * x[:128] + 1, rtol=1e-6, atol=1e-6)
    # The output words as unsigned integers: the same bytes.
    assert client.result(job, dtype=np.uint32).tobytes() == client.result(job).tobytes()


def test_a_bad_key_raises_the_relays_code(setup: Setup) -> None:
    client = glowworm.Client(setup.url, "gw_not_a_key_of_this_relay")
    with pytest.raises(glowworm.RelayError) as refused:
        client.jobs()
    assert (refused.value.status, refused.value.code) == (401, "bad_api_key")
    assert "could not list the jobs (401 bad_api_key)" in str(refused.value)
    with pytest.raises(glowworm.RelayError) as submitted:
        client.submit_matmul(random(2, 2, 0), random(2, 2, 0))
    assert submitted.value.code == "bad_api_key"
    assert submitted.value.context == "the relay refused the job"


def test_an_unknown_job_is_the_relays_404(setup: Setup) -> None:
    client = glowworm.Client(setup.url, setup.key)
    with pytest.raises(glowworm.RelayError) as err:
        client.job(10_000_000)
    assert (err.value.status, err.value.code) == (404, "unknown_job")
    # A refusal ends a wait at once; it is not retried as an outage would be.
    started = time.monotonic()
    with pytest.raises(glowworm.RelayError):
        client.wait(10_000_000, progress=False, retry_for=30)
    assert time.monotonic() - started < 5


def test_bad_inputs_are_refused_before_any_upload(setup: Setup) -> None:
    client = glowworm.Client(setup.url, setup.key)
    before = [job.id for job in client.jobs()]
    with pytest.raises(ValueError, match=r"A is \(4, 3\) and B is \(4, 5\)"):
        client.matmul(random(4, 3, 0), random(4, 5, 0))
    with pytest.raises(ValueError, match="float64"):
        client.matmul(np.ones((4, 3)), random(3, 5, 0))
    with pytest.raises(ValueError, match="A has inf at row 0, column 1"):
        client.matmul(np.array([[1, np.inf]], dtype=np.float32), random(2, 5, 0))
    with pytest.raises(ValueError, match="no input named 'z'"):
        client.submit_kernel(REPO / "examples/saxpy/saxpy.json", {"x": b"", "y": b"", "z": b""})
    assert [job.id for job in client.jobs()] == before


def test_the_relays_own_upload_limit_is_its_413(tmp_path: Path) -> None:
    relay = Relay(tmp_path, "--max-upload-bytes", "4096")
    key = relay.create_key("lab")
    relay.start()
    try:
        # The client knows only the default limit; the relay's is smaller.
        client = glowworm.Client(relay.url, key)
        with pytest.raises(glowworm.RelayError) as err:
            client.submit_matmul(random(32, 32, 0), random(32, 32, 1))
        assert (err.value.status, err.value.code) == (413, "upload_too_large")
        assert "MiB" in err.value.message and "max_upload_bytes" in err.value.message
        # Told the limit, the client refuses the job itself.
        told = glowworm.Client(relay.url, key, max_upload_bytes=4096)
        with pytest.raises(ValueError, match="over the relay's limit"):
            told.submit_matmul(random(32, 32, 0), random(32, 32, 1))
    finally:
        relay.stop()


def test_cancel_ends_a_wait_and_leaves_no_result(tmp_path: Path) -> None:
    # No worker: the job stays queued until it is cancelled.
    relay = Relay(tmp_path)
    key = relay.create_key("lab")
    relay.start()
    try:
        client = glowworm.Client(relay.url, key)
        job = client.submit_matmul(random(64, 64, 0), random(64, 64, 1))
        canceller = threading.Timer(1.0, client.cancel, args=(job.id,))
        canceller.start()
        with pytest.raises(glowworm.JobCancelled, match=f"job {job.id} was cancelled"):
            client.wait(job, progress=False, timeout=60)
        canceller.join()
        assert client.job(job).state == "cancelled"
        with pytest.raises(glowworm.RelayError) as err:
            client.result(job)
        assert (err.value.status, err.value.code) == (409, "job_cancelled")
        # Waiting with a timeout on a job that nobody computes.
        queued = client.submit_matmul(random(8, 8, 2), random(8, 8, 3))
        with pytest.raises(TimeoutError, match="keeps running on the relay"):
            client.wait(queued, progress=False, timeout=1)
        assert client.cancel(queued).state == "cancelled"
    finally:
        relay.stop()


def test_a_wait_outlives_a_relay_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    relay = Relay(tmp_path)
    key = relay.create_key("lab")
    relay.start()
    workers: list[Worker] = []
    try:
        client = glowworm.Client(relay.url, key)
        a, b = random(96, 48, 8), random(48, 80, 9)
        job = client.submit_matmul(a, b)

        def restart_then_work() -> None:
            time.sleep(1.5)
            relay.restart(away=3.0)
            workers.append(Worker(relay.url, tmp_path))

        restarter = threading.Thread(target=restart_then_work)
        restarter.start()
        done = client.wait(job, retry_for=60, timeout=300)
        restarter.join()
        np.testing.assert_allclose(client.result(done), a @ b, rtol=RTOL, atol=ATOL)
        err = capsys.readouterr().err
        assert (
            f"job {job.id}: relay unreachable" in err
            and f"could not reach the relay at {relay.url}" in err
        ), err
        assert f"job {job.id}: relay back after" in err, err

        # A download outlives a restart too.
        relay.stop()
        restarter = threading.Timer(2.0, relay.start)
        restarter.start()
        np.testing.assert_allclose(client.result(done), a @ b, rtol=RTOL, atol=ATOL)
        restarter.join()

        # A relay that stays away: the wait gives up after retry_for.
        relay.stop()
        started = time.monotonic()
        with pytest.raises(glowworm.RelayUnreachable, match="gave up after"):
            client.wait(job, progress=False, retry_for=2)
        assert 2 <= time.monotonic() - started < 10
    finally:
        for worker in workers:
            worker.stop()
        relay.stop()


def test_nothing_listening_is_relay_unreachable() -> None:
    client = glowworm.Client(f"http://127.0.0.1:{free_port()}", "gw_x")
    with pytest.raises(glowworm.RelayUnreachable, match="could not reach the relay at"):
        client.jobs()


def test_the_cli_and_the_client_speak_the_same_protocol(setup: Setup, tmp_path: Path) -> None:
    client = glowworm.Client(setup.url, setup.key)
    cli = [
        str(binary("GLOWWORM_CLI_BIN", "glowworm")),
        "--relay",
        setup.url,
        "--api-key",
        setup.key,
    ]
    a, b = random(70, 50, 10), random(50, 90, 11)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    # A job the CLI submits, fetched by the client.
    by_cli = subprocess.run(
        [*cli, "submit", "matmul", "--a", "a.npy", "--b", "b.npy", "--out", "c.npy"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert by_cli.returncode == 0, by_cli.stderr
    job = client.jobs()[0]
    assert job.describe() == "matmul (70, 50) @ (50, 90)"
    assert np.array_equal(client.result(job), np.load(tmp_path / "c.npy"))
    # A job the client submits, fetched by the CLI, which checks its hash.
    mine = client.wait(client.submit_matmul(a, b), progress=False, timeout=300)
    fetched = subprocess.run(
        [*cli, "result", str(mine.id), "--out", "mine.npy"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fetched.returncode == 0 and "sha256 verified" in fetched.stdout, fetched
    np.testing.assert_allclose(np.load(tmp_path / "mine.npy"), a @ b, rtol=RTOL, atol=ATOL)


def test_on_a_terminal_the_progress_is_a_bar(setup: Setup) -> None:
    # A requester's script with stderr on a terminal (a pseudo-terminal here).
    script = (
        "import numpy as np, glowworm, sys\n"
        f"client = glowworm.Client({setup.url!r}, {setup.key!r})\n"
        "a = np.ones((100, 20), np.float32)\n"
        "c = client.matmul(a, a.T)\n"
        "print(c.shape, float(c[0, 0]))\n"
    )
    main, other = pty.openpty()
    # 24 rows of 100 columns (a new pseudo-terminal has 0 columns, too few for any bar).
    fcntl.ioctl(other, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    run = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=other,
        env=clean_env(),
    )
    os.close(other)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, shown
    assert out.decode().strip() == "(100, 100) 20.0"
    text = shown.decode(errors="replace")
    # tqdm redraws its bar in place: carriage returns, units verified of all (2 x 2 tiles).
    assert "\r" in text and "job " in text and "4/4" in text, repr(text)


def test_a_key_without_budget_gets_the_relays_402(setup: Setup) -> None:
    key = setup.relay.create_key("broke", budget=0)
    client = glowworm.Client(setup.url, key)
    with pytest.raises(glowworm.RelayError) as err:
        client.submit_matmul(random(8, 8, 0), random(8, 8, 1))
    assert (err.value.status, err.value.code) == (402, "insufficient_budget")
    assert client.jobs() == []
