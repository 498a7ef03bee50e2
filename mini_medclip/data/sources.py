"""Where a config's data comes from: the embedded phantoms, or real radiographs named by a data spec.

`Config.data.source` says which, so it is part of every cache key and checkpoint. The experiments read
their data through `load_data`, so a run on real data goes through the same training, attacks, defenses
and scores as the course's own.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import EMBEDDED, Config, DataConfig
from .embedded import embedded_data, phantom_fingerprint
from .pools import EvalSet, ImagePool, TextPool
from .spec import load_spec_data, spec_fingerprint


def load_data(cfg: Config) -> tuple[ImagePool, TextPool, dict[str, EvalSet]]:
    """(image pool, text pool, evaluation sets) of `cfg`: built once per process and data config."""
    if cfg.data.source == EMBEDDED:
        return embedded_data(cfg)
    data = load_spec_data(cfg.data.source, cfg.data.image_size)
    return data.image_pool, data.text_pool, data.eval_sets


def data_fingerprint(data_cfg: DataConfig) -> str:
    """What the model cache keys the data on: the renderer's output, or the spec and the files it lists."""
    return phantom_fingerprint(data_cfg) if data_cfg.source == EMBEDDED else spec_fingerprint(data_cfg.source)


def with_data_spec(cfg: Config, spec) -> Config:
    """`cfg` reading the data of a spec file: its source and its image pool's size (poison rates are shares of it)."""
    spec = str(Path(spec).absolute())
    n_images = len(load_spec_data(spec, cfg.data.image_size).image_pool)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=spec, n_train_images=n_images))


def data_record(cfg: Config) -> dict:
    """Which data a run used, for its metrics.json: the spec's card (files, digests, counts), or the
    embedded data's seed, size and fingerprint."""
    if cfg.data.source != EMBEDDED:
        return load_spec_data(cfg.data.source, cfg.data.image_size).card
    return {"source": EMBEDDED, "fingerprint": phantom_fingerprint(cfg.data), **cfg.data.to_dict()}


__all__ = ["data_fingerprint", "data_record", "load_data", "with_data_spec"]
