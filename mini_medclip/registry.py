"""Choosing by name: one check for a value among valid choices, one builder for a class among registered ones.

Configs, runs, triggers and defenses all take names from users; the error always names the bad value and
the valid choices, raised where the name comes in.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping


def check_choice(what: str, value, valid: Iterable) -> None:
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"invalid {what} {value!r}; expected one of: {', '.join(map(str, valid))}")


def build_named(kind: str, registry: Mapping[str, type], name: str, params: dict):
    """`registry[name](**params)`, after checking the name and that every parameter is one the class accepts."""
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; expected one of: {', '.join(sorted(registry))}")
    cls = registry[name]
    accepted = [p for p in inspect.signature(cls).parameters]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for {kind} {name!r}; expected some of: {', '.join(accepted)}")
    return cls(**params)
