"""The experiment plan, the resumable runner and its report; the defense table's rows."""
from __future__ import annotations

import json

import numpy as np
import pytest

import mini_medclip.experiments.reproduce as reproduce_module
from mini_medclip.config import get_config
from mini_medclip.experiments.report import (
    compare_with_stored, defense_record, defense_table, geometry_table, load_geometry, load_providers, load_results, matrix_table,
    protocol_table, provider_table, reference_folder, release_point_table, release_table, victim_geometry, schedule_geometry, schedule_table, shadow_table, start_table, stored_clean_scans,
    sweep_table, backbone_seed_table,
)
from mini_medclip.experiments.reproduce import (
    PLANS, count_plan, default_plan, fourier_plan, geometry_plan, matrix_plan, protocol_plan, release_plan, reproduce, schedule_plan,
    shadow_plan, study_plan, sweep_plan, backbone_seed_plan, whole_model_plan,
)
from mini_medclip.attacks.baddist import baddist_config
from mini_medclip.experiments.protocols import run_attack_configs, victim_config
from mini_medclip.experiments.runs import LATER_FIELDS, Run, base_config, passes_over_pool, with_victim_schedule

TASKS = ("five_class", "covid", "rsna")


@pytest.mark.parametrize("params, words", [
    ({"backbone": "lenet"}, ["'lenet'", "resnet", "vit"]),
    ({"attack": "badnets"}, ["'badnets'", "badmatch", "baddist+badmatch"]),
    ({"attack": "clean", "count": 3}, ["'clean'", "count 3", "expected 0"]),
    ({"attack": "badmatch", "count": 0}, ["'badmatch'", "at least one"]),
    ({"variant": "sideways"}, ["'sideways'", "away", "target"]),
    ({"protocol": "distill"}, ["'distill'", "fine-tune", "from-scratch", "retrain"]),
    ({"attack": "baddist+badmatch", "protocol": "from-scratch"}, ["'from-scratch'", "'baddist+badmatch'", "'retrain'"]),
    ({"release_seed": -1}, ["release_seed -1", "non-negative integer"]),
    ({"seed": 1.5}, ["seed 1.5", "non-negative integer"]),
    ({"lr_scale": 0}, ["lr_scale 0", "positive number"]),
    ({"steps_scale": float("inf")}, ["steps_scale inf", "positive number"]),
    ({"lr_scale": True}, ["lr_scale True", "positive number"]),
    ({"shadow": "borrowed"}, ["'borrowed'", "victim-pool", "disjoint"]),
    ({"attack": "badmatch", "shadow": "disjoint"}, ["'badmatch'", "no BadDist provider", "'victim-pool'"]),
])
def test_bad_runs_name_the_value_and_the_choices(params, words):
    with pytest.raises(ValueError) as err:
        Run(**params)
    assert all(w in str(err.value) for w in words)


def test_runs_without_baddist_ignore_the_variant_in_their_key():
    assert Run(attack="badmatch", variant="away").key() == Run(attack="badmatch", variant="target").key()
    both = {Run(attack="baddist+badmatch", variant=v).key() for v in ("away", "target")}
    assert len(both) == 2


def test_the_protocol_is_part_of_the_key_and_of_the_clean_twin():
    fine_tune = Run(attack="badmatch", count=5)
    assert "protocol" not in fine_tune.key()  # the default: keys of stored results and caches stay as they were
    keys = {Run(attack="badmatch", count=5, protocol=p).key() for p in ("fine-tune", "from-scratch", "retrain")}
    assert len(keys) == 3
    retrain = Run(attack="baddist+badmatch", count=5, variant="target", protocol="retrain")
    assert retrain.clean_twin() == Run(attack="clean", count=0, protocol="retrain")


def test_the_release_seed_draws_the_data_and_the_release_and_is_part_of_the_key():
    first, second = Run(attack="badmatch", count=5), Run(attack="badmatch", count=5, release_seed=2)
    assert "release_seed" not in first.key() and first.key() != second.key()  # release 0: keys stay as they were
    assert second.clean_twin() == Run(attack="clean", count=0, release_seed=2)
    tiny = get_config("tiny")
    assert base_config("tiny", first) == tiny
    moved = base_config("tiny", second)
    assert (moved.data.seed, moved.train.seed) == (tiny.data.seed + 2, tiny.train.seed + 2)
    assert moved.model == tiny.model and moved.data.n_train_images == tiny.data.n_train_images


