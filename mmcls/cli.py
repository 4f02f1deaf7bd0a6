"""Helpers shared by the entry points: one-line errors and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmcls.errors import UserError

EXIT_USER_ERROR = 2


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; turn a :class:`UserError` into one line on stderr and exit code 2."""
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__name__ != "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "OutOfMemoryError"
        print(f"error: out of device memory ({first[:160]}); try a smaller batch (--batch-size where the tool has "
              "it, else train.eval_batch_size / train.batch_size), fewer data.max_frames or a smaller data.frame_size, "
              "or bf16 (--precision bf16 or train.mixed_precision=bf16)", file=sys.stderr)
        return EXIT_USER_ERROR


def command_argv(name: str, *args: str) -> list[str]:
    """The arguments after a launcher (``python``, ``accelerate launch ...``) that run command ``name`` of this
    package: ``-m mmcls NAME ARGS``, which both ``python`` and ``accelerate launch`` understand (never a script path
    into a checkout)."""
    return ["-m", "mmcls", name, *args]


def child_env(**extra: str) -> dict[str, str]:
    """This environment (plus ``extra``), with the folder that holds the imported ``mmcls`` first on
    ``PYTHONPATH``: a child ``python -m mmcls`` runs this very copy (installed or a checkout), from any folder."""
    import mmcls

    home = str(Path(mmcls.__file__).resolve().parents[1])
    paths = [home, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != home]]
    return {**os.environ, **extra, "PYTHONPATH": os.pathsep.join(paths)}


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision auto|no|bf16|fp16`` of the inference tools."""
    parser.add_argument("--precision", default="auto", choices=["auto", "no", "bf16", "fp16"],
                        help="Autocast precision (auto: bf16/fp16 on GPUs, none on CPU).")


def inference_accelerator(precision: str) -> Any:
    """An ``accelerate.Accelerator`` for ``--precision``, with the hub switched off (models load from local
    folders only). Imported late: ``--help`` stays fast."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from accelerate import Accelerator

    from mmcls.engine.runtime import resolve_mixed_precision

    return Accelerator(mixed_precision=resolve_mixed_precision(precision))
