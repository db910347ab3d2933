"""Checking and encoding inputs before anything is uploaded, as the ``glowworm`` CLI does.

Everything here raises :class:`ValueError` with a message that names the input and says what to
do; the relay would refuse the same inputs, but only after the whole upload.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

#: Largest side of a matrix the relay accepts in a matmul job (its ``MAX_MATRIX_SIDE``).
MAX_MATRIX_SIDE = 16_384

#: The relay's default ``max_upload_bytes`` (256 MiB). A relay's operator may raise it.
DEFAULT_MAX_UPLOAD_BYTES = 256 << 20

#: The relay refuses a product whose bound on a row reaches half of float32's largest value.
MAX_PRODUCT_BOUND = float(np.finfo(np.float32).max) / 2

#: Rows of A whose product bound is computed at once (in float64).
BOUND_ROWS = 256

#: The dtypes a kernel input may have.
KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.uint32))

#: A kernel input: a NumPy array (float32, int32 or uint32) or the raw bytes the shader reads.
KernelInput = Union[np.ndarray, bytes]


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as a .npy file (C order, little-endian), as ``numpy.save`` writes it."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")))
    return buffer.getvalue()


def mib(size: int) -> str:
    """``size`` bytes in MiB for people: ``"256 MiB"``, ``"0.01 MiB"``."""
    whole = size % (1 << 20) == 0
    return f"{size >> 20} MiB" if whole else f"{size / (1 << 20):.2f} MiB"


def check_upload_size(size: int, limit: int | None, what: str) -> None:
    """Refuses an upload of ``size`` bytes over the relay's ``limit`` (``None``: no check)."""
    if limit is not None and size > limit:
        raise ValueError(
            f"{what} {mib(size)} to upload, over the relay's limit of {mib(limit)} "
            "(max_upload_bytes): split the job into smaller ones (by blocks of rows of A, say), "
            "or ask the relay's operator to raise max_upload_bytes and pass it to "
            "Client(..., max_upload_bytes=...)"
        )


def check_matrix(name: str, array: Any) -> np.ndarray:
    """Checks one matmul input and returns it as a C-ordered little-endian float32 array."""
    if not isinstance(array, np.ndarray):
        raise ValueError(
            f"{name} is a {type(array).__name__}, not a NumPy array: "
            f"pass np.asarray({name.lower()}, dtype=np.float32)"
        )
    if array.dtype.kind != "f" or array.dtype.itemsize != 4:
        raise ValueError(
            f"{name} has dtype {array.dtype}; matmul inputs are float32. "
            f"Convert it with {name.lower()}.astype(np.float32)"
        )
    if array.ndim != 2:
        raise ValueError(
            f"{name} has shape {array.shape}; a matmul input is a matrix, with two dimensions"
        )
    rows, cols = array.shape
    if not (1 <= rows <= MAX_MATRIX_SIDE and 1 <= cols <= MAX_MATRIX_SIDE):
        raise ValueError(
            f"{name} has shape {array.shape}; the relay takes each side from 1 to {MAX_MATRIX_SIDE}"
        )
    finite = np.isfinite(array)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"{name} has {array[row, col]} at row {row}, column {col} (counting from 0); "
            "matrix inputs must be finite: replace or drop NaN and infinities "
            f"(np.nan_to_num({name.lower()}) replaces them)"
        )
    return np.ascontiguousarray(array, dtype="<f4")


