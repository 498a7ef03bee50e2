"""The paper's experiments and the victim study as resumable pipelines.

Two plans (`PLANS`): "paper", the paper's experiments (poison-count sweep, robustness matrix, victim
protocols, defense table); "study", chapter 6's study of the victim (other releases, the whole-model start,
the victim's schedule, poison counts, the provider's shadow images) with the trigger geometry of its victims.
Each run is one `runs.Run`, trained under its victim protocol (`protocols.py`; "fine-tune" unless a plan says
otherwise). `reproduce` appends one record per (run, task) to `results.json` after each run, so a stopped
pipeline resumes where it stopped (trained models come back from the model cache); then
`report.write_report` writes `results.md` and the figures. Both plans write into one folder.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..attacks.baddist import VARIANTS
from ..config import EMBEDDED, IMAGE_ENCODERS, Config
from ..data.sources import load_data
from ..defenses.base import DEFENSES
from ..registry import check_choice
from ..runtime import pick_device
from .defense_eval import evaluate_defense
from .protocols import train_run
from .report import RESULTS, defense_record, records_frame, write_report
from .runs import Run, base_config
from .scoring import evaluate_run, geometry_records, provider_records

def sweep_plan(backbone: str = "resnet", trigger: str = "patch", counts=(1, 5, 100), target_counts=(1, 5),
               seeds=(0, 1, 2)) -> list[Run]:
    """Poison counts for BadMatch alone and BadDist + BadMatch, extra seeds at 5 records.

    5 records is 0.05% of the `tiny` pool, the paper's headline rate; small counts are where the seed
    matters, so they get several seeds. The target variant already succeeds with no poison at all (BadDist
    alone), so it is only swept over `target_counts`.
    """
    runs = [Run(backbone, trigger, "clean", 0), *(Run(backbone, trigger, "baddist", 0, variant=v) for v in VARIANTS)]
    for count in counts:
        runs += [Run(backbone, trigger, "badmatch", count), Run(backbone, trigger, "baddist+badmatch", count, variant="away")]
        if count in target_counts:
            runs += [Run(backbone, trigger, "baddist+badmatch", count, variant="target")]
    for seed in seeds[1:]:
        runs += [Run(backbone, trigger, "clean", 0, seed), Run(backbone, trigger, "badmatch", 5, seed)]
        runs += [Run(backbone, trigger, "baddist+badmatch", 5, seed, variant=v) for v in VARIANTS]
    return runs


def matrix_plan(backbones=IMAGE_ENCODERS, triggers=("patch", "fourier"), count: int = 5,
                away_backbones=("resnet",)) -> list[Run]:
    """The robustness matrix: every backbone x trigger, clean vs BadMatch vs BadDist + BadMatch.

    The targeted BadDist runs on every backbone; the reference (away) objective on `away_backbones` only,
    the ResNet its released code tampers with: a tiny ViT victim costs several ResNet victims on a CPU (twice the
    steps, each one dearer).
    """
    runs = []
    for backbone in backbones:
        for trigger in triggers:
            runs += [Run(backbone, trigger, "clean", 0), Run(backbone, trigger, "badmatch", count)]
            variants = VARIANTS if backbone in away_backbones else ("target",)
            runs += [Run(backbone, trigger, "baddist+badmatch", count, variant=v) for v in variants]
    return runs


def protocol_plan(backbone: str = "resnet") -> list[Run]:
    """The other two victim protocols, each beside its own clean floor.

    "from-scratch" is chapter 5's BadMatch: no release, the preset's schedule, the patch at 0.1% and 1% and
    the Fourier trigger at 1%. "retrain" is chapter 6's developer who trains a tampered release at the full
    schedule, with the targeted BadDist and 5 records.
    """
    scratch = [Run(backbone, trigger, attack, count, protocol="from-scratch")
               for trigger, attack, count in (("patch", "clean", 0), ("patch", "badmatch", 10), ("patch", "badmatch", 100),
                                              ("fourier", "clean", 0), ("fourier", "badmatch", 100))]
    retrain = [Run(backbone, "patch", "clean", 0, protocol="retrain"),
               Run(backbone, "patch", "baddist+badmatch", 5, variant="target", protocol="retrain")]
    return scratch + retrain


def release_plan(release_seeds=(1, 2), count: int = 5, backbone: str = "resnet", trigger: str = "patch") -> list[Run]:
    """The headline victims again on other draws of the data and the provider's release (`Run.release_seed`):
    the clean victim, BadMatch alone and both BadDist variants with BadMatch, at `count` records."""
    runs = []
    for release_seed in release_seeds:
        runs += [Run(backbone, trigger, "clean", 0, release_seed=release_seed),
                 Run(backbone, trigger, "badmatch", count, release_seed=release_seed)]
        runs += [Run(backbone, trigger, "baddist+badmatch", count, variant=v, release_seed=release_seed) for v in VARIANTS]
    return runs


def whole_model_plan(count: int = 5, seeds=(0, 1, 2), release_seeds=(0, 1, 2)) -> list[Run]:
    """The paper's victim start: the whole release ("whole-model") instead of a fresh text tower, same schedule.

    The clean victim, BadMatch alone and both BadDist variants with BadMatch at `count` records, on the victim
    seeds `seeds` of release 0 and on seed 0 of the other releases: the runs the "fine-tune" protocol has too.
    Each BadDist variant also runs alone (no record) at seed 0 of every release: a whole tampered release
    brings the provider's own text tower, which may carry the backdoor before any record does.
    """
    runs = []
    for release_seed in release_seeds:
        for seed in seeds if release_seed == 0 else seeds[:1]:
            common = dict(seed=seed, protocol="whole-model", release_seed=release_seed)
            runs += [Run("resnet", "patch", "clean", 0, **common), Run("resnet", "patch", "badmatch", count, **common)]
            runs += [Run("resnet", "patch", "baddist+badmatch", count, variant=v, **common) for v in VARIANTS]
            if seed == seeds[0]:
                runs += [Run("resnet", "patch", "baddist", 0, variant=v, **common) for v in VARIANTS]
    return runs


def backbone_seed_plan(backbone: str = "vit", seeds=(1, 2), count: int = 5) -> list[Run]:
    """The clean and targeted patch victims of the matrix's `backbone` on other victim seeds (`sweep_plan` gives
    the ResNet's): a single seed cannot tell a backbone's weaker backdoor from one unlucky victim."""
    return [run for seed in seeds for run in (Run(backbone, "patch", "clean", 0, seed),
                                              Run(backbone, "patch", "baddist+badmatch", count, seed, variant="target"))]


STUDY_ATTACKS = (("clean", 0, "away"), ("badmatch", 5, "away"), ("baddist", 0, "away"), ("baddist+badmatch", 5, "away"),
                 ("baddist+badmatch", 5, "target"))  # (attack, records, variant): the study's victims at each point


def schedule_plan(lr_scales=(1 / 16, 1 / 4, 4), steps_scales=(2,)) -> list[Run]:
    """The "whole-model" victims of `STUDY_ATTACKS` (release 0, seed 0) at other learning rates (steps as the
    protocol) and other lengths (learning rate as the protocol): how hard the victim trains decides what of the
    tampering survives and how often each poisoned record is seen."""
    points = [(lr, 1.0) for lr in lr_scales] + [(1.0, steps) for steps in steps_scales]
    return [Run("resnet", "patch", attack, count, variant=variant, protocol="whole-model", lr_scale=lr, steps_scale=steps)
            for lr, steps in points for attack, count, variant in STUDY_ATTACKS]


def count_plan(counts=(1, 10, 25)) -> list[Run]:
    """BadMatch alone and with each BadDist release at other poison counts ("whole-model", release 0, seed 0);
    0 and 5 records are in `whole_model_plan`."""
    return [Run("resnet", "patch", attack, count, variant=variant, protocol="whole-model")
            for count in counts for attack, variant in (("badmatch", "away"), ("baddist+badmatch", "away"),
                                                        ("baddist+badmatch", "target"))]


def shadow_plan(count: int = 5, seeds=(0, 1, 2)) -> list[Run]:
    """The headline with the provider's own shadow images (`shadow="disjoint"`) instead of the victim's first
    ones: each BadDist release alone, and with BadMatch at `count` records ("whole-model", release 0; the paper's
    objective over `seeds`)."""
    common = dict(protocol="whole-model", shadow="disjoint")
    runs = [Run("resnet", "patch", "baddist", 0, variant=v, **common) for v in VARIANTS]
    runs += [Run("resnet", "patch", "baddist+badmatch", count, seed, variant="away", **common) for seed in seeds]
    return runs + [Run("resnet", "patch", "baddist+badmatch", count, variant="target", **common)]


def fourier_plan(lr_scales=(1 / 16, 1 / 4, 1)) -> list[Run]:
    """The "whole-model" victims of `STUDY_ATTACKS` with the Fourier trigger (release 0, seed 0) at several learning
    rates: the tampered Fourier release carries its backdoor, the victim's training undoes it; how gently must the
    victim train for it to survive, and where does the training move the triggered images?"""
    return [Run("resnet", "fourier", attack, count, variant=variant, protocol="whole-model", lr_scale=lr)
            for lr in lr_scales for attack, count, variant in STUDY_ATTACKS]


def _unique(runs: list[Run]) -> list[Run]:
    return list(dict.fromkeys(runs))


def default_plan() -> list[Run]:
    """The paper's experiments: the sweep first (the headline), then the matrix and the protocols; runs shared by
    two are trained once."""
    return _unique(sweep_plan() + matrix_plan() + protocol_plan())


def study_plan() -> list[Run]:
    """Chapter 6's study of the victim: the whole-model start on release 0, its schedule, the poison counts and the
    shadow images; then the other releases, whole-model and "fine-tune" (a stopped study has release 0 whole); then
    chapter 7's Fourier trigger at several victim schedules and its ViT patch victims on more victim seeds."""
    whole = whole_model_plan()
    first = [r for r in whole if r.release_seed == 0]
    return _unique(first + schedule_plan() + count_plan() + shadow_plan() + whole + release_plan() + fourier_plan()
                   + backbone_seed_plan())


