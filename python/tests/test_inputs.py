"""Inputs refused before anything is sent, and the relay's error replies read; no relay here."""

from __future__ import annotations

import numpy as np
import pytest

import glowworm
from glowworm.errors import error_from_reply
from glowworm.inputs import check_matmul, kernel_upload, load_kernel_spec, npy_bytes


def matrix(rows: int, cols: int) -> np.ndarray:
    return np.ones((rows, cols), dtype=np.float32)


@pytest.mark.parametrize(
    ("a", "b", "needle"),
    [
        (matrix(4, 3), matrix(4, 5), "A's columns must equal B's rows"),
        (matrix(4, 3).astype(np.float64), matrix(3, 5), "astype(np.float32)"),
        (np.ones(3, dtype=np.float32), matrix(3, 5), "two dimensions"),
        ([[1.0, 2.0]], matrix(2, 5), "not a NumPy array"),
        (matrix(1, 16_385), matrix(16_385, 1), "from 1 to 16384"),
        (matrix(2, 0), matrix(0, 2), "from 1 to 16384"),
    ],
)
def test_bad_matrices_are_value_errors(a: object, b: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        check_matmul(a, b)


def test_non_finite_values_are_named_by_row_and_column() -> None:
    b = matrix(3, 5)
    b[2, 4] = np.nan
    with pytest.raises(ValueError, match=r"B has nan at row 2, column 4"):
        check_matmul(matrix(4, 3), b)


def test_a_product_that_could_overflow_is_refused_like_the_relay_refuses_it() -> None:
    big = np.float32(np.finfo(np.float32).max / 4)
    a = matrix(3, 2)
    a[1] = big
    with pytest.raises(ValueError, match="row 1 of A times B could overflow"):
        check_matmul(a, matrix(2, 2))
    a[1] = big / 2.1  # 2 * max/8.4 < max/2
    check_matmul(a, matrix(2, 2))
    # Rows are checked by blocks: the row is named wherever it is.
    tall = matrix(700, 2)
    tall[650] = big
    with pytest.raises(ValueError, match="row 650 of A times B could overflow"):
        check_matmul(tall, matrix(2, 2))


def test_fortran_order_and_big_endian_arrays_are_sent_as_c_order_little_endian() -> None:
    a = np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3))
    checked, _ = check_matmul(a, matrix(3, 1))
    assert checked.flags.c_contiguous and checked.dtype == np.dtype("<f4")
    assert np.array_equal(checked, a)
    data = npy_bytes(checked)
    assert data.startswith(b"\x93NUMPY") and b"'<f4'" in data


def test_an_upload_over_the_limit_is_refused_before_it_is_sent() -> None:
    # Nothing listens on this relay: a request would be RelayUnreachable, not ValueError.
    client = glowworm.Client("http://127.0.0.1:9", "gw_x", max_upload_bytes=1000)
    with pytest.raises(ValueError, match=r"over the relay's limit of 0\.00 MiB.*max_upload_bytes"):
        client.submit_matmul(matrix(16, 16), matrix(16, 16))


def test_relay_urls_and_keys_are_checked_with_hints() -> None:
    with pytest.raises(ValueError, match="did you mean http://127.0.0.1:8787"):
        glowworm.Client("127.0.0.1:8787", "gw_x")
    with pytest.raises(ValueError, match="base URL, such as http://relay.example"):
        glowworm.Client("http://relay.example/v1", "gw_x")
    with pytest.raises(ValueError, match="GLOWWORM_API_KEY"):
        glowworm.Client("http://relay.example", "  ")
    assert (
        glowworm.Client("https://r.example/glowworm/", "gw_x").relay == "https://r.example/glowworm"
    )


def test_error_replies_carry_the_relays_code_and_message() -> None:
    body = b'{"error":{"code":"bad_npy","message":"a: not a .npy file"}}'
    err = error_from_reply("the relay refused the job", 400, body, "Bad Request")
    assert (err.status, err.code, err.message) == (400, "bad_npy", "a: not a .npy file")
    assert str(err) == "the relay refused the job (400 bad_npy): a: not a .npy file"
    proxy = error_from_reply(
        "could not get job 3", 502, b"<html>upstream down</html>", "Bad Gateway"
    )
    assert (proxy.code, proxy.message, proxy.transient) == (
        "http_error",
        "<html>upstream down</html>",
        True,
    )
    empty = error_from_reply("could not get job 3", 504, b"", "Gateway Timeout")
    assert empty.message == "Gateway Timeout"


def test_kernel_specs_take_the_wgsl_once_and_inputs_by_name(tmp_path) -> None:
    (tmp_path / "k.wgsl").write_text("// shader")
    spec = {
        "inputs": [{"name": "x", "binding": 0}],
        "output": {"binding": 1, "bytes": 16},
        "workgroups": [1, 1, 1],
        "units": 2,
    }
    (tmp_path / "k.json").write_text(
        '{"kind": "kernel", "wgsl_file": "k.wgsl", "inputs": [{"name": "x", "binding": 0}],'
        ' "output": {"binding": 1, "bytes": 16}, "workgroups": [1, 1, 1], "units": 2}'
    )
    from_file = load_kernel_spec(tmp_path / "k.json", None)
    assert from_file["wgsl"] == "// shader" and "wgsl_file" not in from_file
    assert load_kernel_spec(spec, tmp_path / "k.wgsl") == from_file
    with pytest.raises(ValueError, match="give the kernel's WGSL once"):
        load_kernel_spec(spec, None)
    with pytest.raises(ValueError, match="give the kernel's WGSL once"):
        load_kernel_spec(tmp_path / "k.json", "// another")
    with pytest.raises(ValueError, match="\"kind\" is 'matmul'"):
        load_kernel_spec({**spec, "kind": "matmul"}, "// src")

    upload = kernel_upload(from_file, {"x": np.arange(8, dtype=np.uint32)})
    assert upload.files["x"].startswith(b"\x93NUMPY")
    with pytest.raises(ValueError, match="no input named 'y'"):
        kernel_upload(from_file, {"x": b"\0" * 8, "y": b""})
    with pytest.raises(ValueError, match="inputs x have no data"):
        kernel_upload(from_file, {})
    with pytest.raises(ValueError, match="dtype float64"):
        kernel_upload(from_file, {"x": np.zeros(8)})
    with pytest.raises(ValueError, match="multiple of 8 bytes"):
        kernel_upload(from_file, {"x": b"\0" * 12})
