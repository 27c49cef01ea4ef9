"""Builder ``autobert``: the hybrid BERT backbones of AutoBERT-Zero (OP-NAS), and their BIWS supernet.

A backbone is a stack of layers; each layer is an attention cell (a graph of parameter-free
primitives over linear projections Q, K, V of its input, see :mod:`search_spaces.autobert_ops`) or a
lightweight convolution block (GLU projection + depthwise 1-D convolution with a kernel choice), and
each is followed by residual + LayerNorm and BERT's feed-forward block. Embeddings, the residual
output blocks, the feed-forward blocks, the pooler and the masked-LM head are ``transformers``' BERT
modules, so a backbone whose cells are all vanilla attention is BERT.

The convolution block follows the lightweight convolutions of AutoBERT-Zero's released code (a
choice: GLU input projection, then a depthwise convolution; the paper's kernel list includes 65,
which only fits sequences of at least 65 tokens).

``build_autobert_supernet`` is the Bi-branch Weight-Sharing (BIWS) supernet: every layer holds an
attention branch and a convolution branch; all cells of a layer share its Q/K/V/O projections (the
ops have no parameters), convolution kernels share the largest kernel by centre cropping, and the
feed-forward block and heads are shared by both branches.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import (
    BertEmbeddings,
    BertIntermediate,
    BertOnlyMLMHead,
    BertOutput,
    BertPooler,
    BertSelfOutput,
)

from automl.elastic.layers import ElasticDepthwiseConv1d, center_crop_kernel
from automl.registry import builders, space_checks
from automl.space.graph import Graph
from automl.space.model import SearchSpace
from automl.space.nodes import Categorical, Group, Node, Repeat
from automl.supernet import SuperNet, build_untouched, supernets
from automl.tasks.base import tasks
from automl.tasks.text import TextTaskInfo
from search_spaces.autobert_ops import CELL, INPUTS, CellProgram

ATTN, CONV = "attn", "conv"
DEFAULTS = {"hidden": 64, "heads": 2, "ffn": 128, "dropout": 0.1}

BertModule = TypeVar("BertModule", bound=nn.Module)


def _bert_module(cls: Callable[[BertConfig], BertModule], config: BertConfig) -> BertModule:
    """``cls(config)``: a ``transformers`` BERT module, whose ``__init__(config)`` has no annotations."""
    return cls(config)


def bert_config(model: Mapping[str, Any], info: TextTaskInfo) -> BertConfig:
    """The ``transformers`` config of a backbone: sizes from the model config, vocabulary from the task."""
    sizes = {key: model.get(key, default) for key, default in DEFAULTS.items()}
    if sizes["hidden"] % sizes["heads"]:
        raise ValueError(f"hidden size {sizes['hidden']} is not divisible by {sizes['heads']} heads")
    return BertConfig(vocab_size=info.vocab_size, hidden_size=int(sizes["hidden"]),
                      num_hidden_layers=len(model["layers"]), num_attention_heads=int(sizes["heads"]),
                      intermediate_size=int(sizes["ffn"]), max_position_embeddings=info.max_len,
                      hidden_dropout_prob=float(sizes["dropout"]), attention_probs_dropout_prob=float(sizes["dropout"]),
                      pad_token_id=info.pad_id, type_vocab_size=2)


class AttentionMixer(nn.Module):
    """Q, K, V projections, a primitive cell per head, then BERT's output projection + residual + LayerNorm."""

    def __init__(self, config: BertConfig, cell: CellProgram | None = None) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.heads = config.num_attention_heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.output = _bert_module(BertSelfOutput, config)
        self.cell = cell

    def forward(self, h: torch.Tensor, token_mask: torch.Tensor, cell: CellProgram | None = None) -> torch.Tensor:
        program = cell if cell is not None else self.cell
        if program is None:
            raise ValueError("an attention branch without a cell needs one per call")
        batch, length, hidden = h.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        mixed = program.run(split(self.query(h)), split(self.key(h)), split(self.value(h)), token_mask)
        out: torch.Tensor = self.output(mixed.transpose(1, 2).reshape(batch, length, hidden), h)
        return out


class ConvMixer(nn.Module):
    """GLU projection, depthwise 1-D convolution (padded tokens zeroed first), output + residual + LayerNorm."""

    def __init__(self, config: BertConfig, max_kernel: int, kernel: int | None = None) -> None:
        super().__init__()
        self.project = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        self.conv = ElasticDepthwiseConv1d(config.hidden_size, max_kernel)
        self.output = _bert_module(BertSelfOutput, config)
        self.kernel = kernel if kernel is not None else max_kernel

    def forward(self, h: torch.Tensor, token_mask: torch.Tensor, kernel: int | None = None) -> torch.Tensor:
        x = F.glu(self.project(h), dim=-1) * token_mask[..., None].to(h.dtype)
        x = self.conv(x.transpose(1, 2), kernel if kernel is not None else self.kernel).transpose(1, 2)
        out: torch.Tensor = self.output(x, h)
        return out