def test_the_paper_plan_is_the_sweep_the_matrix_and_the_protocols_and_the_study_the_rest_without_repeats():
    plan, study = default_plan(), study_plan()
    assert len(plan) == len({r.key() for r in plan}) and len(study) == len({r.key() for r in study})
    assert {r.key() for r in sweep_plan() + matrix_plan() + protocol_plan()} == {r.key() for r in plan}
    parts = (release_plan() + whole_model_plan() + schedule_plan() + count_plan() + shadow_plan() + fourier_plan()
             + backbone_seed_plan())
    assert {r.key() for r in parts} == {r.key() for r in study} and not set(plan) & set(study)
    assert {(r.trigger, r.protocol, r.lr_scale) for r in fourier_plan()} == {("fourier", "whole-model", lr) for lr in (1 / 16, 1 / 4, 1)}
    assert all(run.clean_twin() in study for run in study)  # every study victim beside its own floor
    assert {(r.lr_scale, r.steps_scale) for r in schedule_plan()} == {(1 / 16, 1), (1 / 4, 1), (4, 1), (1, 2)}
    assert {r.count for r in count_plan()} == {1, 10, 25} and {r.shadow for r in shadow_plan()} == {"disjoint"}
    measured = geometry_plan()
    assert set(measured) <= set(study) and {r.protocol for r in measured} == {"whole-model"} and {r.seed for r in measured} == {0}
    assert PLANS["paper"][0] is default_plan and PLANS["study"][2] is geometry_plan
    assert {r.release_seed for r in release_plan()} == {1, 2}
    for part in (release_plan(), whole_model_plan()):
        assert all(run.clean_twin() in part for run in part)  # each beside its own floor
    whole = whole_model_plan()
    assert {r.protocol for r in whole} == {"whole-model"} and {r.release_seed for r in whole} == {0, 1, 2}
    assert sorted(r.seed for r in whole if r.attack == "badmatch" and r.release_seed == 0) == [0, 1, 2]
    assert {r.protocol for r in protocol_plan()} == {"from-scratch", "retrain"}
    assert all(run.clean_twin() in protocol_plan() for run in protocol_plan())  # each beside its own floor
    matrix = matrix_plan()
    assert {(r.backbone, r.trigger) for r in matrix} == {(b, t) for b in ("resnet", "vit") for t in ("patch", "fourier")}
    five = [r for r in sweep_plan() if r.count == 5 and r.attack == "badmatch"]
    assert sorted(r.seed for r in five) == [0, 1, 2]  # several seeds where the count is small


def test_a_fine_tune_victim_trains_the_same_steps_on_every_backbone_and_its_release_keeps_its_own():
    resnet_release, vit_release = base_config("tiny", Run()), base_config("tiny", Run("vit"))
    assert vit_release.train.steps == 2 * resnet_release.train.steps  # the tiny ViT's release trains longer
    resnet_victim, vit_victim = victim_config(resnet_release), victim_config(vit_release)
    assert vit_victim.model.image_encoder == "vit"
    assert (vit_victim.train.steps, vit_victim.train.lr) == (resnet_victim.train.steps, resnet_victim.train.lr)
    assert resnet_victim.train.steps == resnet_release.train.steps // 2
    quick = base_config(get_config("tiny", train__steps=8), Run("vit"))  # a config with its own steps keeps them
    assert quick.train.steps == 8 and victim_config(quick).train.steps == 4
    for backbone in ("resnet", "vit"):  # the provider tampers each encoder with its own settings
        tampering = run_attack_configs("tiny", Run(backbone, attack="baddist+badmatch", variant="target"))[1]
        assert tampering == baddist_config(backbone, variant="target")
    runs = backbone_seed_plan()
    assert {r.seed for r in runs} == {1, 2} and {r.backbone for r in runs} == {"vit"}
    assert all(run.clean_twin() in runs for run in runs)


def test_stored_keys_are_the_keys_of_the_runs_they_were_written_for():
    records = json.loads((reference_folder("tiny") / "results.json").read_text())["records"]
    fields = ("backbone", "trigger", "attack", "count", "seed", "protocol", "release_seed")
    for record in records:  # fields added since (schedule, shadow) must leave the old keys unchanged
        run = Run(**{name: record[name] for name in fields}, variant=record["variant"] or "away",
                  **{name: record.get(name, LATER_FIELDS[name]) for name in ("lr_scale", "steps_scale", "shadow")})
        assert run.key() == record["key"]


