"""Point-in-time features and labels for customer value and churn."""

from features.build import build_features, build_snapshots, feature_names
from features.labels import build_labels
from features.spec import FeatureSpec

__all__ = ["FeatureSpec", "build_features", "build_labels", "build_snapshots", "feature_names"]
