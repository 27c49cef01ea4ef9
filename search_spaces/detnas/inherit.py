"""Weight inheritance from a parent detector to its morphed child (Joint-DetNAS, PAPERS.md §3): the
child starts from the parent's weights instead of from scratch, so a few epochs of training suffice.

**Which block comes from which** (:func:`align_blocks`; blocks are ``stages[s][j]`` of a
:class:`~search_spaces.detnas.backbone.DetNASBackbone`):

- equal total depth (``move_downsample``, ``widen``/``narrow``, ``prune``, a teacher-only change):
  blocks map one-to-one in global (stage-major) order -- a block that moved across a stage boundary
  keeps its weights and only its stride/shortcut changes;
- otherwise each stage aligns its leading blocks: child block (s, j) <- parent block (s, j) when the
  parent has it. For ``add_block(s)`` this gives stage s a new *last* block, for ``remove_block(s)``
  stage s loses its last block, and for any other difference (several actions at once) it is the
  fallback. A child block with no parent keeps its fresh init; when it is not a stage's first block
  (so stride 1 and no shortcut) it is also made the identity (:meth:`BasicBlock.init_identity`), so
  an added block leaves the network's function unchanged.

**Pruning**: where a child block's inner width is smaller than its parent block's, the parent block's
inner channels are first sorted by |bn1.weight| descending (:func:`sort_inner_channels`, a
permutation that does not change what the block computes), so the leading slice taken below keeps
the channels with the largest |BN gamma|.

**Copy rule**, for every tensor of the child's ``state_dict`` (parameters and buffers: BN running
statistics and ``num_batches_tracked`` included). Backbone block tensors take the aligned parent
block's tensor of the same name; every other tensor (the stem, and outside ``prefix`` the FPN and
heads) takes the parent's tensor of the same name:

- same shape: copied;
- same number of dimensions, different sizes: the overlapping leading slice ``[:min(a, b), ...]``
  along every dimension is copied into the child's freshly initialised tensor ("sliced");
- no such parent tensor, or a different number of dimensions: the child's fresh init is kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from automl.errors import ConfigError
from search_spaces.detnas.backbone import DetNASBackbone

__all__ = ["InheritReport", "align_blocks", "inherit_weights", "sort_inner_channels"]

Block = tuple[int, int]


@dataclass
class InheritReport:
    """How each tensor of the child's state was obtained, and which blocks had no parent block
    (module names in the child, e.g. ``backbone.stages.1.2``)."""

    copied: int
    sliced: int
    fresh: int
    added_blocks: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.copied + self.sliced + self.fresh

    def __str__(self) -> str:
        text = f"inherited {self.total} tensors: {self.copied} copied, {self.sliced} sliced, {self.fresh} fresh"
        if self.added_blocks:
            text += "; added blocks " + ", ".join(self.added_blocks)
        return text


def align_blocks(parent_depths: Sequence[int], child_depths: Sequence[int]) -> dict[Block, Block | None]:
    """For every child block (s, j), the parent block it inherits from, or None (see the module docs)."""
    child_blocks = [(s, j) for s, d in enumerate(child_depths) for j in range(d)]
    if sum(parent_depths) == sum(child_depths):
        parent_blocks = [(s, j) for s, d in enumerate(parent_depths) for j in range(d)]
        return dict(zip(child_blocks, parent_blocks))
    return {(s, j): (s, j) if s < len(parent_depths) and j < parent_depths[s] else None for s, j in child_blocks}


# Tensors of a BasicBlock that carry its inner channels, and along which dimension.
_INNER = (("conv1.weight", 0), ("conv1.bias", 0), ("bn1.weight", 0), ("bn1.bias", 0),
          ("bn1.running_mean", 0), ("bn1.running_var", 0), ("conv2.weight", 1))


def sort_inner_channels(state: Mapping[str, Tensor], block: str) -> dict[str, Tensor]:
    """A copy of ``state`` whose block ``block`` (a key prefix such as ``"backbone.stages.1.0."``) has
    its inner channels ordered by |bn1.weight| descending: conv1's output channels, bn1's parameters
    and statistics and conv2's input channels are permuted together, so the block computes the same
    function. ``state`` itself is not modified."""
    if block + "bn1.weight" not in state:
        raise KeyError(f"no {block}bn1.weight in the state")
    order = torch.argsort(state[block + "bn1.weight"].detach().abs(), descending=True, stable=True)
    out = dict(state)
    for name, dim in _INNER:
        key = block + name
        if key in out:
            out[key] = out[key].detach().index_select(dim, order.to(out[key].device))
    return out


def _depths(cfg: Mapping[str, Any], what: str) -> tuple[int, ...]:
    try:
        stages = cfg["stages"]
        return tuple(int(stage["depth"]) for stage in stages)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{what} must be a detnas config's model part with stages[i].depth ({exc!r} missing)",
                          field="model.stages") from None


def _backbone(child: nn.Module, prefix: str) -> DetNASBackbone:
    if prefix and not prefix.endswith("."):
        raise ValueError(f"prefix must be '' or end with '.', got {prefix!r}")
    try:
        backbone = child.get_submodule(prefix[:-1]) if prefix else child
    except AttributeError:
        raise ValueError(f"the child has no module {prefix[:-1]!r} (prefix {prefix!r})") from None
    if not isinstance(backbone, DetNASBackbone):
        raise ValueError(f"{prefix[:-1] or 'the child'} is a {type(backbone).__name__}, not a DetNASBackbone")
    return backbone


def inherit_weights(child: nn.Module, parent_state: Mapping[str, Tensor], parent_cfg: Mapping[str, Any],
                    child_cfg: Mapping[str, Any], *, prefix: str = "backbone.") -> InheritReport:
    """Load ``parent_state`` (the parent detector's ``state_dict``) into ``child`` in place, following
    the block alignment, pruning order and copy rule of the module docs. ``parent_cfg``/``child_cfg``
    are the ``model`` parts of the two configs; the child's backbone is the :class:`DetNASBackbone` at
    ``prefix`` (``""``: ``child`` is the backbone). ``parent_state`` is not modified."""
    parent_depths, child_depths = _depths(parent_cfg, "parent_cfg"), _depths(child_cfg, "child_cfg")
    backbone = _backbone(child, prefix)
    if backbone.depths != child_depths:
        raise ValueError(f"child_cfg says depths {child_depths}, but the child's backbone has {backbone.depths}")
    for s, depth in enumerate(parent_depths):
        for j in (0, depth - 1, depth):
            present = f"{prefix}stages.{s}.{j}.conv1.weight" in parent_state
            if present != (j < depth):
                raise ValueError(f"parent_cfg says stage {s} has depth {depth}, but parent_state "
                                 f"{'lacks' if j < depth else 'has'} {prefix}stages.{s}.{j}")

    alignment = align_blocks(parent_depths, child_depths)
    source: dict[str, Tensor] = dict(parent_state)
    for (s, j), found in alignment.items():
        if found is None:
            continue
        parent_block = f"{prefix}stages.{found[0]}.{found[1]}."
        if backbone.blocks(s)[j].conv1.out_channels < source[parent_block + "bn1.weight"].shape[0]:
            source = sort_inner_channels(source, parent_block)

    stages_prefix = prefix + "stages."
    copied = sliced = fresh = 0
    with torch.no_grad():
        for key, dst in child.state_dict(keep_vars=True).items():
            src_key: str | None = key
            if key.startswith(stages_prefix):
                s_text, j_text, tail = key[len(stages_prefix):].split(".", 2)
                found = alignment[(int(s_text), int(j_text))]
                src_key = None if found is None else f"{stages_prefix}{found[0]}.{found[1]}.{tail}"
            src = source.get(src_key) if src_key is not None else None
            if src is None or src.dim() != dst.dim():
                fresh += 1
            elif src.shape == dst.shape:
                dst.copy_(src)
                copied += 1
            else:
                overlap = tuple(slice(0, min(a, b)) for a, b in zip(src.shape, dst.shape))
                dst[overlap].copy_(src[overlap])
                sliced += 1

    added = []
    for (s, j), found in alignment.items():
        if found is None:
            added.append(f"{stages_prefix}{s}.{j}")
            if j > 0:
                backbone.blocks(s)[j].init_identity()
    return InheritReport(copied=copied, sliced=sliced, fresh=fresh, added_blocks=added)
