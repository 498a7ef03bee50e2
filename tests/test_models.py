"""Tokenizer, pooling, encoders and the joint model: shapes, norms, padding invariance, the temperature cap."""
import math
import time

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from mini_medclip.config import PRESETS, get_config, with_image_encoder
from mini_medclip.models import MAX_LOGIT_SCALE, ImageEncoder, MedCLIP, TextEncoder, masked_layer_mean_pool
from mini_medclip.tokenizer import train_tokenizer

SENTENCES = [
    "Mild bibasilar atelectasis.",
    "No pleural effusion or pneumothorax.",
    "The heart size is enlarged, consistent with cardiomegaly.",
    "Patchy consolidation at the right lower lobe.",
    "Interval improvement in pulmonary edema.",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES, vocab_size=300)


def test_tokenizer_round_trip_and_special_tokens(tokenizer):
    ids = tokenizer("Mild bibasilar atelectasis.")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "mild bibasilar atelectasis."
    assert tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]
    assert tokenizer("jejunum")["input_ids"][1] == tokenizer.unk_token_id  # no "j" in the corpus


def test_tokenizer_pads_right_and_truncates_to_77(tokenizer):
    batch = tokenizer(["edema", "edema " * 200], padding=True, truncation=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 77)
    assert batch["input_ids"][1, -1] == tokenizer.sep_token_id
    assert batch["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 74
    assert (batch["input_ids"][0, 3:] == tokenizer.pad_token_id).all()


def test_tokenizer_is_deterministic_and_saves_to_a_local_folder(tokenizer, tmp_path):
    assert train_tokenizer(SENTENCES, vocab_size=300).get_vocab() == tokenizer.get_vocab()
    tokenizer.save_pretrained(tmp_path)
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert loaded.model_max_length == 77 and loaded.padding_side == "right"
    assert loaded(SENTENCES[:5])["input_ids"] == tokenizer(SENTENCES[:5])["input_ids"]


def test_masked_pooling_ignores_padding_and_unmasked_does_not(tokenizer):
    torch.manual_seed(0)
    cfg = get_config("tiny").model
    masked, unmasked = TextEncoder(cfg, len(tokenizer)).eval(), TextEncoder(cfg, len(tokenizer), masked_pooling=False).eval()
    unmasked.load_state_dict(masked.state_dict())
    short = tokenizer(["mild atelectasis"], return_tensors="pt")
    padded = tokenizer(["mild atelectasis"], padding="max_length", max_length=20, return_tensors="pt")
    with torch.no_grad():
        a, b = (masked(s["input_ids"], s["attention_mask"]) for s in (short, padded))
        c, d = (unmasked(s["input_ids"], s["attention_mask"]) for s in (short, padded))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)  # no padding: the two poolings agree
    assert (c - d).abs().max() > 1e-2


def test_pooling_averages_tokens_then_layers():
    hidden = [torch.full((1, 3, 2), float(i)) for i in range(4)]  # embeddings + 3 layers, value = layer index
    hidden[3][0, 2] = 100.0  # the last layer's padding position
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(masked_layer_mean_pool(hidden, mask), torch.full((1, 2), 2.0))  # (1 + 2 + 3) / 3
    assert masked_layer_mean_pool(hidden, mask, masked=False)[0, 0] > 2.0


@pytest.mark.parametrize("encoder, vit_arch", [("resnet", "small"), ("vit", "small"), ("vit", "conv-stem")])
def test_joint_model_shapes_and_unit_norm(tokenizer, encoder, vit_arch):
    cfg = get_config("tiny", model__image_encoder=encoder, model__vit_arch=vit_arch).model
    model = MedCLIP(cfg, len(tokenizer), image_size=64)
    text = tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")
    images = torch.rand(4, 1, 64, 64)
    image_emb = model.encode_image(images)
    text_emb = model.encode_text(text["input_ids"], text["attention_mask"])
    assert image_emb.shape == (4, cfg.embed_dim) and text_emb.shape == (3, cfg.embed_dim)
    torch.testing.assert_close(image_emb.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(text_emb.norm(dim=1), torch.ones(3))
    logits = model(images, text["input_ids"], text["attention_mask"])
    assert logits.shape == (4, 3)
    logits.sum().backward()
    assert model.logit_scale.grad is not None
    assert all(p.grad is not None for p in model.image_encoder.parameters())  # the stem trains with the rest


def test_an_unknown_vit_design_names_the_valid_ones():
    with pytest.raises(ValueError, match="invalid vit_arch 'tiny'.*small, conv-stem, swin_t"):
        ImageEncoder(get_config("tiny", model__image_encoder="vit", model__vit_arch="tiny").model, image_size=64)


def test_the_tiny_vit_gets_its_stem_and_steps_unless_a_config_sets_them():
    vit = get_config("tiny", model__image_encoder="vit")
    assert (vit.model.vit_arch, vit.train.steps) == ("conv-stem", 1_000)
    resnet = get_config("tiny")
    assert resnet == PRESETS["tiny"]  # the ResNet's config, and so its cache key, are the preset's
    assert get_config("tiny", model__image_encoder="vit", train__steps=40).train.steps == 40  # an explicit override wins
    assert with_image_encoder(resnet, "vit") == vit
    quick = with_image_encoder(get_config("tiny", train__steps=5), "vit")
    assert (quick.model.vit_arch, quick.train.steps) == ("conv-stem", 5)  # a quick test keeps its own steps
    assert with_image_encoder(vit, "resnet").model.image_encoder == "resnet"
    assert get_config("full", model__image_encoder="vit").model.vit_arch == "swin_t"  # no settings: the preset's
    with pytest.raises(ValueError, match="invalid image encoder 'lenet'; expected one of: resnet, vit"):
        with_image_encoder(resnet, "lenet")


def test_logit_scale_starts_at_clip_value_and_is_capped_at_100():
    model = MedCLIP(get_config("tiny", model__image_encoder="vit").model, vocab_size=50, image_size=64)
    assert math.isclose(model.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-5)
    emb = torch.nn.functional.normalize(torch.randn(2, 128), dim=1)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    torch.testing.assert_close(model.logits(emb, emb).diagonal(), torch.full((2,), 100.0))
    assert model.logit_scale.item() == 10.0  # the forward pass does not touch the parameter
    model.clamp_logit_scale_()
    assert math.isclose(model.logit_scale.item(), MAX_LOGIT_SCALE, rel_tol=1e-6)


@pytest.mark.parametrize("encoder", ["resnet", "vit"])
def test_full_preset_image_encoders_at_224(encoder):
    start = time.perf_counter()
    cfg = get_config("full", model__image_encoder=encoder).model
    with torch.no_grad():
        out = ImageEncoder(cfg, image_size=224).eval()(torch.rand(1, 1, 224, 224))
    assert out.shape == (1, 512)
    assert time.perf_counter() - start < 10
