"""The measured matmul peak of a device: the yardstick of model FLOP utilisation (MFU).

A vendor's datasheet peak is rarely reachable; MFU against the peak that a large square matmul reaches on the same
machine, in the same process, says how much of the *attainable* compute the model uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class MatmulPeak:
    """Best-of-repeats throughput of ``size x size @ size x size`` in ``dtype`` on ``device``."""

    device: str
    dtype: str
    size: int
    tflops: float


def supported_dtypes(device: torch.device) -> list[torch.dtype]:
    """fp32 everywhere; bf16 where the device computes it natively (CUDA >= Ampere, CPUs with AVX-512 BF16/AMX);
    fp16 on CUDA."""
    dtypes = [torch.float32]
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            dtypes.append(torch.bfloat16)
        dtypes.append(torch.float16)
    elif torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        dtypes.append(torch.bfloat16)
    return dtypes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, seconds: float = 1.0,
                repeats: int = 3) -> MatmulPeak:
    """TFLOP/s of a square matmul (2 n^3 FLOPs), best of ``repeats`` windows of about ``seconds`` each.

    ``size`` defaults to 8192 on GPUs and 2048 on CPUs (large enough to be compute-bound, small enough to be quick).
    """
    size = size or (8192 if device.type == "cuda" else 2048)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up: kernel selection, thread pool start
    _sync(device)
    start = time.perf_counter()
    torch.mm(a, b)
    _sync(device)
    per_call = max(time.perf_counter() - start, 1e-6)
    calls = max(1, int(seconds / per_call))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b)
        _sync(device)
        best = max(best, 2 * size**3 * calls / (time.perf_counter() - start))
    return MatmulPeak(device=str(device), dtype=str(dtype).removeprefix("torch."), size=size, tflops=best / 1e12)
