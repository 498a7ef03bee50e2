"""Training: unpaired batches, AdamW with warmup + cosine, a quick validation curve, resumable checkpoints.

MedCLIP never needs an image's own report. A batch is B images drawn from the image pool, and for each image
one sentence drawn from the text pool among the sentences that share a positive finding with it. The pair
is a *pseudo*-pair, related only through the labels:

* the semantic matching loss ignores the pairing and matches every image with every sentence of the batch
  through their label vectors;
* InfoNCE (`loss="clip"`) treats the pseudo-pair as the only positive of each row, so a same-finding image
  elsewhere in the batch becomes a negative: the false-negative problem MedCLIP was built to remove.

Under `torchrun` the same loop trains data-parallel: each process encodes its slice of the global batch
and the loss sees the whole batch (`distributed.py`). With `loader_workers`, worker processes load the
images of the next batches while the model trains (`data/loader.py`); the result is the same.
"""
from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

from . import distributed
from .checkpoint import CheckpointError, load_checkpoint, load_train_state, save_checkpoint, verify_checkpoint
from .config import Config
from .data.labels import NUM_LABELS, label_index
from .data.loader import TrainingBatches
from .data.pools import EvalSet, ImagePool, TextPool, main_eval_set
from .losses import clip_loss, semantic_matching_loss
from .models import MedCLIP
from .runtime import pick_device, seed_everything
from .tokenizer import train_tokenizer
from .zeroshot import ZeroShotClassifier, class_prompts_for

VALIDATION_IMAGES = 200  # a fixed, class-balanced subset of the 5-class set for the in-training curve
TEXT_LENGTH_GROUPS = 4  # a training batch's sentences are encoded in this many groups of similar length
NO_FINDING = label_index("No Finding")


@dataclass
class TrainResult:
    model: MedCLIP
    tokenizer: PreTrainedTokenizerFast
    history: list[dict] = field(default_factory=list)  # one row per log step: step, loss, lr, val_acc, seconds
    seconds: float = 0.0  # optimisation wall time: tokenizer, batches, steps, checkpoints; not validation
    images_per_second: float = 0.0  # images of all ranks' batches per second of `seconds`
    cache_key: dict | None = None  # what the model cache keyed it on (set by `cache.cached_model`)


class UnpairedBatchSampler:
    """Draws (image indices, sentence indices): each sentence shares a random positive label of its image.

    Per label, the indices of the sentences positive for it are precomputed and packed into one padded
    table, so a batch is drawn with a few tensor ops. An image with no positive label that any sentence
    has (none in our pools, but possible with real data) gets a No Finding sentence, as in MedCLIP.
    """

    def __init__(self, image_labels: torch.Tensor, text_labels: torch.Tensor, batch_size: int, seed: int):
        positive = text_labels > 0
        counts = positive.sum(0)
        if counts[NO_FINDING] == 0:
            raise ValueError("the text pool has no No Finding sentence; expected at least one")
        self.image_labels = image_labels
        self.batch_size = batch_size
        self.counts = counts
        self.table = torch.zeros(NUM_LABELS, int(counts.max()), dtype=torch.long)
        for label in range(NUM_LABELS):
            rows = positive[:, label].nonzero().flatten()
            self.table[label, : len(rows)] = rows
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.generator
        images = torch.randint(len(self.image_labels), (self.batch_size,), generator=g)
        choices = (self.image_labels[images] > 0) & (self.counts > 0)
        choices[~choices.any(1), NO_FINDING] = True
        labels = torch.multinomial(choices.float(), 1, generator=g).squeeze(1)
        slot = (torch.rand(self.batch_size, generator=g) * self.counts[labels]).long()
        return images, self.table[labels, slot]


def _parameter_groups(model: MedCLIP, weight_decay: float) -> list[dict]:
    """Decay matrices and kernels only: biases, norm scales and the temperature (all < 2-D) are exempt."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name == "logit_scale" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _amp(device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, use a GradScaler): bf16 on CUDA when supported, else fp16 + scaler; CPU stays fp32."""
    if device.type != "cuda":
        return None, False
    return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)


