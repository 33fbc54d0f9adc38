"""The write-ups' networks, transcribed literally as torch modules, against what cnnlab builds from
the model options that describe them: same layers in the same order, same parameter count,
same output shape, and the same logits once the literal net's weights are copied across in
parameter order (eval mode, and train mode with the same seed, which also pins the dropouts'
kind and place: they draw from the RNG in the order they run)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from real_images import on_meta
from torch import nn

from cnnlab.device import channels_last, strided_pointwise_convs
from cnnlab.errors import ConfigError
from cnnlab.models import MODELS, build_model, count_parameters
from cnnlab.models.summary import summarize

# The model: sections that build each write-up's net (docs/models.md lists them).
TINY_CNN = {"name": "cnn", "stem_channels": 64, "stem_kernel": 5, "channels": [128, 256, 512], "convs_per_stage": 2,
            "global_pool": True, "fc_hidden": [256], "norm": "batch", "conv_dropout": 0.2, "dropout": 0.2,
            "bias": "always"}
CNN_LEVELS = {8: ([128, 256, 512], [256]), 10: ([128, 256, 512, 1024], [512]),
              12: ([128, 256, 512, 1024, 2048], [1024])}
TINY_RESNET = {"name": "resnet", "blocks": [1, 2, 2], "widths": [64, 128, 256], "stem": "small", "stem_kernel": 5,
               "stem_pool": "max3", "stem_dropout": 0.15, "shortcut": "projection", "bias": "always",
               "block_dropout": 0.2, "block_dropout_at": "after_conv1_and_sum", "dropout": 0.2, "init": "default",
               "zero_init_residual": False}
RESNET_LEVELS = {11: [1, 2, 2], 15: [1, 3, 3], 19: [1, 4, 4]}
CIFAR_VGG = {"name": "small_vgg", "hidden_channels": [16, 32], "hidden_neurons": [128, 128], "convs_per_stage": 1}
CIFAR_VGG_BN = {**CIFAR_VGG, "conv_bn": True, "fc_bn": True, "bias": "always"}
FACES_ALEXNET = {"name": "alexnet", "variant": "bn4", "widths": [96, 256, 384, 512], "input_norm": True,
                 "block_order": "conv_act_pool_norm", "stem_kernel": 7, "stem_stride": 2, "stem_padding": 1,
                 "kernels": [3, 3, 3], "fc_hidden": [2048, 2048], "fc_norm": False, "fc_activation": False,
                 "dropout": 0.5, "dropout_at": "logits"}
MNIST_LENET = {"name": "lenet", "batch_norm": True, "dropout": 0.2, "bias": "always", "init": "xavier_normal"}


def build(section: dict, shape: tuple[int, int, int], k: int) -> nn.Module:
    """As the trainer does: the options validated against the builder's signature, then build_model."""
    name = section["name"]
    options = {key: v for key, v in section.items() if key != "name"}
    return build_model({"name": name, **MODELS.validate(name, options, "model")}, shape, k)


# ----------------------------------------------------------------------------- layouts and weights

def describe(m: nn.Module, skip: tuple[type, ...] = ()) -> list[tuple]:
    """Each leaf layer in registration order with what defines it (Identity and Flatten left out)."""
    out: list[tuple] = []
    for x in m.modules():
        if list(x.children()) or isinstance(x, (nn.Identity, nn.Flatten, *skip)):
            continue
        if isinstance(x, nn.Conv2d):
            out.append(("Conv2d", x.in_channels, x.out_channels, x.kernel_size, x.stride, x.padding, x.bias is not None))
        elif isinstance(x, nn.Linear):
            out.append(("Linear", x.in_features, x.out_features, x.bias is not None))
        elif isinstance(x, (nn.BatchNorm1d, nn.BatchNorm2d)):
            out.append((type(x).__name__, x.num_features))
        elif isinstance(x, (nn.MaxPool2d, nn.AvgPool2d)):
            out.append((type(x).__name__, x.kernel_size, x.stride, x.padding))
        elif isinstance(x, nn.AdaptiveAvgPool2d):
            out.append(("AdaptiveAvgPool2d", x.output_size))
        elif isinstance(x, nn.modules.dropout._DropoutNd):
            out.append((type(x).__name__, x.p))
        else:
            out.append((type(x).__name__,))
    return out


