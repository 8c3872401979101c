"""SRGAN training for chest X-rays: models, losses, metrics, loaders and the trainer."""
