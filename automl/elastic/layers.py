"""Elastic building blocks for weight-sharing supernets (see :mod:`automl.supernet`).

Every elastic layer owns the weights of its *largest* variant; a smaller variant uses a slice of them:

- **width**: :class:`ElasticLinear` and :class:`ElasticConv2d` use the first ``out`` rows and the first
  ``in`` columns of their weight (``in`` is read from the input), :class:`ElasticBatchNorm2d` the
  first ``c`` entries of its affine parameters and running statistics;
- **kernel size**: :class:`ElasticConv2d` and :class:`ElasticDepthwiseConv1d` crop the centre of their
  largest (odd) kernel, with ``padding = k // 2`` so the output size does not depend on ``k``;
- **op choice**: :class:`ChoiceBlock` holds named branches and runs the one a config names;
- **depth**: keep the deepest stack in an ``nn.ModuleList`` and run only its first ``d`` blocks::

      for block, spec in zip(self.blocks, config["blocks"]):   # len(config["blocks"]) <= len(self.blocks)
          x = block(x, spec)

Each elastic layer has an ``extract(...)`` that returns the plain ``torch.nn`` layer of one variant with
the slices *copied* (so training the extracted layer never touches the supernet) and that computes
exactly what the elastic layer computes for that variant: the sliced weights are made contiguous
before use, so both run the same kernels on the same numbers.

A minimal supernet::

    class Net(SuperNet):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(ElasticLinear(64 if i == 0 else 256, 256) for i in range(4))
            self.head = ElasticLinear(256, 10)

        def forward(self, x, config):
            for layer, spec in zip(self.blocks, config["layers"]):
                x = torch.relu(layer(x, spec["width"]))
            return self.head(x)

After inheriting weights from a supernet, a sub-network's batch-norm statistics are those of the
mixture of sub-networks trained; re-estimate them with
:func:`automl.elastic.surgery.recalibrate_batchnorm` before evaluating.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from automl.errors import ConfigError

M = TypeVar("M", bound=nn.Module)

def _check_size(what: str, value: int, maximum: int) -> int:
    value = int(value)
    if not 1 <= value <= maximum:
        raise ValueError(f"{what} must be in [1, {maximum}], got {value}")
    return value


def _check_kernel(kernel_size: int, max_kernel: int) -> int:
    kernel_size = _check_size("kernel_size", kernel_size, max_kernel)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd to be centre-cropped from {max_kernel}, got {kernel_size}")
    return kernel_size


def center_crop_kernel(weight: torch.Tensor, kernel_size: int, dims: int) -> torch.Tensor:
    """The centre ``kernel_size`` window of the last ``dims`` (spatial) dimensions of ``weight`` (a view)."""
    for dim in range(weight.dim() - dims, weight.dim()):
        start = (weight.shape[dim] - kernel_size) // 2
        weight = weight.narrow(dim, start, kernel_size)
    return weight


def _init_like_torch(weight: nn.Parameter, bias: nn.Parameter | None) -> None:
    """The default initialisation of ``nn.Linear`` / ``nn.ConvNd`` for the largest variant."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)


def _empty(cls: type[M], *args: Any, like: torch.Tensor, **kwargs: Any) -> M:
    """``cls(*args, **kwargs)`` on ``like``'s device and dtype, uninitialised: the caller copies every
    weight and buffer in. (No initialisation runs, so the global RNG is left alone.)"""
    return cls(*args, device="meta", dtype=like.dtype, **kwargs).to_empty(device=like.device)


