"""Elastic layers and the cnn/mlp supernets: weight sharing, exact extraction, kernel cropping, batch norm."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import automl
from automl.elastic.layers import ChoiceBlock, ElasticBatchNorm2d, ElasticConv2d, ElasticDepthwiseConv1d, ElasticLinear
from automl.elastic.surgery import recalibrate_batchnorm
from automl.errors import ConfigError
from automl.supernet import SuperNet, supernets
from automl.tasks.supervised import ClassificationInfo
from search_spaces.cnn import build_cnn
from search_spaces.cnn_supernet import build_cnn_supernet
from search_spaces.mlp import build_mlp
from search_spaces.mlp_supernet import build_mlp_supernet

INFO = ClassificationInfo(input_shape=(1, 8, 8), num_classes=10)
BUILDERS = {"cnn": build_cnn, "mlp": build_mlp}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def supernet(name: str) -> SuperNet:
    return supernets.get(name)(automl.load_space(f"digits-{name}"), INFO)


def perturb_batchnorm(net: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so extraction must copy them."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
                m.num_batches_tracked.fill_(7)


def shapes(module: nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in module.state_dict().items()}


# -- registry and space checks ------------------------------------------------------------------------

def test_supernets_are_registered() -> None:
    assert supernets.get("cnn") is build_cnn_supernet
    assert supernets.get("mlp") is build_mlp_supernet


def test_maxima_come_from_the_space() -> None:
    cnn = supernet("cnn")
    assert (cnn.max_depth, cnn.max_channels, cnn.max_kernel) == (3, 64, 5)
    assert cnn.convs[0].weight.shape == (64, 1, 5, 5) and cnn.convs[1].weight.shape == (64, 64, 5, 5)
    assert cnn.head.weight.shape == (10, 64)
    mlp = supernet("mlp")
    assert (mlp.max_depth, mlp.max_width) == (4, 256)
    assert mlp.layers[0].weight.shape == (256, 64) and mlp.head.weight.shape == (10, 256)


@pytest.mark.parametrize("name, model_yaml, field", [
    ("cnn", "layers: {type: repeat, min: 1, max: 2, item: {width: {type: int, low: 4, high: 8}}}", "model.blocks"),
    ("cnn", "blocks: {type: repeat, min: 1, max: 2, item: {channels: {type: int, low: 4, high: 8}, "
            "kernel: {type: categorical, choices: [2, 4]}}}", "model.blocks[i].kernel"),
    ("cnn", "blocks: {type: repeat, min: 1, max: 2, item: {channels: {type: categorical, choices: [a, b]}}}",
     "model.blocks[i].channels"),
    ("cnn", "blocks: {type: repeat, min: 1, max: 2, item: {kernel: {type: categorical, choices: [3]}}}",
     "model.blocks[i].channels"),
    ("mlp", "layers: {type: repeat, min: 1, max: 2, item: {width: {type: float, low: 4.0, high: 8.0}}}",
     "model.layers[i].width"),
    ("mlp", "layers: {type: repeat, min: 1, max: 2, item: {width: {type: int, low: 4, high: 8}, "
            "activation: {type: categorical, choices: [relu, swish2]}}}", "model.layers[i].activation"),
    ("mlp", "width: {type: int, low: 4, high: 8}", "model.layers"),
])
def test_unsupported_space_raises_config_error(name: str, model_yaml: str, field: str) -> None:
    space = automl.space_from_yaml(f"name: bad\nspace:\n  model:\n    {model_yaml}\n", source="bad.yaml")
    with pytest.raises(ConfigError, match="does not support") as info:
        supernets.get(name)(space, INFO)
    assert info.value.field == field and info.value.source == "bad.yaml"


def test_space_without_model_group_raises_config_error() -> None:
    space = automl.space_from_yaml("name: bad\nspace:\n  lr: {type: float, low: 0.1, high: 1.0}\n")
    for name in ("cnn", "mlp"):
        with pytest.raises(ConfigError, match="'model'"):
            supernets.get(name)(space, INFO)


def test_config_outside_the_supernet_raises_config_error() -> None:
    cnn = supernet("cnn")
    block = {"channels": 8, "kernel": 3, "batchnorm": True, "pool": False}
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ConfigError, match="blocks"):
        cnn(x, {"blocks": [block] * 4})
    with pytest.raises(ConfigError, match="channels"):
        cnn(x, {"blocks": [{**block, "channels": 65}]})
    with pytest.raises(ConfigError, match="kernel"):
        cnn.extract({"blocks": [{**block, "kernel": 7}]})


# -- weight sharing -----------------------------------------------------------------------------------

def sgd_step(net: SuperNet, config: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """One SGD step on ``net(x, config)``; returns the parameters before the step."""
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    loss = F.cross_entropy(net(x, config), torch.arange(x.shape[0]) % 10)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return before


def test_gradient_step_on_a_cnn_subnetwork_changes_only_its_slice() -> None:
    net = supernet("cnn").train()
    config = {"blocks": [{"channels": 8, "kernel": 3, "batchnorm": False, "pool": True},
                         {"channels": 16, "kernel": 1, "batchnorm": True, "pool": False}],
              "activation": "relu", "dropout": 0.0}
    before = sgd_step(net, config, torch.randn(16, 1, 8, 8))
    w0, b0 = before["convs.0.weight"], before["convs.0.bias"]
    conv0 = net.convs[0]
    # block 0: the centre 3x3 of the first 8 filters moved; other filters and the kernel rim did not
    assert not torch.equal(conv0.weight[:8, :, 1:4, 1:4], w0[:8, :, 1:4, 1:4])
    assert torch.equal(conv0.weight[8:], w0[8:])
    rim = torch.ones(5, 5, dtype=torch.bool)
    rim[1:4, 1:4] = False
    assert torch.equal(conv0.weight[:, :, rim], w0[:, :, rim])
    assert not torch.equal(conv0.bias[:8], b0[:8]) and torch.equal(conv0.bias[8:], b0[8:])
    # block 1: a 1x1 kernel (the centre) of 16 filters over 8 inputs; its bias is unused (batch norm)
    conv1, w1 = net.convs[1], before["convs.1.weight"]
    assert not torch.equal(conv1.weight[:16, :8, 2, 2], w1[:16, :8, 2, 2])
    assert torch.equal(conv1.weight[:, 8:], w1[:, 8:]) and torch.equal(conv1.weight[16:], w1[16:])
    assert torch.equal(conv1.bias, before["convs.1.bias"])
    bn1 = net.norms[1]
    assert not torch.equal(bn1.weight[:16], before["norms.1.weight"][:16])
    assert torch.equal(bn1.weight[16:], before["norms.1.weight"][16:])
    assert torch.equal(net.norms[0].weight, before["norms.0.weight"])  # block 0 has no batch norm
    # the third block is beyond the sub-network's depth: untouched
    for name in ("convs.2.weight", "convs.2.bias", "norms.2.weight", "norms.2.bias"):
        assert torch.equal(net.get_parameter(name), before[name])
    # the head reads the first 16 channels
    assert not torch.equal(net.head.weight[:, :16], before["head.weight"][:, :16])
    assert torch.equal(net.head.weight[:, 16:], before["head.weight"][:, 16:])


def test_gradient_step_on_an_mlp_subnetwork_changes_only_its_slice() -> None:
    net = supernet("mlp").train()
    config = {"layers": [{"width": 32, "activation": "tanh"}, {"width": 20, "activation": "relu"}], "dropout": 0.0}
    before = sgd_step(net, config, torch.randn(16, 1, 8, 8))
    l0, l1 = net.layers[0], net.layers[1]
    assert not torch.equal(l0.weight[:32], before["layers.0.weight"][:32])
    assert torch.equal(l0.weight[32:], before["layers.0.weight"][32:])
    assert not torch.equal(l1.weight[:20, :32], before["layers.1.weight"][:20, :32])
    assert torch.equal(l1.weight[:, 32:], before["layers.1.weight"][:, 32:])
    assert torch.equal(l1.weight[20:], before["layers.1.weight"][20:])
    assert torch.equal(l1.bias[20:], before["layers.1.bias"][20:])
    for name in ("layers.2.weight", "layers.3.weight", "layers.3.bias"):
        assert torch.equal(net.get_parameter(name), before[name])
    assert torch.equal(net.head.weight[:, 20:], before["head.weight"][:, 20:])


# -- extraction ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_extract_reproduces_the_subnetwork_exactly(name: str) -> None:
    space = automl.load_space(f"digits-{name}")
    net = supernets.get(name)(space, INFO)
    perturb_batchnorm(net)
    net.eval()
    x = torch.randn(8, 1, 8, 8)
    for i in range(20):
        config = space.sample(np.random.default_rng(i))["model"]
        model = net.extract(config).eval()
        reference = BUILDERS[name](config, INFO)
        assert type(model) is type(reference) is nn.Sequential
        assert [type(m) for m in model] == [type(m) for m in reference], config
        assert shapes(model) == shapes(reference), config
        with torch.no_grad():
            assert torch.equal(model(x), net(x, config)), config


def test_extract_copies_weights_and_batchnorm_statistics() -> None:
    net = supernet("cnn")
    perturb_batchnorm(net)
    config = {"blocks": [{"channels": 12, "kernel": 3, "batchnorm": True, "pool": True}], "activation": "gelu",
              "dropout": 0.1}
    model = net.extract(config)
    conv, bn, head = model[0], model[1], model[-1]
    assert torch.equal(conv.weight, net.convs[0].weight[:12, :, 1:4, 1:4]) and conv.bias is None
    assert torch.equal(bn.running_mean, net.norms[0].running_mean[:12])
    assert torch.equal(bn.running_var, net.norms[0].running_var[:12])
    assert torch.equal(bn.weight, net.norms[0].weight[:12]) and int(bn.num_batches_tracked) == 7
    assert torch.equal(head.weight, net.head.weight[:, :12])
    with torch.no_grad():  # a copy: training the extracted model leaves the supernet alone
        conv.weight.zero_()
        bn.running_mean.zero_()
    assert net.convs[0].weight.abs().sum() > 0 and net.norms[0].running_mean[:12].abs().sum() > 0


def test_extract_leaves_the_global_rng_alone() -> None:
    net = supernet("mlp")
    config = {"layers": [{"width": 16, "activation": "relu"}], "dropout": 0.0}
    state = torch.get_rng_state()
    net.extract(config)
    assert torch.equal(torch.get_rng_state(), state)


def test_extract_matches_in_training_mode_without_dropout() -> None:
    net = supernet("cnn").train()
    config = {"blocks": [{"channels": 10, "kernel": 5, "batchnorm": True, "pool": False},
                         {"channels": 6, "kernel": 3, "batchnorm": True, "pool": True}],
              "activation": "silu", "dropout": 0.0}
    model = net.extract(config)
    assert model.training
    x = torch.randn(8, 1, 8, 8)
    assert torch.equal(model(x), net(x, config))
    assert torch.equal(model[4].running_var, net.norms[1].running_var[:6])  # both updated the same way


# -- elastic layers -----------------------------------------------------------------------------------

def test_kernel_centre_cropping() -> None:
    conv = ElasticConv2d(max_in=3, max_out=6, max_kernel=5)
    x = torch.randn(2, 2, 7, 7)
    small = conv.extract(in_channels=2, out_channels=4, kernel_size=3, bias=True)
    assert torch.equal(small.weight, conv.weight[:4, :2, 1:4, 1:4]) and small.padding == (1, 1)
    assert torch.equal(conv.extract(2, 4, 1).weight, conv.weight[:4, :2, 2:3, 2:3])
    out = conv(x, out_channels=4, kernel_size=3)
    assert out.shape == (2, 4, 7, 7)
    assert torch.equal(out, small(x))
    assert torch.allclose(out, F.conv2d(x, conv.weight[:4, :2, 1:4, 1:4], conv.bias[:4], padding=1))
    assert torch.equal(conv(x, 4, 3, use_bias=False), conv.extract(2, 4, 3, bias=False)(x))
    with pytest.raises(ValueError, match="odd"):
        conv(x, 4, 2)
    with pytest.raises(ValueError, match="out_channels"):
        conv(x, 7, 3)


def test_depthwise_conv1d_crops_per_channel_kernels() -> None:
    conv = ElasticDepthwiseConv1d(channels=4, max_kernel=7)
    x = torch.randn(2, 4, 9)
    small = conv.extract(kernel_size=3)
    assert isinstance(small, nn.Conv1d) and small.groups == 4
    assert torch.equal(small.weight, conv.weight[:, :, 2:5])
    assert torch.equal(conv(x, 3), small(x)) and conv(x, 3).shape == x.shape
    # per channel: changing channel 1's input changes only channel 1's output
    y = x.clone()
    y[:, 1] += 1.0
    diff = (conv(y, 5) - conv(x, 5)).abs().sum(dim=(0, 2))
    assert diff[1] > 0 and torch.equal(diff[[0, 2, 3]], torch.zeros(3))


def test_linear_slices_rows_and_columns() -> None:
    linear = ElasticLinear(max_in=8, max_out=5)
    x = torch.randn(3, 6)
    assert torch.equal(linear(x, 4), linear.extract(6, 4)(x))
    assert torch.allclose(linear(x, 4), x @ linear.weight[:4, :6].T + linear.bias[:4])
    assert linear(torch.randn(3, 8)).shape == (3, 5)
    assert ElasticLinear(4, 2, bias=False).extract(3, 2).bias is None


def test_elastic_batchnorm_in_training_updates_only_its_slice() -> None:
    bn = ElasticBatchNorm2d(8).train()
    with torch.no_grad():
        bn.running_mean.copy_(torch.arange(8.0))
        bn.running_var.fill_(2.0)
    plain = nn.BatchNorm2d(5)
    plain.load_state_dict({"weight": bn.weight[:5], "bias": bn.bias[:5], "running_mean": bn.running_mean[:5],
                           "running_var": bn.running_var[:5], "num_batches_tracked": bn.num_batches_tracked})
    x = torch.randn(4, 5, 3, 3) * 3 + 1
    out = bn(x)
    assert torch.equal(out, plain(x))
    assert torch.equal(bn.running_mean[5:], torch.arange(5.0, 8.0))
    assert torch.equal(bn.running_var[5:], torch.full((3,), 2.0))
    assert not torch.equal(bn.running_mean[:5], torch.arange(5.0))
    assert torch.equal(bn.running_mean[:5], plain.running_mean)
    assert torch.equal(bn.running_var[:5], plain.running_var)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    before = bn.running_mean.clone()
    bn(x)
    assert torch.equal(bn.running_mean, before)  # eval mode: statistics are read, not written
    assert bn.extract(5).state_dict().keys() == plain.state_dict().keys()


def test_recalibrate_batchnorm_estimates_fresh_statistics() -> None:
    net = supernet("cnn")
    config = {"blocks": [{"channels": 12, "kernel": 3, "batchnorm": True, "pool": False},
                         {"channels": 20, "kernel": 5, "batchnorm": True, "pool": True}],
              "activation": "relu", "dropout": 0.3}
    perturb_batchnorm(net)
    net.eval()
    stale = net.norms[0].running_mean.clone()
    batches = [torch.randn(16, 1, 8, 8) * 2 + 0.5 for _ in range(3)]
    model = net.extract(config).eval()  # extracted before: still has the stale statistics

    used = recalibrate_batchnorm(net, batches, lambda xb: net(xb, config))
    assert used == 3
    assert not net.training and all(not m.training for m in net.modules())
    assert net.norms[0].momentum == 0.1
    assert not torch.allclose(net.norms[0].running_mean[:12], stale[:12])
    # what a fresh batch norm estimates from the same features (cumulative average over the batches)
    fresh = nn.BatchNorm2d(12, momentum=None).train()
    with torch.no_grad():
        for xb in batches:
            fresh(net.convs[0](xb, 12, 3, use_bias=False))
    assert torch.allclose(net.norms[0].running_mean[:12], fresh.running_mean, atol=1e-6)
    assert torch.allclose(net.norms[0].running_var[:12], fresh.running_var, atol=1e-5)
    assert int(net.norms[0].num_batches_tracked) == 3
    # a plain model recalibrated on the same batches ends with the same statistics
    assert recalibrate_batchnorm(model, batches) == 3 and not model.training
    assert torch.allclose(model[1].running_mean, net.norms[0].running_mean[:12], atol=1e-6)
    assert torch.allclose(model[4].running_var, net.norms[1].running_var[:20], atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(model(batches[0]), net(batches[0], config), atol=1e-5)
    # (inputs, targets) pairs work with the default forward; no batches is an error
    recalibrate_batchnorm(model, [(xb, torch.zeros(16)) for xb in batches])
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_batchnorm(model, [])


def test_choice_block_runs_one_branch() -> None:
    block = ChoiceBlock({"wide": ElasticLinear(4, 8), "skip": nn.Identity()})
    x = torch.randn(2, 4)
    assert block.choices == ["wide", "skip"]
    assert torch.equal(block(x, "skip"), x)
    assert block(x, "wide", 3).shape == (2, 3)
    copy = block.extract("wide")
    assert copy is not block["wide"] and torch.equal(copy.weight, block["wide"].weight)
    with pytest.raises(ConfigError, match="unknown choice 'conv'"):
        block(x, "conv")