def weight_layout(m: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(type, weight shape) of every module with parameters of its own, in registration order."""
    return [(type(x).__name__, tuple(x.weight.shape)) for x in m.modules() if list(x.parameters(recurse=False))]


def copy_in_order(src: nn.Module, dst: nn.Module) -> None:
    """src's parameters and buffers into dst, matched by position in the state_dict (not by name)."""
    s, d = src.state_dict(), dst.state_dict()
    assert len(s) == len(d)
    for (ks, vs), (kd, vd) in zip(s.items(), d.items()):
        assert vs.shape == vd.shape, (ks, kd)
    dst.load_state_dict(dict(zip(d, s.values())))


def scramble(m: nn.Module) -> None:
    """Random weights and BN statistics, so that a copy in the wrong order cannot give equal logits."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if t.is_floating_point():
                r = torch.rand(t.shape, generator=g)
                t.copy_(0.5 + r if name.endswith(("running_var", "weight")) and t.dim() == 1 else (r - 0.5) * 0.2)


def same_function(literal: nn.Module, ours: nn.Module, shape: tuple[int, int, int], n: int = 2) -> None:
    """After copying literal's weights into ours, both give the same logits in eval and in train mode."""
    scramble(literal)
    copy_in_order(literal, ours)
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        literal.eval(), ours.eval()
        a, b = literal(x), ours(x)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()
        literal.train(), ours.train()
        torch.manual_seed(11)
        a = literal(x)
        torch.manual_seed(11)
        b = ours(x)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()


# ----------------------------------------------------------------------------- Tiny ImageNet: CNN


class TinyLayer(nn.Sequential):
    """The write-up's Layer(c_in, c_out): 3x3 conv, 3x3 conv (BN after each), maxpool; conv dropout after it
    (cnnlab's conv dropout is Dropout2d, the write-up says only 'conv dropout')."""

    def __init__(self, c_in: int, c_out: int, p: float):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Dropout2d(p))


class TinyCNN(nn.Module):
    """'5x5 conv,64; maxpool; Layer(64,128); Layer(128,256); Layer(256,512); avgpool; fc 256; fc 200'."""

    def __init__(self, widths: list[int], fc: list[int], classes: int = 200, p_conv: float = 0.2, p_fc: float = 0.2):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 5, padding=2)
        self.bn = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layers = nn.Sequential(*[TinyLayer(a, b, p_conv) for a, b in zip([64, *widths], widths)])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        head: list[nn.Module] = []
        for a, b in zip([widths[-1], *fc], fc):
            head += [nn.Dropout(p_fc), nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Sequential(*head, nn.Dropout(p_fc), nn.Linear(fc[-1], classes))

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.conv(x))))
        x = self.avgpool(self.layers(x))
        return self.head(torch.flatten(x, 1))


@pytest.mark.parametrize("level, params", [(8, 4_837_960), (10, 19_444_552), (12, 77_755_720)])
def test_tiny_imagenet_cnn_levels_match_the_writeup(level, params):
    channels, fc = CNN_LEVELS[level]
    section = {**TINY_CNN, "channels": channels, "fc_hidden": fc}
    make = (lambda f, *a, **k: f(*a, **k)) if level == 8 else on_meta
    ours = make(build, section, (3, 64, 64), 200)
    literal = make(TinyCNN, channels, fc)
    assert count_parameters(ours) == count_parameters(literal) == params
    assert describe(ours) == describe(literal)
    assert weight_layout(ours) == weight_layout(literal)
    if level == 8:
        same_function(literal, ours, (3, 64, 64))
        assert ours(torch.zeros(2, 3, 64, 64)).shape == (2, 200)
    else:
        assert ours(torch.zeros(2, 3, 64, 64, device="meta")).shape == (2, 200)


def test_tiny_cnn_depth_counts_the_stem_conv():
    # stem conv + 3 x 2 convs + 2 FC layers = 9 layers with weights (the write-up calls it 8:
    # it does not count the classifier).
    by_depth = build({**{k: v for k, v in TINY_CNN.items() if k != "convs_per_stage"}, "depth": 9}, (3, 64, 64), 200)
    assert describe(by_depth) == describe(build(TINY_CNN, (3, 64, 64), 200))
    without_bias = build({**TINY_CNN, "bias": "auto"}, (3, 64, 64), 200)
    assert count_parameters(without_bias) == 4_837_960 - 64 - 2 * (128 + 256 + 512)  # no conv biases before BN


