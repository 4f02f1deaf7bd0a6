"""``python -m mmcls``: list the commands with what each does; ``python -m mmcls NAME [args]`` runs one
(``python -m mmcls predict --help``; ``accelerate launch -m mmcls finetune ...`` for several processes).

The commands are the modules of :mod:`mmcls.commands` (each has ``main(argv) -> int`` and its help as the module
docstring), so an installed package runs them from any folder; the scripts in a checkout's ``finetune/``,
``pretrain/`` and ``tools/`` are thin wrappers around the same modules.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import mmcls.commands

TRAINING = ("finetune", "pretrain")  # listed first; run under accelerate launch for several processes


def commands() -> dict[str, Path]:
    """Name -> module file: the two training commands, then every other module of :mod:`mmcls.commands`."""
    found = {info.name: Path(mmcls.commands.__path__[0]) / f"{info.name}.py"
             for info in pkgutil.iter_modules(mmcls.commands.__path__)
             if not info.name.startswith("_") and not info.ispkg}
    return {**{name: found[name] for name in TRAINING if name in found},
            **{name: found[name] for name in sorted(found) if name not in TRAINING}}


def summary(path: Path) -> str:
    """The first sentence of a command's docstring, read without importing it (listing stays instant)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 110 else sentence[:107].rsplit(" ", 1)[0] + " ..."


def main(argv: list[str]) -> int:
    from mmcls.cli import EXIT_USER_ERROR, run_main

    found = commands()
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, found))
        print("usage: python -m mmcls NAME [args]   (NAME --help shows its options and examples)\n")
        for name, path in found.items():
            print(f"  {name:<{width}}  {summary(path)}")
            if name in TRAINING:
                print(f"  {'':<{width}}  (accelerate launch -m mmcls {name} ... for several processes)")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in found:
        print(f"error: unknown command {name!r} (known: {', '.join(found)})", file=sys.stderr)
        return EXIT_USER_ERROR
    sys.argv = [f"mmcls {name}", *rest]  # argparse's prog: "usage: mmcls predict ..."
    module = importlib.import_module(f"mmcls.commands.{name}")
    return run_main(module.main, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