class FeedForward(nn.Module):
    """BERT's feed-forward block with its residual + LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.intermediate = _bert_module(BertIntermediate, config)
        self.output = _bert_module(BertOutput, config)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.output(self.intermediate(h), h)
        return out


class _Backbone(nn.Module):
    """Embeddings, feed-forward blocks and the two heads (classification on [CLS], masked-LM tied to
    the word embeddings) that a backbone and its supernet have in common."""

    def __init__(self, config: BertConfig, num_classes: int) -> None:
        super().__init__()
        if config.pad_token_id is None:
            raise TypeError("the BERT config needs a pad_token_id (the token mask is ids != pad_token_id)")
        self.pad_id = int(config.pad_token_id)
        self.embeddings = _bert_module(BertEmbeddings, config)
        self.ffns = nn.ModuleList(FeedForward(config) for _ in range(config.num_hidden_layers))
        self.mlm_head = _bert_module(BertOnlyMLMHead, config)
        self.mlm_head.predictions.decoder.weight = self.embeddings.word_embeddings.weight
        self.pooler = _bert_module(BertPooler, config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_classes)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.dropout(self.pooler(h)))
        return logits


class AutoBert(_Backbone):
    """A stand-alone backbone: ``forward(ids)`` gives class logits, ``mlm_logits(ids)`` token logits."""

    def __init__(self, config: BertConfig, mixers: Sequence[nn.Module], num_classes: int) -> None:
        super().__init__(config, num_classes)
        self.mixers = nn.ModuleList(mixers)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        token_mask = ids != self.pad_id
        h: torch.Tensor = self.embeddings(input_ids=ids)
        for mixer, ffn in zip(self.mixers, self.ffns):
            h = ffn(mixer(h, token_mask))
        return h

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.classify(self.encode(ids))

    def mlm_logits(self, ids: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.mlm_head(self.encode(ids))
        return logits


def build_autobert(model: Mapping[str, Any], info: TextTaskInfo) -> AutoBert:
    """The backbone of ``model`` (``layers``: a list of ``{kind: attn, cell}`` / ``{kind: conv, kernel}``;
    optional ``hidden``, ``heads``, ``ffn``, ``dropout``) for a text task."""
    config = bert_config(model, info)
    mixers: list[nn.Module] = []
    for i, layer in enumerate(model["layers"]):
        if layer["kind"] == ATTN:
            mixers.append(AttentionMixer(config, CellProgram.compile(layer["cell"])))
        elif layer["kind"] == CONV:
            mixers.append(ConvMixer(config, int(layer["kernel"])))
        else:
            raise ValueError(f"layers[{i}].kind: expected {ATTN!r} or {CONV!r}, got {layer['kind']!r}")
    return AutoBert(config, mixers, info.num_classes)


# added rather than decorated, so that ``build_autobert`` keeps its return type (AutoBert) for its callers
builders.add("autobert", build_autobert)


class AutoBertSupernet(SuperNet, _Backbone):
    """The BIWS supernet: per layer an attention branch and a convolution branch sharing one FFN."""

    def __init__(self, config: BertConfig, max_kernel: int, num_classes: int) -> None:
        SuperNet.__init__(self)
        _Backbone.__init__(self, config, num_classes)
        self.config = config
        self.attention = nn.ModuleList(AttentionMixer(config) for _ in range(config.num_hidden_layers))
        self.convolution = nn.ModuleList(ConvMixer(config, max_kernel) for _ in range(config.num_hidden_layers))

    def encode(self, ids: torch.Tensor, model: Mapping[str, Any]) -> torch.Tensor:
        token_mask = ids != self.pad_id
        h: torch.Tensor = self.embeddings(input_ids=ids)
        for i, layer in enumerate(model["layers"]):
            if layer["kind"] == ATTN:
                h = self.attention[i](h, token_mask, CellProgram.compile(layer["cell"]))
            else:
                h = self.convolution[i](h, token_mask, int(layer["kernel"]))
            h = self.ffns[i](h)
        return h

    def forward(self, ids: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
        return self.classify(self.encode(ids, config))

    def mlm_logits(self, ids: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
        logits: torch.Tensor = self.mlm_head(self.encode(ids, config))
        return logits

    def extract(self, config: Mapping[str, Any]) -> AutoBert:
        """The backbone of ``config`` with the supernet's weights (kernels centre-cropped)."""
        info = TextTaskInfo(input_shape=(self.config.max_position_embeddings,),
                            num_classes=self.classifier.out_features, vocab_size=self.config.vocab_size,
                            max_len=self.config.max_position_embeddings, pad_id=self.pad_id, mask_id=-1, cls_id=-1,
                            sep_id=-1)
        sizes = {key: getattr(self.config, name) for key, name in
                 (("hidden", "hidden_size"), ("heads", "num_attention_heads"), ("ffn", "intermediate_size"),
                  ("dropout", "hidden_dropout_prob"))}
        model = build_untouched(build_autobert, {**sizes, "layers": config["layers"]}, info)
        source = self.state_dict()
        state = {}
        for name, tensor in model.state_dict().items():
            if name.startswith("mixers."):
                _, index, rest = name.split(".", 2)
                branch = "attention" if config["layers"][int(index)]["kind"] == ATTN else "convolution"
                value = source[f"{branch}.{index}.{rest}"]
                if rest == "conv.weight":
                    value = center_crop_kernel(value, tensor.shape[-1], dims=1)
                state[name] = value
            else:
                state[name] = source[name]
        model.load_state_dict(state)
        return model


