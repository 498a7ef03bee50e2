"""The paper's experiments as one resumable pipeline: poison-count sweep, robustness matrix, victim protocols,
defense table.

Each run is one `runs.Run`, trained under its victim protocol (`protocols.py`; "fine-tune" unless a plan says
otherwise). `reproduce` appends one
record per (run, task) to `results.json` after each run, so a stopped pipeline resumes where it stopped
(trained models come back from the model cache); then `report.write_report` writes `results.md` and the
figures.
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
from ..runtime import pick_device
from .defense_eval import evaluate_defense
from .protocols import train_run
from .report import RESULTS, defense_record, records_frame, write_report
from .runs import Run, base_config
from .scoring import evaluate_run

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
    the ResNet its released code tampers with, which keeps `reproduce --preset tiny` within half an hour
    (a tiny ViT step costs twice a ResNet step on a CPU).
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


def default_plan() -> list[Run]:
    """The sweep first (the headline), then the matrix, the protocols, the other releases and the whole-model
    victims; runs shared by two are trained once."""
    plan = []
    for run in sweep_plan() + matrix_plan() + protocol_plan() + release_plan() + whole_model_plan():
        if run not in plan:
            plan.append(run)
    return plan


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


DEFENSE_VICTIMS = (("badmatch", 0.0005), ("badmatch", 0.01), ("baddist+badmatch", 0.0005))


def defense_plan() -> list[tuple[str, str, float]]:
    """(defense, attack, poison rate): every defense against a low and a moderate BadMatch rate, and BadDist."""
    return [(name, attack, rate) for attack, rate in DEFENSE_VICTIMS for name in DEFENSES]


def reproduce(preset: str | Config = "tiny", out_dir="reproduce", plan: list[Run] | None = None, device=None,
              progress: bool = True, with_defenses: bool = True) -> pd.DataFrame:
    """Run every run of `plan` (default: `default_plan()`) not yet in `out_dir/results.json`, then (unless
    `with_defenses` is False) every defense of `defense_plan()` not yet scored; then write the tables and
    figures. Returns the attack records as a DataFrame. `preset` is a name or a config (`runs.base_config`)."""
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
    records, defenses = stored.get("records", []), stored.get("defenses", [])
    done = {r["key"] for r in records}
    plan = default_plan() if plan is None else plan
    todo = [run for run in plan if run.key() not in done]
    for run in tqdm(todo, disable=not progress, desc=f"reproduce ({base.preset})"):
        started = time.perf_counter()
        result, _ = train_run(preset, run, device)
        clean, _ = train_run(preset, run.clean_twin(), device)
        data = load_data(base_config(preset, run))  # memoised: built once per data config
        records += evaluate_run(preset, run, result, clean, data, device, seconds=time.perf_counter() - started)
        _write_json_atomic(out / RESULTS, {**header, "records": records, "defenses": defenses})
    scored = {(d["defense"], d["attack"], d["poison_rate"]) for d in defenses}
    todo = [item for item in defense_plan() if item not in scored] if with_defenses else []
    for name, attack, rate in tqdm(todo, disable=not progress, desc="defenses"):
        started = time.perf_counter()
        result = evaluate_defense(name, preset, attack, rate, device=device)
        defenses.append({**defense_record(result), "seconds": time.perf_counter() - started})
        _write_json_atomic(out / RESULTS, {**header, "records": records, "defenses": defenses})
    frame = records_frame(records)
    write_report(frame, out, defenses)
    return frame


__all__ = ["DEFENSE_VICTIMS", "default_plan", "defense_plan", "matrix_plan", "protocol_plan", "release_plan", "reproduce",
           "sweep_plan", "whole_model_plan"]
