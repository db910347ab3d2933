"""The requester's client: one method per thing a requester does with a relay.

The wire protocol is the relay's job API (``relay/src/http/job_api.rs``), spoken as the Rust CLI
(``cli/``) speaks it: every request carries ``Authorization: Bearer <API key>``; a job is a
``POST /v1/jobs`` multipart upload (a ``job`` part with the JSON spec, then one part per input,
matrices as .npy files); results come from ``GET /v1/jobs/{id}/result`` as a .npy file
(``Accept: application/x-npy``) and are checked against the job's ``output_hash`` (SHA-256).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Union
from urllib.parse import urlsplit

import numpy as np
import requests
from tqdm import tqdm

from . import inputs as checks
from .errors import (
    GlowwormError,
    JobCancelled,
    JobFailed,
    RelayError,
    RelayUnreachable,
    error_from_reply,
)
from .job import Job

__all__ = ["Client", "DEFAULT_RELAY"]

#: Where the client looks for a relay when given none and ``GLOWWORM_RELAY`` is unset.
DEFAULT_RELAY = "http://127.0.0.1:8787"

#: Seconds to connect, and to wait for a plain request's reply.
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
#: Seconds an upload or a download may take between two pieces of data.
TRANSFER_TIMEOUT = 600.0

#: How often a job's status is asked for while waiting.
POLL_INTERVAL = 0.5
#: How often a plain progress line is printed when stderr is not a terminal.
PLAIN_INTERVAL = 5.0
#: The first pause before asking an unreachable relay again; it doubles up to ``MAX_BACKOFF``.
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 5.0

JobRef = Union[Job, int]

log = logging.getLogger("glowworm")


def check_relay_url(relay: str) -> str:
    """The relay's base URL without a trailing slash, or a :class:`ValueError` with a hint
    (as the CLI's ``--relay``: ``127.0.0.1:8787`` gets "did you mean http://127.0.0.1:8787?")."""
    example = "such as http://127.0.0.1:8787"
    given = relay.strip()
    if not given:
        raise ValueError(f"no relay URL: pass Client(relay, ...) or set GLOWWORM_RELAY ({example})")
    if "://" not in given:
        raise ValueError(f"the relay URL {relay!r} has no scheme: did you mean http://{given}?")
    parts = urlsplit(given)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"the relay URL {relay!r} must start with http:// or https:// and name a host "
            f"({example})"
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v1") or "/v1/" in path or parts.query or parts.fragment:
        raise ValueError(
            f"the relay URL {relay!r} names an API path: give the relay's base URL, such as "
            f"{parts.scheme}://{parts.netloc}"
        )
    return given.rstrip("/")


def _reason(err: requests.RequestException) -> str:
    """The innermost cause of a network failure, in words ("Failed to establish a new
    connection: [Errno 111] Connection refused"), without urllib3's wrappers."""
    cause: object = err
    while True:
        inner = getattr(cause, "reason", None)
        if inner is None and isinstance(cause, BaseException) and cause.args:
            inner = cause.args[0]
        if not isinstance(inner, BaseException):
            break
        cause = inner
    text = str(cause)
    start = text.find("Failed to establish")
    return text[start:] if start >= 0 else text


def _job_id(job: JobRef) -> int:
    return job.id if isinstance(job, Job) else int(job)


class _Outage:
    """A relay that may be away for a while (restarting): failures that may pass by themselves
    are retried with a growing pause until ``limit`` seconds have passed without a reply. Says
    one line when an outage starts and one when it ends, as the CLI's ``wait --retry-for``."""

    def __init__(self, relay: str, limit: float, say: Callable[[str], None]) -> None:
        self.relay = relay
        self.limit = limit
        self.say = say
        self.since: float | None = None
        self.backoff = FIRST_BACKOFF

    def failed(self, err: GlowwormError) -> float:
        """After a failed request: how long to pause, or ``err`` raised again when it cannot
        pass by itself or the relay has been away for ``limit`` seconds."""
        transient = isinstance(err, RelayUnreachable) or (
            isinstance(err, RelayError) and err.transient
        )
        if not transient:
            raise err
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.say(f"relay unreachable ({err}), retrying for up to {self.limit:.0f} s")
        away = now - self.since
        if away >= self.limit:
            cause = err.cause if isinstance(err, RelayUnreachable) else err
            raise RelayUnreachable(
                self.relay, f"gave up after {away:.0f} s without a reply: {cause}"
            ) from err
        pause = min(self.backoff, self.limit - away)
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        return pause

    def succeeded(self) -> None:
        if self.since is not None:
            self.say(f"relay back after {time.monotonic() - self.since:.1f} s")
            self.since = None
        self.backoff = FIRST_BACKOFF


class _Progress:
    """A job's progress on stderr while waiting: a tqdm bar on a terminal; a plain line every
    few seconds otherwise (a log, CI: no escape codes); nothing with ``enabled`` false, when
    lines of their own (an outage) become log records."""

    def __init__(self, job_id: int, enabled: bool) -> None:
        self.job_id = job_id
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_line: float | None = None
        self.bar = tqdm(
            desc=f"job {job_id}",
            total=0,
            unit="unit",
            file=sys.stderr,
            disable=not self.interactive,
            dynamic_ncols=True,
        )

    def update(self, status: Job) -> None:
        counts = f"{status.units_leased} computing, {status.units_pending} queued"
        if self.interactive:
            self.bar.total = status.units_total
            self.bar.n = status.units_verified
            self.bar.set_postfix_str(counts, refresh=False)
            self.bar.refresh()
            return
        now = time.monotonic()
        due = self.last_line is None or now - self.last_line >= PLAIN_INTERVAL
        if self.enabled and (due or status.finished):
            meter = tqdm.format_meter(
                status.units_verified,
                status.units_total,
                now - self.started,
                prefix=f"job {self.job_id}",
                unit="unit",
                postfix=counts,
                ascii=True,
            )
            print(meter, file=sys.stderr)
            self.last_line = now

    def say(self, line: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        line = f"job {self.job_id}: {line}"
        if self.interactive:
            self.bar.write(line, file=sys.stderr)
        elif self.enabled:
            print(line, file=sys.stderr)
        else:
            log.warning(line)

    def close(self) -> None:
        self.bar.close()


class Client:
    """A connection to one relay with one API key.

    >>> client = Client("http://127.0.0.1:8787", "gw_...")
    >>> c = client.matmul(a, b)          # submit, wait with a progress bar, download, verify

    ``relay`` and ``api_key`` default to the ``GLOWWORM_RELAY`` and ``GLOWWORM_API_KEY``
    environment variables, as for the CLI. ``max_upload_bytes`` is the relay's upload limit
    (its ``max_upload_bytes``, 256 MiB unless its operator changed it): a larger job is refused
    with a :class:`ValueError` before it is sent; ``None`` leaves the check to the relay.
    """

    def __init__(
        self,
        relay: str | None = None,
        api_key: str | None = None,
        *,
        max_upload_bytes: int | None = checks.DEFAULT_MAX_UPLOAD_BYTES,
        session: requests.Session | None = None,
    ) -> None:
        self.relay = check_relay_url(
            relay if relay is not None else os.environ.get("GLOWWORM_RELAY", DEFAULT_RELAY)
        )
        key = (api_key if api_key is not None else os.environ.get("GLOWWORM_API_KEY", "")).strip()
        if not key:
            raise ValueError(
                "no API key: pass Client(relay, api_key) or set GLOWWORM_API_KEY (the relay's "
                "operator creates keys with `glowworm-relay keys create --name NAME`)"
            )
        self.max_upload_bytes = max_upload_bytes
        self._http = session or requests.Session()
        self._http.headers["Authorization"] = f"Bearer {key}"
        self._http.headers["User-Agent"] = "glowworm-python/0.1.0"

    def __repr__(self) -> str:
        return f"Client({self.relay!r})"

    def close(self) -> None:
        """Closes the client's connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- matrix products ------------------------------------------------------------------

    def matmul(
        self,
        a: np.ndarray,
        b: np.ndarray,
        *,
        progress: bool = True,
        retry_for: float = 60.0,
        timeout: float | None = None,
    ) -> np.ndarray:
        """``a @ b`` computed by the relay's contributors and verified: submits the job, waits
        for it (a progress bar on stderr), downloads the result and checks its hash.

        ``a`` (m x k) and ``b`` (k x n) are float32 NumPy arrays; the result is an (m, n)
        float32 array. See :meth:`wait` for ``progress``, ``retry_for`` and ``timeout``.
        """
        job = self.submit_matmul(a, b)
        done = self.wait(job, progress=progress, retry_for=retry_for, timeout=timeout)
        return self.result(done, retry_for=retry_for)

    def submit_matmul(self, a: np.ndarray, b: np.ndarray) -> Job:
        """Submits ``a @ b`` and returns the queued job at once.

        Raises :class:`ValueError` before anything is sent when the relay would refuse the
        inputs: not float32, not two-dimensional, A's columns not B's rows, a side over 16,384,
        NaN or infinities, a product that could overflow float32, or an upload over
        ``max_upload_bytes``.
        """
        a, b = checks.check_matmul(a, b)
        files = {"a": checks.npy_bytes(a), "b": checks.npy_bytes(b)}
        checks.check_upload_size(
            sum(len(data) for data in files.values()), self.max_upload_bytes, "A and B are"
        )
        return self._submit({"kind": "matmul"}, files)

    # --- custom kernels -------------------------------------------------------------------

    def kernel(
        self,
        spec: str | Path | Mapping[str, Any],
        inputs: Mapping[str, checks.KernelInput],
        *,
        wgsl: str | Path | None = None,
        dtype: Any = np.float32,
        progress: bool = True,
        retry_for: float = 60.0,
        timeout: float | None = None,
    ) -> np.ndarray:
        """Runs a custom WGSL kernel and returns its verified output: every unit's output in
        unit order, as a flat array of ``dtype`` (float32, int32 or uint32). See
        :meth:`submit_kernel` for ``spec``, ``inputs`` and ``wgsl``."""
        job = self.submit_kernel(spec, inputs, wgsl=wgsl)
        done = self.wait(job, progress=progress, retry_for=retry_for, timeout=timeout)
        return self.result(done, dtype=dtype, retry_for=retry_for)

    def submit_kernel(
        self,
        spec: str | Path | Mapping[str, Any],
        inputs: Mapping[str, checks.KernelInput],
        *,
        wgsl: str | Path | None = None,
    ) -> Job:
        """Submits a custom-kernel job and returns the queued job at once.

        ``spec`` is the job spec (a dict, or the path of a JSON file) as for the CLI's
        ``submit kernel --spec``; its shader is its ``"wgsl"``, its ``"wgsl_file"`` (relative
        to the spec file), or ``wgsl``: a .wgsl file's path or the source. ``inputs`` maps each
        of the spec's input names to a NumPy array (float32, int32 or uint32) or raw bytes.
        """
        full_spec = checks.load_kernel_spec(spec, wgsl)
        upload = checks.kernel_upload(full_spec, inputs)
        checks.check_upload_size(upload.size, self.max_upload_bytes, "the inputs are")
        return self._submit(upload.spec, upload.files)

    # --- following jobs -------------------------------------------------------------------

    def jobs(self, limit: int | None = None) -> list[Job]:
        """This key's jobs, newest first (the relay's default: the last 100)."""
        params = {"limit": limit} if limit is not None else None
        reply = self._request("GET", "/v1/jobs", "could not list the jobs", params=params)
        return [Job.from_json(value) for value in reply.json()["jobs"]]

    def job(self, job: JobRef) -> Job:
        """One job's state and progress."""
        job_id = _job_id(job)
        reply = self._request("GET", f"/v1/jobs/{job_id}", f"could not get job {job_id}")
        return Job.from_json(reply.json())

    def cancel(self, job: JobRef) -> Job:
        """Cancels a job: its remaining units are handed out no more. A finished job is left as
        it is. Returns the job's state after the cancel."""
        job_id = _job_id(job)
        reply = self._request("DELETE", f"/v1/jobs/{job_id}", f"could not cancel job {job_id}")
        return Job.from_json(reply.json())

    def wait(
        self,
        job: JobRef,
        *,
        progress: bool = True,
        retry_for: float = 60.0,
        timeout: float | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> Job:
        """Waits until the job is done and returns it, showing a progress bar on stderr (units
        verified of all units) unless ``progress`` is false.

        A relay that cannot be reached (restarting, say) is asked again with backoff for up to
        ``retry_for`` seconds, with a line when it goes away and one when it is back; a refusal
        by the relay (a :class:`RelayError`) ends the wait at once. Raises :class:`JobFailed`
        or :class:`JobCancelled` when the job ended without a result, and :class:`TimeoutError`
        when ``timeout`` seconds pass first (the job keeps running on the relay).
        """
        job_id = _job_id(job)
        started = time.monotonic()
        shown = _Progress(job_id, progress)
        outage = _Outage(self.relay, retry_for, shown.say)
        try:
            while True:
                try:
                    status = self.job(job_id)
                except GlowwormError as err:
                    time.sleep(outage.failed(err))
                    continue
                outage.succeeded()
                shown.update(status)
                if status.finished:
                    break
                if timeout is not None and time.monotonic() - started > timeout:
                    raise TimeoutError(
                        f"job {job_id} is still queued after {timeout:g} s "
                        f"({status.units_verified} of {status.units_total} units verified); it "
                        f"keeps running on the relay: wait for it again with client.wait({job_id})"
                    )
                time.sleep(poll_interval)
        except KeyboardInterrupt:
            shown.say(
                f"interrupted: it keeps running on the relay; resume with client.wait({job_id})"
            )
            raise
        finally:
            shown.close()
        if status.state == "failed":
            raise JobFailed(status)
        if status.state == "cancelled":
            raise JobCancelled(status)
        return status

    # --- results --------------------------------------------------------------------------

    def result(self, job: JobRef, *, dtype: Any = None, retry_for: float = 60.0) -> np.ndarray:
        """A done job's verified result as a NumPy array: (m, n) float32 for a matmul, a flat
        array for a kernel (float32, or ``dtype``: its output words read as int32 or uint32).

        The data is checked against the job's ``output_hash``. A relay that cannot be reached
        is asked again for up to ``retry_for`` seconds, as in :meth:`wait`.
        """
        status = job if isinstance(job, Job) and job.done else self.job(job)
        data = self._download(status.id, "application/x-npy", retry_for)
        array: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
        self._check_hash(status, array.tobytes())
        if dtype is not None:
            wanted = np.dtype(dtype)
            if wanted not in checks.KERNEL_DTYPES:
                raise ValueError(f"dtype {wanted} is not one of float32, int32, uint32")
            array = array.astype("<f4", copy=False).view(wanted.newbyteorder("<"))
        return array

    def download(self, job: JobRef, path: str | Path, *, retry_for: float = 60.0) -> Path:
        """Writes a done job's verified result to ``path``, as the CLI's ``result --out``: a
        .npy file when the name ends in .npy, else the raw bytes (little-endian f32 for a matmul,
        the kernel's output words). Written whole or not at all."""
        path = Path(path)
        status = job if isinstance(job, Job) and job.done else self.job(job)
        npy = path.suffix.lower() == ".npy"
        data = self._download(
            status.id, "application/x-npy" if npy else "application/octet-stream", retry_for
        )
        payload = np.load(io.BytesIO(data), allow_pickle=False).tobytes() if npy else data
        self._check_hash(status, payload)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        partial.replace(path)
        return path

    # --- HTTP -----------------------------------------------------------------------------

    def _submit(self, spec: Mapping[str, Any], files: Mapping[str, bytes]) -> Job:
        """``POST /v1/jobs``: the ``job`` part (JSON), then one file part per input."""
        parts: dict[str, tuple[str | None, bytes, str]] = {
            "job": (None, json.dumps(spec).encode(), "application/json")
        }
        for name, data in files.items():
            parts[name] = (f"{name}.npy", data, "application/octet-stream")
        reply = self._request(
            "POST", "/v1/jobs", "the relay refused the job", files=parts, timeout=TRANSFER_TIMEOUT
        )
        return Job.from_json(reply.json())

    def _download(self, job_id: int, accept: str, retry_for: float) -> bytes:
        """``GET /v1/jobs/{id}/result``, asked again through an outage of the relay (said in
        log records of the ``glowworm`` logger: on stderr unless logging is set up otherwise)."""
        outage = _Outage(self.relay, retry_for, lambda line: log.warning(f"job {job_id}: {line}"))
        while True:
            try:
                reply = self._request(
                    "GET",
                    f"/v1/jobs/{job_id}/result",
                    f"could not get the result of job {job_id}",
                    headers={"Accept": accept},
                    timeout=TRANSFER_TIMEOUT,
                )
                outage.succeeded()
                return reply.content
            except GlowwormError as err:
                time.sleep(outage.failed(err))

    def _request(
        self,
        method: str,
        path: str,
        context: str,
        *,
        timeout: float = REQUEST_TIMEOUT,
        **kwargs: Any,
    ) -> requests.Response:
        """Sends one request with the key; an error reply becomes a :class:`RelayError` with
        ``context`` and the relay's code and message, a network failure a
        :class:`RelayUnreachable`."""
        try:
            reply = self._http.request(
                method, self.relay + path, timeout=(CONNECT_TIMEOUT, timeout), **kwargs
            )
            # Read the whole body here, so a connection dropped mid-body is a network failure.
            _ = reply.content
        except requests.RequestException as err:
            raise RelayUnreachable(self.relay, _reason(err)) from err
        if not reply.ok:
            raise error_from_reply(context, reply.status_code, reply.content, reply.reason)
        return reply

    @staticmethod
    def _check_hash(status: Job, data: bytes) -> None:
        """Compares a downloaded result's data with the job's ``output_hash``."""
        if status.output_hash is None:
            return
        actual = hashlib.sha256(data).hexdigest()
        if actual != status.output_hash:
            raise GlowwormError(
                f"the result of job {status.id} does not match its output hash "
                f"(expected {status.output_hash}, got {actual})"
            )
