"""Train a BERT WordPiece tokenizer on a dataset's text (for the demo and tests; real runs use the BERT's own).

Example:
    python tools/build_tokenizer.py --root data/synthetic --out data/synthetic/tokenizer --vocab-size 4000
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path

from mmcls.data.records import load_records
from mmcls.data.text import field_texts
from mmcls.data.tokenizer import train_wordpiece
from mmcls.errors import DataError


def corpus(files: Sequence[Path]) -> Iterator[str]:
    """Every title, asr and ocr text of the given annotation files."""
    for path in files:
        for record in load_records(path):
            yield from (text for text in field_texts(record, ("title", "asr", "ocr")) if text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="Dataset root; reads every annotations/*.json[l] file.")
    parser.add_argument("--out", required=True, help="Output directory (loadable with data.tokenizer=OUT).")
    parser.add_argument("--files", nargs="*", help="Annotation files to read instead (relative to --root).")
    parser.add_argument("--vocab-size", type=int, default=8000, help="Vocabulary size (default 8000).")
    parser.add_argument("--min-frequency", type=int, default=2, help="Minimum pair frequency (default 2).")
    args = parser.parse_args(argv)

    root = Path(args.root)
    files = [root / f for f in args.files] if args.files else sorted(
        p for p in (root / "annotations").glob("*.json*") if p.suffix in (".json", ".jsonl"))
    if not files:
        raise DataError("no annotation files found (expected annotations/*.json)", path=str(root))
    tokenizer = train_wordpiece(corpus(files), vocab_size=args.vocab_size, min_frequency=args.min_frequency)
    tokenizer.save_pretrained(args.out)
    print(f"tokenizer with {len(tokenizer)} tokens from {len(files)} file(s) -> {args.out}")
    return 0
