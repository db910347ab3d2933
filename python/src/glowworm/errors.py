"""The exceptions the client raises.

Every error of the relay or the network is a :class:`GlowwormError`. Bad inputs (a float64
array, shapes that do not agree, an upload over the relay's limit) are plain :class:`ValueError`
raised before anything is sent.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import Job


class GlowwormError(Exception):
    """Base class of every error from the relay or on the way to it."""


class RelayError(GlowwormError):
    """The relay refused a request: its HTTP status, its error code and its message.

    The relay answers every error as ``{"error": {"code": "...", "message": "..."}}``; ``code``
    is stable and meant for programs (``"missing_api_key"``, ``"bad_shape"``,
    ``"upload_too_large"``...), ``message`` is meant for people. A reply that is not that JSON
    (a proxy's error page, say) gets the code ``"http_error"`` and the start of its body.
    """

    def __init__(self, context: str, status: int, code: str, message: str) -> None:
        self.context = context
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{context} ({status} {code}): {message}")

    @property
    def transient(self) -> bool:
        """Whether a proxy in front of the relay said the relay is away (502, 503, 504)."""
        return self.status in (502, 503, 504)


class RelayUnreachable(GlowwormError):
    """The relay could not be reached or did not answer (refused, reset, timed out). ``cause``
    says why; the underlying exception (of requests) is its ``__cause__``."""

    def __init__(self, relay: str, cause: object) -> None:
        self.relay = relay
        self.cause = cause
        super().__init__(f"could not reach the relay at {relay}: {cause}")


class JobFailed(GlowwormError):
    """The job ended without a result: a unit failed verification or ran out of attempts."""

    def __init__(self, job: Job) -> None:
        self.job = job
        reason = job.failure or "the relay gave no reason"
        super().__init__(
            f"job {job.id} failed ({job.units_failed} of {job.units_total} units failed): {reason}"
        )


class JobCancelled(GlowwormError):
    """The job was cancelled (by its requester) before it was done; it has no result."""

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(f"job {job.id} was cancelled")


def error_from_reply(context: str, status: int, body: bytes, reason: str | None) -> RelayError:
    """A :class:`RelayError` from an error reply: the relay's code and message when the body is
    its JSON, else ``http_error`` with the body's first 200 characters (or the status's reason
    when the body is empty)."""
    text = body.decode("utf-8", errors="replace")
    try:
        detail = json.loads(text)["error"]
        return RelayError(context, status, str(detail["code"]), str(detail["message"]))
    except (ValueError, KeyError, TypeError):
        message = text[:200].strip() or (reason or "")
        return RelayError(context, status, "http_error", message)
