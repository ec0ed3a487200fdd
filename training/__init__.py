"""Training: the model, its fit, evaluation against baselines, tracking and promotion."""
