"""Which rank this process is and which device it drives, from what the launcher put in the environment.

`deepspeed` sets RANK, WORLD_SIZE and LOCAL_RANK itself; on SLURM, launch/train.sh maps them from
SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID (the task's index on its node). Rank r on a node drives
that node's GPU LOCAL_RANK, whatever its global rank."""

from __future__ import annotations

import os

import torch


def rank_device(on_gpu: bool) -> torch.device:
    """cuda:LOCAL_RANK on a GPU node, else the CPU (every CPU rank shares it)."""
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if on_gpu else torch.device("cpu")
