"""Helpers shared by the entry points: one-line errors and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mmcls.accelerators import hub_offline, is_out_of_memory, out_of_memory_message
from mmcls.errors import ArgumentError, UserError

EXIT_USER_ERROR = 2
# set by the launch command (mmcls/commands/launch.py) for the processes it starts: each writes its one-line error
# into this folder too, so that the launcher can repeat it as the last line after its own report
ERROR_DIR_ENV = "MMCLS_ERROR_DIR"
F = TypeVar("F", bound=Callable[..., object])


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; turn a :class:`UserError` into one line on stderr and exit code 2.

    An :class:`ArgumentError` of a library function names the parameter by the command's flag: ``main.flags``
    (set by :func:`flags`) maps parameter names to flags, any other ``name`` is shown as ``--name`` (dashes for
    underscores). A device out-of-memory error becomes :func:`mmcls.accelerators.out_of_memory_message`."""
    try:
        return int(main(argv) or 0)
    except ArgumentError as exc:  # a library argument: named by this command's flag
        report_error(exc.for_flags(getattr(main, "flags", {})))
        return EXIT_USER_ERROR
    except UserError as exc:
        report_error(str(exc))
        return getattr(exc, "exit_code", EXIT_USER_ERROR)  # a run stopped by SIGTERM: 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        report_error(out_of_memory_message(exc))
        return EXIT_USER_ERROR


def report_error(message: str) -> None:
    """``error: message`` on stderr; also, under the launch command, into its folder (:data:`ERROR_DIR_ENV`)."""
    print(f"error: {message}", file=sys.stderr)
    folder = os.environ.get(ERROR_DIR_ENV)
    if folder:
        with contextlib.suppress(OSError):  # the launcher's folder is gone: the line above still says it
            (Path(folder) / f"{os.getpid()}.txt").write_text(message, encoding="utf-8", errors="replace")


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


def flags(**names: str) -> Callable[[F], F]:
    """Decorate a command's ``main``: the flags of library parameters whose flag is not ``--<name>``, e.g.
    ``@flags(offsets="--tta-offsets", models="--model")``; :func:`run_main` names an :class:`ArgumentError` with
    them."""

    def mark(main: F) -> F:
        main.flags = dict(names)  # type: ignore[attr-defined]
        return main

    return mark


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision auto|no|bf16|fp16`` of the inference tools."""
    parser.add_argument("--precision", default="auto", choices=["auto", "no", "bf16", "fp16"],
                        help="Autocast precision (auto: bf16/fp16 on GPUs, none on CPU).")


def run_training(argv: Sequence[str] | None, description: str | None, train: Callable[[Any], dict[str, float]]
                 ) -> tuple[Any, dict[str, float]]:
    """The body of a training command (finetune, pretrain): ``--config`` files and ``key=value`` overrides, then
    ``train(cfg)`` with the hub off; a device out-of-memory error becomes the advice for this config. Returns the
    config and what ``train`` returned."""
    from mmcls.config import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, required=True)
    cfg = config_from_args(parser.parse_intermixed_args(argv))
    hub_offline()
    try:
        return cfg, train(cfg)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise UserError(out_of_memory_message(exc, cfg)) from None
