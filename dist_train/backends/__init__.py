"""Training backends behind one interface: DDP (or a single process) and DeepSpeed."""
from dist_train.backends.base import NETS, TrainBackend, build_backend

__all__ = ["NETS", "TrainBackend", "build_backend"]
