"""The experiment layer: the victim protocols, the cached releases, and one toy experiment end to end."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import mini_medclip.experiments.protocols as protocols
import mini_medclip.experiments.scoring as scoring
from helpers import same_weights, tiny_config, tiny_data, untrained_tiny_model, weights_of
from mini_medclip.attacks.baddist import BadDistConfig
from mini_medclip.attacks.geometry import GEOMETRY, trigger_geometry
from mini_medclip.attacks.triggers import make_trigger
from mini_medclip.attacks.badmatch import BadMatchConfig
from mini_medclip.config import get_config
from mini_medclip.data.labels import label_index
from mini_medclip.defenses import SpectralSignatures
from mini_medclip.experiments import defense_eval
from mini_medclip.experiments.protocols import (
    build_victim_model, pretrained_model, release_for, shadow_images, tampered_release, train_run, victim_config,
)
import mini_medclip.experiments.reproduce as reproduce_module
from mini_medclip.experiments.reproduce import reproduce
from mini_medclip.experiments.runs import Run, with_release_seed
from mini_medclip.experiments.scoring import evaluate_run
from mini_medclip.train import train


def test_victim_config_fine_tunes_half_as_long_at_a_quarter_of_the_rate():
    cfg = get_config("tiny")
    victim = victim_config(cfg, seed=4)
    assert victim.train.steps == cfg.train.steps // 2 and victim.train.lr == pytest.approx(cfg.train.lr / 4)
    assert victim.train.seed == 4 and victim.model == cfg.model and victim.data == cfg.data


def test_train_starts_the_image_tower_from_a_given_encoder_and_the_text_tower_fresh():
    cfg = tiny_config(train__steps=1, train__lr=1e-12)
    pool, text_pool, _ = tiny_data()
    donor, _, _ = untrained_tiny_model(seed=5)
    result = train(cfg, pool, text_pool, progress=False, image_encoder_init=donor.image_encoder.state_dict())
    def close(a, b):  # parameters only: one training step moves the BatchNorm running statistics
        return all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))

    assert close(result.model.image_encoder, donor.image_encoder)
    fresh = train(cfg, pool, text_pool, progress=False)
    assert close(result.model.text_encoder, fresh.model.text_encoder)
    assert not close(fresh.model.image_encoder, donor.image_encoder)
    with pytest.raises(ValueError, match="at most one"):
        train(cfg, pool, text_pool, progress=False, init=(donor, None), image_encoder_init=donor.image_encoder.state_dict())


def test_release_swaps_only_the_image_encoder_and_is_cached(isolated_model_cache, tiny_embedded_data):
    cfg = tiny_config()
    bcfg = BadDistConfig(epochs=2, batch_size=20, shadow_images=40)
    release = tampered_release(cfg, bcfg, device="cpu", progress=False)
    clean = pretrained_model(cfg, "cpu")
    assert same_weights(weights_of(release.model.text_encoder), weights_of(clean.model.text_encoder))
    assert not same_weights(weights_of(release.model.image_encoder), weights_of(clean.model.image_encoder))
    assert len(release.history) == 2
    again = tampered_release(cfg, bcfg, device="cpu", progress=False)
    assert same_weights(weights_of(again.model), weights_of(release.model))
    assert len(list(isolated_model_cache.iterdir())) == 2  # the clean model and the tampered release


def test_the_shadow_images_are_the_victim_s_first_ones_or_the_provider_s_own(tiny_embedded_data):
    cfg = tiny_config()
    pool = tiny_data(size=cfg.data.image_size)[0]
    assert torch.equal(shadow_images(cfg, BadDistConfig(shadow_images=10)), pool.batch(range(10)))
    own = shadow_images(cfg, BadDistConfig(shadow_images=10, shadow="disjoint"))  # phantoms of their own seed
    assert own.shape == (10, 1, cfg.data.image_size, cfg.data.image_size)
    assert torch.equal(own, shadow_images(cfg, BadDistConfig(shadow_images=10, shadow="disjoint")))
    assert not any(torch.equal(image, other) for image in own for other in pool.batch(range(len(pool))))
    spec = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="/data/spec.json"))
    with pytest.raises(ValueError, match="'disjoint'.*spec.json.*'victim-pool'"):
        shadow_images(spec, BadDistConfig(shadow="disjoint"))


def test_a_run_s_schedule_reaches_its_victim_and_its_release_is_the_one_it_starts_from(tiny_embedded_data, monkeypatch):
    seen = {}
    monkeypatch.setattr(protocols, "build_victim_model", lambda cfg, attack, baddist, device, victim_cfg, whole_model:
                        seen.update(victim=victim_cfg, baddist=baddist) or (None, None))
    train_run(tiny_config(), Run(attack="baddist+badmatch", count=5, lr_scale=4, steps_scale=2, shadow="disjoint"), "cpu")
    standard = victim_config(tiny_config(), 0)
    assert seen["victim"].train.lr == pytest.approx(4 * standard.train.lr)
    assert seen["victim"].train.steps == 2 * standard.train.steps and seen["baddist"].shadow == "disjoint"
    with pytest.raises(ValueError, match="'from-scratch' run starts from no release"):
        release_for("tiny", Run(attack="badmatch", protocol="from-scratch"))


def test_a_cached_victim_is_loaded_without_loading_the_release(isolated_model_cache, tiny_embedded_data, monkeypatch):
    cfg, attack = tiny_config(), BadMatchConfig(rate=0.05)
    bcfg = BadDistConfig(epochs=1, batch_size=20, shadow_images=40)
    victim, indices = build_victim_model(cfg, attack, bcfg, device="cpu")
    assert len(list(isolated_model_cache.iterdir())) == 3  # the clean release, the tampered release, the victim

    def unreachable(*args, **kwargs):
        raise AssertionError("the release was loaded for a cached victim")

    monkeypatch.setattr(protocols, "tampered_release", unreachable)
    monkeypatch.setattr(protocols, "pretrained_model", unreachable)
    again, again_indices = build_victim_model(cfg, attack, bcfg, device="cpu")
    assert same_weights(weights_of(again.model), weights_of(victim.model)) and torch.equal(again_indices, indices)


@pytest.fixture
def toy_preset(tiny_embedded_data, monkeypatch):
    """The "tiny" preset shrunk to the tiny data (60 training images, 32 px, a few steps): every run is real."""
    def toy_config(preset, run):
        return with_release_seed(tiny_config(model__image_encoder=run.backbone, data__n_train_images=60), run)

    for module in (protocols, scoring, defense_eval, reproduce_module):
        monkeypatch.setattr(module, "base_config", toy_config)
    return toy_config


def test_survival_records_score_the_release_and_victim_of_the_run_with_the_same_settings(isolated_model_cache, toy_preset):
    run = Run("resnet", "patch", "baddist+badmatch", 6, variant="target")
    victim, _ = train_run("tiny", run, "cpu")
    entries = len(list(isolated_model_cache.iterdir()))
    rows = scoring.survival_records(toy_preset("tiny", run), BadDistConfig(trigger="patch", variant="target"), 6, tiny_data(), "cpu")
    assert len(list(isolated_model_cache.iterdir())) == entries  # the run's own release and victim: nothing retrained
    shapes = scoring.geometry_records("tiny", run, victim, tiny_data(), "cpu")
    assert [r["stage"] for r in rows] == [g["stage"] for g in shapes] == ["release", "victim"]
    for row, shape in zip(rows, shapes):
        assert {name: row[name] for name in GEOMETRY} == pytest.approx({name: shape[name] for name in GEOMETRY})
        assert 0 <= row["asr"] <= 1 and 0 <= row["ba"] <= 1


def test_one_toy_experiment_end_to_end_poisons_tampers_trains_and_scores(isolated_model_cache, toy_preset, tmp_path):
    run = Run("resnet", "patch", "baddist+badmatch", 6, variant="target")
    victim, indices = train_run("tiny", run, "cpu")
    clean_labels = tiny_data()[0].labels
    assert len(indices) == 6 and (clean_labels[indices, label_index("No Finding")] == 0).all()
    # The clean release, the tampered release and the victim are three cache entries; nothing else trained.
    assert len(list(isolated_model_cache.iterdir())) == 3
    assert victim.history[-1]["step"] == victim_config(toy_preset("tiny", run)).train.steps  # fine-tuned: half the steps

    clean_victim, no_indices = train_run("tiny", run.clean_twin(), "cpu")
    assert len(no_indices) == 0
    records = evaluate_run("tiny", run, victim, clean_victim, tiny_data(), "cpu")
    assert [r["task"] for r in records] == ["five_class", "covid", "rsna"]
    for record in records:
        assert record["key"] == run.key() and record["poison_count"] == 6 and record["poison_rate"] == 0.1
        assert 0 <= record["asr"] <= 1 and 0 <= record["asr_clean_model"] <= 1 and 0 <= record["ba"] <= 1
        assert -1 <= record["clean_embedding_drift"] < 1  # the tampered release moved the clean embeddings
    shapes = scoring.geometry_records("tiny", run, victim, tiny_data(), "cpu")
    assert [(g["stage"], g["task"], g["key"]) for g in shapes] == [("release", "five_class", run.key()), ("victim", "five_class", run.key())]
    release = release_for("tiny", run, "cpu")
    _, text_pool, eval_sets = tiny_data()
    expected = trigger_geometry(release.model, release.tokenizer, eval_sets["five_class"], text_pool, make_trigger("patch"))
    assert {name: shapes[0][name] for name in expected} == pytest.approx(expected)

    # The curator's detector sees the pool the victim trained on, with exactly the run's poisons in it.
    detection, scores, is_poisoned = defense_eval.evaluate_data_detector(SpectralSignatures(), "tiny", run, "cpu")
    assert int(is_poisoned.sum()) == 6 and torch.equal(is_poisoned.nonzero().flatten(), indices)
    assert len(scores) == 60 and 0 <= detection["auroc"] <= 1

    # `reproduce` runs the same protocol and, run again, resumes: same records, nothing retrained.
    entries = len(list(isolated_model_cache.iterdir()))
    frame = reproduce("tiny", tmp_path / "out", plan=[run], device="cpu", progress=False, with_defenses=False)
    assert len(list(isolated_model_cache.iterdir())) == entries
    assert frame.asr.tolist() == [r["asr"] for r in records]
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    reproduce("tiny", tmp_path / "out", plan=[run], device="cpu", progress=False, with_defenses=False)
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == stored


def test_the_other_protocols_train_without_a_release_or_at_the_full_schedule(isolated_model_cache, toy_preset):
    scratch = Run("resnet", "patch", "badmatch", 6, protocol="from-scratch")
    cfg = toy_preset("tiny", scratch)
    victim, indices = train_run("tiny", scratch, "cpu")
    assert len(indices) == 6 and victim.history[-1]["step"] == cfg.train.steps
    assert len(list(isolated_model_cache.iterdir())) == 1  # no release was trained for it
    floor, no_indices = train_run("tiny", scratch.clean_twin(), "cpu")
    assert len(no_indices) == 0  # the clean from-scratch victim is the provider's own release, one cache entry
    assert same_weights(weights_of(floor.model), weights_of(pretrained_model(cfg, "cpu").model))
    assert len(list(isolated_model_cache.iterdir())) == 2

    retrain = Run("resnet", "patch", "badmatch", 6, protocol="retrain")
    hard, hard_indices = train_run("tiny", retrain, "cpu")
    fine, _ = train_run("tiny", Run("resnet", "patch", "badmatch", 6), "cpu")
    assert torch.equal(hard_indices, indices)  # the same records, another schedule
    assert hard.history[-1]["step"] == cfg.train.steps > fine.history[-1]["step"] == victim_config(cfg).train.steps


def test_another_release_seed_trains_its_own_release_and_victim(isolated_model_cache, toy_preset):
    run = Run("resnet", "patch", "badmatch", 6)
    first, _ = train_run("tiny", run, "cpu")
    assert len(list(isolated_model_cache.iterdir())) == 2  # release 0 and its victim
    other_run = Run("resnet", "patch", "badmatch", 6, release_seed=1)
    other, _ = train_run("tiny", other_run, "cpu")
    assert len(list(isolated_model_cache.iterdir())) == 4  # release 1 and its victim
    releases = [pretrained_model(toy_preset("tiny", r), "cpu").model for r in (run, other_run)]
    assert not same_weights(weights_of(releases[0]), weights_of(releases[1]))
    assert toy_preset("tiny", other_run).train.seed == toy_preset("tiny", run).train.seed + 1


def test_the_whole_model_victim_starts_from_the_whole_release(isolated_model_cache, toy_preset, monkeypatch):
    starts = []

    def spying_train(*args, **kwargs):
        starts.append({k: kwargs[k] for k in ("init", "image_encoder_init") if k in kwargs})
        return train(*args, **kwargs)

    monkeypatch.setattr(protocols, "train", spying_train)
    run = Run("resnet", "patch", "baddist+badmatch", 6, variant="target", protocol="whole-model")
    victim, indices = train_run("tiny", run, "cpu")
    release = tampered_release(toy_preset("tiny", run), BadDistConfig(trigger="patch", variant="target"), "cpu")
    model, tokenizer = starts[-1]["init"]
    assert same_weights(weights_of(model), weights_of(release.model)) and tokenizer.get_vocab() == release.tokenizer.get_vocab()
    assert victim.history[-1]["step"] == victim_config(toy_preset("tiny", run)).train.steps  # the fine-tune schedule
    fine_tune, fine_indices = train_run("tiny", Run("resnet", "patch", "baddist+badmatch", 6, variant="target"), "cpu")
    assert set(starts[-1]) == {"image_encoder_init"} and torch.equal(fine_indices, indices)
    assert not same_weights(weights_of(fine_tune.model), weights_of(victim.model))  # two cache entries, two victims