# ----------------------------------------------------------------------------- Tiny ImageNet: ResNet


class WriteupBlock(nn.Module):
    """The write-up's Layer(c_in, c_out, downsample), attributes in the order its forward uses them."""

    def __init__(self, c_in: int, c_out: int, downsample: bool, p: float = 0.2):
        super().__init__()
        stride = 2 if downsample else 1
        self.conv0 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.dropout = nn.Dropout(p)
        self.bn0 = nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.skip_conv = nn.Conv2d(c_in, c_out, 1, stride)
        self.skip_bn = nn.BatchNorm2d(c_out)

    def forward(self, input):
        identity = input
        x = F.relu(self.bn0(self.dropout(self.conv0(input))))
        x = self.bn1(self.conv1(x))
        x += self.skip_bn(self.skip_conv(identity))
        return F.relu(self.dropout(x))


class WriteupResNet(nn.Module):
    """Stem relu(bn0(dropout(conv0(x)))) + maxpool 3/2/1, the blocks, avgpool, dropout, fc 256 -> 200."""

    def __init__(self, blocks: list[int], widths=(64, 128, 256), classes: int = 200):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 64, 5, 1, 2)
        self.dropout0 = nn.Dropout(0.15)
        self.bn0 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(3, 2, 1)
        layers, c = [], 64
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(WriteupBlock(c, w, downsample=i > 0 and j == 0))
                c = w
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.pool(F.relu(self.bn0(self.dropout0(self.conv0(x)))))
        x = self.avgpool(self.layers(x))
        return self.fc(self.dropout(torch.flatten(x, 1)))


@pytest.mark.parametrize("level, params", [(11, 2_845_064), (15, 4_405_000), (19, 5_964_936)])
def test_tiny_imagenet_resnets_match_the_writeup(level, params):
    torch.manual_seed(0)
    ours = build({**TINY_RESNET, "blocks": RESNET_LEVELS[level]}, (3, 64, 64), 200)
    literal = WriteupResNet(RESNET_LEVELS[level])
    assert count_parameters(ours) == count_parameters(literal) == params
    assert weight_layout(ours) == weight_layout(literal)
    # The literal net's ReLUs are functional and it reuses one Dropout per block: compare the rest.
    skip = (nn.ReLU, nn.Dropout)
    assert describe(ours, skip) == describe(literal, skip)
    # Dropout modules in the order they run: stem, then two per block (after conv1, on the sum), head.
    drops = [x.p for x in ours.modules() if isinstance(x, nn.modules.dropout._DropoutNd)]
    assert all(type(x) is not nn.Dropout2d for x in ours.modules())
    assert drops == [0.15] + [0.2] * (2 * sum(RESNET_LEVELS[level])) + [0.2]
    if level == 11:
        same_function(literal, ours, (3, 64, 64))
    assert ours(torch.zeros(2, 3, 64, 64)).shape == (2, 200)


def test_projection_shortcuts_keep_the_channels_last_policy():
    m = build(TINY_RESNET, (3, 64, 64), 200)
    shortcuts = [x for name, x in m.named_modules() if name.endswith("shortcut.0")]
    assert len(shortcuts) == 5 and all(x.kernel_size == (1, 1) and x.bias is not None for x in shortcuts)
    # Only the stride-2 projections are the layers NHWC crashes on; stride-1 ones are not flagged.
    assert strided_pointwise_convs(m) == ["6.shortcut.0", "8.shortcut.0"]
    assert channels_last("auto", torch.device("cpu"), m) is False
    with pytest.raises(ConfigError, match="6.shortcut.0"):
        channels_last(True, torch.device("cpu"), m)


