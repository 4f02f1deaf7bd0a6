"""Data layer: annotation records, categories, text, frame sources, transforms, datasets and loaders, folds, checks
(the synthetic dataset lives in :mod:`mmcls.synthetic`)."""
