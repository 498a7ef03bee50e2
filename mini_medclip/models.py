"""The MedCLIP model: a BERT text encoder, a ResNet or ViT image encoder, and a learnable temperature.

Everything is built from a `ModelConfig` with random weights (no hub downloads). MedCLIP starts from
Bio_ClinicalBERT and ImageNet weights; here both towers learn from scratch, which is why the `tiny` preset
is small enough to train on a laptop CPU.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from transformers import BertConfig, BertModel

from .config import ModelConfig

# MedCLIP's grey-level statistics (its constants.py), applied inside the image encoder so that everything
# outside the model, backdoor triggers included, lives in plain [0, 1] pixel space.
IMG_MEAN = 0.5862785803043838
IMG_STD = 0.27950088968644304
# CLIP's temperature: initialised at 1/0.07 and capped at 100 (MedCLIP clamps log-scale to [0, log 100]).
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100)


# ----------------------------------------------------------------------------------------------------------
# Text


def masked_layer_mean_pool(
    hidden_states: tuple[torch.Tensor, ...] | list[torch.Tensor],
    attention_mask: torch.Tensor,
    layers: tuple[int, ...] = (1, 2, -1),
    masked: bool = True,
) -> torch.Tensor:
    """MedCLIP's sentence embedding: mean over tokens, then mean over the chosen layers -> (B, H).

    `hidden_states[0]` is the embedding output, so (1, 2, -1) = first, second and last transformer layer;
    with a 2-layer BERT the last layer is layer 2 and is simply counted twice. MedCLIP's own code takes a
    plain token mean (`masked=False`), so [PAD] positions dilute the embedding and a sentence's vector depends
    on how long the longest sentence in its batch was; `masked=True` averages only the real tokens.
    """
    stacked = torch.stack([hidden_states[i] for i in layers])  # (K, B, L, H)
    if masked:
        weights = attention_mask[None, :, :, None].to(stacked.dtype)  # (1, B, L, 1)
        token_mean = (stacked * weights).sum(2) / weights.sum(2).clamp(min=1)
    else:
        token_mean = stacked.mean(2)
    return token_mean.mean(0)


class TextEncoder(nn.Module):
    """A randomly initialised BERT, pooled as above, projected to the joint space (no bias, as MedCLIP)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, masked_pooling: bool = True):
        super().__init__()
        bert_cfg = BertConfig(
            vocab_size=vocab_size,  # the trained tokenizer's size, which may be below cfg.vocab_size
            hidden_size=cfg.text_hidden,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            intermediate_size=cfg.text_intermediate,
            max_position_embeddings=cfg.max_length,  # the tokenizer truncates to this length
            pad_token_id=0,  # [PAD] is the tokenizer's id 0
            output_hidden_states=True,
        )
        self.bert = BertModel(bert_cfg, add_pooling_layer=False)
        self.masked_pooling = masked_pooling
        self.projection = nn.Linear(cfg.text_hidden, cfg.embed_dim, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden_states = self.bert(input_ids=input_ids, attention_mask=attention_mask).hidden_states
        pooled = masked_layer_mean_pool(hidden_states, attention_mask, masked=self.masked_pooling)
        return self.projection(pooled)


# ----------------------------------------------------------------------------------------------------------
# Images


def _resnet_backbone(arch: str, width: int) -> tuple[nn.Module, int]:
    """A torchvision ResNet with a 1-channel stem and `width` channels in its first stage (64 = torchvision's).

    The stem (7x7 stride-2 conv + max-pool) is torchvision's: at 64 px it leaves 16x16 maps for the first
    stage. The CIFAR-style 3x3 stride-1 stem without max-pool keeps 64x64 maps there and made a CPU step
    about 15x slower, too slow for the tiny preset.
    """
    net = getattr(torchvision.models, arch)(weights=None)
    block = type(net.layer1[0])
    net.conv1 = nn.Conv2d(1, width, kernel_size=7, stride=2, padding=3, bias=False)
    if width != 64:  # rebuild the four stages narrower; torchvision hard-codes 64-128-256-512
        net.bn1, net.inplanes = nn.BatchNorm2d(width), width
        for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
            depth = len(getattr(net, name))
            setattr(net, name, net._make_layer(block, width * 2**i, depth, stride=1 if i == 0 else 2))
    for m in net.modules():  # torchvision's init, for the convs replaced above
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    net.fc = nn.Identity()
    return net, width * 8 * block.expansion


def _conv_stem(width: int) -> nn.Sequential:
    """Three stride-2 3x3 convolutions and a 1x1 projection: the "early convolutions" of Xiao et al. (2021) in place
    of the 8x8 patch projection, same token grid, which makes a small ViT far easier to train on little data."""
    layers, channels = [], 1
    for out in (width // 4, width // 2, width):
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers, nn.Conv2d(width, width, 1))


def _vit_backbone(arch: str, image_size: int) -> tuple[nn.Module, int]:
    """"small": a 4-layer ViT with 8x8 patches for small inputs; "conv-stem": the same transformer fed by a
    convolutional stem; "swin_t": Swin-Tiny, MedCLIP's "ViT"."""
    if arch in ("small", "conv-stem"):
        net = torchvision.models.VisionTransformer(
            image_size=image_size, patch_size=8, num_layers=4, num_heads=4, hidden_dim=128, mlp_dim=256
        )
        patch = net.conv_proj
        if arch == "conv-stem":
            net.conv_proj = _conv_stem(net.hidden_dim)
        else:
            net.conv_proj = nn.Conv2d(1, patch.out_channels, kernel_size=patch.kernel_size, stride=patch.stride)
            nn.init.trunc_normal_(net.conv_proj.weight, std=math.sqrt(1 / (patch.kernel_size[0] * patch.kernel_size[1])))
            nn.init.zeros_(net.conv_proj.bias)
        net.heads = nn.Identity()  # the class token's final state
        return net, net.hidden_dim
    if arch == "swin_t":
        net = torchvision.models.swin_t(weights=None)
        patch = net.features[0][0]
        net.features[0][0] = nn.Conv2d(1, patch.out_channels, kernel_size=patch.kernel_size, stride=patch.stride)
        feature_dim = net.head.in_features
        net.head = nn.Identity()  # the average-pooled final stage
        return net, feature_dim
    raise ValueError(f"invalid vit_arch {arch!r}; expected one of: small, conv-stem, swin_t")


class ImageEncoder(nn.Module):
    """Grey-scale images (B, 1, H, W) in [0, 1] -> (B, embed_dim), normalising with MedCLIP's statistics first."""

    def __init__(self, cfg: ModelConfig, image_size: int):
        super().__init__()
        if cfg.image_encoder == "resnet":
            self.backbone, feature_dim = _resnet_backbone(cfg.resnet_arch, cfg.resnet_width)
            # NHWC convolutions: ~25% faster per step on CPU here, and what tensor cores prefer on GPU.
            self.backbone.to(memory_format=torch.channels_last)
            self.channels_last = True
        elif cfg.image_encoder == "vit":
            self.backbone, feature_dim = _vit_backbone(cfg.vit_arch, image_size)
            self.channels_last = False
        else:
            raise ValueError(f"invalid image_encoder {cfg.image_encoder!r}; expected one of: resnet, vit")
        self.image_size = image_size
        self.projection = nn.Linear(feature_dim, cfg.embed_dim, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - IMG_MEAN) / IMG_STD
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.projection(self.backbone(x))


# ----------------------------------------------------------------------------------------------------------
# The joint model


class MedCLIP(nn.Module):
    """Two encoders into one L2-normalised space; `forward` gives the (images x texts) scaled cosine logits.

    The temperature cap is applied to the value used in `logits`, so forward never mutates a parameter
    (MedCLIP clamps the parameter in place on every call). Above the cap that clamped value has zero
    gradient, so a training loop should also call `clamp_logit_scale_()` after each optimizer step: the
    parameter then never leaves [0, log 100] and keeps receiving gradient, as in MedCLIP.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, image_size: int, masked_pooling: bool = True):
        super().__init__()
        self.image_encoder = ImageEncoder(cfg, image_size)
        self.text_encoder = TextEncoder(cfg, vocab_size, masked_pooling=masked_pooling)
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(images), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_encoder(input_ids, attention_mask), dim=-1)

    def logits(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """(N_images, N_texts) cosine similarities times exp(logit_scale), the scale capped at 100."""
        scale = self.logit_scale.clamp(0, MAX_LOGIT_SCALE).exp()
        return scale * image_emb @ text_emb.T

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        self.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.logits(self.encode_image(images), self.encode_text(input_ids, attention_mask))


def parameter_counts(model: MedCLIP) -> dict[str, int]:
    """Trainable parameters per tower (projections included) and in total (plus the temperature)."""
    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    return {"image": count(model.image_encoder), "text": count(model.text_encoder), "total": count(model)}