def _layers(space: SearchSpace) -> tuple[tuple[str, ...], Repeat, Group] | None:
    """Where the repeat of layers sits in the space tree (``model.layers`` or ``layers``), the repeat, and
    its item (the group of a layer's parameters)."""
    for prefix in (("model",), ()):
        node: Node | None = space.root
        for name in prefix:
            node = node.child_map().get(name) if isinstance(node, Group) else None
        layers = node.child_map().get("layers") if isinstance(node, Group) else None
        if isinstance(layers, Repeat) and isinstance(layers.item, Group):
            return (*prefix, "layers"), layers, layers.item
    return None


@space_checks.register("autobert")
def check_autobert_space(space: SearchSpace) -> list[tuple[tuple[str | int, ...], str]]:
    """What the builder needs of a space: ``layers`` items of ``kind`` attn/conv, cells over q, k, v of
    shape [T, d] with output [T, d], and odd convolution kernels no longer than the task's sequences."""
    found = _layers(space)
    if found is None:
        return [((), "the autobert builder needs a repeat 'model.layers' (or 'layers') of layer groups")]
    path, _, item = found
    path = (*path, "item")
    children = item.child_map()
    kind, cell, kernel = children.get("kind"), children.get("cell"), children.get("kernel")
    if not isinstance(kind, Categorical) or not set(kind.choices) <= {ATTN, CONV}:
        return [((*path, "kind"), f"expected a categorical with choices among {[ATTN, CONV]}")]
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if ATTN in kind.choices:
        if not isinstance(cell, Graph):
            problems.append(((*path, "cell"), "attention layers need a graph parameter 'cell'"))
        elif cell.inputs != INPUTS or cell.input_shapes != CELL.input_shapes or cell.output_shape != CELL.output_shape:
            problems.append(((*path, "cell"), "the autobert builder runs cells with inputs {q: [T, d], k: [T, d], "
                             "v: [T, d]} and output [T, d]"))
    if CONV in kind.choices:
        if not isinstance(kernel, Categorical):
            problems.append(((*path, "kernel"), "convolution layers need a categorical 'kernel'"))
        else:
            task_info = tasks.get(space.task)(**space.task_options).info if space.task else None
            max_len = task_info.max_len if isinstance(task_info, TextTaskInfo) else None
            for i, k in enumerate(kernel.choices):
                if not isinstance(k, int) or k < 1 or k % 2 == 0:
                    problems.append(((*path, "kernel", "choices", i), f"kernel {k!r} must be a positive odd integer"))
                elif max_len is not None and k > max_len:
                    problems.append(((*path, "kernel", "choices", i), f"kernel {k} is longer than the task's "
                                     f"sequences ({max_len} tokens)"))
    return problems


@supernets.register("autobert")
def build_autobert_supernet(space: SearchSpace, info: TextTaskInfo) -> AutoBertSupernet:
    """The BIWS supernet of ``space``: sizes from its constants, depth and largest kernel from its choices."""
    found = _layers(space)
    if found is None:
        raise ValueError(f"space {space.name!r} has no 'layers' repeat")
    _, layers, item = found
    kernel = item.child_map().get("kernel")
    # ints only: check_autobert_space (run when the space was loaded) refuses any other kernel choice
    max_kernel = max(cast("tuple[int, ...]", kernel.choices)) if isinstance(kernel, Categorical) else 1
    sample = space.extreme("max", np.random.default_rng(0))
    sizes = {key: value for key, value in sample.get("model", sample).items() if key in DEFAULTS}
    config = bert_config({**sizes, "layers": [{}] * layers.max}, info)
    return AutoBertSupernet(config, int(max_kernel), info.num_classes)
