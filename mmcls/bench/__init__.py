"""Benchmarks (``tools/benchmark.py``): the device's measured matmul peak, loader throughput, training and inference
speed with model FLOP utilisation, and the cost or gain of each speed switch. Speed lives here, never in tests."""