class _ElasticWeights(nn.Module):
    """The largest weight (and optional bias) of an elastic layer, initialised as torch initialises
    the fixed-size layer; variants use slices of them."""

    def __init__(self, weight_shape: tuple[int, ...], bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _init_like_torch(self.weight, self.bias)


class ElasticLinear(_ElasticWeights):
    """A linear layer of up to ``max_in`` -> ``max_out`` features; a variant uses ``weight[:out, :in]``."""

    def __init__(self, max_in: int, max_out: int, bias: bool = True) -> None:
        self.max_in = int(max_in)
        self.max_out = int(max_out)
        super().__init__((self.max_out, self.max_in), bias)

    def _slices(self, in_features: int, out_features: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        in_features = _check_size("in_features", in_features, self.max_in)
        out_features = _check_size("out_features", out_features, self.max_out)
        weight = self.weight[:out_features, :in_features].contiguous()
        return weight, None if self.bias is None else self.bias[:out_features]

    def forward(self, x: torch.Tensor, out_features: int | None = None) -> torch.Tensor:
        """``x`` (..., in) -> (..., out); ``in`` is ``x.shape[-1]``, ``out`` defaults to ``max_out``."""
        weight, bias = self._slices(x.shape[-1], self.max_out if out_features is None else out_features)
        return F.linear(x, weight, bias)

    def extract(self, in_features: int, out_features: int) -> nn.Linear:
        """An ``nn.Linear(in_features, out_features)`` with copies of the slices."""
        weight, bias = self._slices(in_features, out_features)
        layer = _empty(nn.Linear, in_features, out_features, bias=bias is not None, like=self.weight)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                assert layer.bias is not None  # built with bias=True
                layer.bias.copy_(bias)
        return layer

    def extra_repr(self) -> str:
        return f"max_in={self.max_in}, max_out={self.max_out}, bias={self.bias is not None}"


class ElasticConv2d(_ElasticWeights):
    """A 2-D convolution of up to ``max_in`` -> ``max_out`` channels and a ``max_kernel`` (odd) kernel.

    A variant uses ``weight[:out, :in]`` with its ``k x k`` kernel cropped from the centre of the largest
    one, ``padding = k // 2`` (so stride 1 keeps the spatial size). The bias is optional per call, so a
    supernet can share one layer between blocks with and without a following batch norm.
    """

    def __init__(self, max_in: int, max_out: int, max_kernel: int, bias: bool = True, stride: int = 1) -> None:
        if max_kernel < 1 or max_kernel % 2 == 0:
            raise ValueError(f"max_kernel must be a positive odd number, got {max_kernel}")
        self.max_in = int(max_in)
        self.max_out = int(max_out)
        self.max_kernel = int(max_kernel)
        self.stride = int(stride)
        super().__init__((self.max_out, self.max_in, self.max_kernel, self.max_kernel), bias)

    def _slices(self, in_channels: int, out_channels: int, kernel_size: int,
                use_bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        in_channels = _check_size("in_channels", in_channels, self.max_in)
        out_channels = _check_size("out_channels", out_channels, self.max_out)
        kernel_size = _check_kernel(kernel_size, self.max_kernel)
        if use_bias and self.bias is None:
            raise ValueError("use_bias=True, but this ElasticConv2d was built with bias=False")
        weight = center_crop_kernel(self.weight[:out_channels, :in_channels], kernel_size, dims=2).contiguous()
        return weight, self.bias[:out_channels] if use_bias and self.bias is not None else None

    def forward(self, x: torch.Tensor, out_channels: int | None = None, kernel_size: int | None = None,
                use_bias: bool = True) -> torch.Tensor:
        """``x`` (N, in, H, W) -> (N, out, H', W'); ``in`` is ``x.shape[1]``; sizes default to the maxima."""
        kernel_size = self.max_kernel if kernel_size is None else kernel_size
        weight, bias = self._slices(x.shape[1], self.max_out if out_channels is None else out_channels,
                                    kernel_size, use_bias and self.bias is not None)
        return F.conv2d(x, weight, bias, stride=self.stride, padding=int(kernel_size) // 2)

    def extract(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
        """An ``nn.Conv2d(in, out, k, stride, padding=k // 2, bias=bias)`` with copies of the slices."""
        weight, bias_slice = self._slices(in_channels, out_channels, kernel_size, bias)
        layer = _empty(nn.Conv2d, in_channels, out_channels, kernel_size, stride=self.stride,
                       padding=kernel_size // 2, bias=bias, like=self.weight)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias_slice is not None:
                assert layer.bias is not None  # built with bias=True
                layer.bias.copy_(bias_slice)
        return layer

    def extra_repr(self) -> str:
        return (f"max_in={self.max_in}, max_out={self.max_out}, max_kernel={self.max_kernel}, "
                f"stride={self.stride}, bias={self.bias is not None}")


class ElasticDepthwiseConv1d(_ElasticWeights):
    """A depthwise (per-channel) 1-D convolution with a centre-cropped kernel of up to ``max_kernel``.

    Input (N, C, L) with ``C <= channels`` uses the first ``C`` filters; output has the same shape.
    """

    def __init__(self, channels: int, max_kernel: int, bias: bool = True) -> None:
        if max_kernel < 1 or max_kernel % 2 == 0:
            raise ValueError(f"max_kernel must be a positive odd number, got {max_kernel}")
        self.channels = int(channels)
        self.max_kernel = int(max_kernel)
        super().__init__((self.channels, 1, self.max_kernel), bias)

    def _slices(self, channels: int, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        channels = _check_size("channels", channels, self.channels)
        kernel_size = _check_kernel(kernel_size, self.max_kernel)
        weight = center_crop_kernel(self.weight[:channels], kernel_size, dims=1).contiguous()
        return weight, None if self.bias is None else self.bias[:channels]

    def forward(self, x: torch.Tensor, kernel_size: int | None = None) -> torch.Tensor:
        kernel_size = self.max_kernel if kernel_size is None else int(kernel_size)
        channels = x.shape[1]
        weight, bias = self._slices(channels, kernel_size)
        return F.conv1d(x, weight, bias, padding=kernel_size // 2, groups=channels)

    def extract(self, kernel_size: int, channels: int | None = None) -> nn.Conv1d:
        """An ``nn.Conv1d(c, c, k, padding=k // 2, groups=c)`` with copies of the slices."""
        channels = self.channels if channels is None else int(channels)
        weight, bias = self._slices(channels, kernel_size)
        layer = _empty(nn.Conv1d, channels, channels, kernel_size, padding=kernel_size // 2, groups=channels,
                       bias=bias is not None, like=self.weight)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                assert layer.bias is not None  # built with bias=True
                layer.bias.copy_(bias)
        return layer

    def extra_repr(self) -> str:
        return f"channels={self.channels}, max_kernel={self.max_kernel}, bias={self.bias is not None}"


class ElasticBatchNorm2d(_BatchNorm):
    """``nn.BatchNorm2d`` over up to ``max_channels`` channels; an input with ``c`` channels uses the
    first ``c`` entries of the affine parameters and running statistics.

    In training mode only those ``c`` entries of ``running_mean``/``running_var`` are updated (in place);
    ``num_batches_tracked`` is one counter shared by all widths. Its state_dict has the keys of
    ``nn.BatchNorm2d``, so :func:`recalibrate_batchnorm` and other batch-norm utilities treat it as one.
    """

    def __init__(self, max_channels: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__(int(max_channels), eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats)

    @property
    def max_channels(self) -> int:
        return self.num_features

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected a 4-D input (N, C, H, W), got {input.dim()}-D")
        _check_size("channels", input.shape[1], self.num_features)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        c = input.shape[1]
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        # 1-D prefixes of the buffers are contiguous views: F.batch_norm updates them in place.
        return F.batch_norm(
            input,
            self.running_mean[:c] if track and self.running_mean is not None else None,
            self.running_var[:c] if track and self.running_var is not None else None,
            None if self.weight is None else self.weight[:c],
            None if self.bias is None else self.bias[:c],
            use_batch_stats,
            factor,
            self.eps,
        )

    def extract(self, channels: int) -> nn.BatchNorm2d:
        """An ``nn.BatchNorm2d(channels)`` with copies of the affine slices and running statistics."""
        channels = _check_size("channels", channels, self.num_features)
        reference = next((t for t in (self.weight, self.running_mean) if t is not None), None)
        options: dict[str, Any] = dict(eps=self.eps, momentum=self.momentum, affine=self.affine,
                                       track_running_stats=self.track_running_stats)
        layer = nn.BatchNorm2d(channels, **options) if reference is None else \
            _empty(nn.BatchNorm2d, channels, like=reference, **options)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                source, target = getattr(self, name), getattr(layer, name)
                if source is not None and target is not None:
                    target.copy_(source[:channels])
            if self.num_batches_tracked is not None and layer.num_batches_tracked is not None:
                layer.num_batches_tracked.copy_(self.num_batches_tracked)
        layer.train(self.training)
        return layer

    def extra_repr(self) -> str:
        base: str = super().extra_repr()  # type: ignore[no-untyped-call]  # torch leaves _BatchNorm's unannotated
        return "max_channels=" + base


class ChoiceBlock(nn.ModuleDict):
    """Named alternative branches (op choice); ``block(x, choice, *args)`` runs only ``block[choice]``.

    Example: ``ChoiceBlock({"conv": ElasticConv2d(64, 64, 5), "identity": nn.Identity()})``; extra
    arguments are passed to the branch (``block(x, "conv", 32, 3)``).
    """

    def __init__(self, branches: Mapping[str, nn.Module]) -> None:
        if not branches:
            raise ValueError("ChoiceBlock needs at least one branch")
        super().__init__(dict(branches))

    @property
    def choices(self) -> list[str]:
        return list(self.keys())

    def branch(self, choice: str) -> nn.Module:
        """The branch called ``choice`` (the shared module itself, not a copy)."""
        if choice not in self:
            raise ConfigError(f"unknown choice {choice!r}; expected one of {self.choices}")
        return self[choice]

    def forward(self, x: Any, choice: str, *args: Any, **kwargs: Any) -> Any:
        return self.branch(choice)(x, *args, **kwargs)

    def extract(self, choice: str) -> nn.Module:
        """A deep copy of the branch ``choice`` (call the copy's own ``extract`` if it is elastic)."""
        return copy.deepcopy(self.branch(choice))
