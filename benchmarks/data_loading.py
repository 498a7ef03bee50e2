"""Images per second from files on disk: the loading pipeline alone, and the training loop it feeds.

    python benchmarks/data_loading.py [--files 3000] [--size 512] [--image-size 64] [--steps 20]

Writes `--files` phantom radiographs (half PNG, half JPEG, each side drawn between half of `--size` and
`--size` px) and their MedCLIP meta CSV to a temporary folder, reads them back with `medclip_image_pool`
as a real data set would be, then measures:

* the pipeline alone (`TrainingBatches`: draw, decode, pad, resize) at 0, 1 and 2 loader workers, in
  steady state (from the first batch on, so worker start-up is left out);
* the tiny preset's training loop on that pool at 0 and 2 workers (`TrainResult.images_per_second`,
  whose time includes training the tokenizer, and the steady rate between the first and the last log row).

The files were just written, so they are read from the page cache: this measures decoding, not the disk.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torchvision.io import write_jpeg, write_png
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mini_medclip.config import get_config  # noqa: E402
from mini_medclip.data.adapters import medclip_image_pool  # noqa: E402
from mini_medclip.data.embedded import build_text_pool, render_pool  # noqa: E402
from mini_medclip.data.label_sampler import sample_labels  # noqa: E402
from mini_medclip.data.labels import CHEXPERT_LABELS  # noqa: E402
from mini_medclip.data.loader import TrainingBatches  # noqa: E402
from mini_medclip.train import UnpairedBatchSampler, train  # noqa: E402

PHANTOMS = 200  # distinct phantoms rendered (at the renderer's largest size); the files resize them
PIPELINE_WORKERS = (0, 1, 2)
TRAINING_WORKERS = (0, 2)


def write_radiographs(folder: Path, files: int, size: int) -> Path:
    """`files` PNG/JPEG radiographs of random sides in [size / 2, size] and their MedCLIP CSV; returns the CSV."""
    labels = sample_labels(files, seed=0)
    phantoms = render_pool(labels[:PHANTOMS], 224, seed=0).images
    sides = torch.randint(size // 2, size + 1, (files, 2), generator=torch.Generator().manual_seed(0))
    rows = []
    for i in tqdm(range(files), desc="writing radiographs"):
        image = F.resize(phantoms[i % PHANTOMS], sides[i].tolist(), antialias=True)
        name = f"{i:05d}.png" if i % 2 == 0 else f"{i:05d}.jpg"
        (write_png if name.endswith(".png") else write_jpeg)(image, str(folder / name))
        rows.append({"imgpath": name, **dict(zip(CHEXPERT_LABELS, labels[i].int().tolist()))})
    csv = folder / "meta.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def pipeline_images_per_second(pool, text_pool, batch_size: int, batches: int, workers: int) -> float:
    sampler = UnpairedBatchSampler(pool.labels, text_pool.labels, batch_size, seed=0)
    loaded = iter(TrainingBatches(pool, sampler, batches + 1, workers, pin_memory=False))
    next(loaded)  # the first batch waits for the workers to start
    start = time.perf_counter()
    for _ in tqdm(loaded, total=batches, desc=f"pipeline, {workers} workers", leave=False):
        pass
    return batches * batch_size / (time.perf_counter() - start)


def training_images_per_second(pool, text_pool, steps: int, workers: int) -> tuple[float, float]:
    """(TrainResult.images_per_second, the steady rate between the first and the last log row)."""
    cfg = get_config("tiny", data__image_size=pool.image_size, train__steps=steps)
    result = train(cfg, pool, text_pool, device="cpu", log_every=5, loader_workers=workers)
    first, last = result.history[0], result.history[-1]
    steady = (last["step"] - first["step"]) * cfg.train.batch_size / (last["seconds"] - first["seconds"])
    return result.images_per_second, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3_000, help="radiographs to write (default 3000)")
    parser.add_argument("--size", type=int, default=512, help="largest side of a file in px (default 512)")
    parser.add_argument("--image-size", type=int, default=64, help="the model's input size (default 64, the tiny preset's)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per measured run (default 20)")
    args = parser.parse_args()
    batch_size = get_config("tiny").train.batch_size
    text_pool = build_text_pool()
    with tempfile.TemporaryDirectory() as folder:
        pool = medclip_image_pool(write_radiographs(Path(folder), args.files, args.size), args.image_size)
        batches = max(1, args.files // batch_size - 1)
        pipeline = {w: pipeline_images_per_second(pool, text_pool, batch_size, batches, w) for w in PIPELINE_WORKERS}
        training = {w: training_images_per_second(pool, text_pool, args.steps, w) for w in TRAINING_WORKERS}
    print(f"\n{args.files} files (PNG/JPEG, sides {args.size // 2}-{args.size} px) -> {args.image_size} px, "
          f"batch {batch_size}, {torch.get_num_threads()} torch threads\n")
    print("| loader workers | pipeline img/s | training img/s (TrainResult) | training img/s (steady) |")
    print("|---:|---:|---:|---:|")
    for workers in PIPELINE_WORKERS:
        result, steady = (f"{rate:,.0f}" for rate in training[workers]) if workers in training else ("", "")
        print(f"| {workers} | {pipeline[workers]:,.0f} | {result} | {steady} |")


if __name__ == "__main__":
    main()
