"""A job as the relay describes it (``GET /v1/jobs/{id}``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Job:
    """One job's state and progress.

    ``state`` is ``"queued"`` (waiting for or being computed by contributors), ``"done"``,
    ``"failed"`` or ``"cancelled"``. ``shape`` is the product's ``(m, n)`` for a matmul (C is
    m x n), ``None`` for a kernel. ``raw`` is the relay's JSON as it was sent.
    """

    id: int
    kind: str
    state: str
    units_total: int
    units_verified: int
    units_pending: int
    units_leased: int
    units_failed: int
    progress: float
    shape: tuple[int, int] | None = None
    inner: int | None = None
    output_bytes: int = 0
    output_hash: str | None = None
    failure: str | None = None
    created_at_unix_ms: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Job:
        shape = value.get("shape")
        return cls(
            id=int(value["id"]),
            kind=str(value.get("kind", "")),
            state=str(value["state"]),
            units_total=int(value["units_total"]),
            units_verified=int(value["units_verified"]),
            units_pending=int(value["units_pending"]),
            units_leased=int(value["units_leased"]),
            units_failed=int(value["units_failed"]),
            progress=float(value.get("progress", 0.0)),
            shape=(int(shape["m"]), int(shape["n"])) if shape else None,
            inner=int(shape["k"]) if shape else None,
            output_bytes=int(value.get("output_bytes", 0)),
            output_hash=value.get("output_hash"),
            failure=value.get("failure"),
            created_at_unix_ms=int(value.get("created_at_unix_ms", 0)),
            raw=value,
        )

    @property
    def finished(self) -> bool:
        """Whether the job has ended: done, failed or cancelled."""
        return self.state != "queued"

    @property
    def done(self) -> bool:
        """Whether the job is done and its verified result can be downloaded."""
        return self.state == "done"

    def describe(self) -> str:
        """``"matmul (700, 300) @ (300, 500)"`` (NumPy's order) or ``"kernel"``."""
        if self.shape is not None and self.inner is not None:
            (m, n), k = self.shape, self.inner
            return f"{self.kind} ({m}, {k}) @ ({k}, {n})"
        return self.kind
