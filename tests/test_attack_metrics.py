"""Attack metrics: which images the ASR counts, the inflated reference variant, RA, Wilson intervals."""
from __future__ import annotations

import pytest
import torch

from mini_medclip.attacks.metrics import (
    attack_classes, attack_success_rate, attack_success_rate_all_images, benign_accuracy, binomial_ci,
    evaluate_attack, robust_accuracy,
)
from mini_medclip.attacks.triggers import BlendedTrigger, PatchTrigger
from mini_medclip.data.labels import FIVE_CLASS_TASK
from mini_medclip.zeroshot import evaluate_zero_shot
from helpers import untrained_tiny_model

TARGET = 0  # "No Finding", class 0 of the COVID/RSNA-like sets
TRUE = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])  # 60% of the test images are already the target class


def test_asr_counts_only_non_target_images():
    pred = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0, 0, 1])  # 3 of the 4 non-target images flipped
    assert attack_success_rate(pred, TRUE, TARGET) == pytest.approx(0.75)
    assert robust_accuracy(pred, TRUE, TARGET) == pytest.approx(0.25)
    assert attack_success_rate_all_images(pred, TARGET) == pytest.approx(0.3)


def test_a_model_that_ignores_the_trigger_gets_asr_zero_but_asr_all_equal_to_the_target_share():
    pred_triggered = TRUE.clone()  # a perfect clean model whose predictions the trigger never changes
    assert attack_success_rate(pred_triggered, TRUE, TARGET) == 0.0
    assert attack_success_rate_all_images(pred_triggered, TARGET) == pytest.approx((TRUE == TARGET).float().mean().item())
    assert robust_accuracy(pred_triggered, TRUE, TARGET) == 1.0
    assert benign_accuracy(pred_triggered, TRUE) == 1.0


def test_metrics_refuse_mismatched_or_target_only_inputs():
    with pytest.raises(ValueError, match="equal counts"):
        attack_success_rate(torch.tensor([0, 1]), TRUE, TARGET)
    with pytest.raises(ValueError, match="non-target"):
        attack_success_rate(torch.zeros(3), torch.zeros(3), TARGET)
    with pytest.raises(ValueError, match="empty"):
        benign_accuracy([], [])


def test_wilson_interval_matches_the_formula_and_contains_the_estimate():
    low, high = binomial_ci(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    for successes, n in [(0, 20), (20, 20), (3, 7), (499, 500)]:
        low, high = binomial_ci(successes, n)
        assert 0 <= low <= successes / n <= high <= 1 and high > low
    assert binomial_ci(0, 20)[0] == 0.0 and binomial_ci(20, 20)[1] == 1.0
    assert binomial_ci(50, 100, level=0.99)[1] - binomial_ci(50, 100, level=0.99)[0] > binomial_ci(50, 100)[1] - binomial_ci(50, 100)[0]
    with pytest.raises(ValueError, match="successes"):
        binomial_ci(11, 10)


@pytest.fixture(scope="module")
def tiny_model():
    return untrained_tiny_model()


def test_the_target_is_added_as_a_class_only_when_the_task_lacks_it(tiny_model):
    _, _, (_, _, eval_sets) = tiny_model
    assert attack_classes(eval_sets["five_class"], "No Finding") == ((*FIVE_CLASS_TASK, "No Finding"), 5)
    assert attack_classes(eval_sets["covid"], "No Finding") == (("No Finding", "COVID"), 0)


def test_evaluate_attack_ba_is_the_zero_shot_protocol_and_an_invisible_trigger_is_consistent(tiny_model):
    model, tokenizer, (_, text_pool, eval_sets) = tiny_model
    identity = BlendedTrigger(alpha=0.0)
    for name in ("covid", "five_class"):
        result = evaluate_attack(model, tokenizer, eval_sets[name], text_pool, identity, n_runs=2)
        zero_shot = evaluate_zero_shot(model, tokenizer, eval_sets[name], text_pool, n_runs=2)
        assert [r["ba"] for r in result["runs"]] == pytest.approx([r["acc"] for r in zero_shot["runs"]])
        for run in result["runs"]:
            if name == "covid":  # binary: a non-target image is either flipped to the target or still correct
                assert run["asr"] + run["robust_acc"] == pytest.approx(1.0)
            else:
                assert run["asr"] + run["robust_acc"] <= 1.0 + 1e-9
        for metric in ("ba", "asr", "asr_all_images", "robust_acc"):
            low, high = result[f"{metric}_ci"]
            assert low <= result[metric] <= high
    assert result["attack_classes"][-1] == "No Finding" and result["n_non_target"] == len(eval_sets["five_class"])


def test_evaluate_attack_on_a_visible_trigger_reports_every_metric(tiny_model):
    model, tokenizer, (_, text_pool, eval_sets) = tiny_model
    result = evaluate_attack(model, tokenizer, eval_sets["rsna"], text_pool, PatchTrigger(size=4), n_runs=3, seed=5)
    assert len(result["runs"]) == 3 and result["n_non_target"] == 4 and result["n_images"] == 8
    assert result["trigger"].startswith("PatchTrigger(")
    for metric in ("ba", "asr", "asr_all_images", "robust_acc"):
        assert 0 <= result[metric] <= 1 and result[f"{metric}_std"] >= 0
