"""Data layer: annotation records, categories, text, frame sources, transforms, datasets, synthetic data."""