def test_resnet_new_options_one_at_a_time():
    # stem overrides on the imagenet stem: 5x5 stride 1, no pool.
    m = build({"name": "resnet", "blocks": [1, 1], "widths": [8, 16], "stem": "imagenet", "stem_kernel": 5,
               "stem_stride": 1, "stem_pool": "none"}, (3, 128, 128), 10)
    assert describe(m)[:3] == [("Conv2d", 3, 8, (5, 5), (1, 1), (2, 2), False), ("BatchNorm2d", 8), ("ReLU",)]
    assert not any(isinstance(x, nn.MaxPool2d) for x in m.modules())
    # bottleneck blocks take the written dropout placement and projections too.
    b = build({"name": "resnet", "blocks": [1, 1], "widths": [4, 8], "block": "bottleneck", "shortcut": "projection",
               "block_dropout": 0.1, "block_dropout_at": "after_conv1_and_sum"}, (3, 32, 32), 10)
    names = [n for n, x in b.named_modules() if isinstance(x, nn.Dropout)]
    assert names == ["3.drop_conv1", "3.drop_sum", "4.drop_conv1", "4.drop_sum"]
    assert b(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ----------------------------------------------------------------------------- CIFAR-10: small VGG


def cifar_net(c: tuple[int, int], n: tuple[int, int], bn: bool = False) -> nn.Sequential:
    """conv3x3(3->c1,pad1) [BN] ReLU maxpool2, conv3x3(c1->c2) [BN] ReLU maxpool2,
    Linear(c2*8*8 -> n1) [BN] ReLU, Linear(n1 -> n2) [BN] ReLU, Linear(n2 -> 10); every bias kept."""
    c1, c2 = c
    n1, n2 = n

    def opt(m: nn.Module) -> list[nn.Module]:
        return [m] if bn else []

    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1), *opt(nn.BatchNorm2d(c1)), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), *opt(nn.BatchNorm2d(c2)), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 8 * 8, n1), *opt(nn.BatchNorm1d(n1)), nn.ReLU(),
        nn.Linear(n1, n2), *opt(nn.BatchNorm1d(n2)), nn.ReLU(),
        nn.Linear(n2, 10),
    )


