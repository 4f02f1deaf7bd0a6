"""Label conventions shared by the data pipeline (which writes them) and the models and losses (which read them)."""

IGNORE_INDEX = -100  # a target position without a label (unlabelled sample, unmasked token): losses skip it
