"""Shared test setup."""

import glob
import os

# Triton decides at kernel-definition time (import of kernels.matmul / kernels.attention)
# whether kernels compile for a GPU or run in its CPU interpreter, so the switch must be set
# before any test module imports them. No NVIDIA device node: interpret. (Checked without
# importing torch, so tests of the torch-free half stay torch-free.)
if not glob.glob("/dev/nvidia[0-9]*"):
    os.environ.setdefault("TRITON_INTERPRET", "1")
