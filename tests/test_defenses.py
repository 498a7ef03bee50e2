"""Defenses: metric orientation, the registry, and each defense on data where the right answer is known.

The detectors are checked on a small planted pool: grey 16 px images whose finding is a bright block at a
class-specific place, a few abnormal images given a patch trigger and relabelled "No Finding" (BadMatch),
and a stub model whose image encoder is a fixed linear map, so that what the encoder can see is chosen
by the test.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mini_medclip.attacks.badmatch import choose_poison_indices, poison_image_pool
from mini_medclip.attacks.triggers import PatchTrigger
from mini_medclip.data.labels import FIVE_CLASS_TASK, NUM_LABELS, label_index
from mini_medclip.data.pools import InMemoryImagePool
from mini_medclip.defenses import (
    DECREE, DEFENSES, STRIP, ActivationClustering, CleanCLIP, FineTune, LabelConsistency, SpectralSignatures,
    decision_threshold, defense_effectiveness_rate, detection_auroc, found_among, label_groups, make_defense,
    prediction_entropy_bits, roc_points, tpr_at_fpr,
)
from helpers import tiny_config, untrained_tiny_model

SIZE = 16
TRIGGER = PatchTrigger(size=3, margin=1, position="bottom-right")
NO_FINDING = label_index("No Finding")


# ----------------------------------------------------------------------------------------------------------
# Planted data


def planted_pool(per_class: int = 60, n_poisons: int = 8, seed: int = 0):
    """(poisoned pool, is_poisoned): 5 findings + normals, `n_poisons` triggered findings relabelled normal."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.arange(6).repeat_interleave(per_class)  # 0..4: the 5-class findings, 5: No Finding
    images = 0.3 * torch.rand(len(classes), 1, SIZE, SIZE, generator=g)
    labels = torch.zeros(len(classes), NUM_LABELS)
    for i, c in enumerate(classes.tolist()):
        if c < 5:
            images[i, :, 1:4, 3 * c : 3 * c + 3] = 0.8
            labels[i, label_index(FIVE_CLASS_TASK[c])] = 1
        else:
            labels[i, NO_FINDING] = 1
    clean = InMemoryImagePool(images, labels)
    indices = choose_poison_indices(labels, count=n_poisons, seed=seed)
    pool = poison_image_pool(clean, indices, TRIGGER)
    is_poisoned = torch.zeros(len(pool), dtype=torch.bool)
    is_poisoned[pool.poisoned_indices] = True
    return pool, is_poisoned


class LinearImageModel(nn.Module):
    """A stand-in for MedCLIP's image side: `encode_image` = a fixed random linear map, L2-normalised.

    `sees_trigger=False` zeroes the weights of the trigger's pixels: an encoder that never learned it.
    """

    def __init__(self, sees_trigger: bool = True, dim: int = 16, seed: int = 0):
        super().__init__()
        weight = torch.randn(SIZE * SIZE, dim, generator=torch.Generator().manual_seed(seed))
        if not sees_trigger:
            blank = torch.zeros(1, 1, SIZE, SIZE)
            weight[TRIGGER(blank).flatten() > 0] = 0
        self.weight = nn.Parameter(weight)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize((images.flatten(1) - 0.5) @ self.weight, dim=1)


# ----------------------------------------------------------------------------------------------------------
# Metrics


def test_auroc_is_one_for_a_perfect_detector_and_zero_for_reversed_scores():
    truth = torch.tensor([0, 0, 0, 1, 1])
    scores = torch.tensor([0.1, 0.2, 0.3, 0.8, 0.9])
    assert detection_auroc(scores, truth) == 1.0
    assert detection_auroc(-scores, truth) == 0.0
    fpr, tpr, _ = roc_points(scores, truth.bool())
    assert (fpr[1:] >= fpr[:-1]).all() and tpr[-1] == 1
    assert tpr[fpr == 0].max() == 1  # perfect: every poison found before the first false positive


