"""The trigger geometry: pairwise collapse, the margin to the target, and what an idle trigger leaves unchanged."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import untrained_tiny_model
from mini_medclip.attacks.geometry import GEOMETRY, target_margins, trigger_geometry
from mini_medclip.embeddings import mean_pairwise_cosine
from mini_medclip.attacks.triggers import make_trigger


def test_collapse_is_1_for_one_point_0_for_orthogonal_rows_and_needs_a_pair():
    assert mean_pairwise_cosine(torch.ones(5, 3)).item() == pytest.approx(1.0)
    assert mean_pairwise_cosine(torch.eye(4)).item() == pytest.approx(0.0)
    rows = F.normalize(torch.randn(7, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    brute = [(rows[i] @ rows[j]).item() for i in range(7) for j in range(7) if i != j]
    assert mean_pairwise_cosine(3 * rows).item() == pytest.approx(sum(brute) / len(brute), abs=1e-6)
    with pytest.raises(ValueError, match="1 embeddings; expected at least 2"):
        mean_pairwise_cosine(torch.eye(3)[:1])


def test_the_margin_is_the_target_minus_the_best_other_class():
    scores = torch.tensor([[0.1, 0.5, 0.3], [0.6, 0.2, 0.1]])
    assert target_margins(scores, 2).tolist() == pytest.approx([-0.2, -0.5])
    assert target_margins(scores, 0).tolist() == pytest.approx([-0.4, 0.4])


def test_a_trigger_that_changes_nothing_leaves_the_images_where_they_were():
    model, tokenizer, (_, text_pool, eval_sets) = untrained_tiny_model()
    idle = trigger_geometry(model, tokenizer, eval_sets["five_class"], text_pool, lambda images: images)
    assert set(idle) == set(GEOMETRY)
    assert idle["trigger_cos"] == pytest.approx(1.0, abs=1e-5)
    assert idle["triggered_collapse"] == pytest.approx(idle["clean_collapse"], abs=1e-5)
    assert idle["target_margin"] == pytest.approx(idle["clean_target_margin"], abs=1e-5)
    patched = trigger_geometry(model, tokenizer, eval_sets["five_class"], text_pool, make_trigger("patch"))
    assert patched["trigger_cos"] < 1 - 1e-4  # a visible patch moves an untrained encoder's embeddings
