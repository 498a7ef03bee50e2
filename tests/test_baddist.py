"""BadDist: the two losses, the tampering loop's invariants, the victim's start, the cached release."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import mini_medclip.attacks.baddist as baddist_module
import mini_medclip.attacks.badmatch as badmatch_module
import mini_medclip.cache as cache_module
from mini_medclip.attacks.baddist import (
    BadDistConfig, badencoder_loss, baddist_loss, build_baddist_model, embedding_drift, freeze_normalisation,
    build_victim_model, tamper_image_encoder, victim_config,
)
from mini_medclip.attacks.badmatch import BadMatchConfig
from mini_medclip.config import get_config
from mini_medclip.train import train
from test_train import _same_weights, _weights, tiny_config, tiny_data, untrained_tiny_model


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_baddist_loss_is_the_reference_formula():
    a, b, c, d = (_unit(8, 16, seed=s) for s in range(4))
    expected = 5 * -(a * b).sum(1).mean() + 1 * (c * d).sum(1).mean()
    assert torch.allclose(baddist_loss(a, b, c, d), expected)
    # Perfect clean agreement and triggered embeddings opposite the clean encoder's: the minimum, -5 - 1.
    assert torch.allclose(baddist_loss(a, a, c, -c), torch.tensor(-6.0))


def test_badencoder_loss_pulls_toward_the_target():
    a, c = _unit(8, 16, seed=0), _unit(8, 16, seed=1)
    target = _unit(16, seed=2)
    at_target = badencoder_loss(a, a, target.expand(8, 16), target)
    elsewhere = badencoder_loss(a, a, c, target)
    assert torch.allclose(at_target, torch.tensor(-6.0)) and elsewhere > at_target


@pytest.mark.parametrize("params, words", [
    ({"variant": "sideways"}, ["'sideways'", "away", "target"]),
    ({"epochs": 0}, ["epochs", "0", "positive integer"]),
    ({"lr": -1.0}, ["lr", "-1.0", "positive"]),
    ({"trigger": "zap"}, ["'zap'", "patch", "fourier"]),
    ({"target": "Broken Heart"}, ["Broken Heart"]),
])
def test_bad_baddist_settings_name_the_value(params, words):
    with pytest.raises(ValueError) as err:
        BadDistConfig(**params)
    assert all(w in str(err.value) for w in words)


def test_freeze_normalisation_fixes_batchnorm_statistics_and_affine_parameters():
    model, _, _ = untrained_tiny_model()
    encoder = copy.deepcopy(model.image_encoder).train()
    freeze_normalisation(encoder)
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.training and not any(p.requires_grad for p in m.parameters()) for m in norms)
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.weight.requires_grad for m in convs)


@pytest.mark.parametrize("variant", ["away", "target"])
def test_tampering_moves_triggered_embeddings_and_leaves_the_clean_encoder_alone(variant):
    model, _, (pool, _, _) = untrained_tiny_model()
    clean = model.image_encoder
    before = _weights(clean)
    stats_before = {k: v.clone() for k, v in clean.state_dict().items() if "running" in k}
    bcfg = BadDistConfig(variant=variant, epochs=8, batch_size=20, lr=1e-2, shadow_images=60)
    target = _unit(clean.projection.out_features, seed=3)
    tampered, history = tamper_image_encoder(clean, pool.batch(range(60)), bcfg, target, progress=False)
    assert len(history) == 8 and _same_weights(_weights(clean), before)
    # The loss trades the two cosines: "away" drives the triggered cosine down, "target" up.
    first, last = history[0]["trigger_cos"], history[-1]["trigger_cos"]
    assert (last < first) if variant == "away" else (last > first)
    if variant == "target":  # (an untrained encoder ignores the trigger: "away" starts at a flat saddle)
        assert history[-1]["loss"] < history[0]["loss"]
    stats_after = {k: v for k, v in tampered.state_dict().items() if "running" in k}
    assert all(torch.equal(stats_before[k], stats_after[k]) for k in stats_before)  # BatchNorm frozen


def test_target_variant_needs_a_target_embedding():
    model, _, (pool, _, _) = untrained_tiny_model()
    with pytest.raises(ValueError, match="target_embedding"):
        tamper_image_encoder(model.image_encoder, pool.batch(range(8)), BadDistConfig(variant="target"), progress=False)


def test_embedding_drift_is_one_for_the_same_encoder_and_lower_after_tampering():
    model, _, (pool, _, _) = untrained_tiny_model()
    images = pool.batch(range(30))
    assert embedding_drift(model, model, images) == pytest.approx(1.0, abs=1e-5)
    other, _, _ = untrained_tiny_model(seed=1)
    assert embedding_drift(model, other, images) < 0.999


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


def test_release_swaps_only_the_image_encoder_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MINI_MEDCLIP_CACHE", str(tmp_path))
    fake = lambda cfg: tiny_data(size=cfg.data.image_size)  # noqa: E731
    monkeypatch.setattr(cache_module, "embedded_data", fake)
    monkeypatch.setattr(baddist_module, "embedded_data", fake)
    cfg = tiny_config()
    bcfg = BadDistConfig(epochs=2, batch_size=20, shadow_images=40)
    release = build_baddist_model(cfg, bcfg, device="cpu", progress=False)
    clean = baddist_module.clean_pretrained_model(cfg, "cpu")
    assert _same_weights(_weights(release.model.text_encoder), _weights(clean.model.text_encoder))
    assert not _same_weights(_weights(release.model.image_encoder), _weights(clean.model.image_encoder))
    assert len(release.history) == 2
    again = build_baddist_model(cfg, bcfg, device="cpu", progress=False)
    assert _same_weights(_weights(again.model), _weights(release.model))
    assert len(list(tmp_path.iterdir())) == 2  # the clean model and the tampered release


def test_a_cached_victim_is_loaded_without_loading_the_release(tmp_path, monkeypatch):
    monkeypatch.setenv("MINI_MEDCLIP_CACHE", str(tmp_path))
    fake = lambda cfg: tiny_data(size=cfg.data.image_size)  # noqa: E731
    for module in (cache_module, baddist_module, badmatch_module):
        monkeypatch.setattr(module, "embedded_data", fake)
    monkeypatch.setattr(badmatch_module, "_training_labels", lambda cfg: fake(cfg)[0].labels)
    cfg, attack = tiny_config(), BadMatchConfig(rate=0.05)
    bcfg = BadDistConfig(epochs=1, batch_size=20, shadow_images=40)
    victim, indices = build_victim_model(cfg, attack, bcfg, device="cpu")
    assert len(list(tmp_path.iterdir())) == 3  # the clean release, the tampered release, the victim

    def unreachable(*args, **kwargs):
        raise AssertionError("the release was loaded for a cached victim")

    monkeypatch.setattr(baddist_module, "build_baddist_model", unreachable)
    monkeypatch.setattr(baddist_module, "clean_pretrained_model", unreachable)
    again, again_indices = build_victim_model(cfg, attack, bcfg, device="cpu")
    assert _same_weights(_weights(again.model), _weights(victim.model)) and torch.equal(again_indices, indices)