@pytest.mark.parametrize("truth", [[0, 0, 0], [1, 1, 1]])
def test_detection_metrics_refuse_ground_truth_with_one_class(truth):
    with pytest.raises(ValueError, match="both clean"):
        detection_auroc([0.1, 0.2, 0.3], truth)
    with pytest.raises(ValueError, match="both clean"):
        tpr_at_fpr([0.1, 0.2, 0.3], truth)


def test_detection_metrics_reject_mismatched_lengths_and_non_binary_truth():
    with pytest.raises(ValueError, match="3 scores for 2"):
        detection_auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="expected 0/1"):
        detection_auroc([0.1, 0.2, 0.3], [0, 1, 2])


def test_tpr_at_fpr_sets_the_threshold_on_the_clean_scores_only():
    clean = torch.arange(20.0)  # 0..19
    poisons = torch.tensor([16.5, 17.0, 18.0, 25.0])
    scores = torch.cat([clean, poisons])
    truth = torch.cat([torch.zeros(20), torch.ones(4)])
    tpr, threshold, achieved = tpr_at_fpr(scores, truth, fpr=0.1)  # 2 of 20 clean may be flagged: 18 and 19
    assert threshold == 17.0 and achieved == pytest.approx(0.1)
    assert tpr == pytest.approx(0.5)  # 18 and 25 are above 17; 16.5 and the tie at 17 are not
    assert tpr_at_fpr(scores, truth, fpr=0.0)[:2] == (0.25, 19.0)
    with pytest.raises(ValueError, match="invalid fpr 1.5"):
        tpr_at_fpr(scores, truth, fpr=1.5)


def test_found_among_counts_recorded_poisons_in_the_top_of_the_ranking():
    scores = torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])
    assert found_among(scores, [0, 1, 2]) == 2  # top 3 = 0, 2, 4
    assert found_among(scores, [0, 1, 2], budget=5) == 2
    assert found_among(scores, [0, 1, 2], budget=6) == 3
    with pytest.raises(ValueError, match="invalid budget 7"):
        found_among(scores, [0], budget=7)
    with pytest.raises(ValueError, match=r"expected indices in \[0, 6\)"):
        found_among(scores, [6])


def test_der_worked_example_and_clipping_of_unhelpful_changes():
    assert defense_effectiveness_rate(ba_before=0.8, asr_before=0.9, ba_after=0.7, asr_after=0.1) == pytest.approx(0.85)
    # ASR going up and BA going up both count as no change: DER 0.5, not below or above it.
    assert defense_effectiveness_rate(0.7, 0.5, 0.8, 0.6) == pytest.approx(0.5)
    assert defense_effectiveness_rate(0.8, 0.9, 0.6, 0.9) == pytest.approx(0.4)  # only a BA loss
    assert defense_effectiveness_rate(1.0, 1.0, 0.0, 0.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="invalid asr_after 1.2"):
        defense_effectiveness_rate(0.8, 0.9, 0.7, 1.2)


# ----------------------------------------------------------------------------------------------------------
# Registry and groups


def test_registry_builds_every_defense_by_name_and_lists_the_names_on_a_typo():
    assert sorted(DEFENSES) == sorted(
        ["spectral", "activation-clustering", "label-consistency", "strip", "decree", "finetune", "cleanclip"]
    )
    assert make_defense("decree", steps=7).steps == 7
    assert all(make_defense(name).name == name for name in DEFENSES)
    with pytest.raises(ValueError, match="unknown defense 'spectrall'; expected one of: activation-clustering, cleanclip"):
        make_defense("spectrall")
    with pytest.raises(ValueError, match="unknown parameter.*nb_dims.*expected some of: n_dims"):
        make_defense("activation-clustering", nb_dims=5)


def test_label_groups_put_every_relabelled_image_in_the_no_finding_group():
    pool, is_poisoned = planted_pool()
    groups = label_groups(pool.labels)
    assert (groups[is_poisoned] == NO_FINDING).all()
    assert (groups[~is_poisoned] != NO_FINDING).sum() == 5 * 60 - is_poisoned.sum()
    assert label_groups(torch.zeros(2, NUM_LABELS)).tolist() == [NUM_LABELS, NUM_LABELS]


