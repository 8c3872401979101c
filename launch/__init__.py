"""The `cxr-sr` command and the cluster launchers (torchrun, deepspeed, SLURM)."""