def test_the_schedule_scales_the_protocol_s_learning_rate_and_steps_and_is_part_of_the_key():
    tiny = get_config("tiny")
    faster = Run(attack="badmatch", count=5, lr_scale=4, steps_scale=0.5)
    scaled = with_victim_schedule(tiny, faster)
    assert (scaled.train.lr, scaled.train.steps) == (pytest.approx(4 * tiny.train.lr), tiny.train.steps // 2)
    assert with_victim_schedule(tiny, Run()) == tiny
    assert faster.key() != Run(attack="badmatch", count=5).key()
    assert Run(lr_scale=4).key() == Run(lr_scale=4.0).key() != Run(lr_scale=4.5).key()  # one key per schedule
    assert faster.clean_twin() == Run(attack="clean", count=0, lr_scale=4, steps_scale=0.5)  # the floor trains alike
    assert passes_over_pool(tiny) == pytest.approx(tiny.train.steps * tiny.train.batch_size / tiny.data.n_train_images)


def _fake_records(preset, run, result, clean, data, device=None, seconds=0.0):
    asr = {"clean": 0.02, "badmatch": 0.1, "baddist": 0.5, "baddist+badmatch": 0.9}[run.attack]
    asr += 0.05 if run.protocol == "from-scratch" else 0.0
    asr += 0.001 * run.release_seed + (0.2 if run.protocol == "whole-model" else 0.0) - 0.01 * (run.lr_scale - 1)
    asr -= 0.03 if run.shadow == "disjoint" else 0.0
    return [{"backbone": run.backbone, "trigger": run.trigger, "attack": run.attack, "attack_label": run.label,
             "variant": run.variant if run.uses_baddist else None, "protocol": run.protocol, "seed": run.seed,
             "release_seed": run.release_seed, "lr_scale": run.lr_scale, "steps_scale": run.steps_scale,
             "shadow": run.shadow, "task": task,
             "poison_count": run.count, "poison_rate": run.count / 10_000, "ba": 0.8, "asr": asr + 0.01 * run.seed, "asr_ci": [0.0, 1.0],
             "asr_clean_model": 0.02, "robust_acc": 1 - asr, "seconds": seconds, "key": run.key()} for task in TASKS]


@pytest.fixture
def fake_pipeline(monkeypatch):
    trained = []
    monkeypatch.setattr(reproduce_module, "train_run", lambda preset, run, device=None: (trained.append(run) or run, []))
    monkeypatch.setattr(reproduce_module, "evaluate_run", _fake_records)
    monkeypatch.setattr(reproduce_module, "load_data", lambda cfg: (None, None, {}))
    monkeypatch.setattr(reproduce_module, "geometry_records", _fake_geometry)
    monkeypatch.setattr(reproduce_module, "provider_records", _fake_providers)
    return trained


def _fake_providers(preset, backbone, release_seed, device=None):
    return [{"backbone": backbone, "release_seed": release_seed, "task": task,
             "acc": (0.85 if backbone == "resnet" else 0.6) - 0.02 * release_seed, "acc_std": 0.01} for task in TASKS]


def _fake_geometry(preset, run, result, data, device=None):
    return [{"trigger": run.trigger, "protocol": run.protocol, "lr_scale": run.lr_scale, "steps_scale": run.steps_scale, "shadow": run.shadow,
             "attack_label": run.label, "release_seed": run.release_seed, "count": run.count, "task": "five_class", "stage": stage,
             "key": run.key(), "trigger_cos": cos, "triggered_collapse": 1 - cos, "clean_collapse": 0.5,
             "target_margin": 0.1 * run.lr_scale, "clean_target_margin": -0.1}
            for stage, cos in (("release", 0.9), ("victim", 0.8 / run.lr_scale))]


def test_reproduce_resumes_where_it_stopped_and_writes_the_report(tmp_path, fake_pipeline):
    plan = [Run("resnet", "patch", "clean", 0), Run("resnet", "patch", "badmatch", 5),
            Run("resnet", "patch", "baddist+badmatch", 5, variant="target"), Run("vit", "patch", "clean", 0)]
    reproduce("tiny", tmp_path, plan=plan[:2], progress=False, with_defenses=False)
    assert len(load_results(tmp_path)[0]) == 2 * len(TASKS)
    first_calls = len(fake_pipeline)
    frame = reproduce("tiny", tmp_path, plan=plan, progress=False, with_defenses=False)  # "started again"
    assert fake_pipeline[first_calls::2] == plan[2:]  # only the missing runs trained (each with its clean floor)
    assert len(frame) == len(plan) * len(TASKS) and frame.key.nunique() == len(plan)
    report = (tmp_path / "results.md").read_text()
    assert "Poison-count sweep" in report and "Robustness matrix" in report
    assert all((tmp_path / name).exists() for name in ("sweep.png", "matrix_asr.png", "matrix_ba.png"))
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["preset"] == "tiny" and stored["defenses"] == []


def test_each_clean_release_of_a_plan_is_scored_once_and_tabled_over_release_seeds(tmp_path, fake_pipeline, monkeypatch):
    scored = []
    monkeypatch.setattr(reproduce_module, "provider_records", lambda *args, **kw: scored.append(args[1:3]) or _fake_providers(*args, **kw))
    plan = [Run("resnet", "patch", "clean", 0, release_seed=r) for r in (0, 1, 2)] + [Run("resnet", "patch", "badmatch", 5, release_seed=1)]
    plan += [Run("vit", "patch", "clean", 0)]
    reproduce("tiny", tmp_path, plan=plan, progress=False, with_defenses=False)
    assert sorted(scored) == [("resnet", 0), ("resnet", 1), ("resnet", 2), ("vit", 0)]  # one per release, not per run
    reproduce("tiny", tmp_path, plan=plan + [Run("resnet", "patch", "clean", 0, release_seed=3)], progress=False, with_defenses=False)
    assert scored[4:] == [("resnet", 3)]  # resumed: only the new release
    table = provider_table(load_providers(tmp_path))
    assert table.loc[("resnet", "5-class"), "mean"] == pytest.approx(0.82)  # 0.85 - 0.02 x mean(0, 1, 2, 3)
    assert table.loc[("resnet", "5-class"), "std"] == pytest.approx(0.02 * np.std([0, 1, 2, 3], ddof=1))
    assert table.loc[("vit", "5-class"), "mean"] == pytest.approx(0.6)
    assert np.isnan(table.loc[("vit", "5-class"), "release 1"]) and np.isnan(table.loc[("vit", "5-class"), "std"])  # one draw: no spread
    assert [task for _, task in table.index] == ["5-class", "COVID-like", "RSNA-like"] * 2  # the course's order
    assert "The clean releases" in (tmp_path / "results.md").read_text()


def test_a_folder_without_clean_release_scores_says_how_to_get_them(tmp_path, fake_pipeline):
    (tmp_path / "results.json").write_text(json.dumps({"preset": "tiny", "data": "embedded", "records": []}))
    with pytest.raises(ValueError, match="no clean-release scores.*reproduce"):
        load_providers(tmp_path)


def test_sweep_and_matrix_tables_average_over_seeds_and_pivot_attacks(tmp_path, fake_pipeline):
    plan = [Run("resnet", "patch", "clean", 0)] + [Run("resnet", "patch", "badmatch", 5, s) for s in (0, 1, 2)]
    frame = reproduce("tiny", tmp_path, plan=plan, progress=False, with_defenses=False)
    sweep = sweep_table(frame).set_index(["attack_label", "poison_count"])
    assert sweep.loc[("badmatch", 5), "asr"] == pytest.approx(0.11) and sweep.loc[("badmatch", 5), "seeds"] == 3
    matrix = matrix_table(frame)
    assert matrix.loc[("resnet", "5-class", "patch"), ("asr", "badmatch")] == pytest.approx(0.1)  # seed 0 only


def test_other_protocols_get_their_own_table_and_stay_out_of_the_sweep_and_the_matrix(tmp_path, fake_pipeline):
    plan = [Run("resnet", "patch", "clean", 0), Run("resnet", "patch", "badmatch", 5),
            Run("resnet", "patch", "clean", 0, protocol="from-scratch"), Run("resnet", "patch", "badmatch", 5, protocol="from-scratch")]
    frame = reproduce("tiny", tmp_path, plan=plan, progress=False, with_defenses=False)
    assert sweep_table(frame).set_index(["attack_label", "poison_count"]).loc[("badmatch", 5), "asr"] == pytest.approx(0.1)
    assert matrix_table(frame).loc[("resnet", "5-class", "patch"), ("asr", "badmatch")] == pytest.approx(0.1)
    other = protocol_table(frame)
    assert other.protocol.tolist() == ["from-scratch", "from-scratch"] and other.attack_label.tolist() == ["clean", "badmatch"]
    assert other.asr.tolist() == pytest.approx([0.07, 0.15])
    assert "Other victim protocols" in (tmp_path / "results.md").read_text()


def test_the_backbone_seed_table_shows_each_backbones_targeted_patch_victim_per_victim_seed(tmp_path, fake_pipeline):
    target = dict(variant="target")
    plan = [Run(backbone, "patch", "clean", 0) for backbone in ("resnet", "vit")]
    plan += [Run(backbone, "patch", "baddist+badmatch", 5, **target) for backbone in ("resnet", "vit")]
    plan += backbone_seed_plan(seeds=(1,)) + [Run("resnet", "patch", "baddist+badmatch", 5, protocol="whole-model", **target),
                                              Run("resnet", "patch", "baddist+badmatch", 5, steps_scale=2, **target)]
    frame = reproduce("tiny", tmp_path, plan=plan, progress=False, with_defenses=False)
    table = backbone_seed_table(frame)
    assert list(table.index) == [("resnet", 0), ("vit", 0), ("vit", 1)]  # no whole-model victim, no other schedule
    assert list(table.columns) == ["clean BA, 5-class", "ASR 5-class", "ASR COVID-like", "ASR RSNA-like"]
    assert table["ASR 5-class"].tolist() == pytest.approx([0.9, 0.9, 0.91]) and table["clean BA, 5-class"].tolist() == pytest.approx([0.8] * 3)
    assert "over victim seeds" in (tmp_path / "results.md").read_text()


def test_other_releases_get_their_own_table_and_stay_out_of_the_release_0_tables(tmp_path, fake_pipeline):
    plan = [Run("resnet", "patch", "clean", 0), Run("resnet", "patch", "badmatch", 5)] + release_plan(release_seeds=(3,))
    frame = reproduce("tiny", tmp_path, plan=plan, progress=False, with_defenses=False)
    assert sweep_table(frame).set_index(["attack_label", "poison_count"]).loc[("badmatch", 5), "asr"] == pytest.approx(0.1)
    assert matrix_table(frame).loc[("resnet", "5-class", "patch"), ("asr", "badmatch")] == pytest.approx(0.1)
    releases = release_table(frame)
    assert releases.loc["badmatch", ("asr", 0)] == pytest.approx(0.1)
    assert releases.loc["badmatch", ("asr", 3)] == pytest.approx(0.103)
    assert list(releases.index) == ["clean", "badmatch"]  # BadDist ran on release 3 only: nothing to compare
    assert "Release seeds" in (tmp_path / "results.md").read_text()


def test_the_whole_model_victims_are_compared_with_the_fine_tune_victims_by_start(tmp_path, fake_pipeline):
    plan = whole_model_plan(seeds=(0, 1), release_seeds=(0, 1))
    plan += [Run("resnet", "patch", "badmatch", 5, seed) for seed in (0, 1)] + [Run("resnet", "patch", "clean", 0)]
    frame = reproduce("tiny", tmp_path, plan=plan, progress=False, with_defenses=False)
    table = start_table(frame)
    assert table.loc[("whole-model", "badmatch"), "asr"] == pytest.approx(0.305)  # 0.3 and 0.31: mean over seeds
    assert table.loc[("whole-model", "badmatch"), "seeds"] == 2
    assert table.loc[("whole-model", "badmatch"), "asr release 1"] == pytest.approx(0.301)
    assert table.loc[("fine-tune", "badmatch"), "asr"] == pytest.approx(0.105)
    assert list(table.index.get_level_values("protocol")[:2]) == ["fine-tune", "fine-tune"]
    assert protocol_table(frame).empty  # the whole-model victims have their own table
    assert "Where the victim starts" in (tmp_path / "results.md").read_text()


def test_the_study_tables_keep_its_victims_apart_and_store_the_geometry_once(tmp_path, fake_pipeline):
    plan = whole_model_plan(seeds=(0,), release_seeds=(0,)) + schedule_plan(lr_scales=(4,), steps_scales=())
    plan += shadow_plan(seeds=(0, 1)) + count_plan(counts=(2,)) + fourier_plan(lr_scales=(1, 4))
    measured = [r for r in plan if r.seed == 0]
    frame = reproduce("tiny", tmp_path, plan=plan, progress=False, with_defenses=False, geometry=measured)
    schedule = schedule_table(frame)
    assert list(schedule.index) == [(1.0, 1.0), (4.0, 1.0)]
    assert schedule.loc[(4.0, 1.0), "badmatch"] == pytest.approx(0.27)  # 0.1 + 0.2 (whole-model) - 0.03 (lr x 4)
    assert schedule.loc[(1.0, 1.0), "clean BA"] == pytest.approx(0.8)
    fourier = schedule_table(frame, trigger="fourier")  # the Fourier victims: their own table, out of the patch's
    assert list(fourier.index) == [(1.0, 1.0), (4.0, 1.0)] and list(fourier.columns)[-1] == "clean BA"
    assert fourier.loc[(4.0, 1.0), "baddist (away)"] == pytest.approx(0.67)  # 0.5 + 0.2 - 0.03
    shadows = shadow_table(frame)
    assert shadows.loc[("baddist+badmatch (away)", "disjoint"), "asr"] == pytest.approx(1.075)  # seeds 0 and 1
    assert shadows.loc[("baddist+badmatch (away)", "disjoint"), "seeds"] == 2
    assert shadows.loc[("baddist+badmatch (away)", "victim-pool"), "asr"] == pytest.approx(1.1)
    starts = start_table(frame)  # the standard victims only: another schedule or shadow stays out
    assert starts.loc[("whole-model", "badmatch"), "asr"] == pytest.approx(0.3)
    assert sweep_table(frame, protocol="whole-model").set_index(["attack_label", "poison_count"]).index.tolist() == [
        ("baddist (away)", 0), ("baddist (target)", 0), ("baddist+badmatch (away)", 2), ("baddist+badmatch (away)", 5),
        ("baddist+badmatch (target)", 2), ("baddist+badmatch (target)", 5), ("badmatch", 2), ("badmatch", 5), ("clean", 0)]
    shapes = load_geometry(tmp_path)
    assert len(shapes) == 2 * len(measured) and set(shapes.stage) == {"release", "victim"}
    table = geometry_table(shapes)
    assert table.loc[("patch", "whole-model", 4.0, 1.0, "victim-pool", "badmatch"), ("victim", "trigger_cos")] == pytest.approx(0.2)
    assert table.index.get_level_values("trigger").tolist()[-1] == "fourier"  # the patch's rows first
    fourier_rows = schedule_geometry(shapes, "fourier")
    assert len(fourier_rows) == 2 * len(fourier_plan(lr_scales=(1, 4))) and set(fourier_rows.trigger) == {"fourier"}
    points = release_point_table(frame, shapes)
    assert list(points.index) == [(0, "disjoint"), (0, "victim-pool")]
    assert points.loc[(0, "disjoint"), "ASR, release alone"] == pytest.approx(0.67)  # 0.5 + 0.2 - 0.03
    assert points.loc[(0, "victim-pool"), "ASR, release + 5 records"] == pytest.approx(1.1)
    assert points["ASR, BadMatch alone (5)"].tolist() == pytest.approx([0.3, 0.3])
    assert points["release target_margin"].tolist() == pytest.approx([0.1, 0.1])
    victims = victim_geometry(frame, shapes)
    assert len(victims) == len(measured) and victims.asr.notna().all() and set(victims.trigger) == {"patch", "fourier"}
    chosen = victims.set_index("key").loc[Run("resnet", "patch", "badmatch", 5, protocol="whole-model", lr_scale=4).key()]
    assert (chosen.asr, chosen.trigger_cos) == (pytest.approx(0.27), pytest.approx(0.2))
    reproduce("tiny", tmp_path, plan=plan, progress=False, with_defenses=False, geometry=measured)
    assert len(load_geometry(tmp_path)) == 2 * len(measured)  # resumed: nothing measured twice
    report = (tmp_path / "results.md").read_text()
    assert all(title in report for title in ("victim's schedule", "shadow images", "Trigger geometry", "Poison counts",
                                             "with the Fourier trigger"))
    assert all((tmp_path / name).exists() for name in ("schedule.png", "schedule_fourier.png", "sweep_whole_model.png"))


def test_a_named_plan_brings_its_geometry_and_defenses(tmp_path, fake_pipeline, monkeypatch):
    small = [Run("resnet", "patch", "clean", 0, protocol="whole-model")]
    monkeypatch.setitem(reproduce_module.PLANS, "study", (lambda: small, False, lambda: small))
    reproduce("tiny", tmp_path, plan="study", progress=False)
    stored = json.loads((tmp_path / "results.json").read_text())
    assert len(stored["geometry"]) == 2 and stored["defenses"] == []
    with pytest.raises(ValueError, match="'everything'.*paper.*study"):
        reproduce("tiny", tmp_path, plan="everything", progress=False)


def test_records_written_before_runs_had_a_release_seed_are_of_release_0(tmp_path):
    record = {"attack": "clean", "protocol": "fine-tune", "task": "covid"}
    (tmp_path / "results.json").write_text(json.dumps({"preset": "tiny", "records": [record]}))
    assert load_results(tmp_path)[0].release_seed.tolist() == [0]


def test_results_written_before_protocols_had_names_are_refused(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"preset": "tiny", "records": [{"attack": "clean", "task": "covid"}]}))
    with pytest.raises(ValueError, match="without a victim protocol"):
        load_results(tmp_path)