@pytest.mark.parametrize("c, n, bn, params", [
    ((16, 32), (128, 128), False, 285_162),
    ((4, 8), (32, 32), False, 18_210),
    ((64, 128), (512, 512), False, 4_538_250),
    ((16, 32), (128, 128), True, 285_770),
])
def test_cifar_small_vggs_match_the_writeup(c, n, bn, params):
    torch.manual_seed(0)
    section = {**(CIFAR_VGG_BN if bn else CIFAR_VGG), "hidden_channels": list(c), "hidden_neurons": list(n)}
    ours = build(section, (3, 32, 32), 10)
    literal = cifar_net(c, n, bn)
    assert count_parameters(ours) == count_parameters(literal) == params
    assert describe(ours) == describe(literal)
    assert weight_layout(ours) == weight_layout(literal)
    same_function(literal, ours, (3, 32, 32), n=4)
    assert ours(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_small_vgg_bn_without_bias_always_drops_the_biases_before_bn():
    auto = build({**CIFAR_VGG_BN, "bias": "auto"}, (3, 32, 32), 10)
    assert count_parameters(auto) == 285_770 - (16 + 32 + 128 + 128)
    three = build({**CIFAR_VGG, "convs_per_stage": 3}, (3, 32, 32), 10)
    assert sum(isinstance(x, nn.Conv2d) for x in three.modules()) == 6


# ----------------------------------------------------------------------------- faces: AlexNet


class FacesAlexNet(nn.Module):
    """The faces write-up's listing, literally."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 96, 7, 2, 1), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(96))
        self.conv2 = nn.Sequential(nn.Conv2d(96, 256, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(256))
        self.conv3 = nn.Sequential(nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(384))
        self.conv4 = nn.Sequential(nn.Conv2d(384, 512, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(512))
        self.fc1 = nn.Linear(512 * 6 * 6, 2048)
        self.fc2 = nn.Linear(2048, 2048)
        self.fc3 = nn.Linear(2048, 500)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        x = torch.flatten(x, 1)
        return self.dropout(self.fc3(self.fc2(self.fc1(x))))


def test_faces_alexnet_matches_the_writeup():
    torch.manual_seed(0)
    ours = build(FACES_ALEXNET, (3, 224, 224), 500)
    literal = FacesAlexNet()
    assert count_parameters(ours) == count_parameters(literal) == 45_864_890
    assert describe(ours) == describe(literal)
    assert weight_layout(ours) == weight_layout(literal)
    same_function(literal, ours, (3, 224, 224))
    assert ours(torch.zeros(2, 3, 224, 224)).shape == (2, 500)


def test_alexnet_block_order_keeps_the_bias_a_norm_does_not_follow_directly():
    # conv -> act -> pool -> BN: the conv's bias is not cancelled, so auto keeps it.
    section = {k: v for k, v in FACES_ALEXNET.items()}
    m = on_meta(build, section, (3, 224, 224), 500)
    assert all(x.bias is not None for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear)))
    # paper variant with the new head options: no activations between the FCs, dropout on the logits.
    p = build({"name": "alexnet", "widths": [8, 8, 8, 8, 8], "fc_hidden": [16, 16], "fc_activation": False,
               "dropout_at": "logits", "kernels": [3, 3, 3, 3]}, (3, 64, 64), 10)
    head = [type(x) for x in p[1]]
    assert head == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, nn.Identity, nn.Linear, nn.Identity, nn.Linear,
                    nn.Dropout]
    assert [x.kernel_size for x in p.modules() if isinstance(x, nn.Conv2d)][1:] == [(3, 3)] * 4


# ----------------------------------------------------------------------------- MNIST: LeNet


def mnist_lenet(p: float = 0.2) -> nn.Sequential:
    """conv 5x5x6 (no pad) -> BN -> ReLU -> dropout -> maxpool2 -> conv 5x5x16 -> ReLU -> maxpool2 -> FC 256->10."""
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(p), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 10))


def test_mnist_lenet_matches_the_writeup():
    torch.manual_seed(0)
    ours = build(MNIST_LENET, (1, 28, 28), 10)
    literal = mnist_lenet()
    assert count_parameters(ours) == count_parameters(literal) == 5_154
    assert describe(ours) == describe(literal)
    same_function(literal, ours, (1, 28, 28), n=4)
    # The default drops the conv bias BN cancels: 6 parameters fewer, the layers otherwise the same.
    default = build({**MNIST_LENET, "bias": "auto"}, (1, 28, 28), 10)
    assert count_parameters(default) == 5_148


def test_lenet_xavier_normal_init_reaches_the_numpy_engine():
    from cnnlab.training.numpy_engine import convert

    torch.manual_seed(0)
    m = build(MNIST_LENET, (1, 28, 28), 10)
    fc = m[9].weight.detach()
    assert abs(float(fc.std()) - (2 / (256 + 10)) ** 0.5) < 0.01  # xavier normal, not torch's default
    assert all(float(x.bias.detach().abs().max()) == 0 for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear)))
    net, names = convert(m, np.random.default_rng(0))  # what engine: scratch starts from
    state = net.state_dict()
    torch_state = m.state_dict()
    for ours, theirs in names.items():
        assert np.array_equal(state[ours], torch_state[theirs].numpy()), ours
    x = torch.randn(3, 1, 28, 28)
    m.eval()
    with torch.no_grad():
        expected = m(x).numpy()
    assert np.allclose(net.forward(x.numpy(), training=False), expected, atol=1e-4)


# ----------------------------------------------------------------------------- summaries


def test_model_summary_shows_stems_and_projection_shortcuts():
    cnn = summarize(build(TINY_CNN, (3, 64, 64), 200), (3, 64, 64), "cnn", 200)
    assert [(x.name, x.type) for x in cnn.layers[:4]] == [("stem.0", "Conv2d"), ("stem.1", "BatchNorm2d"),
                                                          ("stem.2", "ReLU"), ("stem.3", "MaxPool2d")]
    assert cnn.layers[3].output_shape == (64, 32, 32) and cnn.params == 4_837_960 and not cnn.notes
    res = summarize(build(TINY_RESNET, (3, 64, 64), 200), (3, 64, 64), "resnet", 200)
    rows = {x.name: x for x in res.layers}
    assert [x.type for x in res.layers[:5]] == ["Conv2d", "Dropout", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert rows["5.shortcut.0"].type == "Conv2d" and rows["5.shortcut.0"].output_shape == (64, 32, 32)
    assert rows["6.shortcut.0"].output_shape == (128, 16, 16) and rows["5.drop_sum"].type == "Dropout"
    assert res.params == 2_845_064 and not res.notes


# ----------------------------------------------------------------------------- refusals

BAD = [
    ("cnn", {"kernel_size": [3, 3]}, "kernel_size", "2 entries"),
    ("cnn", {"kernel_size": 0}, "kernel_size", "below 1"),
    ("cnn", {"kernel_size": [3, 0, 3]}, "kernel_size", "below 1"),
    ("cnn", {"stem_channels": 0}, "stem_channels", "greater than or equal to 1"),
    ("cnn", {"stem_channels": 8, "stem_kernel": 0}, "stem_kernel", "greater than or equal to 1"),
    ("cnn", {"stem_channels": 8, "stem_stride": 0}, "stem_stride", "greater than or equal to 1"),
    ("cnn", {"stem_channels": 8, "stem_pool": "max4"}, "stem_pool", "'max3', 'max2' or 'none'"),
    ("cnn", {"stem_kernel": 3}, "stem_kernel", "without model.stem_channels"),
    ("cnn", {"stem_stride": 2}, "stem_stride", "without model.stem_channels"),
    ("cnn", {"stem_pool": "none"}, "stem_pool", "without model.stem_channels"),
    ("cnn", {"bias": "never"}, "bias", "'auto' or 'always'"),
    ("cnn", {"stem_channels": 8, "depth": 4, "fc_hidden": [8]}, "depth", "stem convolution"),
    ("resnet", {"stem_kernel": 0}, "stem_kernel", "greater than or equal to 1"),
    ("resnet", {"stem_stride": 0}, "stem_stride", "greater than or equal to 1"),
    ("resnet", {"stem_pool": "max2"}, "stem_pool", "'auto', 'max3' or 'none'"),
    ("resnet", {"stem_dropout": 1.0}, "stem_dropout", "less than 1"),
    ("resnet", {"shortcut": "identity"}, "shortcut", "'auto' or 'projection'"),
    ("resnet", {"bias": True}, "bias", "'auto' or 'always'"),
    ("resnet", {"block_dropout_at": "before_conv1"}, "block_dropout_at", "'after_act1' or 'after_conv1_and_sum'"),
    ("resnet", {"block_dropout_at": "after_conv1_and_sum"}, "block_dropout_at", "dropout of 0"),
    ("small_vgg", {"convs_per_stage": 0}, "convs_per_stage", "greater than or equal to 1"),
    ("small_vgg", {"bias": "sometimes"}, "bias", "'auto' or 'always'"),
    ("alexnet", {"input_norm": "maybe"}, "input_norm", "valid boolean"),
    ("alexnet", {"block_order": "conv_pool"}, "block_order", "'conv_norm_act_pool' or 'conv_act_pool_norm'"),
    ("alexnet", {"variant": "bn4", "kernels": [3, 3, 3, 3]}, "kernels", "3 convolutions after the stem"),
    ("alexnet", {"kernels": [3, 0, 3, 3]}, "kernels", "greater than or equal to 1"),
    ("alexnet", {"stem_kernel": 0}, "stem_kernel", "greater than or equal to 1"),
    ("alexnet", {"stem_stride": 0}, "stem_stride", "greater than or equal to 1"),
    ("alexnet", {"stem_padding": -1}, "stem_padding", "greater than or equal to 0"),
    ("alexnet", {"bias": "never"}, "bias", "'auto' or 'always'"),
    ("alexnet", {"fc_activation": "relu"}, "fc_activation", "valid boolean"),
    ("alexnet", {"dropout_at": "both"}, "dropout_at", "'hidden' or 'logits'"),
    ("alexnet", {"dropout_at": "logits", "dropout": 0.0}, "dropout_at", "dropout of 0"),
    ("lenet", {"bias": "never"}, "bias", "'auto' or 'always'"),
]


@pytest.mark.parametrize("name, opts, key, what", BAD, ids=[f"{b[0]}-{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_values_are_one_line_naming_the_key(name, opts, key, what):
    shape = (1, 28, 28) if name == "lenet" else (3, 64, 64)
    with pytest.raises(ConfigError) as e:
        on_meta(build, {"name": name, **opts}, shape, 10)
    msg = str(e.value)
    assert msg.startswith(f"model.{key}") and "\n" not in msg, msg
    assert what in msg, msg
