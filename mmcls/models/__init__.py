"""Models: frame encoders (open_clip / timm), the BERT text tower, VisualBERT-style fusion, heads and builders."""

from mmcls.models.builders import build_model, model_summary
from mmcls.models.classifier import FusedSequence, MultimodalClassifier, parameter_groups
from mmcls.models.text import build_bert
from mmcls.models.vision import VISION_BUILDERS, VisionTower, build_vision_tower

__all__ = [
    "VISION_BUILDERS",
    "FusedSequence",
    "MultimodalClassifier",
    "VisionTower",
    "build_bert",
    "build_model",
    "build_vision_tower",
    "model_summary",
    "parameter_groups",
]
