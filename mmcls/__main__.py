"""``python -m mmcls``: list the entry points and tools with what each does; ``python -m mmcls NAME [args]`` runs
one (``python -m mmcls predict --help``)."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"finetune": ROOT / "finetune" / "train.py", "pretrain": ROOT / "pretrain" / "train.py"}


def scripts() -> dict[str, Path]:
    """Name -> script: the two training entry points, then every tool in ``tools/``."""
    tools = sorted((ROOT / "tools").glob("*.py"))
    return {**ENTRY_POINTS, **{path.stem: path for path in tools if not path.stem.startswith("_")}}


def summary(path: Path) -> str:
    """The first line of a script's docstring, read without importing it (listing stays instant)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 110 else sentence[:107].rsplit(" ", 1)[0] + " ..."


def main(argv: list[str]) -> int:
    found = scripts()
    if not (ROOT / "tools").is_dir():
        print("error: the tools live in a source checkout (git clone ...; pip install -e .)", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, found))
        print("usage: python -m mmcls NAME [args]   (or run the script itself; NAME --help shows its options)\n")
        for name, path in found.items():
            launcher = "accelerate launch " if name in ENTRY_POINTS else ""
            print(f"  {name:<{width}}  {summary(path)}")
            if launcher:
                print(f"  {'':<{width}}  ({launcher}{path.relative_to(ROOT)} for several processes)")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in found:
        print(f"error: unknown tool {name!r} (known: {', '.join(found)})", file=sys.stderr)
        return 2
    sys.argv = [str(found[name]), *rest]
    runpy.run_path(str(found[name]), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
