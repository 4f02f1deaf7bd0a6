"""Explain one prediction: Grad-CAM heatmaps over a video's frames and the text tokens that weighed most.

Writes OUT/explain_<id>.png (the frames, their Grad-CAM overlays, and a bar chart of the top tokens by gradient x
input) and OUT/explain_<id>.json (prediction, probability, every token's attribution). The explained class is the
model's prediction unless --category names another one.

Examples:
    python tools/explain.py --model runs/demo/best --id 6482017373025036292 --split test
    python tools/explain.py --model runs/demo/best --id 6482017373025036292 --split test --category 0302 \\
        --out runs/demo/explain data.root=/data/wbdc
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from mmcls.accelerators import hub_offline
from mmcls.data.splits import ANNOTATION_KEYS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A RUN/best folder.")
    parser.add_argument("--id", required=True, action="append", dest="ids", help="Video id (repeatable).")
    parser.add_argument("--split", default="test", choices=ANNOTATION_KEYS,
                        help="The annotation file of the model's config that holds the id (default test).")
    parser.add_argument("--category", help="Explain this level-2 class instead of the prediction.")
    parser.add_argument("--out", help="Output folder (default: the model folder's parent / explain).")
    parser.add_argument("--top-k", type=int, default=12, help="Tokens shown in the chart (default 12).")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="Config overrides, e.g. data.root=...")
    args = parser.parse_intermixed_args(argv)

    hub_offline()
    from mmcls.data.dataset import build_dataloader, build_dataset
    from mmcls.data.splits import AnnotationSet, load_split
    from mmcls.errors import UserError
    from mmcls.explain import explain_video, render, top_tokens
    from mmcls.io import atomic_write_text
    from mmcls.model_folder import load_portable

    loaded = load_portable(args.model, args.overrides)
    split = load_split(loaded.cfg.data, args.split)
    by_id = {record.id: record for record in split.records}
    missing = [vid for vid in args.ids if vid not in by_id]
    if missing:
        raise UserError(f"--id: {', '.join(missing)} not in data.{args.split} ({len(by_id)} videos)")
    out = Path(args.out) if args.out else Path(args.model).resolve().parent / "explain"
    out.mkdir(parents=True, exist_ok=True)
    for vid in args.ids:
        one = AnnotationSet(split.folder, [by_id[vid]])
        dataset = build_dataset(loaded.cfg.data, one, loaded.tokenizer, None, train=False,
                                with_frames=loaded.cfg.model.mode != "text")
        batch = next(iter(build_dataloader(dataset, loaded.cfg.data, 1)))
        explanation = explain_video(loaded, batch, args.category)
        render(explanation, out / f"explain_{vid}.png", args.top_k)
        report = {"id": vid, "category": explanation.category, "predicted": explanation.predicted,
                  "probability": explanation.probability, "frames": 0 if explanation.frames is None else
                  len(explanation.frames), "video_error": batch["video_errors"][0],
                  "heatmap_peak_per_frame": [] if explanation.heatmaps is None else
                  [round(float(h.max()), 4) for h in explanation.heatmaps],
                  "tokens": [{"token": t, "attribution": s} for t, s in explanation.tokens]}
        atomic_write_text(out / f"explain_{vid}.json", json.dumps(report, ensure_ascii=False, indent=1) + "\n")
        shown = ", ".join(f"{t} {s:+.3f}" for t, s in top_tokens(explanation.tokens, 5))
        print(f"{vid}: class {explanation.category} p={explanation.probability:.3f} (predicted "
              f"{explanation.predicted}); top tokens: {shown} -> {out / f'explain_{vid}.png'}")
    return 0
