"""flopcast's kernels: Triton kernels and their torch baselines, each with exact FLOP and byte
counts and a check against a float64 reference.

Importing this package does not import torch; `kernels.flops` is plain arithmetic.
"""
