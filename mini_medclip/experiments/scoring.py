"""The numbers a trained model gets: zero-shot, retrieval and a linear probe; BA and ASR per zero-shot task.

`evaluate_run` turns a run's victim into the records `reproduce` stores: one per task, with the clean
victim's ASR for the same trigger as the floor and, under BadDist, how far the tampered release moved the
clean embeddings. `geometry_records` adds where the trigger sends images, in the release and in the victim;
`provider_records` the clean release's own zero-shot accuracy, the model every victim starts from.
"""
from __future__ import annotations

from dataclasses import asdict

from ..attacks.baddist import BadDistConfig, embedding_drift
from ..attacks.badmatch import BadMatchConfig
from ..attacks.geometry import trigger_geometry
from ..attacks.metrics import evaluate_attack
from ..attacks.triggers import Trigger, make_trigger
from ..config import Config
from ..data.pools import main_eval_set
from ..data.sources import load_data
from ..evaluation import linear_probe, retrieval_recall
from ..zeroshot import evaluate_all
from .protocols import build_victim_model, pretrained_model, release_for, tampered_release
from .runs import Run, base_config


def model_metrics(model, tokenizer, data) -> dict:
    """Zero-shot (3 tasks), retrieval and linear probe of a trained model on (image pool, text pool, eval sets)."""
    image_pool, text_pool, eval_sets = data
    return {
        "zero_shot": evaluate_all(model, tokenizer, eval_sets, text_pool),
        "retrieval": retrieval_recall(model, tokenizer, main_eval_set(eval_sets), text_pool),
        "linear_probe": linear_probe(model, image_pool, main_eval_set(eval_sets)),
    }


def attack_scores(model, tokenizer, data, trigger: Trigger, target: str = "No Finding", n_runs: int = 5) -> dict[str, dict]:
    """`evaluate_attack` on every zero-shot task of `data`: {task: BA, ASR, its interval, robust accuracy, ...}."""
    _, text_pool, eval_sets = data
    return {task: evaluate_attack(model, tokenizer, eval_set, text_pool, trigger, target=target, n_runs=n_runs)
            for task, eval_set in eval_sets.items()}


def run_fields(run: Run) -> dict:
    """A run's fields as a record stores them (no variant without BadDist)."""
    return {**asdict(run), "variant": run.variant if run.uses_baddist else None, "attack_label": run.label}


def provider_records(preset: str | Config, backbone: str, release_seed: int, device=None) -> list[dict]:
    """One record per zero-shot task for the provider's clean release of `backbone` on draw `release_seed` of the
    data: its accuracy, macro F1 and AUROC (mean and spread over 5 prompt draws)."""
    run = Run(backbone, release_seed=release_seed)
    cfg = base_config(preset, run)
    _, text_pool, eval_sets = load_data(cfg)
    release = pretrained_model(cfg, device)
    return [{"backbone": backbone, "release_seed": release_seed, "task": task, **metrics}
            for task, metrics in evaluate_all(release.model, release.tokenizer, eval_sets, text_pool).items()]


def evaluate_run(preset: str | Config, run: Run, result, clean_result, data, device=None, seconds: float = 0.0) -> list[dict]:
    """One record per zero-shot task: BA, ASR, robust accuracy, the clean victim's ASR, BadDist's drift."""
    _, _, eval_sets = data
    trigger = make_trigger(run.trigger)
    cfg = base_config(preset, run)
    drift = None
    if run.uses_baddist:
        tampered = release_for(preset, run, device)
        five = main_eval_set(eval_sets)
        drift = embedding_drift(pretrained_model(cfg, device).model, tampered.model, five.images.batch(range(len(five))))
    scores = attack_scores(result.model, result.tokenizer, data, trigger)
    floors = attack_scores(clean_result.model, clean_result.tokenizer, data, trigger, n_runs=1)
    return [{
        **run_fields(run), "task": task, "poison_count": run.count, "poison_rate": run.count / cfg.data.n_train_images,
        "ba": m["ba"], "ba_std": m["ba_std"], "asr": m["asr"], "asr_std": m["asr_std"], "asr_ci": list(m["asr_ci"]),
        "asr_all_images": m["asr_all_images"], "robust_acc": m["robust_acc"], "asr_clean_model": floors[task]["asr"],
        "clean_embedding_drift": drift, "seconds": seconds, "key": run.key(),
    } for task, m in scores.items()]


def geometry_records(preset: str | Config, run: Run, result, data, device=None) -> list[dict]:
    """`trigger_geometry` on the main evaluation set for the release the run's victim starts from (stage
    "release", with the provider's text tower) and for the victim (stage "victim")."""
    _, text_pool, eval_sets = data
    eval_set, trigger = main_eval_set(eval_sets), make_trigger(run.trigger)
    release = release_for(preset, run, device)
    return [{**run_fields(run), "task": eval_set.name, "stage": stage, "key": run.key(),
             **trigger_geometry(model.model, model.tokenizer, eval_set, text_pool, trigger)}
            for stage, model in (("release", release), ("victim", result))]


def survival_records(cfg: Config, baddist: BadDistConfig, count: int, data, device=None) -> list[dict]:
    """A tampered release and its "fine-tune" victim trained on `count` records poisoned with the release's own
    trigger (release 0, seed 0): BA, ASR and `trigger_geometry` on the main evaluation set, one row per stage.
    For the settings a `Run` does not name (trigger parameters, shadow images): chapter 7's Fourier study."""
    _, text_pool, eval_sets = data
    eval_set, trigger = main_eval_set(eval_sets), baddist.make_trigger()
    attack = BadMatchConfig(trigger=baddist.trigger, trigger_params=baddist.trigger_params,
                            rate=count / cfg.data.n_train_images)
    rows = []
    for stage, model in (("release", tampered_release(cfg, baddist, device)),
                         ("victim", build_victim_model(cfg, attack, baddist, device)[0])):
        scores = evaluate_attack(model.model, model.tokenizer, eval_set, text_pool, trigger)
        rows.append({"stage": stage, "ba": scores["ba"], "asr": scores["asr"],
                     **trigger_geometry(model.model, model.tokenizer, eval_set, text_pool, trigger)})
    return rows


__all__ = ["attack_scores", "evaluate_run", "geometry_records", "model_metrics", "provider_records", "run_fields",
           "survival_records"]
