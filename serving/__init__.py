"""Scoring: batch, online (BentoML), reasons and segments."""
