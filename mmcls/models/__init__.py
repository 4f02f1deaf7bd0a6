"""Models: the tower contracts (:mod:`~mmcls.models.towers`), frame encoders (open_clip / timm), the BERT text
tower, the multimodal encoder (VisualBERT-style fusion), heads, the classifier, the pretrainer and builders.

Models take tensors: they import nothing from the data pipeline.
"""

from mmcls.models.builders import build_encoder, build_model, build_pretrainer, model_summary
from mmcls.models.classifier import MultimodalClassifier
from mmcls.models.encoder import ENCODER_PARTS, PARAM_GROUPS, FusedSequence, MultimodalEncoder, parameter_groups
from mmcls.models.pixels import NORMALIZATIONS, normalize_frames
from mmcls.models.pretrainer import PRETRAIN_HEADS, PRETRAIN_TASKS, MultimodalPretrainer
from mmcls.models.text import BertTower, build_bert, build_text_tower
from mmcls.models.towers import TextTower, VisionTower, check_vision_tower
from mmcls.models.vision import VISION_BUILDERS, build_vision_tower

__all__ = [
    "ENCODER_PARTS",
    "NORMALIZATIONS",
    "PARAM_GROUPS",
    "PRETRAIN_HEADS",
    "PRETRAIN_TASKS",
    "VISION_BUILDERS",
    "BertTower",
    "FusedSequence",
    "MultimodalClassifier",
    "MultimodalEncoder",
    "MultimodalPretrainer",
    "TextTower",
    "VisionTower",
    "build_bert",
    "build_encoder",
    "build_model",
    "build_pretrainer",
    "build_text_tower",
    "build_vision_tower",
    "check_vision_tower",
    "model_summary",
    "normalize_frames",
    "parameter_groups",
]
