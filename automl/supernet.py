"""The weight-sharing contract: a space whose builder is shareable compiles to one supernet.

A :class:`SuperNet` holds the union of a space's choices (elastic depth, width by channel slicing,
kernel size by centre cropping, op choice by parallel branches); ``forward(x, config)`` runs the
sub-network of one candidate with the shared weights, and ``extract(config)`` returns that
sub-network as a standalone ``nn.Module`` with copied weights (for export and further training).
A builder is shareable when a supernet factory is registered under the builder's name (for a
``package.module:function`` builder, under that string, by that module):

    @supernets.register("cnn")
    def build_cnn_supernet(space: SearchSpace, info: ClassificationInfo) -> SuperNet: ...
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, TypeVar

import torch
from torch import nn

from automl.registry import Registry, resolve_builder

#: builder name -> ``factory(space, task_info) -> SuperNet``
supernets: Registry[Callable[..., SuperNet]] = Registry("supernets", "supernet")


def find_supernet(builder: str) -> Callable[..., SuperNet] | None:
    """The supernet factory of ``builder``, or None when it is not shareable.

    A ``package.module:function`` builder is looked up after importing its module, so the module's
    own ``@supernets.register("package.module:function")`` counts.
    """
    if builder in supernets:
        return supernets.get(builder)
    if ":" in builder:
        resolve_builder(builder)
        if builder in supernets:
            return supernets.get(builder)
    return None


class SuperNet(nn.Module, ABC):
    """A module whose weights every candidate of a space shares."""

    @abstractmethod
    def forward(self, x: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
        """Run the sub-network of ``config`` (the builder's part of the config, e.g. ``config["model"]``)."""

    @abstractmethod
    def extract(self, config: Mapping[str, Any]) -> nn.Module:
        """The sub-network of ``config`` as a standalone module with copied weights; for the same
        input it computes exactly what ``forward(x, config)`` computes."""


Built = TypeVar("Built")


def build_untouched(build: Callable[..., Built], *args: Any) -> Built:
    """``build(*args)`` with torch's global RNG left as it was: building a stand-alone copy to
    extract into initialises weights, which must not shift the caller's random stream."""
    with torch.random.fork_rng(devices=[]):
        return build(*args)


def build_sequential(build: Callable[..., object], config: Mapping[str, Any], info: Any, owner: str) -> nn.Sequential:
    """``build(config, info)`` (RNG untouched), checked to be the ``nn.Sequential`` whose layers
    ``automl.elastic.surgery.substitute_layers`` replaces with extracted copies."""
    model = build_untouched(build, config, info)
    if not isinstance(model, nn.Sequential):
        raise RuntimeError(f"{owner}: {getattr(build, '__name__', build)} no longer returns an nn.Sequential")
    return model
