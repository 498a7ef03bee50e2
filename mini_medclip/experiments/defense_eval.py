"""Score one defense against one victim, as the defender in its position would see it.

The victims are runs of `protocols.train_run` (ResNet, patch trigger, "fine-tune" protocol), so a defense
is tested on exactly the models the attack chapters measured. What each role gets:

* data detectors (the curator): the training pool as delivered (poisons included, their labels flipped)
  and the model trained on it, whose embeddings are audited (Tran et al.'s protocol: train, audit,
  retrain without the flagged records). Ground truth: the indices the attack recorded.
* STRIP (the deployer): the deployed zero-shot classifier, clean reference radiographs from the training
  pool, and incoming test images: clean ones (label 0) and triggered non-target ones (label 1).
* DECREE (the consumer): image encoders only. The clean victims of several seeds set the threshold; the
  AUROC is over clean (0) and suspect (1) encoders.
* mitigations (the owner): a small clean set (images the attack did not touch); BA and ASR before/after.
"""
from __future__ import annotations

import dataclasses
import json
import time

import torch

from ..attacks.badmatch import check_poison_rate, poison_image_pool
from ..attacks.metrics import attack_classes, evaluate_attack
from ..attacks.triggers import make_trigger
from ..cache import cached_model
from ..config import Config
from ..data.sources import load_data
from ..data.pools import InMemoryImagePool, main_eval_set
from ..defenses.base import DataDetector, InputDetector, Mitigation, ModelScanner, make_defense
from ..defenses.decree import decision_threshold
from ..defenses.finetune import FineTune
from ..defenses.metrics import defense_effectiveness_rate, detection_auroc, found_among, tpr_at_fpr
from ..registry import check_choice
from ..store import stored
from ..train import TrainResult
from ..zeroshot import ZeroShotClassifier, prompts_for_classes
from .protocols import train_run, victim_config
from .runs import Run, base_config

DEFENDED_ATTACKS = ("clean", "badmatch", "baddist+badmatch")  # the victims a defense is scored against
FPR = 0.05
CLEAN_SET_SIZE = 1000  # the owner's clean fine-tuning set
SCANNER_CLEAN_SEEDS = (0, 1, 2)  # clean encoders that calibrate a model scanner


def victim_run(attack: str, count: int, seed: int = 0, variant: str = "target", trigger: str = "patch") -> Run:
    """The experiment run a defense is tested on (ResNet); the count is ignored for the clean victim."""
    check_choice("attack", attack, DEFENDED_ATTACKS)
    if attack == "clean":
        return Run("resnet", trigger, "clean", 0, seed)
    return Run("resnet", trigger, attack, count, seed, variant)


def poisoned_pool(preset: str | Config, run: Run, indices: torch.Tensor):
    """The training pool exactly as the victim received it (the run's BadMatch records in place)."""
    image_pool, text_pool, eval_sets = load_data(base_config(preset, run))
    return poison_image_pool(image_pool, indices, make_trigger(run.trigger)), text_pool, eval_sets


def _detection(scores, is_poisoned: torch.Tensor, found: int) -> dict:
    n_poisoned = int(is_poisoned.sum())
    if n_poisoned in (0, len(is_poisoned)):  # nothing (or only) poisoned: no ROC to draw
        return {"auroc": None, "tpr_at_fpr": None, "fpr": FPR, "found": found, "poisoned": n_poisoned}
    tpr, _, _ = tpr_at_fpr(scores, is_poisoned, FPR)
    return {"auroc": detection_auroc(scores, is_poisoned), "tpr_at_fpr": tpr, "fpr": FPR, "found": found,
            "poisoned": n_poisoned}


def defense_settings(defense) -> dict | None:
    """A defense's name and settings (its public attributes), or None when one is not JSON-able data.

    With the victim's model-cache key they name everything a data detector's or a scanner's result depends
    on, so the result is kept in the store (`store.py`) and a warm chapter reads it instead of recomputing.
    """
    settings = {k: v for k, v in sorted(vars(defense).items()) if not k.startswith("_")}
    try:
        json.dumps(settings)
    except TypeError:
        return None
    return {"defense": defense.name, "settings": settings}


def _stored_result(defense, victim: TrainResult, what: dict, compute):
    """`compute()`'s (tensors, info) for `defense` on `victim`, through the store when both can be keyed."""
    settings = defense_settings(defense)
    if settings is None or victim.cache_key is None:
        return compute()
    return stored("results", {"victim": victim.cache_key, **settings, **what}, compute)


