"""Training: unpaired batch sampling, optimizer groups, determinism, and resume == uninterrupted run."""
from __future__ import annotations

import pytest
import torch

from helpers import one_hot, same_weights, tiny_config, tiny_data, untrained_tiny_model, weights_of
from mini_medclip.checkpoint import CheckpointError, load_checkpoint
from mini_medclip.config import get_config
from mini_medclip.data.labels import label_index
from mini_medclip.models import MedCLIP
from mini_medclip.train import UnpairedBatchSampler, _parameter_groups, encode_text_in_length_groups, tokenize_pool, train


def test_sampler_pairs_each_image_with_a_sentence_that_shares_a_positive_label():
    image_pool, text_pool, _ = tiny_data()
    sampler = UnpairedBatchSampler(image_pool.labels, text_pool.labels, batch_size=64, seed=3)
    for _ in range(5):
        images, texts = sampler.sample()
        shared = (image_pool.labels[images] > 0) & (text_pool.labels[texts] > 0)
        assert shared.any(1).all()


def test_sampler_is_deterministic_by_seed_and_draws_images_independently_of_reports():
    image_pool, text_pool, _ = tiny_data()
    draws = [UnpairedBatchSampler(image_pool.labels, text_pool.labels, 32, seed).sample() for seed in (0, 0, 1)]
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert not torch.equal(draws[0][0], draws[2][0])
    # Two images of one class get different sentences of that class over a few batches (random, not paired).
    sampler = UnpairedBatchSampler(image_pool.labels, text_pool.labels, 256, 0)
    images, texts = sampler.sample()
    assert len(set(texts[images == 0].tolist())) > 1


def test_sampler_falls_back_to_no_finding_sentences_for_an_image_no_sentence_matches():
    _, text_pool, _ = tiny_data()
    lone = one_hot("Fracture")[None]  # no sentence in the pool is positive for Fracture
    _, texts = UnpairedBatchSampler(lone, text_pool.labels, 16, 0).sample()
    assert (text_pool.labels[texts, label_index("No Finding")] == 1).all()


def test_parameter_groups_exempt_biases_norms_and_temperature_from_weight_decay():
    cfg = tiny_config()
    model = MedCLIP(cfg.model, vocab_size=200, image_size=32)
    decay, no_decay = _parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(p is model.logit_scale for p in no_decay["params"])
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("groups", [2, 4, 7])
def test_length_groups_give_the_padded_batchs_text_embeddings_and_gradients(groups):
    model, tokenizer, (_, text_pool, _) = untrained_tiny_model()
    ids, mask = tokenize_pool(tokenizer, text_pool.sentences)
    lengths = mask.sum(1)
    assert lengths.min() < lengths.max()  # sentences of several lengths, so the groups are cut narrower
    padded = model.encode_text(ids, mask)
    grouped = encode_text_in_length_groups(model, ids, mask, groups=groups)
    assert torch.allclose(grouped, padded, atol=1e-5)  # same rows, same order
    weight = model.text_encoder.projection.weight
    (grad_padded,) = torch.autograd.grad(padded.square().sum(), weight)
    (grad_grouped,) = torch.autograd.grad(grouped.square().sum(), weight)
    assert torch.allclose(grad_grouped, grad_padded, atol=1e-4)


def test_unmasked_pooling_keeps_the_one_padded_batch():
    model, tokenizer, (_, text_pool, _) = untrained_tiny_model()
    model.text_encoder.masked_pooling = False  # MedCLIP's own pooling averages the padding in
    ids, mask = tokenize_pool(tokenizer, text_pool.sentences)
    assert torch.equal(encode_text_in_length_groups(model, ids, mask), model.encode_text(ids, mask))


@pytest.mark.parametrize("loss", ["semantic", "clip"])
def test_training_is_deterministic_and_logs_loss_lr_and_validation(loss):
    cfg = tiny_config(train__loss=loss)
    data = tiny_data()
    runs = [train(cfg, *data, device="cpu", progress=False, log_every=2, val_every=4) for _ in range(2)]
    assert same_weights(weights_of(runs[0].model), weights_of(runs[1].model))
    history = runs[0].history
    assert [row["step"] for row in history] == [2, 4, 6]
    assert [(r["loss"], r["val_acc"]) for r in history] == [(r["loss"], r["val_acc"]) for r in runs[1].history]
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in history)
    assert history[0]["val_acc"] is None and 0 <= history[1]["val_acc"] <= 1 and history[2]["val_acc"] is not None
    assert history[-1]["lr"] < history[0]["lr"]  # cosine decay towards 0
    assert runs[0].seconds > 0


def test_a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path):
    cfg = tiny_config(train__steps=8)
    data = tiny_data()
    reference = train(cfg, *data, device="cpu", progress=False, log_every=2)

    out = tmp_path / "run"
    first = train(cfg, *data, device="cpu", out_dir=out, progress=False, log_every=2, save_every=100, max_steps_this_call=3)
    assert not same_weights(weights_of(first.model), weights_of(reference.model))
    resumed = train(cfg, *data, device="cpu", out_dir=out, progress=False, log_every=2)
    assert same_weights(weights_of(resumed.model), weights_of(reference.model))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in reference.history]

    loaded, _, loaded_cfg = load_checkpoint(out)
    assert loaded_cfg == cfg and same_weights(weights_of(loaded), weights_of(reference.model))
    # A finished run is not trained again; a different config refuses the folder.
    again = train(cfg, *data, device="cpu", out_dir=out, progress=False)
    assert same_weights(weights_of(again.model), weights_of(reference.model)) and again.history == resumed.history
    with pytest.raises(CheckpointError, match="another config"):
        train(tiny_config(train__steps=9), *data, device="cpu", out_dir=out, progress=False)


@pytest.mark.parametrize("encoder", ["resnet", "vit"])
def test_full_preset_runs_the_same_code_path_for_two_steps(encoder):
    """The GPU preset (224 px, ResNet-50 / Swin-T, BERT-base size) trains on the CPU too: only the sizes differ."""
    cfg = get_config("full", model__image_encoder=encoder, train__batch_size=2, train__steps=2)
    image_pool, text_pool, _ = tiny_data(size=cfg.data.image_size, n_images=6)
    result = train(cfg, image_pool, text_pool, device="cpu", progress=False, log_every=1)
    assert [row["step"] for row in result.history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)
    assert result.model.image_encoder.projection.out_features == 512
