"""Hyperparameter studies over phaser reconstruction plans, sampled with Optuna."""
