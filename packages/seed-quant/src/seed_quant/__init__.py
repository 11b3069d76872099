"""Seed quantization: weight accelerators (`--accel int8|w8a8|fp8|int4`) and `seed quantize`."""

__version__ = "0.1.0"