def evaluate_data_detector(detector: DataDetector, preset: str | Config, run: Run, device=None) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(detection dict, scores, is_poisoned) over every training image; `found` = poisons in the top-k, k = #poisons."""
    result, indices = train_run(preset, run, device)
    pool, _, _ = poisoned_pool(preset, run, indices)
    scores = _stored_result(detector, result, {"input": "the victim's training pool"},
                            lambda: ({"scores": detector.score(result.model, pool)}, {}))[0]["scores"]
    is_poisoned = torch.zeros(len(pool), dtype=torch.long)
    is_poisoned[indices] = 1
    found = found_among(scores, indices) if len(indices) else 0
    return _detection(scores, is_poisoned, found), scores, is_poisoned


def strip_inputs(preset: str | Config, run: Run, result, n_reference: int = 200):
    """(deployed classifier with "No Finding" among its classes, clean blend references, clean held-out
    inputs to calibrate on, clean and triggered test images). References and held-out inputs are the last
    training images, far from the poisons' draw order and disjoint from each other and from the test set."""
    image_pool, text_pool, eval_sets = load_data(base_config(preset, run))
    five = main_eval_set(eval_sets)
    classes, target_index = attack_classes(five, "No Finding")
    classifier = ZeroShotClassifier(result.model, result.tokenizer, prompts_for_classes(classes, text_pool))
    clean = five.images.batch(range(len(five)))
    triggered = make_trigger(run.trigger)(clean[five.targets != target_index])
    n = len(image_pool)
    k = min(n_reference, n // 3)  # a small pool keeps a third for references and two thirds held out
    references = image_pool.batch(range(n - k, n))
    held_out = image_pool.batch(range(n - 3 * k, n - k))
    return classifier, references, held_out, clean, triggered


def evaluate_input_detector(detector: InputDetector, preset: str | Config, run: Run, device=None) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Clean test images (0) vs triggered non-target ones (1).

    `found` = triggered inputs above the threshold the deployer would set on held-out clean radiographs
    (5% false rejections there); `tpr_at_fpr` is the ROC's operating point on the test images themselves.
    Scores and threshold come from the store when this victim was scored before; `detector` is then not fitted.
    """
    result, _ = train_run(preset, run, device)
    classifier, references, held_out, clean, triggered = strip_inputs(preset, run, result)

    def score():
        detector.fit(classifier, references)
        scores = torch.cat([detector.score(clean), detector.score(triggered)])
        return {"scores": scores}, {"threshold": detector.calibrate(held_out, frr=FPR)}

    what = {"input": "clean and triggered 5-class test images", "trigger": run.trigger, "held_out_frr": FPR}
    tensors, info = _stored_result(detector, result, what, score)
    scores, threshold = tensors["scores"], info["threshold"]
    is_triggered = torch.cat([torch.zeros(len(clean)), torch.ones(len(triggered))]).long()
    found = int((scores[len(clean):] > threshold).sum())
    return _detection(scores, is_triggered, found), scores, is_triggered


def clean_scans(scanner: ModelScanner, preset: str | Config, run: Run, device=None, n_images: int = 256,
                seeds=SCANNER_CLEAN_SEEDS) -> list[dict]:
    """Scans of the clean victims of `seeds` (same backbone and protocol as `run`)."""
    images = scanner_images(preset, run, n_images)
    scans = []
    for seed in seeds:
        victim = train_run(preset, dataclasses.replace(run.clean_twin(), seed=seed), device)[0]
        scans.append({"model": f"clean seed {seed}", "backdoored": 0, **_scan(scanner, victim, images)})
    return scans


def scanner_images(preset: str | Config, run: Run, n_images: int = 256) -> torch.Tensor:
    """The few clean images a consumer scans with: the first `n_images` of the 5-class test set."""
    five = main_eval_set(load_data(base_config(preset, run))[2])
    return five.images.batch(range(min(n_images, len(five))))


def evaluate_scanner(scanner: ModelScanner, preset: str | Config, run: Run, device=None, clean: list[dict] | None = None) -> tuple[dict, list[dict]]:
    """Scan the suspect victim; the clean victims' scans (`clean`, or made here) set the threshold.

    Returns (detection dict, all scans); the AUROC is over clean (0) and suspect (1) encoders, `found` is 1
    when the suspect's PL1 norm falls below the clean threshold.
    """
    scans = list(clean) if clean is not None else clean_scans(scanner, preset, run, device)
    if run.attack != "clean":
        victim = train_run(preset, run, device)[0]
        scans.append({"model": run.label, "backdoored": 1, **_scan(scanner, victim, scanner_images(preset, run))})
    clean_norms = [s["pl1_norm"] for s in scans if not s["backdoored"]]
    threshold = decision_threshold(clean_norms)
    found = sum(s["pl1_norm"] < threshold for s in scans if s["backdoored"])
    scores = torch.tensor([s["score"] for s in scans])
    is_backdoored = torch.tensor([s["backdoored"] for s in scans])
    detection = _detection(scores, is_backdoored, found)
    detection["pl1_threshold"] = threshold
    return detection, scans


def _scan(scanner: ModelScanner, victim: TrainResult, images: torch.Tensor) -> dict:
    def scan():
        verdict = scanner.scan(victim.model, images)
        return {"mask": verdict.details["mask"]}, {"score": verdict.score, "pl1_norm": verdict.details["pl1_norm"],
                                                   "collapsed": verdict.details["collapsed"]}

    tensors, info = _stored_result(scanner, victim, {"input": "the first 5-class test images", "images": len(images)}, scan)
    return {**info, "mask": tensors["mask"]}


def evaluate_mitigation(mitigation: Mitigation, preset: str | Config, run: Run, device=None) -> dict:
    """BA and ASR (5-class task) before and after the repair, and the DER.

    A fine-tuning mitigation gets the victim's training config (its loss, temperature and schedule). A
    mitigation with `settings()` is cached like a trained model, keyed by the victim and those settings.
    """
    if isinstance(mitigation, FineTune):
        mitigation.config = victim_config(base_config(preset, run))
    result, indices = train_run(preset, run, device)
    pool, text_pool, eval_sets = poisoned_pool(preset, run, indices)

    def repair(_cfg, _device) -> TrainResult:  # the victim's model fixes both
        untouched = torch.ones(len(pool), dtype=torch.bool)
        untouched[indices] = False
        keep = untouched.nonzero().flatten()[-CLEAN_SET_SIZE:]
        clean_set = InMemoryImagePool(pool.batch(keep), pool.labels[keep])
        started = time.perf_counter()
        model, tokenizer = mitigation.apply(result.model, result.tokenizer, clean_set, text_pool)
        return TrainResult(model, tokenizer, [], time.perf_counter() - started)

    settings = mitigation.settings()
    if settings is None:
        repaired = repair(None, device)
    else:
        key = {"victim": run.key(), "clean_set_size": CLEAN_SET_SIZE, "mitigation": settings}
        repaired = cached_model(base_config(preset, run), device=device, extra_key=key, build=repair)
    trigger = make_trigger(run.trigger)
    before = evaluate_attack(result.model, result.tokenizer, main_eval_set(eval_sets), text_pool, trigger)
    after = evaluate_attack(repaired.model, repaired.tokenizer, main_eval_set(eval_sets), text_pool, trigger)
    return {"ba_before": before["ba"], "asr_before": before["asr"], "ba_after": after["ba"], "asr_after": after["asr"],
            "der": defense_effectiveness_rate(before["ba"], before["asr"], after["ba"], after["asr"])}


def evaluate_defense(name: str, preset: str | Config = "tiny", attack: str = "badmatch", rate: float = 0.0005,
                     variant: str = "target", device=None, **params) -> dict:
    """`defense.json`'s content for defense `name` against the victim of (`attack`, `rate`)."""
    check_poison_rate(rate)
    n_images = base_config(preset, Run()).data.n_train_images
    count = round(rate * n_images)
    if attack != "clean" and count < 1:
        raise ValueError(f"poison rate {rate} leaves no poisoned record in {n_images} images; expected at least 1/{n_images}")
    run = victim_run(attack, count, variant=variant)
    defense = make_defense(name, **params)
    if isinstance(defense, Mitigation):
        return {"defense": name, "attack": attack, "poison_rate": rate, "mitigation": evaluate_mitigation(defense, preset, run, device)}
    if isinstance(defense, DataDetector):
        detection = evaluate_data_detector(defense, preset, run, device)[0]
    elif isinstance(defense, InputDetector):
        detection = evaluate_input_detector(defense, preset, run, device)[0]
    else:
        detection, scans = evaluate_scanner(defense, preset, run, device)
        detection["scans"] = [{k: v for k, v in s.items() if k != "mask"} for s in scans]
    return {"defense": name, "attack": attack, "poison_rate": rate, "detection": detection}


__all__ = [
    "DEFENDED_ATTACKS", "evaluate_data_detector", "evaluate_defense", "evaluate_input_detector", "evaluate_mitigation",
    "evaluate_scanner", "clean_scans", "scanner_images", "poisoned_pool", "strip_inputs", "victim_run",
]