def _rng_state(sampler_state: torch.Tensor, device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "sampler": sampler_state, "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, sampler: UnpairedBatchSampler, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    sampler.generator.set_state(state["sampler"])
    random.setstate(state["python"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _validation_subset(eval_set: EvalSet, n: int) -> torch.Tensor:
    """Evenly spaced indices, so every class of a class-sorted set is represented."""
    return torch.linspace(0, len(eval_set) - 1, min(n, len(eval_set))).round().long()


def tokenize_pool(tokenizer, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise every sentence once, padded to the longest (<= max_length): (input_ids, attention_mask)."""
    enc = tokenizer(sentences, padding="longest", truncation=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def encode_text_in_length_groups(model: MedCLIP, ids: torch.Tensor, mask: torch.Tensor,
                                 groups: int = TEXT_LENGTH_GROUPS) -> torch.Tensor:
    """`model.encode_text(ids, mask)`, computed in `groups` groups of sentences of similar length, each cut to
    its own longest sentence; rows come back in their original order.

    Report sentences vary in length, so a batch padded to its longest sentence is mostly padding, and the text
    tower's cost grows with the padded width. With masked pooling a sentence's embedding does not depend on its
    padding, so the groups give the padded batch's embeddings up to rounding. MedCLIP's unmasked pooling
    averages the padding in, so it keeps the one padded batch. Under torchrun each group is cut to its widest
    rank's width, so that every rank runs the same shapes.
    """
    if groups == 1 or not model.text_encoder.masked_pooling:
        return model.encode_text(ids, mask)
    lengths = mask.sum(1)
    order = torch.argsort(lengths, stable=True)
    chunks = order.chunk(groups)
    widths = distributed.max_over_ranks(torch.stack([lengths[chunk].max() for chunk in chunks]))
    embeddings = torch.cat([model.encode_text(ids[chunk, :width], mask[chunk, :width])
                            for chunk, width in zip(chunks, widths.tolist())])
    return embeddings[order.argsort()]  # back to the batch's order


def global_logits(model: MedCLIP, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The (global images x global texts) logits of a batch of which `images` and `ids`/`mask` are this
    process's slice: `model(images, ids, mask)` in one process; under torchrun every rank's embeddings are
    gathered first, so the loss compares the whole global batch."""
    image_emb = distributed.gather(model.encode_image(images))
    text_emb = distributed.gather(encode_text_in_length_groups(model, ids, mask))
    return model.logits(image_emb, text_emb)


def train(
    cfg: Config,
    image_pool: ImagePool,
    text_pool: TextPool,
    eval_sets: dict[str, EvalSet] | None = None,
    device=None,
    out_dir=None,
    progress: bool = True,
    *,
    log_every: int = 10,
    val_every: int = 100,
    save_every: int = 100,
    max_steps_this_call: int | None = None,
    init: tuple[MedCLIP, PreTrainedTokenizerFast] | None = None,
    image_encoder_init: dict[str, torch.Tensor] | None = None,
    extra_loss: Callable[[MedCLIP, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    loader_workers: int = 0,
) -> TrainResult:
    """Train a MedCLIP model from scratch on unpaired pools; resume from `out_dir` if it holds this run.

    `out_dir` is a checkpoint folder (see `checkpoint.py`): written every `save_every` steps with the
    optimizer, scheduler and RNG states, and at the end without them. A call with the same config resumes
    at the saved step and ends with the same weights as an uninterrupted run (on CPU, bit for bit).
    `max_steps_this_call` stops early after that many steps (to test resuming, or to split a long run).
    With `eval_sets`, 5-class zero-shot accuracy on a fixed subset is logged every `val_every` steps.

    Where a run starts (both ignored when resuming, since the checkpoint already holds the weights):
    `init` = (model, tokenizer) fine-tunes a copy of a trained model (a defender's clean fine-tuning);
    `image_encoder_init` = an `ImageEncoder` state dict starts the image tower from a provider's pretrained
    encoder while the tokenizer and text tower start fresh (the BadDist victim). `extra_loss(model, images,
    input_ids, attention_mask)` is added to the matching loss at every step (CleanCLIP's in-modal terms).
    CUDA runs under autocast (bf16, or fp16 with a GradScaler); CPU runs stay fp32 (the ResNet encoder
    already works in channels_last). Under torchrun every rank calls `train` alike; rank 0 alone validates,
    shows progress and writes `out_dir`. No image augmentation: the phantoms already vary in pose, exposure
    and noise, and every step draws fresh (image, sentence) combinations.

    `loader_workers` > 0 decodes the images in that many worker processes, ahead of the loop (for pools of
    image files); 0 loads them in the loop. It is not part of the config: the weights do not depend on it.
    """
    if isinstance(loader_workers, bool) or not isinstance(loader_workers, int) or loader_workers < 0:
        raise ValueError(f"invalid loader_workers {loader_workers!r}; expected a non-negative integer, the number "
                         f"of worker processes that load images (0: load them in the training loop)")
    tc = cfg.train
    device = torch.device(device) if device is not None else pick_device()
    _, world_size = distributed.world()
    distributed.check_batch_divides(tc.batch_size, world_size)
    if extra_loss is not None and world_size > 1:
        raise ValueError(f"extra_loss (CleanCLIP's in-modal term) is computed per process and would not equal the "
                         f"one-process term; run it in one process, not {world_size}")
    main_process = distributed.is_main_process()
    seed_everything(tc.seed)
    resumed = _resume_point(cfg, out_dir, device)
    if resumed is not None and resumed["meta"]["step"] >= tc.steps:
        model, tokenizer, meta = resumed["model"], resumed["tokenizer"], resumed["meta"]
        return TrainResult(model, tokenizer, meta["history"], meta["train_seconds"],
                           tc.batch_size * meta["step"] / meta["train_seconds"])

    started = time.perf_counter()
    if init is not None and image_encoder_init is not None:
        raise ValueError("give at most one of init (a whole model) and image_encoder_init (its image tower)")
    if resumed is None:
        model, tokenizer = _starting_model(cfg, text_pool, device, init, image_encoder_init)
        step, history, seconds_before = 0, [], 0.0
    else:
        model, tokenizer = resumed["model"], resumed["tokenizer"]
        step, history, seconds_before = resumed["meta"]["step"], resumed["meta"]["history"], resumed["meta"]["train_seconds"]
    distributed.broadcast_parameters(model)
    input_ids, attention_mask = tokenize_pool(tokenizer, text_pool.sentences)
    lengths = attention_mask.sum(1)
    sampler = UnpairedBatchSampler(image_pool.labels, text_pool.labels, tc.batch_size, tc.seed)
    optimizer = torch.optim.AdamW(_parameter_groups(model, tc.weight_decay), lr=tc.lr)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(tc.warmup_ratio * tc.steps), tc.steps)
    amp_dtype, use_scaler = _amp(device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    running, n_running = 0.0, 0
    if resumed is not None:
        state = resumed["train_state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], sampler, device)
        running, n_running = state["running_loss"]

    stop = tc.steps if max_steps_this_call is None else min(tc.steps, step + max_steps_this_call)
    batches = TrainingBatches(image_pool, sampler, stop - step, loader_workers, pin_memory=device.type == "cuda")

    validate = None if eval_sets is None or not main_process else _validator(model, tokenizer, main_eval_set(eval_sets), text_pool)
    def elapsed() -> float:
        return seconds_before + time.perf_counter() - started

    def save(final: bool, seconds: float) -> None:
        if not main_process:
            distributed.barrier()  # rank 0 is writing
            return
        meta = {"step": step, "history": history, "train_seconds": seconds}
        train_state = None if final else {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_state(batches.sampler_state(), device),  # the loader may have drawn batches ahead
            "running_loss": (running, n_running),  # the loss average of a log row split by the interruption
        }
        save_checkpoint(out_dir, model, tokenizer, cfg, meta=meta, train_state=train_state)
        distributed.barrier()

    model.train()
    bar = tqdm(total=tc.steps, initial=step, disable=not (progress and main_process), desc=f"train ({tc.loss})")
    for image_idx, text_idx, images in batches:  # the global batch's indices (the same on every rank), this rank's images
        local_texts = distributed.shard(text_idx)
        images = images.to(device, non_blocking=True)
        width = int(lengths[text_idx].max())  # the global batch's: equal shapes keep the ranks' dropout RNG in step
        ids = input_ids[local_texts, :width].to(device, non_blocking=True)
        mask = attention_mask[local_texts, :width].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = global_logits(model, images, ids, mask).float()
        if tc.loss == "semantic":
            loss = semantic_matching_loss(
                logits, image_pool.labels[image_idx].to(device), text_pool.labels[text_idx].to(device),
                temperature=tc.target_temperature,
            )
        else:
            loss = clip_loss(logits)
        if extra_loss is not None:
            loss = loss + extra_loss(model, images, ids, mask)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        distributed.synchronize_gradients([model.image_encoder, model.text_encoder], [model.logit_scale])
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        model.clamp_logit_scale_()
        step += 1
        running, n_running = running + loss.item(), n_running + 1
        bar.update(1)

        if step % log_every == 0 or step == tc.steps:
            row = {"step": step, "loss": running / n_running, "lr": scheduler.get_last_lr()[0], "val_acc": None,
                   "seconds": elapsed()}
            if validate is not None and (step % val_every == 0 or step == tc.steps):
                paused = time.perf_counter()
                row["val_acc"] = validate()
                started += time.perf_counter() - paused  # validation time does not count as training
            history.append(row)
            postfix = {"loss": f"{row['loss']:.3f}", "img/s": f"{tc.batch_size * step / row['seconds']:.0f}"}
            bar.set_postfix(postfix if row["val_acc"] is None else {**postfix, "val": f"{row['val_acc']:.2f}"})
            running, n_running = 0.0, 0
        if out_dir is not None and step % save_every == 0 and step < stop:
            save(final=False, seconds=elapsed())
    bar.close()
    seconds = elapsed()
    if out_dir is not None:
        save(final=step == tc.steps, seconds=seconds)
    return TrainResult(model.eval(), tokenizer, history, seconds, tc.batch_size * step / seconds)


def _starting_model(cfg: Config, text_pool: TextPool, device, init, image_encoder_init) -> tuple[MedCLIP, PreTrainedTokenizerFast]:
    """Where a new run starts: a copy of a trained model (`init`), or a fresh tokenizer and model whose image
    tower may come from a released encoder (`image_encoder_init`)."""
    if init is not None:
        return copy.deepcopy(init[0]).to(device), init[1]
    tokenizer = train_tokenizer(text_pool.sentences, cfg.model.vocab_size, cfg.model.max_length)
    model = MedCLIP(cfg.model, vocab_size=len(tokenizer), image_size=cfg.data.image_size).to(device)
    if image_encoder_init is not None:
        model.image_encoder.load_state_dict(image_encoder_init)
    return model, tokenizer


def _validator(model: MedCLIP, tokenizer, five: EvalSet, text_pool: TextPool) -> Callable[[], float]:
    """5-class zero-shot accuracy on a fixed, class-balanced subset (eval mode inside, training mode after)."""
    subset = _validation_subset(five, VALIDATION_IMAGES)
    images, targets = five.images.batch(subset), five.targets[subset]
    prompts = class_prompts_for(five, text_pool, n=10, seed=0)

    def validate() -> float:
        return (ZeroShotClassifier(model, tokenizer, prompts).predict(images) == targets).float().mean().item()

    return validate


def _resume_point(cfg: Config, out_dir, device: torch.device) -> dict | None:
    """What `out_dir` holds for this run: None if nothing; raises if it holds another run or is corrupt."""
    if out_dir is None or not Path(out_dir).exists() or not any(Path(out_dir).iterdir()):
        return None
    info = verify_checkpoint(out_dir)
    if info["config"] != cfg.to_dict():
        raise CheckpointError(
            f"{Path(out_dir) / 'config.json'}: holds a run of another config (key {info['config_key']}, "
            f"expected {cfg.key()}); use another output folder to train this one"
        )
    model, tokenizer, _ = load_checkpoint(out_dir, device)
    meta = info["meta"]
    train_state = load_train_state(out_dir)
    if train_state is None and meta["step"] < cfg.train.steps:
        raise CheckpointError(f"{out_dir}: stopped at step {meta['step']} without a train_state.pt to resume from")
    return {"model": model, "tokenizer": tokenizer, "meta": meta, "train_state": train_state}

