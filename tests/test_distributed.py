"""Data-parallel training on CPU: 2 processes on the loopback address against 1 process with the whole batch."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from helpers import same_weights, tiny_config, tiny_data, weights_of
from mini_medclip import distributed
from mini_medclip.checkpoint import load_checkpoint, verify_checkpoint
from mini_medclip.losses import semantic_matching_loss
from mini_medclip.models import MedCLIP
from mini_medclip.tokenizer import train_tokenizer
from mini_medclip.train import global_logits, train

BATCH = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_process_group(rank: int, world_size: int, port: int, job, *args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        job(rank, *args)
    finally:
        dist.destroy_process_group()


def _spawn(job, *args, world_size: int = 2) -> None:
    mp.spawn(_in_process_group, args=(world_size, _free_port(), job, *args), nprocs=world_size)


def _step_one(backbone: str):
    """Loss and gradients of one global batch through the training loop's own pieces (eval mode: no batch
    statistics, no dropout, so that one and two processes compute the same function)."""
    cfg = tiny_config(model__image_encoder=backbone)
    pool, text_pool, _ = tiny_data()
    tokenizer = train_tokenizer(text_pool.sentences, cfg.model.vocab_size)
    torch.manual_seed(0)
    model = MedCLIP(cfg.model, vocab_size=len(tokenizer), image_size=cfg.data.image_size).eval()
    image_idx, text_idx = torch.arange(BATCH), torch.arange(3, 3 + BATCH)
    enc = tokenizer([text_pool.sentences[i] for i in text_idx], padding="longest", return_tensors="pt")
    local_images, local_texts = distributed.shard(image_idx), distributed.shard(torch.arange(BATCH))
    logits = global_logits(model, pool.batch(local_images), enc["input_ids"][local_texts], enc["attention_mask"][local_texts])
    loss = semantic_matching_loss(logits.float(), pool.labels[image_idx], text_pool.labels[text_idx], temperature=0.1)
    loss.backward()
    distributed.synchronize_gradients([model.image_encoder, model.text_encoder], [model.logit_scale])
    return {"loss": loss.detach().reshape(1), **{name: p.grad for name, p in model.named_parameters() if p.grad is not None}}


def _save_step_one(rank: int, backbone: str, out: Path) -> None:
    save_file({k: v.contiguous() for k, v in _step_one(backbone).items()}, out / f"rank{rank}.safetensors")


@pytest.mark.parametrize("backbone", ["resnet", "vit"])
def test_two_processes_with_half_the_batch_each_match_one_process_at_step_one(backbone, tmp_path):
    one = _step_one(backbone)
    _spawn(_save_step_one, backbone, tmp_path)
    for rank in (0, 1):
        two = load_file(tmp_path / f"rank{rank}.safetensors")
        assert two.keys() == one.keys()
        for name in one:
            torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=f"{name} (rank {rank})")


def _train_job(rank: int, out: Path, steps: int, stop_after: int | None, loader_workers: int = 0) -> None:
    cfg = tiny_config(train__steps=steps)
    pool, text_pool, eval_sets = tiny_data()
    train(cfg, pool, text_pool, eval_sets, device="cpu", out_dir=out, progress=False, log_every=2, val_every=4,
          save_every=2, max_steps_this_call=stop_after, loader_workers=loader_workers)


def test_two_process_training_writes_from_rank_0_resumes_exactly_with_loader_workers_and_lowers_the_loss(tmp_path):
    """The split run also loads its images in a worker process per rank: neither resuming nor the workers
    may change the weights."""
    _spawn(_train_job, tmp_path / "whole", 12, None)
    _spawn(_train_job, tmp_path / "split", 12, 5, 1)
    assert verify_checkpoint(tmp_path / "split")["meta"]["step"] == 5
    _spawn(_train_job, tmp_path / "split", 12, None, 1)  # resumed at step 5, under torchrun
    whole, split = load_checkpoint(tmp_path / "whole")[0], load_checkpoint(tmp_path / "split")[0]
    assert same_weights(weights_of(whole), weights_of(split))
    history = verify_checkpoint(tmp_path / "whole")["meta"]["history"]
    assert history[-1]["step"] == 12 and history[-1]["loss"] < history[0]["loss"]
    assert all(row["val_acc"] is not None for row in history if row["step"] % 4 == 0)  # rank 0 validated


def test_batch_sizes_that_do_not_split_evenly_are_refused():
    with pytest.raises(ValueError, match="invalid batch_size 9 for 2 processes; expected a multiple of 2"):
        distributed.check_batch_divides(9, 2)


def test_torchrun_trains_from_the_command_line_and_rank_0_alone_reports(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mini_medclip", "train", "--preset", "tiny", "--steps", "4", "--out", str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "MINI_MEDCLIP_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote") == 1  # one summary line, from rank 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["train"]["steps"] == 4 and set(metrics["zero_shot"]) == {"five_class", "covid", "rsna"}
    assert verify_checkpoint(tmp_path / "run" / "checkpoint")["meta"]["step"] == 4
