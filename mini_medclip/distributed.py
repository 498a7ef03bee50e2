"""Data-parallel training with `torch.distributed`: one process per device, one global contrastive batch.

`torchrun --nproc_per_node N -m mini_medclip train ...` starts N processes and tells each its rank;
`join_from_env` connects them (NCCL between GPUs, gloo on CPUs). A contrastive loss compares every image
of a batch with every text of it, so data parallelism cannot simply average per-rank losses as a
classifier would. Instead, as open_clip does:

1. every rank draws the same global batch (the sampler is seeded identically) and encodes only its own
   slice of it (`shard`);
2. `gather` rebuilds the global embedding matrices on every rank, with the rank's own slice still attached
   to its autograd graph, so every rank computes the same global loss and back-propagates it into its own
   slice only;
3. `synchronize_gradients` sums the towers' gradients over the ranks, which gives exactly the gradient of
   the one-process global batch, and averages the gradient of the logit scale, which every rank computed
   whole because the scale acts after the gather.

What is not exact: BatchNorm (the ResNet tower) normalises each rank's slice with the slice's own
statistics, as data-parallel training does without `SyncBatchNorm` (which needs GPUs); and each rank's
text dropout masks come from its own (identically seeded) stream, not from the one-process draw. The
ViT image tower has neither.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist

from .runtime import pick_device


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Rank 0: the one process that writes checkpoints and metrics and shows progress."""
    return world()[0] == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join_from_env() -> torch.device:
    """Join the process group torchrun describes in the environment; returns this rank's device."""
    device = pick_device()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_batch_divides(batch_size: int, world_size: int) -> None:
    if batch_size % world_size:
        raise ValueError(f"invalid batch_size {batch_size} for {world_size} processes; expected a multiple of "
                         f"{world_size}, so that every rank encodes an equal slice of the global batch")


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch's indices (the whole batch in one process)."""
    rank, world_size = world()
    check_batch_divides(len(indices), world_size)
    size = len(indices) // world_size
    return indices[rank * size:(rank + 1) * size]


def gather(local: torch.Tensor) -> torch.Tensor:
    """The global (rows of every rank, in rank order) tensor; only this rank's rows carry gradient."""
    rank, world_size = world()
    if world_size == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(parts, local.detach().contiguous())
    parts[rank] = local
    return torch.cat(parts)


def max_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise maximum of `values` over every rank (`values` itself in one process)."""
    if world()[1] == 1:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def synchronize_gradients(towers: list[torch.nn.Module], shared: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of `towers` (each rank holds its slice's share) and average those of `shared`
    (parameters used after the gather, whose gradient every rank computed whole). One all-reduce each."""
    _, world_size = world()
    if world_size == 1:
        return
    summed = [p.grad for tower in towers for p in tower.parameters() if p.grad is not None]
    averaged = [p.grad for p in shared if p.grad is not None]
    for grads, scale in ((summed, 1.0), (averaged, 1.0 / world_size)):
        if not grads:
            continue
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.mul_(scale)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's weights and buffers (they are equal when seeded alike; this makes
    it a guarantee rather than an assumption)."""
    if world()[1] == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


@contextmanager
def main_process_first():
    """Rank 0 runs the block first (rendering data, training a release into the cache), the others after it,
    so that they read what it wrote instead of writing the same cache entries at the same time."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


__all__ = [
    "barrier", "broadcast_parameters", "check_batch_divides", "gather", "is_main_process", "join_from_env",
    "launched_by_torchrun", "leave", "main_process_first", "max_over_ranks", "shard", "synchronize_gradients", "world",
]
