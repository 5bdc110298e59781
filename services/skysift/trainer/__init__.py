"""Trainer: append-only labels, active-learning rounds, held-out evaluation, oracle experiments and datasets."""