def check_matmul(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checks A (m x k) and B (k x n) as the relay will: float32, two dimensions, sides from 1
    to 16,384, A's columns equal to B's rows, finite values, and a product that cannot overflow
    float32. Returns both as C-ordered little-endian float32 arrays."""
    a = check_matrix("A", a)
    b = check_matrix("B", b)
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"A is {a.shape} and B is {b.shape}: A's columns must equal B's rows "
            "(A is m x k, B is k x n)"
        )
    # The relay's bound, in float64 as the relay computes it: for each row i of A, the sum over
    # l of |A[i,l]| * max_j |B[l,j]|. By blocks of rows, to hold little float64 at once.
    b_row_max = np.abs(b).max(axis=1).astype(np.float64)
    for first in range(0, a.shape[0], BOUND_ROWS):
        bounds = np.abs(a[first : first + BOUND_ROWS]).astype(np.float64) @ b_row_max
        over = np.flatnonzero(bounds >= MAX_PRODUCT_BOUND)
        if over.size:
            row = first + int(over[0])
            raise ValueError(
                f"row {row} of A times B could overflow float32 (its bound is "
                f"{bounds[over[0]]:.3e}, the relay accepts under {MAX_PRODUCT_BOUND:.3e}): scale "
                "A or B down, by a power of two for example, and the result back up"
            )
    return a, b


@dataclass
class KernelUpload:
    """A kernel job ready to upload: its spec (with the WGSL inline) and one file per input."""

    spec: dict[str, Any]
    files: dict[str, bytes]

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())


def load_kernel_spec(
    spec: str | Path | Mapping[str, Any], wgsl: str | Path | None
) -> dict[str, Any]:
    """A kernel spec as a dict with ``"kind": "kernel"`` and the shader inline in ``"wgsl"``.

    ``spec`` is a path to a JSON file or a dict. Its shader is its ``"wgsl"`` (the source), its
    ``"wgsl_file"`` (a path relative to the spec file, as the CLI reads it), or ``wgsl``: the
    path of a .wgsl file (a :class:`~pathlib.Path`, or a string ending in ``.wgsl``) or the
    source itself.
    """
    base = Path(".")
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        try:
            loaded = json.loads(path.read_text())
        except OSError as err:
            raise ValueError(f"cannot read the kernel spec {path}: {err}") from err
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not JSON: {err}") from err
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} is not a kernel spec: expected a JSON object")
        result: dict[str, Any] = loaded
        base = path.parent
    else:
        result = dict(spec)
    kind = result.pop("kind", "kernel")
    if kind != "kernel":
        raise ValueError(f'the spec\'s "kind" is {kind!r}, expected "kernel" (or no "kind")')
    sources: list[str] = [name for name in ("wgsl", "wgsl_file") if name in result]
    if wgsl is not None:
        sources.append("the wgsl argument")
    if len(sources) != 1:
        raise ValueError(
            'give the kernel\'s WGSL once: as "wgsl" or "wgsl_file" in the spec, or as the wgsl '
            f"argument (got {', '.join(sources) or 'none'})"
        )
    if "wgsl_file" in result:
        wgsl = base / str(result.pop("wgsl_file"))
    if wgsl is not None:
        if isinstance(wgsl, Path) or str(wgsl).endswith(".wgsl"):
            try:
                wgsl = Path(wgsl).read_text()
            except OSError as err:
                raise ValueError(f"cannot read the kernel's WGSL {wgsl}: {err}") from err
        result["wgsl"] = str(wgsl)
    result["kind"] = "kernel"
    return result


def kernel_upload(spec: dict[str, Any], inputs: Mapping[str, KernelInput]) -> KernelUpload:
    """Checks ``inputs`` against the spec's declared inputs and encodes each: an array as a
    .npy file (of which the relay keeps only the data), bytes as they are."""
    declared = [str(entry.get("name")) for entry in spec.get("inputs", [])]
    for name in inputs:
        if name not in declared:
            raise ValueError(
                f"the spec has no input named {name!r} (its inputs: {', '.join(declared)})"
            )
    missing = [name for name in declared if name not in inputs]
    if missing:
        raise ValueError(
            f"the spec's inputs {', '.join(missing)} have no data: pass them in inputs"
        )
    units = int(spec.get("units", 1))
    files: dict[str, bytes] = {}
    for entry in spec.get("inputs", []):
        name = str(entry["name"])
        value = inputs[name]
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if data.startswith(b"\x93NUMPY"):
                # The relay would read it as a .npy file, not as the shader's words.
                raise ValueError(
                    f"input {name!r} starts with NumPy's magic string: pass the array itself "
                    "(np.load the file), not the bytes of a .npy file"
                )
            size = len(data)
            files[name] = data
        elif isinstance(value, np.ndarray):
            if value.dtype.newbyteorder("=") not in KERNEL_DTYPES:
                raise ValueError(
                    f"input {name!r} has dtype {value.dtype}; kernel inputs are float32, int32 "
                    f"or uint32: convert it with {name}.astype(np.float32) (or np.int32, np.uint32)"
                )
            size = value.size * 4
            files[name] = npy_bytes(value)
        else:
            raise ValueError(
                f"input {name!r} is a {type(value).__name__}: pass a NumPy array or bytes"
            )
        if not entry.get("shared", False) and size % (4 * units) != 0:
            raise ValueError(
                f"input {name!r} is {size} bytes; split between {units} units it must be a "
                f"multiple of {4 * units} bytes (4 per unit)"
            )
    return KernelUpload(spec=spec, files=files)
