"""Where a tiny training step spends its time, and how much of this CPU's matmul throughput it reaches.

    python benchmarks/train_profile.py [--steps 20] [--image-encoder resnet] [--text-groups 4]

Times each part of real training steps of the preset (the embedded pools, the model, loss and optimizer
that `train` uses): drawing the batch, the image tower's forward and backward, the text tower's forward
and backward, the loss, the optimizer, and the in-training validation (amortised over its interval). The
backward is split exactly: the loss's gradients with respect to both embeddings are taken first, then each
tower is back-propagated from its own gradient. FLOPs come from `torch.utils.flop_counter`, the machine's
throughput from a large fp32 matmul. `--text-groups` is how many length groups the text tower encodes a
batch in (`train.encode_text_in_length_groups`; 1 = one batch padded to its longest sentence). Prints a
table; `--out` also writes it as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import get_cosine_schedule_with_warmup

from mini_medclip.config import IMAGE_ENCODERS, get_config
from mini_medclip.data.embedded import embedded_data
from mini_medclip.losses import semantic_matching_loss
from mini_medclip.models import MedCLIP
from mini_medclip.runtime import seed_everything
from mini_medclip.tokenizer import train_tokenizer
from mini_medclip.train import (
    TEXT_LENGTH_GROUPS, VALIDATION_IMAGES, UnpairedBatchSampler, _parameter_groups, _validation_subset,
    encode_text_in_length_groups, tokenize_pool,
)
from mini_medclip.zeroshot import ZeroShotClassifier, class_prompts_for

PARTS = ("batch", "image forward", "text forward", "loss", "image backward", "text backward", "optimizer", "validation")


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Sustained fp32 GEMM throughput of this CPU with torch's threads (GFLOP/s)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def profile(preset: str, image_encoder: str, steps: int, text_groups: int = TEXT_LENGTH_GROUPS, warmup: int = 3,
            val_every: int = 100) -> dict:
    cfg = get_config(preset, model__image_encoder=image_encoder)
    tc = cfg.train
    seed_everything(tc.seed)
    image_pool, text_pool, eval_sets = embedded_data(cfg)
    tokenizer = train_tokenizer(text_pool.sentences, cfg.model.vocab_size, cfg.model.max_length)
    model = MedCLIP(cfg.model, vocab_size=len(tokenizer), image_size=cfg.data.image_size).train()
    input_ids, attention_mask = tokenize_pool(tokenizer, text_pool.sentences)
    lengths = attention_mask.sum(1)
    sampler = UnpairedBatchSampler(image_pool.labels, text_pool.labels, tc.batch_size, tc.seed)
    optimizer = torch.optim.AdamW(_parameter_groups(model, tc.weight_decay), lr=tc.lr)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(tc.warmup_ratio * tc.steps), tc.steps)
    seconds = dict.fromkeys(PARTS, 0.0)
    flops = {}

    def step(timed: bool) -> None:
        marks = [time.perf_counter()]

        def mark(part: str) -> None:
            marks.append(time.perf_counter())
            if timed:
                seconds[part] += marks[-1] - marks[-2]

        image_idx, text_idx = sampler.sample()
        images = image_pool.batch(image_idx)
        width = int(lengths[text_idx].max())
        ids, mask = input_ids[text_idx, :width], attention_mask[text_idx, :width]
        mark("batch")
        image_emb = model.encode_image(images)
        mark("image forward")
        text_emb = encode_text_in_length_groups(model, ids, mask, groups=text_groups)
        mark("text forward")
        loss = semantic_matching_loss(model.logits(image_emb, text_emb), image_pool.labels[image_idx],
                                      text_pool.labels[text_idx], temperature=tc.target_temperature)
        optimizer.zero_grad(set_to_none=True)
        grad_image, grad_text, grad_scale = torch.autograd.grad(loss, [image_emb, text_emb, model.logit_scale], retain_graph=True)
        mark("loss")
        image_emb.backward(grad_image, retain_graph=True)
        mark("image backward")
        text_emb.backward(grad_text)
        model.logit_scale.grad = grad_scale
        mark("text backward")
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        model.clamp_logit_scale_()
        mark("optimizer")

    for _ in range(warmup):
        step(timed=False)
    for _ in range(steps):
        step(timed=True)

    five = eval_sets["five_class"]
    subset = _validation_subset(five, VALIDATION_IMAGES)
    val_images, val_targets = five.images.batch(subset), five.targets[subset]
    classifier_prompts = class_prompts_for(five, text_pool, n=10, seed=0)
    start = time.perf_counter()
    (ZeroShotClassifier(model, tokenizer, classifier_prompts).predict(val_images) == val_targets).float().mean()
    model.train()
    seconds["validation"] = (time.perf_counter() - start) * steps / val_every

    # FLOPs of one forward + backward of each tower at this batch size (a typical text width).
    image_idx, text_idx = sampler.sample()
    images = image_pool.batch(image_idx)
    width = int(lengths[text_idx].max())
    for tower, run in (("image", lambda: model.encode_image(images)),
                       ("text", lambda: encode_text_in_length_groups(model, input_ids[text_idx, :width],
                                                                     attention_mask[text_idx, :width], groups=text_groups))):
        with FlopCounterMode(display=False) as counter:
            run().sum().backward()
        flops[tower] = counter.get_total_flops()
    optimizer.zero_grad(set_to_none=True)

    per_step = {part: s / steps for part, s in seconds.items()}
    total = sum(per_step.values())
    peak = matmul_gflops()
    tower_seconds = {"image": per_step["image forward"] + per_step["image backward"],
                     "text": per_step["text forward"] + per_step["text backward"]}
    return {
        "preset": preset, "image_encoder": image_encoder, "text_groups": text_groups, "batch_size": tc.batch_size, "image_size": cfg.data.image_size,
        "steps_timed": steps, "seconds_per_step": total, "share": {p: s / total for p, s in per_step.items()},
        "seconds": per_step, "gflop_per_step": {t: f / 1e9 for t, f in flops.items()},
        "tower_gflops": {t: flops[t] / 1e9 / tower_seconds[t] for t in flops},
        "matmul_gflops": peak,
        "fraction_of_matmul_peak": sum(flops.values()) / 1e9 / total / peak,
        "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--image-encoder", choices=IMAGE_ENCODERS, default="resnet")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--text-groups", type=int, default=TEXT_LENGTH_GROUPS,
                        help="length groups the text tower encodes a batch in (1: one padded batch)")
    parser.add_argument("--out", type=Path, default=None, help="also write the record as JSON here")
    args = parser.parse_args()
    if args.text_groups < 1:
        parser.error(f"invalid --text-groups {args.text_groups}; expected a positive integer")
    record = profile(args.preset, args.image_encoder, args.steps, args.text_groups)
    print(f"{record['preset']} / {record['image_encoder']}, batch {record['batch_size']} at {record['image_size']} px, "
          f"{record['cpu_threads']} threads, {record['text_groups']} text length groups: "
          f"{record['seconds_per_step'] * 1000:.0f} ms per step")
    for part in PARTS:
        print(f"  {part:>15s}: {record['seconds'][part] * 1000:7.1f} ms  {100 * record['share'][part]:5.1f}%")
    for tower in ("image", "text"):
        print(f"  {tower} tower: {record['gflop_per_step'][tower]:.2f} GFLOP per step (fwd+bwd), "
              f"{record['tower_gflops'][tower]:.1f} GFLOP/s")
    print(f"  matmul peak {record['matmul_gflops']:.1f} GFLOP/s; a step reaches {100 * record['fraction_of_matmul_peak']:.1f}% of it")
    if args.out:
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
