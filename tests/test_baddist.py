"""BadDist: the two losses, the settings, and the tampering loop's invariants."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import same_weights, untrained_tiny_model, weights_of
from mini_medclip.attacks.baddist import (
    ENCODER_SETTINGS, BadDistConfig, badencoder_loss, baddist_config, baddist_loss, embedding_drift, freeze_normalisation,
    tamper_image_encoder,
)


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
    ({"shadow": "borrowed"}, ["'borrowed'", "victim-pool", "disjoint"]),
    ({"optimizer": "rmsprop"}, ["'rmsprop'", "sgd", "adam"]),
])
def test_bad_baddist_settings_name_the_value(params, words):
    with pytest.raises(ValueError) as err:
        BadDistConfig(**params)
    assert all(w in str(err.value) for w in words)


def test_the_default_shadow_source_stays_out_of_the_settings_that_key_the_cache():
    assert "shadow" not in BadDistConfig().to_dict()  # releases cached before the field keep their keys
    assert BadDistConfig(shadow="disjoint").to_dict()["shadow"] == "disjoint"
    assert BadDistConfig(**BadDistConfig(shadow="disjoint").to_dict()) == BadDistConfig(shadow="disjoint")


def test_the_default_optimizer_stays_out_of_the_cache_key_and_each_encoder_gets_its_own_settings():
    assert "optimizer" not in BadDistConfig().to_dict()  # the ResNet's releases keep their keys
    adam = BadDistConfig(optimizer="adam", lr=3e-4)
    assert adam.to_dict()["optimizer"] == "adam" and BadDistConfig(**adam.to_dict()) == adam
    assert baddist_config("resnet", variant="target") == BadDistConfig(variant="target")
    vit = baddist_config("vit", trigger="fourier")
    assert vit.trigger == "fourier" and {name: getattr(vit, name) for name in ENCODER_SETTINGS["vit"]} == ENCODER_SETTINGS["vit"]
    assert baddist_config("vit", lr=1e-3).lr == 1e-3  # an explicit setting wins


def test_freeze_normalisation_fixes_batchnorm_statistics_and_affine_parameters():
    model, _, _ = untrained_tiny_model()
    encoder = copy.deepcopy(model.image_encoder).train()
    freeze_normalisation(encoder)
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.training and not any(p.requires_grad for p in m.parameters()) for m in norms)
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.weight.requires_grad for m in convs)


@pytest.mark.parametrize("variant, optimizer, lr", [("away", "sgd", 1e-2), ("target", "sgd", 1e-2), ("target", "adam", 1e-3)])
def test_tampering_moves_triggered_embeddings_and_leaves_the_clean_encoder_alone(variant, optimizer, lr):
    model, _, (pool, _, _) = untrained_tiny_model()
    clean = model.image_encoder
    before = weights_of(clean)
    stats_before = {k: v.clone() for k, v in clean.state_dict().items() if "running" in k}
    bcfg = BadDistConfig(variant=variant, epochs=8, batch_size=20, lr=lr, shadow_images=60, optimizer=optimizer)
    target = _unit(clean.projection.out_features, seed=3)
    tampered, history = tamper_image_encoder(clean, pool.batch(range(60)), bcfg, target, progress=False)
    assert len(history) == 8 and same_weights(weights_of(clean), before)
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