# ----------------------------------------------------------------------------------------------------------
# Data detectors


def test_spectral_signatures_flag_triggered_images_in_the_no_finding_group():
    pool, is_poisoned = planted_pool()
    scores = SpectralSignatures().score(LinearImageModel(), pool)
    assert scores.shape == (len(pool),) and torch.isfinite(scores).all()
    assert detection_auroc(scores, is_poisoned) > 0.9
    assert found_among(scores, is_poisoned.nonzero().flatten()) >= 6  # of 8 poisons, within a budget of 8


def test_spectral_signatures_score_groups_below_the_minimum_size_zero():
    embeddings = torch.randn(30, 8)
    labels = torch.zeros(30, NUM_LABELS)
    labels[:25, NO_FINDING] = 1
    labels[25:, label_index("Edema")] = 1
    scores = SpectralSignatures(min_group_size=10).score_embeddings(embeddings, labels)
    assert (scores[25:] == 0).all() and (scores[:25] > 0).all()
    assert scores[:25].median() == pytest.approx(1.0, abs=0.05)  # each scored group is scaled to median 1


def test_activation_clustering_flags_the_poison_cluster_but_not_clean_groups():
    pool, is_poisoned = planted_pool()
    scores = ActivationClustering().score(LinearImageModel(), pool)
    assert scores.shape == (len(pool),) and torch.isfinite(scores).all()
    assert detection_auroc(scores, is_poisoned) > 0.9
    clean_findings = label_groups(pool.labels) != NO_FINDING
    assert (scores[clean_findings] == 0).all()  # the "smaller cluster" rule would flag a cluster in each


def test_label_consistency_catches_relabelled_findings_when_the_encoder_sees_the_finding():
    pool, is_poisoned = planted_pool()
    scores = LabelConsistency(k=20).score(LinearImageModel(sees_trigger=False), pool)
    assert scores.shape == (len(pool),) and ((scores >= 0) & (scores <= 1)).all()
    assert detection_auroc(scores, is_poisoned) > 0.9
    with pytest.raises(ValueError, match="k=20 neighbours need more than 20 images"):
        LabelConsistency(k=20).score_embeddings(torch.randn(20, 4), pool.labels[:20])


def test_label_consistency_weakens_when_the_encoder_groups_the_poisons_by_their_trigger():
    pool, is_poisoned = planted_pool()  # 8 poisons; k = 5 lets a poison's neighbours be poisons only
    poisoned_indices = is_poisoned.nonzero().flatten()
    blind = LabelConsistency(k=5).score(LinearImageModel(sees_trigger=False), pool)
    seeing = LabelConsistency(k=5).score(LinearImageModel(sees_trigger=True), pool)
    assert found_among(blind, poisoned_indices) == 8
    assert found_among(seeing, poisoned_indices) < 8


@pytest.mark.parametrize("name", ["spectral", "activation-clustering", "label-consistency"])
def test_data_detectors_score_every_image_of_a_real_model_finitely(name):
    model, _, (image_pool, _, _) = untrained_tiny_model()
    scores = make_defense(name).score(model, image_pool)
    assert scores.shape == (len(image_pool),) and scores.dtype == torch.float32 and torch.isfinite(scores).all()


# ----------------------------------------------------------------------------------------------------------
# STRIP


class CornerClassifier:
    """Two classes; the first wins by as much as the top-left 4x4 block is brighter than mid-grey."""

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        corner = images[:, 0, :4, :4].mean((1, 2))
        return torch.stack([20 * (corner - 0.5), torch.zeros_like(corner)], dim=1)


