"""The data layer: stores, safe loading, sampling and the synthetic generator."""
