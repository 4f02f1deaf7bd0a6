"""Write the built-in synthetic short-video dataset (WBDC layout) for demos, tests and benchmarks."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mmcls.synthetic import SyntheticSpec, make_synthetic

EXAMPLE = """\
example:
  python tools/make_synthetic.py --out data/synthetic
  python tools/make_synthetic.py --out data/synth_big --num-labeled 20000 --num-unlabeled 50000 --num-test 5000 \\
      --size 128 --max-frames 32 --workers 8

Each level-2 class pairs a text concept with a video concept, so only text+video fusion scores high; frame order
matters (rise/fall, grow/shrink, left_to_right/right_to_left); a text concept goes with only some motions
(--video-concepts-per-text), so the modalities are correlated as in real videos. A horizontal flip turns a
left_to_right video into a right_to_left one: flip_label_map.json lists the class pairs a flip swaps (use it as
data.flip_label_map). Faulty samples are planted in every split unless --no-faults
(see faults.json).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line options; defaults come from :class:`SyntheticSpec`."""
    d = SyntheticSpec()
    parser = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output dataset root (created; a previous synthetic "
                        "dataset there is replaced, any other non-empty folder is refused)")
    parser.add_argument("--num-labeled", type=int, default=d.num_labeled, help="labelled videos (%(default)s)")
    parser.add_argument("--num-unlabeled", type=int, default=d.num_unlabeled, help="unlabelled videos (%(default)s)")
    parser.add_argument("--num-test", type=int, default=d.num_test, help="test videos (%(default)s)")
    parser.add_argument("--size", type=int, default=d.size, help="frame height = width in pixels, even (%(default)s)")
    parser.add_argument("--min-frames", type=int, default=d.min_frames, help="fewest frames per video (%(default)s)")
    parser.add_argument("--max-frames", type=int, default=d.max_frames, help="most frames per video (%(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (%(default)s)")
    parser.add_argument("--num-text-concepts", type=int, default=d.num_text_concepts,
                        help="text concepts = level-1 groups (%(default)s)")
    parser.add_argument("--num-video-concepts", type=int, default=d.num_video_concepts,
                        help="video motions (%(default)s): rise, fall, grow, shrink, stripes, ring, and a horizontal "
                        "slide that gives each of its text concepts two classes, left_to_right and right_to_left")
    parser.add_argument("--video-concepts-per-text", type=int, default=d.video_concepts_per_text,
                        help="video concepts each text concept goes with (%(default)s); classes = text concepts x "
                        "this; = --num-video-concepts makes the modalities independent")
    parser.add_argument("--zipf-exponent", type=float, default=d.zipf_exponent,
                        help="long-tail steepness of class frequencies, 0 = balanced (%(default)s)")
    parser.add_argument("--no-faults", action="store_true", help="do not plant faulty samples")
    parser.add_argument("--no-zip", action="store_true", help="do not write zip_frames/")
    parser.add_argument("--no-mp4", action="store_true", help="do not write videos/")
    parser.add_argument("--workers", type=int, default=d.workers,
                        help="worker processes, 0 = one per core (output is the same for any value)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, write the dataset, print a short summary."""
    args = build_parser().parse_args(argv)
    spec = SyntheticSpec(
        num_labeled=args.num_labeled, num_unlabeled=args.num_unlabeled, num_test=args.num_test, size=args.size,
        min_frames=args.min_frames, max_frames=args.max_frames, seed=args.seed,
        num_text_concepts=args.num_text_concepts, num_video_concepts=args.num_video_concepts,
        video_concepts_per_text=args.video_concepts_per_text,
        zipf_exponent=args.zipf_exponent, faults=not args.no_faults, write_zip=not args.no_zip,
        write_mp4=not args.no_mp4, workers=args.workers)
    summary = make_synthetic(args.out, spec, progress=not args.no_progress)
    splits = ", ".join(f"{name} {n}" for name, n in summary["splits"].items())
    num_faults = sum(len(items) for items in summary["faults"].values())
    print(f"wrote {summary['out_dir']}: {splits}; {summary['num_classes']} classes in {summary['num_lv1']} "
          f"level-1 groups; {summary['num_frames']} frames, {summary['video_bytes'] / 2**20:.1f} MiB of video; "
          f"{num_faults} faulty samples (faults.json); {summary['seconds']:.1f} s")
    return 0