def test_strip_scores_inputs_that_dominate_every_blend_as_suspicious():
    g = torch.Generator().manual_seed(0)
    references = torch.rand(50, 1, SIZE, SIZE, generator=g)
    clean = torch.rand(40, 1, SIZE, SIZE, generator=g)
    trojaned = clean.clone()
    trojaned[:, :, :4, :4] = 1.0
    strip = STRIP(n_blends=10).fit(CornerClassifier(), references)
    clean_scores, trojaned_scores = strip.score(clean), strip.score(trojaned)
    assert clean_scores.shape == (40,) and clean_scores.max() < trojaned_scores.min()
    strip.calibrate(clean, frr=0.1)
    assert strip.flag(trojaned).all() and strip.flag(clean).float().mean() <= 0.1
    assert prediction_entropy_bits(torch.zeros(1, 2)).item() == pytest.approx(1.0)
    with pytest.raises(RuntimeError, match="not fitted"):
        STRIP().score(clean)


def test_strip_runs_on_a_zero_shot_classifier():
    from mini_medclip.zeroshot import ZeroShotClassifier, class_prompts_for

    model, tokenizer, (image_pool, text_pool, eval_sets) = untrained_tiny_model()
    classifier = ZeroShotClassifier(model, tokenizer, class_prompts_for(eval_sets["covid"], text_pool, n=2))
    strip = STRIP(n_blends=4).fit(classifier, image_pool.batch(range(10)))
    scores = strip.score(eval_sets["covid"].images.batch(range(8)))
    assert scores.shape == (8,) and torch.isfinite(scores).all() and (scores <= 0).all() and (scores >= -1).all()


# ----------------------------------------------------------------------------------------------------------
# DECREE


class ShortcutEncoder(nn.Module):
    """A linear encoder; with `shortcut`, a bright top-left 3x3 block pulls every embedding to one point."""

    def __init__(self, shortcut: bool):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(SIZE * SIZE, 8, generator=g) / SIZE)
        self.target = nn.Parameter(torch.randn(8, generator=g))
        self.shortcut = shortcut

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = (images.flatten(1) - 0.5) @ self.weight
        if self.shortcut:
            corner = images[:, :, :3, :3].mean((1, 2, 3))
            out = out + 5 * F.softplus(10 * (corner - 0.7))[:, None] * self.target
        return out


