"""The training loop's batches, with their images loaded by worker processes while the model trains.

An in-memory pool (the embedded phantoms) gives a batch by indexing one tensor; a pool of real files
decodes and resizes every image, which would leave the model idle for most of a step. So the images go
through a `torch.utils.data.DataLoader`: its worker processes run `image_pool.batch` on index batches
that the main process draws, a few batches ahead of the loop.

Workers move decoding, never the result. The sampler stays in the main process and draws the same
batches in the same order as the loop did by itself; the DataLoader's own base seed comes from a private
generator, so the global RNG (dropout) sees the same draws; and a checkpoint stores the sampler's state
from before the first batch the loop has not consumed yet, so a run resumed from it draws what an
uninterrupted run would have drawn. Any number of workers trains the same weights as none, bit for bit.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .. import distributed
from .pools import ImagePool

PREFETCH_BATCHES = 2  # per worker: enough to hide a slow decode, few enough to hold little memory


class BatchImages(Dataset):
    """A dataset whose item is a whole batch: `BatchImages(pool)[indices] == pool.batch(indices)`.

    A bad or missing file is returned as its error, not raised: the DataLoader would re-raise a worker's
    error with a multi-line "Caught ValueError in DataLoader worker process 0" message, while the loop
    raises it as it is (`error: <path>: cannot decode image ...` on the command line).
    """

    def __init__(self, image_pool: ImagePool):
        self.image_pool = image_pool

    def __getitem__(self, indices: torch.Tensor) -> torch.Tensor | Exception:
        try:
            return self.image_pool.batch(indices)
        except (ValueError, OSError) as err:  # what the adapters raise for an unreadable image
            return err


def _one_thread(worker_id: int) -> None:
    """Each worker decodes with one thread: N workers with all of torch's threads each would oversubscribe the CPU."""
    torch.set_num_threads(1)


class TrainingBatches:
    """`steps` global batches from `sampler` (an `UnpairedBatchSampler`): per step, the global batch's image
    and text indices (the same on every rank) and this rank's slice of its images.

    The index batches are drawn lazily, as the DataLoader asks for them: with `workers` = 0 one at a time in
    the loop; with workers, up to `PREFETCH_BATCHES` per worker ahead of it. Each draw remembers the
    sampler's state from before it, so `sampler_state()` can tell where the unconsumed batches start.
    """

    def __init__(self, image_pool: ImagePool, sampler, steps: int, workers: int, pin_memory: bool):
        self.sampler = sampler
        self.drawn: deque = deque()  # (sampler state before the draw, image indices, text indices), not yet consumed
        self.loader = DataLoader(
            BatchImages(image_pool),
            batch_size=None,  # the sampler yields whole batches of indices
            sampler=self._draw(steps),
            num_workers=workers,
            prefetch_factor=PREFETCH_BATCHES if workers else None,
            pin_memory=pin_memory,
            worker_init_fn=_one_thread,
            generator=torch.Generator(),  # the DataLoader's base seed; from the global RNG it would shift dropout
        )

    def _draw(self, steps: int) -> Iterator[torch.Tensor]:
        for _ in range(steps):
            state = self.sampler.generator.get_state()
            image_idx, text_idx = self.sampler.sample()  # the global batch, the same on every rank
            self.drawn.append((state, image_idx, text_idx))
            yield distributed.shard(image_idx)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for images in self.loader:
            if isinstance(images, Exception):
                raise images
            _, image_idx, text_idx = self.drawn.popleft()
            yield image_idx, text_idx, images

    def sampler_state(self) -> torch.Tensor:
        """The sampler's generator state before the first batch not yet consumed: where a resumed run restarts."""
        return self.drawn[0][0] if self.drawn else self.sampler.generator.get_state()
