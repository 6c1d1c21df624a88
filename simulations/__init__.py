"""Hydra configs and entry points: they launch Flower runs and own no training logic."""