def test_decree_needs_a_much_smaller_trigger_to_collapse_an_encoder_with_a_shortcut():
    images = torch.rand(200, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    clean, backdoored = (DECREE().scan(ShortcutEncoder(shortcut), images) for shortcut in (False, True))
    for result in (clean, backdoored):
        assert result.details["collapsed"] and 0 < result.details["pl1_norm"] <= 1
        assert result.details["mask"].shape == (SIZE, SIZE)
    assert backdoored.details["pl1_norm"] < 0.25 * clean.details["pl1_norm"]
    assert backdoored.score > clean.score


def test_decree_respects_its_step_cap_and_leaves_the_model_as_it_was():
    model, _, (image_pool, _, _) = untrained_tiny_model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = DECREE(steps=5, batch_size=8, stop_patience=100).scan(model, image_pool.batch(range(40)))
    assert result.details["steps"] == 5
    assert 0 < result.details["pl1_norm"] <= 1 and torch.isfinite(torch.tensor(result.score))
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_decree_threshold_sits_below_the_clean_norms():
    clean = [0.2, 0.3, 0.25]
    threshold = decision_threshold(clean)
    assert 0 < threshold < min(clean)
    assert decision_threshold(clean, false_alarm_rate=0.01) < threshold
    with pytest.raises(ValueError, match=r"false_alarm_rate 0.7 must lie in \(0, 0.5\)"):
        decision_threshold(clean, false_alarm_rate=0.7)
    with pytest.raises(ValueError, match="expected at least 2 clean encoders"):
        decision_threshold([0.3])
    with pytest.raises(ValueError, match=r"PL1 norms in \(0, 1\]"):
        decision_threshold([0.0, 0.3])


@pytest.mark.parametrize("n_clean", [3, 5])
def test_decree_threshold_flags_its_false_alarm_rate_of_fresh_clean_encoders(n_clean):
    # clean encoders whose ln PL1 is normal: calibrate on n_clean of them, then scan one more
    log_norms = torch.randn(4000, n_clean + 1, generator=torch.Generator().manual_seed(n_clean)) * 0.3 - 5
    norms = log_norms.exp()
    flagged = [fresh < decision_threshold(calibration) for *calibration, fresh in norms.tolist()]
    assert abs(sum(flagged) / len(flagged) - 0.05) < 0.015


# ----------------------------------------------------------------------------------------------------------
# Mitigations


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_finetune_and_cleanclip_change_a_copy_and_leave_the_input_model_alone():
    model, tokenizer, (image_pool, text_pool, _) = untrained_tiny_model()
    before = _weights(model)
    defenses = {
        "finetune": FineTune(steps=2, config=tiny_config()),
        "cleanclip": CleanCLIP(steps=2, config=tiny_config()),
        "cleanclip, weight 0": CleanCLIP(steps=2, config=tiny_config(), inmodal_weight=0.0),
    }
    repaired = {}
    for key, defense in defenses.items():
        out_model, out_tokenizer = defense.apply(model, tokenizer, image_pool, text_pool)
        assert out_tokenizer is tokenizer and out_model is not model
        repaired[key] = {k: p.detach().clone() for k, p in out_model.named_parameters()}
        assert any(not torch.equal(before[k], p) for k, p in repaired[key].items())
    assert all(torch.equal(before[k], v) for k, v in _weights(model).items())
    # Same batches, augmentations and dropout: only the in-modal term's weight differs between the two.
    assert any(not torch.equal(repaired["cleanclip"][k], p) for k, p in repaired["cleanclip, weight 0"].items())


def test_finetune_config_keeps_the_victims_settings_but_its_own_budget():
    victim = tiny_config(train__target_temperature=0.3)
    cfg = FineTune(steps=3, lr=1e-5, batch_size=4, config=victim).fine_tune_config()
    assert (cfg.train.steps, cfg.train.lr, cfg.train.batch_size) == (3, 1e-5, 4)
    assert cfg.train.target_temperature == 0.3 and cfg.model == victim.model
    with pytest.raises(ValueError, match="invalid steps 0"):
        FineTune(steps=0)


# ----------------------------------------------------------------------------------------------------------
# evaluate_defense / the `defend` verb: every role's output layout, on an untrained model and tiny data


@pytest.fixture
def fake_victims(monkeypatch):
    import mini_medclip.experiments.defense_eval as evaluate_module
    from mini_medclip.train import TrainResult

    model, tokenizer, data = untrained_tiny_model()
    small = (data[0], data[1], {name: data[2][name] for name in data[2]})
    monkeypatch.setattr(evaluate_module, "load_data", lambda cfg: small)
    monkeypatch.setattr(evaluate_module, "base_config", lambda preset, run: tiny_config())  # the fake model's size
    monkeypatch.setattr(evaluate_module, "train_run", lambda preset, run, device=None: (
        TrainResult(model, tokenizer), torch.tensor([1, 2, 3, 4, 5][: run.count], dtype=torch.long)))
    return model


FAST = {"decree": {"steps": 4, "batch_size": 4}, "finetune": {"steps": 2}, "cleanclip": {"steps": 2},
        "strip": {"n_blends": 4}}


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_evaluate_defense_writes_the_documented_layout(name, fake_victims):
    from mini_medclip.experiments.defense_eval import evaluate_defense

    result = evaluate_defense(name, "tiny", "badmatch", 0.0005, **FAST.get(name, {}))
    assert result["defense"] == name
    if name in ("finetune", "cleanclip"):
        m = result["mitigation"]
        assert set(m) == {"ba_before", "asr_before", "ba_after", "asr_after", "der"} and 0 <= m["der"] <= 1
    else:
        d = result["detection"]
        assert {"auroc", "tpr_at_fpr", "fpr", "found", "poisoned"} <= set(d)
        expected = {"decree": 1, "strip": None}.get(name, 5)  # encoders / triggered test images / records
        assert d["poisoned"] == expected if expected is not None else d["poisoned"] > 0
        assert d["auroc"] is None or 0 <= d["auroc"] <= 1


def test_a_repaired_model_is_cached_by_victim_and_settings(fake_victims, monkeypatch, isolated_model_cache):
    from mini_medclip.experiments.defense_eval import evaluate_defense

    first = evaluate_defense("cleanclip", "tiny", "badmatch", 0.0005, steps=2)
    assert len(list(isolated_model_cache.iterdir())) == 1

    def unreachable(self, *args):
        raise AssertionError("a cached repair was recomputed")

    with monkeypatch.context() as patch:
        patch.setattr(CleanCLIP, "apply", unreachable)
        assert evaluate_defense("cleanclip", "tiny", "badmatch", 0.0005, steps=2) == first
    evaluate_defense("cleanclip", "tiny", "badmatch", 0.0005, steps=2, inmodal_weight=0.5)  # other settings
    evaluate_defense("finetune", "tiny", "badmatch", 0.0005, steps=2)  # another mitigation
    evaluate_defense("cleanclip", "tiny", "badmatch", 0.001, steps=2)  # another victim
    assert len(list(isolated_model_cache.iterdir())) == 4


def test_evaluate_defense_rejects_bad_settings(fake_victims):
    from mini_medclip.experiments.defense_eval import evaluate_defense

    with pytest.raises(ValueError, match="'prayer'"):
        evaluate_defense("prayer")
    with pytest.raises(ValueError, match="'badnets'.*clean, badmatch, baddist\\+badmatch"):
        evaluate_defense("spectral", attack="badnets")
    with pytest.raises(ValueError, match="1.5"):
        evaluate_defense("spectral", rate=1.5)


@pytest.mark.parametrize("name, method", [("decree", "scan"), ("spectral", "score")])
def test_a_scan_or_detection_is_stored_by_victim_and_settings(name, method, fake_victims, monkeypatch, isolated_model_cache):
    import mini_medclip.experiments.defense_eval as evaluate_module
    from mini_medclip.train import TrainResult

    model, tokenizer, _ = untrained_tiny_model()
    monkeypatch.setattr(evaluate_module, "train_run", lambda preset, run, device=None: (
        TrainResult(model, tokenizer, cache_key={"run": run.key()}), torch.tensor([1, 2, 3, 4, 5][: run.count], dtype=torch.long)))
    settings = FAST.get(name, {})
    first = evaluate_module.evaluate_defense(name, "tiny", "badmatch", 0.0005, **settings)
    cls = type(make_defense(name))
    calls = []
    original = getattr(cls, method)
    with monkeypatch.context() as patch:
        patch.setattr(cls, method, lambda self, *args: pytest.fail(f"a stored {name} result was recomputed"))
        assert evaluate_module.evaluate_defense(name, "tiny", "badmatch", 0.0005, **settings) == first
    with monkeypatch.context() as patch:  # another victim, then other settings: computed again
        patch.setattr(cls, method, lambda self, *args: calls.append(1) or original(self, *args))
        evaluate_module.evaluate_defense(name, "tiny", "badmatch", 0.001, **settings)
        n_other_victim = len(calls)
        evaluate_module.evaluate_defense(name, "tiny", "badmatch", 0.0005, **{**settings, "seed": 3} if name == "decree"
                                         else {"min_group_size": 3})
    assert n_other_victim >= 1 and len(calls) > n_other_victim


def test_a_defense_with_settings_that_are_not_data_is_not_stored():
    from mini_medclip.experiments.defense_eval import defense_settings

    detector = SpectralSignatures()
    assert defense_settings(detector)["defense"] == "spectral"
    detector.reference = torch.zeros(3)  # a tensor cannot key the store
    assert defense_settings(detector) is None