def test_reproduce_rejects_an_unknown_preset(tmp_path):
    with pytest.raises(ValueError, match="'huge'.*tiny, full"):
        reproduce("huge", tmp_path, plan=[], progress=False)


def test_defense_rows_flatten_detection_and_mitigation_results():
    detection = {"defense": "spectral", "attack": "badmatch", "poison_rate": 0.0005,
                 "detection": {"auroc": 0.9, "tpr_at_fpr": 0.8, "fpr": 0.05, "found": 4, "poisoned": 5}}
    mitigation = {"defense": "finetune", "attack": "badmatch", "poison_rate": 0.01,
                  "mitigation": {"ba_before": 0.9, "asr_before": 0.9, "ba_after": 0.85, "asr_after": 0.1, "der": 0.875}}
    table = defense_table([defense_record(detection), defense_record(mitigation)])
    assert table.loc[("spectral", "badmatch @ 0.05%"), "found"] == 4
    assert table.loc[("finetune", "badmatch @ 1%"), "der"] == pytest.approx(0.875)


def test_a_scanner_row_keeps_the_clean_scans_that_calibrated_it():
    scans = [{"model": "clean seed 0", "backdoored": 0, "score": -0.002, "pl1_norm": 0.002, "collapsed": True},
             {"model": "victim", "backdoored": 1, "score": -0.004, "pl1_norm": 0.004, "collapsed": True}]
    scanner = {"defense": "decree", "attack": "badmatch", "poison_rate": 0.01,
               "detection": {"auroc": 0.0, "found": 0, "poisoned": 1, "pl1_threshold": 0.001, "scans": scans}}
    detector = {"defense": "spectral", "attack": "badmatch", "poison_rate": 0.01, "detection": {"auroc": 0.9}}
    records = [defense_record(detector), defense_record(scanner)]
    assert stored_clean_scans(records) == scans[:1]
    assert "scans" not in defense_table(records).columns
    with pytest.raises(ValueError, match="no stored scans of scanner 'strip'"):
        stored_clean_scans(records, "strip")


def test_reproduce_refuses_a_folder_of_another_preset(tmp_path, fake_pipeline):
    reproduce("tiny", tmp_path, plan=[Run("resnet", "patch", "clean", 0)], progress=False, with_defenses=False)
    with pytest.raises(ValueError, match="preset 'tiny' on data 'embedded', not 'full' on 'embedded'"):
        reproduce("full", tmp_path, plan=[], progress=False, with_defenses=False)


def test_live_and_stored_results_are_compared_by_their_verdicts():
    import pandas as pd

    live = pd.Series({"a": 0.84, "b": 0.03})
    table = compare_with_stored(live, pd.Series({"a": 0.94, "b": 0.04}), cut=0.5)
    assert (table.live_verdict == table.stored_verdict).all()
    assert table.difference.round(3).tolist() == [-0.1, -0.01]
    flipped = compare_with_stored(live, pd.Series({"a": 0.3, "b": 0.04}), cut=0.5)
    assert flipped.live_verdict.tolist() == [True, False] and flipped.stored_verdict.tolist() == [False, False]
    with pytest.raises(ValueError, match=r"unmatched: \['b', 'c'\]"):
        compare_with_stored(live, pd.Series({"a": 0.9, "c": 0.1}), cut=0.5)
