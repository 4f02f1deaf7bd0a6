"""mmcls: multimodal short-video classification (frames + title/asr/ocr text, two-level categories)."""

__version__ = "0.1.0"
