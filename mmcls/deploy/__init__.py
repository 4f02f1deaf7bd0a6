"""Deployment: a trained model folder as one ONNX graph (:mod:`mmcls.deploy.onnx_export`), run by ONNX Runtime
through the same prediction path as torch models (:mod:`mmcls.deploy.onnx_runtime`).

An export folder holds ``model.onnx``, ``export.json`` (what the graph takes: :class:`ExportSpec`), and what
feeding it needs: ``config.yaml``, ``categories.json``, the tokenizer and, when the model has one,
``flip_label_map.json``. :func:`mmcls.model_folder.load_for_inference` tells it from a ``RUN/best`` folder.
"""

from mmcls.deploy.spec import EXPORT_FILE, ONNX_FILE, ExportSpec, is_export_folder

__all__ = ["EXPORT_FILE", "ONNX_FILE", "ExportSpec", "is_export_folder"]
