"""Evaluation: distances, protocol metrics, post-processing stages and reports."""
