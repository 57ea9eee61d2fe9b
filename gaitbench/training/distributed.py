"""Optional multi-process training through torchrun. Single process needs none of this.

gaitbench only initialises ``torch.distributed`` when torchrun has set ``WORLD_SIZE`` > 1. The
global batch is the recipe's P x K whatever the world size (each rank takes every world-size-th
clip), so the learning rate needs no rescaling when the number of processes changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


SINGLE = Dist()


def from_environment(device: str) -> Dist:
    """Initialise the process group when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch.distributed as td

    if not td.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        td.init_process_group(backend=backend)
    return Dist(td.get_rank(), td.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather_with_grad(x: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order; only the local shard keeps its gradient
    (the reference's way of giving the triplet loss the global batch)."""
    if not dist.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.world_size)]
    torch.distributed.all_gather(parts, x.detach().contiguous())
    parts[dist.rank] = x
    return torch.cat(parts, 0)


def gather_rows(rows, values, total_rows, dist: Dist):
    """Rank 0 receives every rank's ``(rows, values)`` and returns the values ordered as
    ``total_rows``, checking each row arrives exactly once; other ranks return None."""
    import numpy as np

    if not dist.enabled:
        return values
    gathered = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, (np.asarray(rows), values))
    if not dist.is_main:
        return None
    all_rows = np.concatenate([g[0] for g in gathered])
    all_values = np.concatenate([g[1] for g in gathered])
    expected = np.asarray(total_rows)
    if len(all_rows) != len(expected) or len(set(all_rows.tolist())) != len(expected) \
            or set(all_rows.tolist()) != set(expected.tolist()):
        raise RuntimeError(f"distributed embedding covered {len(set(all_rows.tolist()))} distinct of "
                           f"{len(expected)} sequences ({len(all_rows)} results): not exactly once each")
    order = {int(r): i for i, r in enumerate(all_rows)}
    return all_values[[order[int(r)] for r in expected]]


def relaunch_with_torchrun(nproc: int, argv: list[str]) -> int:
    """Run ``gaitbench ARGV`` under torchrun with ``nproc`` processes on this machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "gaitbench", *argv]
    return subprocess.call(cmd)
