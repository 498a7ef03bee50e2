"""InfoNCE and MedCLIP's semantic matching loss: definitions, special cases, false negatives."""
import math

import torch
import torch.nn.functional as F

from mini_medclip.losses import clip_loss, semantic_matching_loss, soft_targets


def one_hot(classes, n_labels=14):
    return F.one_hot(torch.tensor(classes), n_labels).float()


def test_clip_loss_is_symmetric_cross_entropy_on_the_diagonal():
    logits = torch.randn(6, 6)
    targets = torch.arange(6)
    expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    torch.testing.assert_close(clip_loss(logits), expected)


def test_soft_target_rows_sum_to_one():
    image_labels, text_labels = torch.randint(0, 2, (5, 14)).float(), torch.randint(0, 2, (7, 14)).float()
    p_i2t, p_t2i = soft_targets(image_labels, text_labels)
    assert p_i2t.shape == (5, 7) and p_t2i.shape == (7, 5)
    torch.testing.assert_close(p_i2t.sum(1), torch.ones(5))
    torch.testing.assert_close(p_t2i.sum(1), torch.ones(7))


def test_medclip_targets_are_soft_even_for_distinct_labels():
    """At MedCLIP's temperature 1 a matching text gets weight e, every other text weight 1."""
    labels = one_hot([0, 2, 5, 8])
    p_i2t, _ = soft_targets(labels, labels)
    torch.testing.assert_close(p_i2t.diagonal(), torch.full((4,), math.e / (math.e + 3)))


def test_semantic_loss_with_distinct_labels_and_sharp_targets_is_clip_loss():
    logits = torch.randn(5, 5)
    labels = one_hot([0, 2, 5, 8, 10])
    torch.testing.assert_close(semantic_matching_loss(logits, labels, labels, temperature=0.01), clip_loss(logits))


def test_semantic_loss_at_medclip_temperature_is_soft_cross_entropy_both_ways():
    logits, image_labels, text_labels = torch.randn(4, 6), one_hot([0, 2, 2, 5]), one_hot([2, 0, 5, 5, 8, 2])
    s = image_labels @ text_labels.T
    i2t = -(s.softmax(1) * logits.log_softmax(1)).sum(1).mean()
    t2i = -(s.T.softmax(1) * logits.T.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(semantic_matching_loss(logits, image_labels, text_labels), (i2t + t2i) / 2)


def test_false_negative_gets_split_target_mass():
    """Images 0 and 1 both show Cardiomegaly: text 0 is as good a match for image 1 as text 1 is."""
    labels = one_hot([2, 2, 10])
    p_i2t, p_t2i = soft_targets(labels, labels, temperature=0.01)
    torch.testing.assert_close(p_i2t[1], torch.tensor([0.5, 0.5, 0.0]))
    torch.testing.assert_close(p_t2i[0], torch.tensor([0.5, 0.5, 0.0]))
    p_i2t, _ = soft_targets(labels, labels)  # MedCLIP's temperature: still equal mass on both matches
    assert torch.isclose(p_i2t[1, 0], p_i2t[1, 1]) and p_i2t[1, 0] > p_i2t[1, 2]


def test_losses_are_differentiable():
    logits = torch.randn(4, 4, requires_grad=True)
    labels = one_hot([1, 1, 3, 4])
    (semantic_matching_loss(logits, labels, labels) + clip_loss(logits)).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
