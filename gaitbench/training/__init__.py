"""Training: the trainer loop, losses, recipes and checkpoints."""
