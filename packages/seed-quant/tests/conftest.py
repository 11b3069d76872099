"""Triton kernels run on the CPU under the interpreter; Triton reads TRITON_INTERPRET when it is first
imported, so it is set before any test module imports it."""

import os
import sys

if "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")
