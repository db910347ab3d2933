"""Glowworm's Python client for requesters: NumPy arrays in, verified NumPy arrays out.

>>> import numpy as np, glowworm
>>> client = glowworm.Client("http://127.0.0.1:8787", "gw_...")
>>> a = np.random.rand(512, 256).astype(np.float32)
>>> b = np.random.rand(256, 384).astype(np.float32)
>>> c = client.matmul(a, b)     # submits, waits (progress bar on stderr), downloads, verifies
"""

from .client import DEFAULT_RELAY, Client, check_relay_url
from .errors import GlowwormError, JobCancelled, JobFailed, RelayError, RelayUnreachable
from .inputs import DEFAULT_MAX_UPLOAD_BYTES, MAX_MATRIX_SIDE
from .job import Job

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_RELAY",
    "MAX_MATRIX_SIDE",
    "Client",
    "GlowwormError",
    "Job",
    "JobCancelled",
    "JobFailed",
    "RelayError",
    "RelayUnreachable",
    "check_relay_url",
]
