"""Models: frame encoders (open_clip / timm), the BERT text tower, VisualBERT-style fusion, heads, the classifier,
the pretrainer and builders."""

from mmcls.models.builders import build_model, build_pretrainer, model_summary
from mmcls.models.classifier import ENCODER_PARTS, FusedSequence, MultimodalClassifier, parameter_groups
from mmcls.models.pretrainer import PRETRAIN_HEADS, PRETRAIN_TASKS, MultimodalPretrainer
from mmcls.models.text import build_bert
from mmcls.models.vision import VISION_BUILDERS, VisionTower, build_vision_tower

__all__ = [
    "ENCODER_PARTS",
    "PRETRAIN_HEADS",
    "PRETRAIN_TASKS",
    "VISION_BUILDERS",
    "FusedSequence",
    "MultimodalClassifier",
    "MultimodalPretrainer",
    "VisionTower",
    "build_bert",
    "build_model",
    "build_pretrainer",
    "build_vision_tower",
    "model_summary",
    "parameter_groups",
]
