"""The results of `reproduce`: the shipped reference results, the verdicts, tables and figures.

A chapter that cannot afford every run shows the stored results and recomputes a few live; since another
CPU or a GPU is another draw, `compare_with_stored` checks them by verdict, with the cuts defined here.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .runs import LATER_FIELDS, TASK_NAMES

RESULTS, TABLES = "results.json", "results.md"
REFERENCE_RESULTS = Path(__file__).resolve().parents[1] / "reference_results"


def load_results(out_dir) -> tuple[pd.DataFrame, list[dict]]:
    """(attack records as a DataFrame, defense records) from `out_dir/results.json`."""
    path = Path(out_dir) / RESULTS
    stored = json.loads(path.read_text())
    if stored["records"] and "protocol" not in stored["records"][0]:
        raise ValueError(f"{path} has records without a victim protocol (written before protocols were named); "
                         f"run `reproduce` into a new folder")
    return records_frame(stored["records"]), stored.get("defenses", [])


def load_geometry(out_dir) -> pd.DataFrame:
    """The trigger geometry `reproduce --plan study` stored in `out_dir/results.json` (one row per run and stage)."""
    path = Path(out_dir) / RESULTS
    rows = json.loads(path.read_text()).get("geometry", [])
    if not rows:
        raise ValueError(f"{path} holds no trigger geometry; run `python -m mini_medclip reproduce --plan study` into it")
    return records_frame(rows)


def load_providers(out_dir) -> pd.DataFrame:
    """The clean releases' zero-shot scores `reproduce` stored in `out_dir/results.json` (one row per backbone,
    release seed and task)."""
    path = Path(out_dir) / RESULTS
    rows = json.loads(path.read_text()).get("providers", [])
    if not rows:
        raise ValueError(f"{path} holds no clean-release scores; run `python -m mini_medclip reproduce` into it")
    return pd.DataFrame(rows)


def records_frame(records: list[dict]) -> pd.DataFrame:
    """The records as a DataFrame; a field a record was written without has the value every run had then
    (`runs.LATER_FIELDS`: release 0, the protocol's schedule, the default shadow images)."""
    frame = pd.DataFrame(records)
    if not frame.empty:
        for name, default in LATER_FIELDS.items():
            frame[name] = frame.get(name, pd.Series(default, index=frame.index)).fillna(default).astype(type(default))
    return frame


def reference_results(preset: str = "tiny") -> tuple[pd.DataFrame, list[dict]]:
    """The results `reproduce --preset PRESET` wrote when the course was released, both plans (shipped with the
    package). Chapters that cannot afford every run show these and recompute a few runs live to check them.
    """
    return load_results(reference_folder(preset))


def reference_geometry(preset: str = "tiny") -> pd.DataFrame:
    """The trigger geometry of the shipped study (`reproduce --plan study`)."""
    return load_geometry(reference_folder(preset))


def reference_providers(preset: str = "tiny") -> pd.DataFrame:
    """The clean releases' zero-shot scores of the shipped results."""
    return load_providers(reference_folder(preset))


def reference_folder(preset: str = "tiny") -> Path:
    """Where the shipped results of `reproduce --preset PRESET` are (both plans wrote into it)."""
    folder = REFERENCE_RESULTS / preset
    if not (folder / RESULTS).exists():
        raise FileNotFoundError(f"no reference results for preset {preset!r} in {folder}; run `python -m mini_medclip "
                                f"reproduce --preset {preset} --out DIR` (and `--plan study`) and load DIR instead")
    return folder


# The verdicts chapters draw, and by which a live recomputation is checked against the stored results.
BACKDOOR_ASR = 0.5  # a working backdoor: most triggered non-target images go to the target (clean floors ~0.03)
RELIABLE_AUROC = 0.9  # a detector a curator could act on
EFFECTIVE_DER = 0.75  # a mitigation that removes at least half of the ASR at no cost in BA
# The order of attacks in every table (a table shows those it has): no attack, BadMatch alone, then each BadDist
# variant alone and with BadMatch.
ATTACK_ORDER = ("clean", "badmatch", "baddist (away)", "baddist+badmatch (away)", "baddist (target)", "baddist+badmatch (target)")


def compare_with_stored(live: pd.Series, stored: pd.Series, cut: float) -> pd.DataFrame:
    """Live and stored values side by side, each with its verdict (value >= `cut`).

    Only the machine that wrote the stored results reproduces them to the digit. On another CPU (other
    vector instructions) or on a GPU the rounding differs from the first step, training takes another
    path, and a live number differs from its stored twin about as much as another seed's would. What must
    agree is the verdict: `(table.live_verdict == table.stored_verdict).all()`.
    """
    table = pd.DataFrame({"live": live, "stored": stored})
    if table.isna().any().any():
        missing = table.index[table.isna().any(axis=1)].tolist()
        raise ValueError(f"live and stored results do not cover the same rows; unmatched: {missing}")
    return table.assign(difference=table.live - table.stored, live_verdict=table.live >= cut,
                        stored_verdict=table.stored >= cut)


def defense_record(result: dict) -> dict:
    """A flat row of the defense table from `evaluate_defense`'s output. A model scanner's row keeps its scans
    (one per encoder, clean ones included), so a chapter can read the clean calibration instead of training it."""
    row = {"defense": result["defense"], "attack": result["attack"], "poison_rate": result["poison_rate"]}
    if "detection" in result:
        row.update(result["detection"])
    else:
        row.update(result["mitigation"])
    return row


def stored_clean_scans(defense_records: list[dict], scanner: str = "decree") -> list[dict]:
    """The clean encoders' scans that calibrated `scanner` in the stored defense records (the same clean
    victims calibrate it against every attack, so the first record that has them is taken)."""
    for record in defense_records:
        if record["defense"] == scanner and record.get("scans"):
            return [s for s in record["scans"] if not s["backdoored"]]
    raise ValueError(f"no stored scans of scanner {scanner!r} in these defense records; expected a record of "
                     f"`reproduce` that keeps them (regenerate its defense rows)")


def defense_table(defense_records: list[dict]) -> pd.DataFrame:
    """The defense table: one row per (defense, attack, rate); detection and mitigation columns side by side."""
    frame = pd.DataFrame(defense_records)
    frame = frame.assign(attack=frame.attack + " @ " + (frame.poison_rate * 100).map("{:g}%".format))
    columns = [c for c in ("auroc", "tpr_at_fpr", "found", "poisoned", "ba_before", "asr_before", "ba_after", "asr_after", "der")
               if c in frame.columns]
    return frame.set_index(["defense", "attack"])[columns]


def provider_table(providers: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """A clean release's zero-shot `metric` per backbone and task (rows) and release seed (columns), with the
    mean and the standard deviation over the release seeds (none for a single release)."""
    table = providers.pivot_table(index=["backbone", "task"], columns="release_seed", values=metric)
    table = table.loc[sorted(table.index, key=lambda row: (row[0], list(TASK_NAMES).index(row[1])))]  # the course's task order
    table.columns = [f"release {seed}" for seed in table.columns]
    seeds = table.copy()
    table["mean"], table["std"] = seeds.mean(axis=1), seeds.std(axis=1)
    return table.rename(index=TASK_NAMES, level="task")


def first_release(frame: pd.DataFrame) -> pd.DataFrame:
    """The records of release seed 0, the release every chapter's live runs use."""
    return frame[frame.release_seed == 0]


def standard_records(frame: pd.DataFrame) -> pd.DataFrame:
    """The records of victims trained at their protocol's own schedule, from releases tampered on the default
    shadow images: every table's but the study's (`schedule_table`, `shadow_table`)."""
    return frame[(frame.lr_scale == 1) & (frame.steps_scale == 1) & (frame.shadow == LATER_FIELDS["shadow"])]


def resnet_records(frame: pd.DataFrame, task: str = "five_class", trigger: str = "patch") -> pd.DataFrame:
    """The records of `task` of the ResNet with `trigger`, whatever their schedule and shadow images."""
    return frame[(frame.task == task) & (frame.backbone == "resnet") & (frame.trigger == trigger)]


def headline_records(frame: pd.DataFrame, task: str = "five_class") -> pd.DataFrame:
    """The records of the headline runs on `task`: `resnet_records` (patch) of `standard_records`."""
    return resnet_records(standard_records(frame), task)


def sweep_table(frame: pd.DataFrame, task: str = "five_class", protocol: str = "fine-tune") -> pd.DataFrame:
    """ASR and BA per attack and poison count on `task` (ResNet, patch, `protocol`, release 0): mean and std over
    the victim's seeds."""
    rows = headline_records(first_release(frame), task)
    rows = rows[rows.protocol == protocol]
    table = rows.groupby(["attack_label", "poison_count"]).agg(
        asr=("asr", "mean"), asr_seed_std=("asr", "std"), ba=("ba", "mean"), seeds=("seed", "nunique"))
    return table.reset_index()


def matrix_records(frame: pd.DataFrame, count: int = 5) -> pd.DataFrame:
    """The records of the robustness matrix: every backbone, task and trigger, no attack or an attack with
    BadMatch at `count` records (BadDist alone is not a cell), victim seed 0, "fine-tune", release 0."""
    frame = standard_records(first_release(frame))
    return frame[(frame.seed == 0) & frame.poison_count.isin([0, count]) & (frame.attack != "baddist")
                 & (frame.protocol == "fine-tune")]


def matrix_table(frame: pd.DataFrame, count: int = 5) -> pd.DataFrame:
    """BA and ASR for every backbone x task x trigger (rows) and attack (columns) of `matrix_records`."""
    rows = matrix_records(frame, count)
    rows = rows.assign(task=rows.task.map(TASK_NAMES))
    table = rows.pivot_table(index=["backbone", "task", "trigger"], columns="attack_label", values=["ba", "asr"])
    order = [a for a in ATTACK_ORDER if a in table.columns.get_level_values(1)]
    return table.reindex(columns=pd.MultiIndex.from_product([["ba", "asr"], order]))


def backbone_seed_table(frame: pd.DataFrame, trigger: str = "patch", variant: str = "target") -> pd.DataFrame:
    """Per backbone and victim seed (rows): the clean victim's 5-class BA and the ASR of BadDist (`variant`) +
    BadMatch at 5 records on each task, with `trigger` ("fine-tune" at its own schedule, release 0): the matrix's
    cell over the seeds each backbone has (`reproduce.backbone_seed_plan`)."""
    rows = standard_records(first_release(frame))
    rows = rows[(rows.trigger == trigger) & (rows.protocol == "fine-tune")]
    attacked = rows[(rows.attack_label == f"baddist+badmatch ({variant})") & (rows.poison_count == 5)]
    table = attacked.pivot_table(index=["backbone", "seed"], columns="task", values="asr")
    table = table[[task for task in TASK_NAMES if task in table.columns]]
    table.columns = [f"ASR {TASK_NAMES[task]}" for task in table.columns]
    clean = rows[(rows.attack == "clean") & (rows.task == "five_class")].set_index(["backbone", "seed"]).ba
    table.insert(0, "clean BA, 5-class", clean)
    return table.dropna()


def protocol_table(frame: pd.DataFrame, task: str = "five_class") -> pd.DataFrame:
    """BA and ASR (with its interval and the clean floor) of the runs of the "from-scratch" and "retrain"
    protocols, on `task` (release 0); the "whole-model" victims have `start_table`."""
    frame = standard_records(first_release(frame))
    rows = frame[(frame.task == task) & frame.protocol.isin(["from-scratch", "retrain"])]
    columns = ["protocol", "backbone", "trigger", "attack_label", "poison_count", "seed", "ba", "asr", "asr_ci", "asr_clean_model"]
    return rows[columns].reset_index(drop=True)


def release_table(frame: pd.DataFrame, task: str = "five_class", count: int = 5) -> pd.DataFrame:
    """BA and ASR of the clean victim and each attack at `count` records, one column per release seed (ResNet,
    patch, "fine-tune", victim seed 0): does a claim of release 0 hold for the next draw of data and release?"""
    rows = headline_records(frame, task)
    rows = rows[(rows.protocol == "fine-tune") & (rows.seed == 0) & rows.poison_count.isin([0, count]) & (rows.attack != "baddist")]
    multi = rows.groupby(["attack_label", "poison_count"]).release_seed.transform("nunique") > 1
    table = rows[multi].pivot_table(index="attack_label", columns="release_seed", values=["ba", "asr"])
    order = [a for a in ATTACK_ORDER if a in table.index]
    return table.reindex(order)


def start_table(frame: pd.DataFrame, task: str = "five_class", count: int = 5) -> pd.DataFrame:
    """Where the victim starts, "fine-tune" (a fresh text tower) or "whole-model" (the whole release), for the
    clean victim, each BadDist release alone and each attack at `count` records (ResNet, patch): ASR and BA on
    release 0, mean and std over the victim's seeds, and the ASR of victim seed 0 on every other release."""
    rows = headline_records(frame, task)
    rows = rows[rows.protocol.isin(["fine-tune", "whole-model"]) & rows.poison_count.isin([0, count])]
    index = ["protocol", "attack_label"]
    table = rows[rows.release_seed == 0].groupby(index).agg(
        asr=("asr", "mean"), asr_seed_std=("asr", "std"), ba=("ba", "mean"), seeds=("seed", "nunique"))
    others = rows[(rows.release_seed > 0) & (rows.seed == 0)]
    if not others.empty:
        by_release = others.pivot_table(index=index, columns="release_seed", values="asr")
        by_release.columns = [f"asr release {seed}" for seed in by_release.columns]
        table = table.join(by_release, how="outer")
    order = [(p, a) for p in ("fine-tune", "whole-model") for a in ATTACK_ORDER if (p, a) in table.index]
    return table.reindex(order)


def study_records(frame: pd.DataFrame, protocol: str = "whole-model", task: str = "five_class",
                  trigger: str = "patch") -> pd.DataFrame:
    """The study's victims on `task`: ResNet, `trigger`, `protocol`, release 0, victim seed 0, 0 or 5 records, any
    schedule and shadow source."""
    rows = resnet_records(frame, task, trigger)
    rows = rows[(rows.protocol == protocol) & (rows.release_seed == 0) & (rows.seed == 0)]
    return rows[rows.poison_count.isin([0, 5])]


def schedule_table(frame: pd.DataFrame, task: str = "five_class", trigger: str = "patch") -> pd.DataFrame:
    """ASR of each attack of the schedule study (columns) at each victim schedule (rows: learning rate and steps as
    multiples of the "whole-model" protocol's), and the clean victim's BA; with `trigger`."""
    rows = study_records(frame, task=task, trigger=trigger)
    rows = rows[rows.shadow == LATER_FIELDS["shadow"]]
    points = rows.groupby(["lr_scale", "steps_scale"]).attack_label.transform("nunique") > 1
    table = rows[points].pivot_table(index=["lr_scale", "steps_scale"], columns="attack_label", values="asr")
    table = table[[a for a in ATTACK_ORDER if a in table.columns]]
    clean_ba = rows[points & (rows.attack == "clean")].set_index(["lr_scale", "steps_scale"]).ba
    return table.assign(**{"clean BA": clean_ba})


def shadow_table(frame: pd.DataFrame, task: str = "five_class", count: int = 5) -> pd.DataFrame:
    """Each BadDist release alone and with BadMatch at `count` records, tampered on the victim's own first images or
    on the provider's own ("whole-model", release 0, protocol schedule): ASR mean and std over the victim's seeds."""
    rows = resnet_records(frame, task)
    rows = rows[(rows.protocol == "whole-model") & (rows.release_seed == 0) & (rows.lr_scale == 1) & (rows.steps_scale == 1)
                & rows.attack.str.startswith("baddist") & rows.poison_count.isin([0, count])]
    multi = rows.groupby("attack_label").shadow.transform("nunique") > 1
    table = rows[multi].groupby(["attack_label", "shadow"]).agg(
        asr=("asr", "mean"), asr_seed_std=("asr", "std"), ba=("ba", "mean"), seeds=("seed", "nunique"))
    return table.reindex([(a, s) for a in ATTACK_ORDER for s in SHADOW_ORDER if (a, s) in table.index])


SHADOW_ORDER = ("victim-pool", "disjoint")
GEOMETRY_SHOWN = ("trigger_cos", "triggered_collapse", "target_margin")


def geometry_table(shapes: pd.DataFrame) -> pd.DataFrame:
    """The trigger geometry of each stored run (rows: trigger, protocol, schedule, shadow source, attack) in its release
    and in its victim (columns: stage x number), with the clean images' collapse and margin as the reference."""
    index = ["trigger", "protocol", "lr_scale", "steps_scale", "shadow", "attack_label"]
    values = [*GEOMETRY_SHOWN, "clean_collapse", "clean_target_margin"]
    table = shapes.pivot_table(index=index, columns="stage", values=values)
    table = table.swaplevel(axis=1).reindex(columns=pd.MultiIndex.from_product([["release", "victim"], values]))
    order = [i for p in ("fine-tune", "whole-model") for i in table.index if i[1] == p]
    return table.reindex(sorted(order, key=lambda i: (i[0] != "patch", i[0], i[1], i[2], i[3], SHADOW_ORDER.index(i[4]),
                                                      ATTACK_ORDER.index(i[5]))))


def release_point_table(frame: pd.DataFrame, shapes: pd.DataFrame, variant: str = "away", task: str = "five_class") -> pd.DataFrame:
    """One row per tampered release of `variant` the study measured with the patch (release seed x shadow source):
    where the release puts the triggered images (collapse, margin to "No Finding" with the provider's text tower) and
    what its "whole-model" victims (seed 0, protocol schedule) make of it: ASR with no record, with 5, and BadMatch
    alone."""
    label = f"baddist ({variant})"
    releases = shapes[(shapes.stage == "release") & (shapes.attack_label == label) & (shapes.protocol == "whole-model")
                      & (shapes.trigger == "patch") & (shapes.lr_scale == 1) & (shapes.steps_scale == 1)]
    index = ["release_seed", "shadow"]
    table = releases.set_index(index)[["triggered_collapse", "target_margin"]].add_prefix("release ")
    rows = resnet_records(frame, task)
    rows = rows[(rows.protocol == "whole-model") & (rows.seed == 0) & (rows.lr_scale == 1) & (rows.steps_scale == 1)]
    for column, (attack, count) in {"ASR, release alone": (label, 0), "ASR, release + 5 records": (f"baddist+badmatch ({variant})", 5)}.items():
        chosen = rows[(rows.attack_label == attack) & (rows.poison_count == count)].set_index(index).asr
        table[column] = chosen
    alone = rows[(rows.attack == "badmatch") & (rows.poison_count == 5)].set_index("release_seed").asr
    table["ASR, BadMatch alone (5)"] = table.index.get_level_values("release_seed").map(alone)
    return table.sort_index()


def victim_geometry(frame: pd.DataFrame, shapes: pd.DataFrame) -> pd.DataFrame:
    """The victims' trigger geometry (stage "victim") beside each victim's ASR and BA on the same task."""
    victims = shapes[shapes.stage == "victim"]
    scores = frame.drop_duplicates(["key", "task"]).set_index(["key", "task"])[["asr", "ba"]]
    return victims.join(scores, on=["key", "task"])


def schedule_geometry(shapes: pd.DataFrame, trigger: str = "patch") -> pd.DataFrame:
    """The rows of `shapes` (trigger geometry, alone or joined with scores) of the learning-rate study with `trigger`:
    "whole-model" victims of release 0 at the protocol's steps, default shadow images, 0 or 5 records."""
    return shapes[(shapes.trigger == trigger) & (shapes.protocol == "whole-model") & (shapes.release_seed == 0)
                  & (shapes.steps_scale == 1) & (shapes.shadow == LATER_FIELDS["shadow"]) & shapes["count"].isin([0, 5])]


def plot_schedule(frame: pd.DataFrame, shapes: pd.DataFrame, task: str = "five_class", trigger: str = "patch"):
    """The schedule study against the victim's learning rate (steps as the protocol): each attack's ASR, and where
    `trigger` sends images in its victim (collapse, margin to "No Finding"), the release's value dashed."""
    asr = schedule_table(frame, task, trigger).xs(1.0, level="steps_scale")
    shapes = schedule_geometry(shapes, trigger)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (("asr", "ASR (non-target images)"), ("triggered_collapse", "collapse of triggered images"),
              ("target_margin", 'margin to "No Finding" (cosine)'))
    for number, (ax, (metric, name)) in enumerate(zip(axes, panels)):
        for i, attack in enumerate(a for a in ATTACK_ORDER if a in asr.columns):
            marker, colour = "os^vD<"[i], f"C{i}"
            if metric == "asr":
                ax.plot(asr.index, asr[attack], marker=marker, color=colour, label=attack)
                continue
            rows = shapes[shapes.attack_label == attack]
            victim = rows[rows.stage == "victim"].set_index("lr_scale")[metric].sort_index()
            ax.plot(victim.index, victim, marker=marker, color=colour, label=attack)
            release = rows[rows.stage == "release"][metric]
            if len(release):
                ax.axhline(release.iloc[0], color=colour, ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("victim learning rate (x the protocol's)")
        ax.set_ylabel(name)
        ax.set_title("abc"[number], loc="left", fontweight="bold")
    axes[0].set_ylim(-0.02, 1.02)
    axes[2].axhline(0, color="grey", lw=0.6)
    axes[0].legend(fontsize=7)
    fig.suptitle(f'{TASK_NAMES[task]} task, ResNet, {trigger}, "whole-model" victims, release 0, seed 0; dashed: the '
                 f"release the victim starts from")
    fig.tight_layout()
    return fig


SWEEP_LINES = {  # one line per attacker; 0 records = the run without BadMatch (clean, or BadDist alone)
    "clean": "BadMatch alone", "badmatch": "BadMatch alone",
    "baddist (away)": "BadDist (away) + BadMatch", "baddist+badmatch (away)": "BadDist (away) + BadMatch",
    "baddist (target)": "BadDist (target) + BadMatch", "baddist+badmatch (target)": "BadDist (target) + BadMatch",
}

# Marker and line style per line, so that the lines differ without colour too.
SWEEP_STYLES = {"BadMatch alone": ("o", "-"), "BadDist (away) + BadMatch": ("s", "--"), "BadDist (target) + BadMatch": ("^", ":")}


def plot_sweep(frame: pd.DataFrame, task: str = "five_class", protocol: str = "fine-tune"):
    """The headline figure: ASR and BA against the number of poisoned records, one line per attacker, for the
    victims of `protocol`."""
    table = sweep_table(frame, task, protocol)
    table = table.assign(line=table.attack_label.map(SWEEP_LINES))
    n_images = frame.poison_count.max() / frame.poison_rate.max() if frame.poison_rate.max() > 0 else None
    fig, (ax_asr, ax_ba) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, rows in table.groupby("line", sort=False):
        rows = rows.sort_values("poison_count")
        x = rows.poison_count.clip(lower=0.5)  # 0 records drawn at 0.5 on the log axis
        marker, linestyle = SWEEP_STYLES[label]
        ax_asr.errorbar(x, rows.asr, yerr=rows.asr_seed_std.fillna(0), marker=marker, ls=linestyle, capsize=3, label=label)
        ax_ba.plot(x, rows.ba, marker=marker, ls=linestyle, label=label)
    counts = sorted(table.poison_count.unique())
    for ax, name in ((ax_asr, "ASR (non-target images)"), (ax_ba, "benign accuracy")):
        ax.set_xscale("log")
        ax.set_xticks([max(c, 0.5) for c in counts], [str(c) for c in counts])
        ax.minorticks_off()
        ax.set_xlabel("poisoned records" + ("" if n_images is None else f" (of {n_images:,.0f})"))
        ax.set_ylabel(name)
        ax.set_ylim(-0.02, 1.02)
    ax_asr.legend(fontsize=8)
    seeds = table.seeds.max()
    fig.suptitle(f"{TASK_NAMES[task]} task, ResNet, patch trigger, victim protocol {protocol!r}; error bars: std over "
                 f"{seeds} victim seeds where a point has them")
    fig.tight_layout()
    return fig


def plot_matrix(frame: pd.DataFrame, metric: str = "asr"):
    """A heat map of `metric` over (backbone, task, trigger) x attack."""
    table = matrix_table(frame)[metric]
    fig, ax = plt.subplots(figsize=(1.6 * len(table.columns) + 2.5, 0.38 * len(table) + 1.2))
    image = ax.imshow(table.to_numpy(dtype=float), vmin=0, vmax=1, cmap="magma", aspect="auto")
    ax.set_xticks(range(len(table.columns)), table.columns, rotation=20, ha="right")
    ax.set_yticks(range(len(table)), [" / ".join(i) for i in table.index])
    for (i, j), value in np.ndenumerate(table.to_numpy(dtype=float)):
        ax.text(j, i, "not run" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                color="grey" if np.isnan(value) else "black" if value > 0.5 else "white", fontsize=8)
    fig.colorbar(image, ax=ax, label=metric.upper())
    ax.set_title(f"{metric.upper()} across backbones, tasks and triggers")
    fig.tight_layout()
    return fig


def write_report(frame: pd.DataFrame, out_dir, defenses: list[dict] = (), geometry: list[dict] = (),
                 providers: list[dict] = ()) -> None:
    """`results.md` (every table the records fill, as markdown) and the figures, from the records."""
    out = Path(out_dir)
    parts = [f"# Results ({len(frame)} records)\n"]
    figures = {}
    if providers:
        parts += ["## The clean releases: zero-shot accuracy per draw of the data (release seed)\n",
                  provider_table(pd.DataFrame(list(providers))).round(3).reset_index().to_markdown(index=False), ""]
    if not frame.empty and not sweep_table(frame).empty:  # a plan may hold no ResNet / patch run
        parts += ["## Poison-count sweep (5-class task, ResNet, patch trigger)\n",
                  sweep_table(frame).round(3).to_markdown(index=False), ""]
        figures["sweep.png"] = lambda: plot_sweep(frame)
    if not frame.empty and not matrix_table(frame).dropna(how="all").empty:  # nor a run at 5 records
        matrix = matrix_table(frame).round(3)
        matrix.columns = [f"{metric.upper()} {attack}" for metric, attack in matrix.columns]
        parts += ["## Robustness matrix: benign accuracy and ASR at 5 poisoned records\n",
                  matrix.reset_index().to_markdown(index=False), ""]
        figures["matrix_asr.png"] = lambda: plot_matrix(frame, "asr")
        figures["matrix_ba.png"] = lambda: plot_matrix(frame, "ba")
    seeds = None if frame.empty else backbone_seed_table(frame)  # computed once: the test and the table
    if seeds is not None and seeds.index.get_level_values("backbone").nunique() > 1:
        parts += ["## The matrix's targeted patch victims over victim seeds (5 records)\n",
                  seeds.round(3).reset_index().to_markdown(index=False), ""]
    if not frame.empty and not protocol_table(frame).empty:
        parts += ["## Other victim protocols (5-class task)\n",
                  protocol_table(frame).drop(columns="asr_ci").round(3).to_markdown(index=False), ""]
    if not frame.empty and (first_release(frame).protocol == "whole-model").any():
        parts += ["## Where the victim starts: a fresh text tower or the whole release (5-class, 0 or 5 records)\n",
                  start_table(frame).round(3).reset_index().to_markdown(index=False), ""]
    if not frame.empty and not release_table(frame).empty:
        releases = release_table(frame).round(3)
        releases.columns = [f"{metric.upper()} release {seed}" for metric, seed in releases.columns]
        parts += ["## Release seeds: the same victims on other draws of data and release (5-class, 5 records)\n",
                  releases.reset_index().to_markdown(index=False), ""]
    if not frame.empty and len(schedule_table(frame)) > 1:
        parts += ["## The victim's schedule (5-class, \"whole-model\", release 0, seed 0)\n",
                  schedule_table(frame).round(3).reset_index().to_markdown(index=False), ""]
        if geometry:
            figures["schedule.png"] = lambda: plot_schedule(frame, records_frame(list(geometry)))
    if not frame.empty and len(schedule_table(frame, trigger="fourier")) > 1:
        parts += ["## The victim's schedule with the Fourier trigger (5-class, \"whole-model\", release 0, seed 0)\n",
                  schedule_table(frame, trigger="fourier").round(3).reset_index().to_markdown(index=False), ""]
        if geometry:
            figures["schedule_fourier.png"] = lambda: plot_schedule(frame, records_frame(list(geometry)), trigger="fourier")
    if not frame.empty and (sweep_table(frame, protocol="whole-model").poison_count.nunique() > 2):
        parts += ["## Poison counts, \"whole-model\" victims (5-class)\n",
                  sweep_table(frame, protocol="whole-model").round(3).to_markdown(index=False), ""]
        figures["sweep_whole_model.png"] = lambda: plot_sweep(frame, protocol="whole-model")
    if not frame.empty and not shadow_table(frame).empty:
        parts += ["## The provider's shadow images (5-class, \"whole-model\", release 0)\n",
                  shadow_table(frame).round(3).reset_index().to_markdown(index=False), ""]
    if geometry and not release_point_table(frame, records_frame(list(geometry))).empty:
        parts += ["## Where each tampered release (away) puts the triggered images, and what its victims make of it\n",
                  release_point_table(frame, records_frame(list(geometry))).round(3).reset_index().to_markdown(index=False), ""]
    if geometry:
        table = geometry_table(records_frame(list(geometry))).round(3)
        table.columns = [f"{stage} {number}" for stage, number in table.columns]
        parts += ["## Trigger geometry (5-class images): in the release and in the victim\n",
                  table.reset_index().to_markdown(index=False), ""]
    for name, draw in figures.items():
        fig = draw()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
    if defenses:
        parts += ["## Defenses (ResNet, patch trigger; BadDist = target variant)\n",
                  defense_table(list(defenses)).round(3).reset_index().to_markdown(index=False), ""]
    (out / TABLES).write_text("\n".join(parts) + "\n")


__all__ = [
    "BACKDOOR_ASR", "EFFECTIVE_DER", "RELIABLE_AUROC", "RESULTS", "TABLES", "backbone_seed_table", "compare_with_stored", "defense_record",
    "defense_table", "first_release", "geometry_table", "headline_records", "load_geometry", "load_providers", "load_results",
    "matrix_records", "matrix_table", "plot_matrix", "plot_schedule", "plot_sweep", "protocol_table", "provider_table", "records_frame", "release_point_table", "victim_geometry",
    "reference_folder", "reference_geometry", "reference_providers", "reference_results", "release_table", "resnet_records", "schedule_geometry",
    "schedule_table", "shadow_table", "standard_records",
    "start_table", "stored_clean_scans", "study_records", "sweep_table", "write_report",
]
