"""Export a trained model folder as one ONNX graph that tools/predict.py runs with ONNX Runtime.

The export folder holds model.onnx, export.json (its inputs, precision and the parity measured at export),
config.yaml, categories.json, the tokenizer and the flip map: prediction needs nothing else. Before the folder is
written, ONNX Runtime runs the graph on batches of other sizes, text lengths and frame counts than the traced one
(videos without frames and empty text among them), and its class probabilities must match the torch model's
within 1e-4 (fp32).

Examples:
    python tools/export.py --model runs/demo/best --out runs/demo/onnx
    python tools/predict.py --model runs/demo/onnx --output result.csv data.root=data/synthetic
    python tools/export.py --model runs/base/best --precision fp16 --out runs/base/onnx_fp16   # GPU providers
    python tools/export.py --model runs/demo/best --precision int8 --out runs/demo/onnx_int8   # CPUs
    python tools/export.py --model runs/demo/best --features --out runs/demo/onnx_feats   # cached frame features
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mmcls.cli import flags


@flags(model_dir="--model", out="--out", features="--features", precision="--precision")
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A trained model folder (RUN/best).")
    parser.add_argument("--out", required=True, help="The export folder to write (replaced atomically).")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="The graph format (default onnx).")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"],
                        help="fp32 (default; checked against torch on this CPU), fp16 (half-precision weights and "
                        "activations for CUDA / TensorRT providers; float32 logits) or int8 (dynamically quantized "
                        "matrix products for CPUs).")
    parser.add_argument("--features", action="store_true",
                        help="A graph that reads cached frame features [B, T, D] (data.frame_source=feats, as "
                        "tools/extract_features.py writes them) instead of uint8 pixels.")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="Data settings the export folder's config.yaml carries, e.g. data.root=...")
    args = parser.parse_intermixed_args(argv)
    from mmcls.accelerators import hub_offline
    from mmcls.deploy.onnx_export import export_onnx

    hub_offline()
    result = export_onnx(args.model, args.out, precision=args.precision, features=args.features,
                         overrides=args.overrides)
    spec = result.spec
    parity = "not checked on this CPU" if spec.parity is None else f"max class-probability difference {spec.parity:.1e}"
    frames = {"pixels": f"uint8 frames {spec.max_frames} x 3 x {spec.frame_size} x {spec.frame_size}",
              "features": f"frame features {spec.max_frames} x {spec.feat_dim}", "none": "text only"}[spec.frames]
    print(f"exported {args.model} -> {result.folder} ({spec.precision}, {frames}, {result.megabytes:.1f} MB, "
          f"{result.seconds:.1f} s); ONNX Runtime vs torch: {parity}")
    return 0
