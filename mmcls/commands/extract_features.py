"""Cache frame features: run a frozen vision tower once over every video of a split -> <data.root>/feats/<split>.zip.

Each video becomes a member <id>.npy, float16 [n_frames, dim] (dim = the tower's output width); unreadable videos
are counted and left out (the feats source then treats them as empty videos). Frames are read as prediction reads
them (uniform sampling, resize + centre crop) with up to --max-frames per video, so that a model with
data.max_frames <= --max-frames sees the same frames from the cache. Then train or predict without decoding frames
or running the tower: data.frame_source=feats (a model trained on pixels predicts from the cache as it is).

Examples:
    python tools/extract_features.py --model runs/base/best --split test     # -> <data.root>/feats/test.zip
    python tools/predict.py --model runs/base/best --output result.csv data.frame_source=feats
    python tools/extract_features.py --config configs/base.yaml --split unlabeled --batch-size 32 \\
        data.root=/data/wbdc data.num_workers=8     # the pretrained tower of model.vision.pretrained
    python tools/extract_features.py --config configs/demo.yaml --split test --out /tmp/feats/test.zip
    accelerate launch tools/extract_features.py --model runs/base/best --split unlabeled   # one shard per GPU
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mmcls.accelerators import inference_accelerator
from mmcls.cli import add_precision_argument
from mmcls.data.splits import ANNOTATION_KEYS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="A trained RUN/best folder (or a pretraining best/) whose vision tower "
                        "extracts; its saved config gives data.root, data.frame_source and data.frame_size.")
    source.add_argument("--config", action="append", help="A config file whose model.vision (with "
                        "model.vision.pretrained weights) extracts; repeat to layer files, later ones winning.")
    parser.add_argument("--split", default="test", choices=ANNOTATION_KEYS,
                        help="Which annotation file of the config to extract (default test = data.test).")
    parser.add_argument("--out", help="Zip to write (atomically); default <data.root>/feats/<split name>.zip, where "
                        "the split name is the annotation file's stem (e.g. labeled for data.train).")
    parser.add_argument("--max-frames", type=int,
                        help="Frames stored per video at most (uniform sampling; default 32, the WBDC frame count; "
                        "a tower with model.temporal extracts exactly its data.max_frames).")
    parser.add_argument("--batch-size", type=int, default=16, help="Videos per tower pass per process (default 16).")
    add_precision_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="Config overrides, e.g. data.root=... data.test=... data.num_workers=8")
    args = parser.parse_intermixed_args(argv)
    accelerator = inference_accelerator(args.precision)
    from mmcls.workflow.features import extract_features, frames_to_cache, load_tower

    tower = load_tower(args.model, args.config, args.overrides)
    max_frames = frames_to_cache(tower.model, tower.cfg.data, args.max_frames)
    summary = extract_features(tower.model, tower.cfg.data, args.split, args.out, max_frames=max_frames,
                               batch_size=args.batch_size, accelerator=accelerator, progress=not args.no_progress,
                               source=str(args.model or " + ".join(args.config)))
    if accelerator.is_main_process:
        print(summary.describe())
    return 0
