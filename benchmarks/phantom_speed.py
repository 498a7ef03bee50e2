"""Phantoms per second on the CPU, at 64 and 128 px: `python benchmarks/phantom_speed.py [threads]` (default 2).

Rendering is batched; the anatomy atlas for a size is built once (the warm-up call) and cached.
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mini_medclip.data.label_sampler import sample_labels  # noqa: E402
from mini_medclip.data.phantoms import render  # noqa: E402


def phantoms_per_second(size: int, batch: int = 1_000, repeats: int = 3) -> float:
    labels = sample_labels(batch, seed=0)
    render(labels[:8], size, seed=0)  # warm-up: builds and caches the anatomy atlas for this size
    start = time.perf_counter()
    for seed in range(repeats):
        render(labels, size, seed=seed)
    return batch * repeats / (time.perf_counter() - start)


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    for size in (64, 128):
        print(f"{size:4d} px: {phantoms_per_second(size):7.0f} phantoms/s (batch of 1,000, {torch.get_num_threads()} threads)")
