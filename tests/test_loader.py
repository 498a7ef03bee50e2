"""Loading images in DataLoader workers changes where they are decoded, never the trained model."""
from __future__ import annotations

import re

import pytest
import torch
from PIL import Image

from helpers import same_weights, tiny_config, tiny_data, weights_of
from mini_medclip import distributed
from mini_medclip.checkpoint import verify_checkpoint
from mini_medclip.data.adapters import FileImagePool, read_image_file
from mini_medclip.data.loader import BatchImages
from mini_medclip.train import train


class InLoopBatches:
    """The training loop before the DataLoader: draw a batch, take this rank's slice, `image_pool.batch` it."""

    def __init__(self, image_pool, sampler, steps, workers, pin_memory):
        self.image_pool, self.sampler, self.steps = image_pool, sampler, steps

    def __iter__(self):
        for _ in range(self.steps):
            image_idx, text_idx = self.sampler.sample()
            yield image_idx, text_idx, self.image_pool.batch(distributed.shard(image_idx))

    def sampler_state(self):
        return self.sampler.generator.get_state()


@pytest.fixture
def file_data(tmp_path):
    """`tiny_data` with its training images written to files (PNG and JPEG, 48 x 40 px) and read back."""
    memory_pool, text_pool, eval_sets = tiny_data()
    paths = []
    for i, image in enumerate(memory_pool.images[:, 0].numpy()):
        paths.append(tmp_path / f"image{i}.{'png' if i % 2 else 'jpg'}")
        Image.fromarray(image).resize((48, 40)).save(paths[-1])
    return FileImagePool(paths, memory_pool.labels, image_size=32), text_pool, eval_sets


def results(run) -> tuple[dict, list]:
    return weights_of(run.model), [(row["loss"], row["val_acc"]) for row in run.history]


def same_results(a, b) -> bool:
    return same_weights(a[0], b[0]) and a[1] == b[1]


def test_a_batch_of_the_dataset_is_the_pools_batch(file_data):
    pool = file_data[0]
    indices = torch.tensor([5, 0, 5, 17])
    assert torch.equal(BatchImages(pool)[indices], pool.batch(indices))


def test_without_workers_training_equals_loading_in_the_loop(monkeypatch):
    """The DataLoader takes nothing from the global RNG (text dropout draws from it), so the weights and the
    loss history stay those of the loop that called `image_pool.batch` itself, which cached models rely on."""
    cfg = tiny_config(train__steps=8)
    data = tiny_data()
    loaded = results(train(cfg, *data, device="cpu", progress=False, log_every=2, val_every=4))
    monkeypatch.setattr("mini_medclip.train.TrainingBatches", InLoopBatches)
    in_loop = results(train(cfg, *data, device="cpu", progress=False, log_every=2, val_every=4))
    assert same_results(loaded, in_loop)


def test_two_workers_train_the_same_model_as_none(file_data):
    cfg = tiny_config(train__steps=8)
    runs = [train(cfg, *file_data, device="cpu", progress=False, log_every=2, val_every=4, loader_workers=workers)
            for workers in (0, 2)]
    assert same_results(results(runs[0]), results(runs[1]))
    assert all(run.images_per_second > 0 for run in runs)


class Killed(Exception):
    """Stands for the process being killed."""


def killed_at_step(step: int):
    """An `extra_loss` that adds nothing and kills the run at `step`, while the workers are loading batches ahead."""
    calls = []

    def extra_loss(model, images, ids, mask):
        calls.append(1)
        if len(calls) == step:
            raise Killed
        return torch.zeros((), device=images.device)

    return extra_loss


@pytest.mark.parametrize("interruption", ["stopped", "killed"])
def test_a_run_interrupted_with_workers_resumes_to_the_uninterrupted_model(file_data, tmp_path, interruption):
    """Stopped: `max_steps_this_call` ends a call after step 3, every drawn batch consumed. Killed: the run
    dies at step 6 and resumes from its step-4 checkpoint, saved while the workers held batches 5 to 8."""
    cfg = tiny_config(train__steps=10)
    reference = results(train(cfg, *file_data, device="cpu", progress=False, log_every=2))
    out = tmp_path / "run"
    kwargs = dict(device="cpu", out_dir=out, progress=False, log_every=2, save_every=2, loader_workers=2)
    if interruption == "stopped":
        train(cfg, *file_data, max_steps_this_call=3, **kwargs)
    else:
        with pytest.raises(Killed):
            train(cfg, *file_data, extra_loss=killed_at_step(6), **kwargs)
    assert verify_checkpoint(out)["meta"]["step"] == (3 if interruption == "stopped" else 4)
    resumed = results(train(cfg, *file_data, **kwargs))
    assert same_results(resumed, reference)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_undecodable_image_fails_with_the_readers_one_line_message(file_data, workers):
    pool, text_pool, _ = file_data
    pool.paths[0].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))  # a PNG signature, then nothing readable
    with pytest.raises(ValueError) as direct:
        read_image_file(pool.paths[0])
    with pytest.raises(ValueError) as error:
        train(tiny_config(train__steps=20), pool, text_pool, device="cpu", progress=False, loader_workers=workers)
    assert str(error.value) == str(direct.value) and "\n" not in str(error.value)
    assert str(error.value).startswith(f"{pool.paths[0]}: cannot decode image (")


@pytest.mark.parametrize("workers", [-1, 1.5, "2", True, None])
def test_loader_workers_must_be_a_non_negative_integer(workers):
    with pytest.raises(ValueError, match=re.escape(f"invalid loader_workers {workers!r}; expected a non-negative integer")):
        train(tiny_config(), *tiny_data(), device="cpu", progress=False, loader_workers=workers)
