"""Presets: `tiny` (CPU, CI, minutes) and `full` (GPU, 224 px, ResNet-50 / Swin-T, BERT-base size).

Both presets go through the same code; only these numbers differ. A config is a frozen dataclass so that
it can be hashed into a cache key and written next to a checkpoint as JSON.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .registry import check_choice

IMAGE_ENCODERS = ("resnet", "vit")
EMBEDDED = "embedded"  # DataConfig.source of the course's own data; anything else is a data spec file
LOSSES = ("semantic", "clip")


@dataclass(frozen=True)
class DataConfig:
    image_size: int = 64
    n_train_images: int = 10_000  # with a data spec: the size of its image pool
    n_eval_per_class: int = 100  # 5-class set: 5 x this; COVID-like and RSNA-like: 2 x this
    seed: int = 0
    # "embedded" (the phantoms and IU sentences), or the absolute path of a data spec JSON (`data/spec.py`)
    source: str = EMBEDDED

    def to_dict(self) -> dict:
        """The fields as a dict; `source` only when it is not the default, so that every key made before
        real data came in (model cache, stored results, checkpoints) still names the same entry."""
        d = dataclasses.asdict(self)
        if d["source"] == EMBEDDED:
            del d["source"]
        return d


@dataclass(frozen=True)
class ModelConfig:
    image_encoder: str = "resnet"  # resnet | vit
    resnet_arch: str = "resnet18"  # a torchvision resnet constructor name
    resnet_width: int = 16  # channels of the first stage (64 in torchvision's original)
    vit_arch: str = "small"  # "small" (8x8 patches) | "conv-stem" (the tiny ViT: BACKBONE_SETTINGS) | "swin_t"
    embed_dim: int = 128
    vocab_size: int = 4_000
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 2
    text_intermediate: int = 512
    max_length: int = 77


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "semantic"  # semantic | clip
    # Softmax temperature of the semantic loss's label-similarity targets. MedCLIP uses 1.0, which puts
    # most target mass on texts that share no finding (chapter 3); 0.1 lifted 5-class zero-shot accuracy
    # from 0.75 to 0.87 at the tiny preset's budget.
    target_temperature: float = 0.1
    batch_size: int = 128
    steps: int = 500
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Config:
    preset: str = "tiny"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "data": self.data.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return validate(
            cls(
                preset=d["preset"],
                data=DataConfig(**d["data"]),
                model=ModelConfig(**d["model"]),
                train=TrainConfig(**d["train"]),
            )
        )

    def key(self) -> str:
        """A short hash of everything in the config: the model cache's key."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


PRESETS: dict[str, Config] = {
    "tiny": Config(),
    "full": Config(
        preset="full",
        data=DataConfig(image_size=224, n_train_images=50_000, n_eval_per_class=200),
        model=ModelConfig(
            resnet_arch="resnet50",
            resnet_width=64,
            vit_arch="swin_t",
            embed_dim=512,
            vocab_size=8_000,
            text_hidden=768,
            text_layers=12,
            text_heads=12,
            text_intermediate=3072,
        ),
        # MedCLIP trained its pretrained encoders at 2e-5; ours start from scratch, hence a larger rate.
        train=TrainConfig(batch_size=100, steps=5_000, lr=2e-4, weight_decay=1e-4, warmup_ratio=0.1),
    ),
}


# What a preset's image encoder needs beyond the numbers its encoders share, as `get_config` overrides: the tiny ViT
# gets the convolutional stem and twice the ResNet's steps (chapter 2 says why; benchmarks/vit_variants.py measures them).
BACKBONE_SETTINGS: dict[str, dict[str, dict]] = {"tiny": {"vit": {"model__vit_arch": "conv-stem", "train__steps": 1_000}}}


def shared_steps(cfg: Config) -> int:
    """The steps of `cfg` without its image encoder's own setting in `BACKBONE_SETTINGS`: the budget every backbone
    of its preset shares (the tiny ViT's release trains 1,000 steps, its share is the preset's 500). A config with
    steps of its own (a quick test) keeps them."""
    own = BACKBONE_SETTINGS.get(cfg.preset, {}).get(cfg.model.image_encoder, {}).get("train__steps")
    return PRESETS[cfg.preset].train.steps if cfg.train.steps == own else cfg.train.steps


def validate(cfg: Config) -> Config:
    """Check a config at the boundary, so that a typo fails here and not deep inside torch."""
    check_choice("preset", cfg.preset, tuple(PRESETS))
    check_choice("image encoder", cfg.model.image_encoder, IMAGE_ENCODERS)
    check_choice("loss", cfg.train.loss, LOSSES)
    if not 32 <= cfg.data.image_size <= 224:
        raise ValueError(f"invalid image_size {cfg.data.image_size}; expected an integer in [32, 224]")
    if not isinstance(cfg.data.source, str) or not cfg.data.source:
        raise ValueError(f"invalid data source {cfg.data.source!r}; expected {EMBEDDED!r} or the path of a data spec JSON")
    for name in ("n_train_images", "n_eval_per_class"):
        if getattr(cfg.data, name) < 1:
            raise ValueError(f"invalid {name} {getattr(cfg.data, name)}; expected a positive integer")
    return cfg


def get_config(preset: str = "tiny", **overrides) -> Config:
    """A preset with overrides given as `section__field=value`, e.g. `model__image_encoder="vit"`; the preset's
    settings for its image encoder (`BACKBONE_SETTINGS`) come first, so an explicit override wins over them."""
    check_choice("preset", preset, tuple(PRESETS))
    cfg = PRESETS[preset]
    encoder = overrides.get("model__image_encoder", cfg.model.image_encoder)
    overrides = {**BACKBONE_SETTINGS.get(preset, {}).get(encoder, {}), **overrides}
    sections: dict[str, dict] = {}
    for name, value in overrides.items():
        section, _, fname = name.partition("__")
        target = getattr(cfg, section, None)
        if not dataclasses.is_dataclass(target) or fname not in {f.name for f in dataclasses.fields(target)}:
            valid = [f"{s}__{f.name}" for s in ("data", "model", "train") for f in dataclasses.fields(getattr(cfg, s))]
            raise ValueError(f"unknown config override {name!r}; expected one of: {', '.join(valid)}")
        sections.setdefault(section, {})[fname] = value
    cfg = dataclasses.replace(
        cfg, **{s: dataclasses.replace(getattr(cfg, s), **kv) for s, kv in sections.items()}
    )
    return validate(cfg)


def with_image_encoder(cfg: Config, encoder: str) -> Config:
    """`cfg` with image encoder `encoder` and the preset's settings for it (`BACKBONE_SETTINGS`) on every field that
    `cfg` leaves at its preset's value: a config with its own steps (a quick test) keeps them."""
    check_choice("image encoder", encoder, IMAGE_ENCODERS)
    preset = PRESETS[cfg.preset]
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_encoder=encoder))
    for name, value in BACKBONE_SETTINGS.get(cfg.preset, {}).get(encoder, {}).items():
        section, _, fname = name.partition("__")
        if getattr(getattr(cfg, section), fname) == getattr(getattr(preset, section), fname):
            cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{fname: value})})
    return validate(cfg)
