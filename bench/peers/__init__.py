"""Peers of the benchmark: other libraries' int8 conv, run on the same shapes."""
