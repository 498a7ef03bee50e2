"""One run trained into a folder on disk: `run.json` (what it trains), `checkpoint/`, `metrics.json`.

The command line's `train` and `evaluate`. Training resumes from the folder's checkpoint; a folder that
holds another run is refused rather than resumed.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..attacks.badmatch import choose_poison_indices, poison_image_pool
from .. import distributed
from ..checkpoint import checkpoint_meta, load_checkpoint
from ..config import Config
from ..data.sources import data_record, load_data, with_data_spec
from ..runtime import pick_device
from ..train import train
from .protocols import tampered_release, victim_config
from .runs import VICTIM_PROTOCOLS
from .scoring import attack_scores, model_metrics

METRICS, RUN = "metrics.json", "run.json"


def run_training(cfg: Config, out_dir, data=None, progress: bool = True, attack=None, baddist=None, device=None,
                 loader_workers: int = 0) -> dict:
    """Train (resuming from `out_dir/checkpoint` if it holds this run), evaluate, write `out_dir/metrics.json`.

    `data` = (image pool, text pool, eval sets), by default the data of `cfg` (`cfg.data.source`: the
    embedded phantoms or a data spec); `metrics["data"]` records which. `loader_workers` processes decode
    the training images off the loop (real data on disk; the phantoms are already in memory). With `attack` (a
    `BadMatchConfig`) the image pool is poisoned first and the model trains "from-scratch";
    `metrics["attack"]` holds BA and ASR per task. With `baddist` (a `BadDistConfig`) the victim instead
    fine-tunes the provider's tampered release of `cfg` (built or cached) with `victim_config(cfg)`.
    Under torchrun every rank trains its slice of each batch; rank 0 alone evaluates and writes, and the
    other ranks return an empty dict.
    """
    main = distributed.is_main_process()
    record = {"source": "given in memory by the caller"} if data is not None else None
    with distributed.main_process_first():
        data = data or load_data(cfg)
        record = record or data_record(cfg)
    image_pool, text_pool, eval_sets = data
    indices = []
    if attack is not None:
        indices = choose_poison_indices(image_pool.labels, attack.rate, attack.target, attack.seed)
        image_pool = poison_image_pool(image_pool, indices, attack.make_trigger(), attack.target)
    with distributed.main_process_first():
        if main:
            _claim_run_folder(out_dir, cfg, attack, baddist)
    encoder_init, train_cfg, protocol = None, cfg, "from-scratch"
    if baddist is not None:
        with distributed.main_process_first():
            release = tampered_release(cfg, baddist, device=device, progress=progress and main)
        encoder_init = release.model.image_encoder.state_dict()
        train_cfg, protocol = victim_config(cfg), "fine-tune"
    result = train(train_cfg, image_pool, text_pool, eval_sets, device=device, out_dir=Path(out_dir) / "checkpoint",
                   progress=progress, image_encoder_init=encoder_init, loader_workers=loader_workers)
    if not main:
        return {}
    metrics = _write_metrics(out_dir, result.model, result.tokenizer, train_cfg, data, record, result.seconds)
    if attack is not None:
        config = {**attack.to_dict(), "baddist": None if baddist is None else baddist.to_dict(),
                  "protocol": f"{protocol}: {VICTIM_PROTOCOLS[protocol]}"}
        scores = attack_scores(result.model, result.tokenizer, data, attack.make_trigger(), attack.target)
        metrics["attack"] = {"config": config, **{
            task: {"ba": m["ba"], "asr": m["asr"], "asr_ci": m["asr_ci"], "asr_all_images": m["asr_all_images"],
                   "robust_acc": m["robust_acc"], "poisoned": len(indices)} for task, m in scores.items()}}
        (Path(out_dir) / METRICS).write_text(json.dumps(metrics, indent=2))
    return metrics


def _write_metrics(out_dir, model, tokenizer, cfg: Config, data, record: dict, train_seconds: float) -> dict:
    images_per_second = cfg.train.batch_size * cfg.train.steps / train_seconds  # as `TrainResult` counts them
    metrics = {**model_metrics(model, tokenizer, data), "train_seconds": train_seconds,
               "train_images_per_second": images_per_second, "config": cfg.to_dict(), "data": record}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS).write_text(json.dumps(metrics, indent=2))
    return metrics


def _claim_run_folder(out_dir, cfg: Config, attack, baddist) -> None:
    """Record what a run folder trains (`run.json`); refuse a folder that holds a different run.

    The checkpoint alone knows only the training config, so without this a second `train` with another
    attack into the same folder would resume (and return) the first run's model.
    """
    identity = {"config": cfg.to_dict(), "attack": None if attack is None else attack.to_dict(),
                "baddist": None if baddist is None else baddist.to_dict()}
    path = Path(out_dir) / RUN
    if path.exists():
        held = json.loads(path.read_text())
        if held != identity:
            raise ValueError(f"{out_dir} holds another run ({_describe(held)}), not this one ({_describe(identity)}); "
                             "use another output folder")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=2))


def _describe(identity: dict) -> str:
    if identity["attack"] is None:
        return "no attack"
    return f"{'baddist+' if identity['baddist'] else ''}badmatch rate {identity['attack']['rate']}"


def checkpoint_folder(path) -> Path:
    """Accept a run folder written by `train` (its `checkpoint/` inside) or a checkpoint folder itself."""
    path = Path(path)
    return path / "checkpoint" if (path / "checkpoint").is_dir() else path


def run_evaluation(checkpoint, out_dir, data_spec=None) -> dict:
    """Recompute `metrics.json` from a checkpoint alone: on the data it was trained on (the numbers `train`
    wrote), or on the data of another spec (a model trained on phantoms, scored on real radiographs)."""
    folder = checkpoint_folder(checkpoint)
    model, tokenizer, cfg = load_checkpoint(folder, pick_device())
    if data_spec is not None:
        cfg = with_data_spec(cfg, data_spec)
    return _write_metrics(out_dir, model, tokenizer, cfg, load_data(cfg), data_record(cfg),
                          checkpoint_meta(folder)["train_seconds"])


__all__ = ["METRICS", "checkpoint_folder", "run_evaluation", "run_training"]