def geometry_plan() -> list[Run]:
    """The victims whose trigger geometry the study stores: every seed-0 "whole-model" victim of the study (every
    schedule, count, shadow source and release), each with the release it started from."""
    return [r for r in study_plan() if r.protocol == "whole-model" and r.seed == 0]


# A plan's name: (its runs, whether the defense table goes with it, the runs whose trigger geometry is stored).
PLANS = {"paper": (default_plan, True, list), "study": (study_plan, False, geometry_plan)}


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


DEFENSE_VICTIMS = (("badmatch", 0.0005), ("badmatch", 0.01), ("baddist+badmatch", 0.0005))


def defense_plan() -> list[tuple[str, str, float]]:
    """(defense, attack, poison rate): every defense against a low and a moderate BadMatch rate, and BadDist."""
    return [(name, attack, rate) for attack, rate in DEFENSE_VICTIMS for name in DEFENSES]


def reproduce(preset: str | Config = "tiny", out_dir="reproduce", plan: str | list[Run] = "paper", device=None,
              progress: bool = True, with_defenses: bool | None = None, geometry: list[Run] | None = None) -> pd.DataFrame:
    """Run every run of `plan` (a name of `PLANS`, or a list of runs) not yet in `out_dir/results.json`; then
    measure the trigger geometry of every run of `geometry` not yet measured (trained if it is not in the
    cache); then score the clean release of every backbone and release seed of `plan` not yet scored; then, if
    `with_defenses`, score every defense of `defense_plan()` not yet scored; then write the tables and figures. A named plan sets `geometry` and `with_defenses` unless they are given; a list of runs
    measures no geometry and scores the defenses. Returns the attack records as a DataFrame. `preset` is a
    name or a config (`runs.base_config`)."""
    if isinstance(plan, str):
        check_choice("plan", plan, tuple(PLANS))
        make_plan, plan_defenses, make_geometry = PLANS[plan]
        plan, with_defenses = make_plan(), plan_defenses if with_defenses is None else with_defenses
        geometry = make_geometry() if geometry is None else geometry
    with_defenses = True if with_defenses is None else with_defenses
    device = torch.device(device) if device is not None else pick_device()
    base = base_config(preset, Run())
    header = {"preset": base.preset, "data": base.data.source}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stored = json.loads((out / RESULTS).read_text()) if (out / RESULTS).exists() else {}
    held = {"preset": stored.get("preset", base.preset), "data": stored.get("data", EMBEDDED)}
    if held != header:
        raise ValueError(f"{out / RESULTS} holds results of preset {held['preset']!r} on data {held['data']!r}, not "
                         f"{base.preset!r} on {base.data.source!r}; use another output folder for this one")
    records, defenses, shapes = stored.get("records", []), stored.get("defenses", []), stored.get("geometry", [])
    providers = stored.get("providers", [])

    def save():
        _write_json_atomic(out / RESULTS, {**header, "records": records, "defenses": defenses, "geometry": shapes,
                                           "providers": providers})

    done, measured, to_measure = {r["key"] for r in records}, {g["key"] for g in shapes}, set(geometry or ())

    def measure(run: Run, result) -> None:
        if run in to_measure and run.key() not in measured:
            shapes.extend(geometry_records(preset, run, result, load_data(base_config(preset, run)), device))
            measured.add(run.key())

    todo = [run for run in plan if run.key() not in done]
    for run in tqdm(todo, disable=not progress, desc=f"reproduce ({base.preset})"):
        started = time.perf_counter()
        result, _ = train_run(preset, run, device)
        clean, _ = train_run(preset, run.clean_twin(), device)
        data = load_data(base_config(preset, run))  # memoised: built once per data config
        records += evaluate_run(preset, run, result, clean, data, device, seconds=time.perf_counter() - started)
        measure(run, result)  # while its model is at hand
        save()
    for run in tqdm([r for r in geometry or () if r.key() not in measured], disable=not progress, desc="trigger geometry"):
        measure(run, train_run(preset, run, device)[0])
        save()
    releases = {(run.backbone, run.release_seed) for run in plan} - {(p["backbone"], p["release_seed"]) for p in providers}
    for backbone, release_seed in tqdm(sorted(releases), disable=not progress, desc="clean releases"):
        providers.extend(provider_records(preset, backbone, release_seed, device))
        save()
    scored = {(d["defense"], d["attack"], d["poison_rate"]) for d in defenses}
    todo = [item for item in defense_plan() if item not in scored] if with_defenses else []
    for name, attack, rate in tqdm(todo, disable=not progress, desc="defenses"):
        started = time.perf_counter()
        result = evaluate_defense(name, preset, attack, rate, device=device)
        defenses.append({**defense_record(result), "seconds": time.perf_counter() - started})
        save()
    frame = records_frame(records)
    write_report(frame, out, defenses, shapes, providers)
    return frame


__all__ = ["DEFENSE_VICTIMS", "PLANS", "STUDY_ATTACKS", "backbone_seed_plan", "count_plan", "default_plan", "defense_plan", "fourier_plan", "geometry_plan",
           "matrix_plan", "protocol_plan", "release_plan", "reproduce", "schedule_plan", "shadow_plan", "study_plan",
           "sweep_plan", "whole_model_plan"]
