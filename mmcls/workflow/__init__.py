"""After-training work, apart from the training engine: prediction with test-time augmentation, ensembles,
feature extraction, pseudo-labels and k-fold runs."""
