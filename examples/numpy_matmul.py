"""A matrix product computed by a Glowworm relay's contributors, checked against NumPy.

pip install ./python
export GLOWWORM_RELAY=http://127.0.0.1:8787 GLOWWORM_API_KEY=gw_...
python examples/numpy_matmul.py            # (256, 128) @ (128, 192)
python examples/numpy_matmul.py 512 384 640
"""

import sys

import numpy as np

import glowworm


def main() -> int:
    m, k, n = (int(side) for side in sys.argv[1:4]) if len(sys.argv) == 4 else (256, 128, 192)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)

    client = glowworm.Client()  # the relay and the key from GLOWWORM_RELAY and GLOWWORM_API_KEY
    c = client.matmul(a, b)  # submits, waits with a progress bar, downloads, checks the hash

    expected = a @ b
    error = float(np.abs(c - expected).max())
    if not np.allclose(c, expected, rtol=1e-4, atol=1e-4 * np.sqrt(k)):
        print(f"({m}, {k}) @ ({k}, {n}) differs from NumPy: max abs error {error:.2e}")
        return 1
    print(f"({m}, {k}) @ ({k}, {n}) matches NumPy: max abs error {error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
