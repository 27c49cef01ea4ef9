"""The text-task contract: token-id tensors for masked-LM pre-training and for classification.

A text task yields padded token-id matrices; a model derives its attention mask as ``ids != pad_id``.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar, Mapping

import torch

from automl.errors import ConfigError
from automl.tasks.base import Task
from automl.tasks.supervised import ClassificationInfo

#: label value of tokens that are not predicted (PyTorch's cross-entropy ``ignore_index``)
IGNORE_INDEX = -100


@dataclass(frozen=True)
class TextTaskInfo(ClassificationInfo):
    """Shapes a text model needs: ``input_shape == (max_len,)``, the vocabulary and special tokens."""

    vocab_size: int
    max_len: int
    pad_id: int
    mask_id: int
    cls_id: int
    sep_id: int

    @property
    def special_ids(self) -> tuple[int, ...]:
        """The ids that are never masked nor drawn as random replacements."""
        return tuple(sorted({self.pad_id, self.mask_id, self.cls_id, self.sep_id}))


@dataclass(frozen=True)
class TextData:
    """Unlabelled sequences for masked-LM, and a labelled classification split (all padded with pad_id).

    ``corpus``/``corpus_val``: (N, max_len) long; ``train_ids``/``val_ids``: (N, max_len) long, first
    token ``cls_id``; ``train_y``/``val_y``: (N,) long class labels.

    The test split, when the task has one, is held out of every search: ``test_ids``/``test_y``
    (labelled, like ``val_ids``/``val_y``) and ``corpus_test`` (held-out masked-LM sequences). None of
    its sequences occurs in the other fields; estimators score it only when the trial asks for it (a
    pipeline's ``train`` step, :attr:`automl.estimator.EvalContext.scores_test`).
    """

    corpus: torch.Tensor
    corpus_val: torch.Tensor
    train_ids: torch.Tensor
    train_y: torch.Tensor
    val_ids: torch.Tensor
    val_y: torch.Tensor
    test_ids: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    corpus_test: torch.Tensor | None = None

    @property
    def has_test(self) -> bool:
        return self.test_ids is not None and self.test_y is not None

    def without_test(self) -> TextData:
        """The same data without its test split (what a search trial is handed)."""
        return replace(self, test_ids=None, test_y=None, corpus_test=None)


class TextTask(Task):
    """Base class of text tasks (register with ``@tasks.register(name)``)."""

    family: ClassVar[str] = "text"
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "max", "loss": "min", "mlm_accuracy": "max"}

    @property
    @abstractmethod
    def info(self) -> TextTaskInfo:
        """Cheap (no heavy loading): spaces read it at load time."""

    @abstractmethod
    def load(self) -> TextData:
        """The data; deterministic, and may be cached within the instance."""

    def example_input(self) -> torch.Tensor:
        """``[CLS] w w ... w [SEP]`` of ``max_len`` tokens, ``w`` the first id that is not special (a
        model's cost does not depend on which tokens it reads)."""
        info = self.info
        word = next(i for i in range(info.vocab_size) if i not in info.special_ids)
        ids = torch.full((1, info.max_len), word, dtype=torch.long)
        ids[0, 0], ids[0, -1] = info.cls_id, info.sep_id
        return ids


def mask_tokens(ids: torch.Tensor, info: TextTaskInfo, generator: torch.Generator,
                probability: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: of the chosen non-special tokens 80% -> mask_id, 10% random, 10% kept; labels -100 elsewhere.

    Each non-special token is chosen independently with ``probability``; random replacements are drawn
    uniformly from the non-special ids (a choice: BERT draws from the whole vocabulary, but a random
    [PAD]/[CLS] would change the attention mask). Returns ``(inputs, labels)``; ``ids`` is not modified.
    """
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(f"mask_tokens: probability must be in [0, 1], got {probability}")
    specials = torch.tensor(info.special_ids, dtype=ids.dtype, device=ids.device)
    special = torch.isin(ids, specials)
    chosen = (torch.rand(ids.shape, generator=generator) < probability).to(ids.device) & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    roll = torch.rand(ids.shape, generator=generator).to(ids.device)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = info.mask_id
    randoms = torch.randint(0, info.vocab_size - len(info.special_ids), ids.shape, generator=generator)
    for special_id in info.special_ids:  # ascending: shift each draw past the special ids at or below it
        randoms += (randoms >= special_id).long()
    randoms = randoms.to(ids.device, ids.dtype)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = randoms[swap]
    return inputs, labels
