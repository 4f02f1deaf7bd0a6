"""Train a tokenizer on a dataset's text (for the demo and tests; real runs use the text tower's own).

--kind wordpiece (default): a lower-cased BERT WordPiece vocabulary, Chinese per character, English per word piece.
--kind unigram: a SentencePiece unigram model saved as an XLM-RoBERTa tokenizer (<s> ... </s>, words start with "▁",
Chinese runs become multi-character pieces); the folder also holds the model as sentencepiece.bpe.model.

Example:
    python tools/build_tokenizer.py --root data/synthetic --out data/synthetic/tokenizer --vocab-size 4000
    python tools/build_tokenizer.py --root data/synthetic --out data/synthetic/tokenizer_sp --kind unigram
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from mmcls.data.records import load_records
from mmcls.data.text import field_texts
from mmcls.data.tokenizer import UNIGRAM_CHARACTER_COVERAGE, UNIGRAM_MAX_SENTENCES, train_unigram, train_wordpiece
from mmcls.errors import DataError, UserError

DEFAULT_MIN_FREQUENCY = 2


def corpus(files: Sequence[Path]) -> Iterator[str]:
    """Every title, asr and ocr text of the given annotation files."""
    for path in files:
        for record in load_records(path):
            yield from (text for text in field_texts(record, ("title", "asr", "ocr")) if text)


def _counted(texts: Iterable[str], show: bool) -> Iterator[str]:
    """``texts`` with a bar counting them on stderr (reading the annotations is most of a small run)."""
    with tqdm(texts, desc="reading text", unit=" texts", disable=not show, file=sys.stderr) as bar:
        yield from bar


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="Dataset root; reads every annotations/*.json[l] file.")
    parser.add_argument("--out", required=True, help="Output directory (loadable with data.tokenizer=OUT).")
    parser.add_argument("--files", nargs="*", help="Annotation files to read instead (relative to --root).")
    parser.add_argument("--kind", choices=["wordpiece", "unigram"], default="wordpiece",
                        help="wordpiece: BERT WordPiece (default); unigram: SentencePiece unigram, XLM-R style.")
    parser.add_argument("--vocab-size", type=int, default=8000,
                        help="Vocabulary size, special tokens included (default 8000); a small corpus may give fewer.")
    parser.add_argument("--min-frequency", type=int, default=None,
                        help=f"wordpiece: minimum pair frequency (default {DEFAULT_MIN_FREQUENCY}).")
    parser.add_argument("--character-coverage", type=float, default=None,
                        help="unigram: share of the corpus' characters the model covers, the rarest others become "
                             f"<unk> (default {UNIGRAM_CHARACTER_COVERAGE}, as advised for Chinese).")
    parser.add_argument("--max-sentences", type=int, default=None,
                        help="unigram: train on a random sample of at most this many texts (texts over "
                             f"1000 characters count once per 1000; default {UNIGRAM_MAX_SENTENCES}, 0 = all).")
    parser.add_argument("--seed", type=int, default=None, help="unigram: seed of that sample (default 0).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    args = parser.parse_args(argv)

    wrong = {"wordpiece": ("--character-coverage", "--max-sentences", "--seed"),
             "unigram": ("--min-frequency",)}[args.kind]
    for flag in wrong:
        if getattr(args, flag[2:].replace("-", "_")) is not None:
            raise UserError(f"{flag}: not an option of --kind {args.kind}")
    root = Path(args.root)
    files = [root / f for f in args.files] if args.files else sorted(
        p for p in (root / "annotations").glob("*.json*") if p.suffix in (".json", ".jsonl"))
    if not files:
        raise DataError("no annotation files found (expected annotations/*.json)", path=str(root))
    texts = _counted(corpus(files), show=not args.no_progress)
    if args.kind == "unigram":
        options = {"character_coverage": args.character_coverage, "max_sentences": args.max_sentences,
                   "seed": args.seed}
        tokenizer = train_unigram(texts, args.out, vocab_size=args.vocab_size,
                                  **{k: v for k, v in options.items() if v is not None})
    else:
        min_frequency = DEFAULT_MIN_FREQUENCY if args.min_frequency is None else args.min_frequency
        tokenizer = train_wordpiece(texts, vocab_size=args.vocab_size, min_frequency=min_frequency)
        tokenizer.save_pretrained(args.out)
    fewer = " (the corpus gives no more than that)" if len(tokenizer) < args.vocab_size else ""
    print(f"{args.kind} tokenizer with {len(tokenizer)} tokens{fewer} from {len(files)} file(s) -> {args.out}")
    return 0
