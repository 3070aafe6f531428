"""DRN-D segmentation networks: shapes at the papers' crop sizes, output stride, the paper's
layout (dilations, strides, no residuals in the degridding levels), parameter counts, dropout,
the registry (initial weights: tests/test_initial_weights.py)."""

import pytest
import torch
from torch import nn

from tavaal.errors import ConfigError
from tavaal.models import list_task_models
from tavaal.models.drn import (
    DRN,
    DRN_WIDTHS,
    SLIM_WIDTHS,
    SegmentationOutput,
    build_drn,
    build_segmentation_model,
    feature_size,
    list_segmentation_models,
)
from tavaal.models.ranker import LossPredictionModule
from tavaal.models.resnet import BasicBlock
from tavaal.models.weights import FOREIGN_LAYOUTS

NUM_CLASSES = 19  # Cityscapes' and BDD100K's train ids
# DRN-D-22 with every width divided by 8: the same layout, a 64th of the compute, so shape
# checks at 688x688 stay cheap on one CPU core.
NARROW = tuple(w // 8 for w in DRN_WIDTHS)


def narrow_drn(num_classes: int = NUM_CLASSES, dropout: float = 0.0, seed: int = 0) -> DRN:
    torch.manual_seed(seed)
    return DRN(3, num_classes, dropout=dropout, widths=NARROW).eval()


@pytest.fixture(scope="module")
def drn_d_22() -> DRN:
    """The full DRN-D-22 for 19 classes, in eval mode, built once (tests must not modify it)."""
    torch.manual_seed(0)
    return build_drn("d_22", NUM_CLASSES).eval()


@pytest.fixture(scope="module")
def drn_d_38() -> DRN:
    torch.manual_seed(0)
    return build_drn("d_38", NUM_CLASSES).eval()


def tap_shapes(out: SegmentationOutput) -> list[tuple[int, ...]]:
    return [tuple(tap.shape) for tap in out.features]


def test_drn_d_22_shapes_at_tavaal_crop_412(drn_d_22):
    # TA-VAAL supp. Table 1: 412x412 crops. The full network, once (about 3 s on one core).
    model = drn_d_22
    x = torch.randn(1, 3, 412, 412)
    with torch.no_grad():
        out = model(x)
    # The last tap is the feature map the classifier reads (see the output-stride test).
    features = out.features[-1]
    assert out.logits.shape == (1, NUM_CLASSES, 412, 412)
    assert out.embedding.shape == (1, 512)
    # 412 -> 206 -> 103 -> 52: three padded stride-2 convs, output stride 8.
    assert features.shape == (1, 512, 52, 52)
    assert tap_shapes(out) == [
        (1, 64, 103, 103),
        (1, 128, 52, 52),
        (1, 512, 52, 52),
        features.shape,
    ]
    assert torch.allclose(out.embedding, features.mean(dim=(2, 3)))


def test_drn_d_22_layout_at_vaal_crop_688():
    # VAAL supp. Table 2: 688x688 crops; 688 = 8 x 86, so the feature map is exactly 86x86. The
    # narrow copy has the full network's layout (strides, dilations, depth); the full-width
    # forward at 688 takes about 7 s on one core and is in the slow test below.
    model = narrow_drn()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 688, 688))
    assert out.logits.shape == (1, NUM_CLASSES, 688, 688)
    assert tap_shapes(out) == [(1, 8, 172, 172), (1, 16, 86, 86), (1, 64, 86, 86), (1, 64, 86, 86)]
    assert out.embedding.shape == (1, 64)


@pytest.mark.slow
def test_drn_d_22_full_width_at_688(drn_d_22):
    model = drn_d_22
    with torch.no_grad():
        out = model(torch.randn(1, 3, 688, 688))
    assert out.logits.shape == (1, NUM_CLASSES, 688, 688)
    assert tap_shapes(out) == [
        (1, 64, 172, 172),
        (1, 128, 86, 86),
        (1, 512, 86, 86),
        (1, 512, 86, 86),
    ]


@pytest.mark.parametrize(("h", "w"), [(8, 8), (9, 17), (64, 40), (65, 100), (127, 33)])
def test_output_stride_is_8_with_logits_at_input_size(h, w):
    model = narrow_drn(num_classes=5)
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        out = model(x)
        features, taps = model.forward_features(x)
    assert torch.equal(taps[-1], features) and torch.equal(out.features[-1], features)
    side = (-(-h // 8), -(-w // 8))  # ceil
    assert features.shape[2:] == side == (feature_size(h), feature_size(w))
    assert out.logits.shape == (2, 5, h, w)


def conv_plan(module: nn.Module) -> list[tuple[int, int, int]]:
    """(kernel, stride, dilation) of every conv but the 1x1 shortcuts, in order."""
    return [
        (m.kernel_size[0], m.stride[0], m.dilation[0])
        for name, m in module.named_modules()
        if isinstance(m, nn.Conv2d) and "shortcut" not in name
    ]


def test_drn_d_22_follows_the_papers_layout(drn_d_22, drn_d_38):
    model = drn_d_22
    stem_and_3, level_4, levels_5_6, levels_7_8 = model.groups
    # Levels 0-2: 7x7 stem at full resolution, then one conv each (DRN-D), no max-pooling;
    # level 3: two BasicBlocks, the first strided.
    assert (
        conv_plan(stem_and_3) == [(7, 1, 1), (3, 1, 1), (3, 2, 1)] + [(3, 2, 1)] + [(3, 1, 1)] * 3
    )
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert conv_plan(level_4) == [(3, 2, 1)] + [(3, 1, 1)] * 3
    # Dilated levels as the released DRN-D (`new_level=False`): 2 throughout level 5, 4 in 6.
    assert conv_plan(levels_5_6) == [(3, 1, 2)] * 4 + [(3, 1, 4)] * 4
    # §4 degridding: dilation 2 then 1, plain convs without residual connections.
    assert conv_plan(levels_7_8) == [(3, 1, 2), (3, 1, 1)]
    assert not any(isinstance(m, BasicBlock) for m in levels_7_8.modules())
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 8
    # 22 = 21 convs of the body + the classifier (shortcuts not counted).
    assert len(conv_plan(model)) == 22
    assert model.classifier.kernel_size == (1, 1)
    assert len(conv_plan(drn_d_38)) == 38


def test_parameter_counts(drn_d_22, drn_d_38):
    # The body counted by hand from the layout: levels 0-2, the BasicBlocks of 3-6 (two 3x3
    # convs, a 1x1 shortcut in the first), levels 7-8, and BN's weight + bias per channel.
    def block(c_in, c):
        return 9 * c_in * c + 9 * c * c + 2 * 2 * c + (c_in * c + 2 * c if c_in != c else 0)

    def level(c_in, c, n):
        return block(c_in, c) + (n - 1) * block(c, c)

    body = (
        (49 * 3 * 16 + 32) + (9 * 16 * 16 + 32) + (9 * 16 * 32 + 64)
        + level(32, 64, 2) + level(64, 128, 2) + level(128, 256, 2) + level(256, 512, 2)
        + 2 * (9 * 512 * 512 + 1024)
    )  # fmt: skip
    classifier = 512 * NUM_CLASSES + NUM_CLASSES
    d22 = sum(p.numel() for p in drn_d_22.parameters())
    d38 = sum(p.numel() for p in drn_d_38.parameters())
    assert body + classifier == d22 == 15_890_499
    assert d38 == 25_998_659
    # Plausibility: with a 1000-class ImageNet classifier instead of ours, DRN-D-22 has
    # 16,393,752 parameters and DRN-D-38 26,501,912, the 16.4M and 26.5M the DRN authors
    # publish for the two networks.
    imagenet = 512 * 1000 + 1000
    assert round((d22 - classifier + imagenet) / 1e5) == 164
    assert round((d38 - classifier + imagenet) / 1e5) == 265


def test_dropout_before_the_classifier_is_sampled_in_training_mode_only():
    model = narrow_drn(dropout=0.5)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        features, _ = model.forward_features(x)
        first, second = model(x), model(x)
        # Eval mode: deterministic, and the logits are the head on the features.
        assert torch.equal(first.logits, second.logits)
        assert torch.allclose(first.logits, model.logits_from_features(features, (24, 24)))
        model.dropout.train()  # MC dropout: only the dropout layer samples
        sampled = [model(x) for _ in range(2)]
    assert not torch.equal(sampled[0].logits, sampled[1].logits)
    # The embedding and the taps are read before the dropout.
    assert torch.equal(sampled[0].embedding, first.embedding)
    assert all(torch.equal(a, b) for a, b in zip(sampled[0].features, first.features, strict=True))


@pytest.mark.parametrize("dropout", [-0.1, 1.0])
def test_invalid_dropout(dropout):
    with pytest.raises(ConfigError, match="dropout must be in"):
        build_drn("d_22", NUM_CLASSES, dropout=dropout)


def test_same_seed_same_weights():
    a, b = narrow_drn(seed=3), narrow_drn(seed=3)
    assert all(
        torch.equal(p, q)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    # Kaiming-normal convs, zero biases, BN at identity (as `kaiming_init` does).
    assert torch.equal(a.classifier.bias, torch.zeros(NUM_CLASSES))
    bn = a.groups[0][0][0][1]
    assert torch.equal(bn.weight, torch.ones(NARROW[0])) and torch.equal(
        bn.bias, torch.zeros(NARROW[0])
    )


def test_taps_feed_the_loss_prediction_module():
    model = narrow_drn()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 40, 40))
    ranker = LossPredictionModule([tap.shape[1] for tap in out.features])
    assert ranker(out.features).shape == (3,)


def test_registry():
    assert list_segmentation_models() == ["drn_d_22", "drn_d_22_slim", "drn_d_38"]
    # Kept apart from the classification registry: its builders return TaskOutput models.
    assert not set(list_segmentation_models()) & set(list_task_models())
    model = build_segmentation_model("drn_d_22", (1, 64, 64), 7, dropout=0.2)
    assert isinstance(model, DRN) and model.dropout.p == 0.2
    assert model.groups[0][0][0][0].in_channels == 1
    assert model.classifier.out_channels == 7
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 8
    d38 = build_segmentation_model("drn_d_38", (3, 64, 64), 7)
    assert sum(isinstance(m, BasicBlock) for m in d38.modules()) == 16


def test_drn_d_22_slim_is_drn_d_22_at_a_quarter_of_the_widths():
    # The CPU-sized DRN of the examples and the workflow's end-to-end tests.
    assert "drn_d_22_slim" in list_segmentation_models()
    assert SLIM_WIDTHS == (4, 4, 8, 16, 32, 64, 128, 128, 128)
    torch.manual_seed(0)
    model = build_segmentation_model("drn_d_22_slim", (3, 64, 64), 4, dropout=0.3).eval()
    assert isinstance(model, DRN) and model.dropout.p == 0.3
    assert model.classifier.out_channels == 4 and model.embedding_dim == 128
    # Same blocks, levels, dilations and strides as DRN-D-22 (compared with the narrow copy).
    assert conv_plan(model) == conv_plan(narrow_drn())
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 8
    with torch.no_grad():
        small = model(torch.randn(2, 3, 64, 64))
        crop = model(torch.randn(1, 3, 412, 412))
    assert small.logits.shape == (2, 4, 64, 64) and small.embedding.shape == (2, 128)
    assert tap_shapes(small) == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 128, 8, 8), (2, 128, 8, 8)]
    assert crop.logits.shape == (1, 4, 412, 412)
    assert tap_shapes(crop) == [
        (1, 16, 103, 103),
        (1, 32, 52, 52),
        (1, 128, 52, 52),
        (1, 128, 52, 52),
    ]
    # About a sixteenth of DRN-D-22's 15.9M (every conv is a quarter wide on both sides): a body
    # of 995,196 and a classifier of 128 x K + K.
    assert sum(p.numel() for p in model.parameters()) == 995_196 + 128 * 4 + 4 == 995_712
    slim_19 = build_segmentation_model("drn_d_22_slim", (3, 32, 32), NUM_CLASSES)
    assert sum(p.numel() for p in slim_19.parameters()) == 995_196 + 128 * 19 + 19 == 997_647
    gray = build_segmentation_model("drn_d_22_slim", (1, 32, 32), NUM_CLASSES)
    assert gray.groups[0][0][0][0].in_channels == 1


def test_registry_errors():
    with pytest.raises(ConfigError, match="unknown segmentation model 'drn_c_26'.*drn_d_22"):
        build_segmentation_model("drn_c_26", (3, 64, 64), NUM_CLASSES)
    with pytest.raises(ConfigError, match="needs an image input_shape"):
        build_segmentation_model("drn_d_22", (3, 64), NUM_CLASSES)
    with pytest.raises(ConfigError, match="at least 8x8"):
        build_segmentation_model("drn_d_22", (3, 7, 64), NUM_CLASSES)
    with pytest.raises(ConfigError, match="unknown DRN variant 'd_105'"):
        build_drn("d_105", NUM_CLASSES)


# The released DRN-D networks (fyu/drn, drn.py at commit d75db2e), read from `DRN.__init__`,
# `_make_layer` and `_make_conv_layers` with arch "D": level -> (kernel, stride of its first
# conv, dilation of every conv of the level). Levels 5 and 6 are built with new_level=False, so
# their first block is dilated like the rest. Padding is the dilation for 3x3 convs
# (`conv3x3(..., padding=dilation)`), 3 for the 7x7 stem and 0 for the 1x1 projections
# (`downsample.0`, stride of the level, dilation 1).
RELEASED_LEVELS = {
    0: (7, 1, 1),
    1: (3, 1, 1),
    2: (3, 2, 1),
    3: (3, 2, 1),
    4: (3, 2, 1),
    5: (3, 1, 2),
    6: (3, 1, 4),
    7: (3, 1, 2),
    8: (3, 1, 1),
}
# BasicBlocks of levels 3-6: drn_d_22 is DRN(BasicBlock, [1, 1, 2, 2, 2, 2, 1, 1]), drn_d_38
# DRN(BasicBlock, [1, 1, 3, 4, 6, 3, 1, 1]); levels 0-2 and 7-8 hold one conv each.
RELEASED_BLOCKS = {"d_22": (2, 2, 2, 2), "d_38": (3, 4, 6, 3)}


def released_convs(variant: str) -> dict[str, tuple[int, int, int, int]]:
    """The released network's conv name -> (kernel, stride, dilation, padding), classifier
    (`fc`) left out."""
    convs = {}
    for level, (kernel, stride, dilation) in RELEASED_LEVELS.items():
        padding = 3 if kernel == 7 else dilation
        if level in (0, 1, 2, 7, 8):
            convs[f"layer{level}.0"] = (kernel, stride, dilation, padding)
            continue
        for block in range(RELEASED_BLOCKS[variant][level - 3]):
            first = stride if block == 0 else 1
            convs[f"layer{level}.{block}.conv1"] = (kernel, first, dilation, padding)
            convs[f"layer{level}.{block}.conv2"] = (kernel, 1, dilation, padding)
        convs[f"layer{level}.0.downsample.0"] = (1, stride, 1, 0)
    return convs


@pytest.mark.parametrize(
    ("name", "variant"), [("drn_d_22", "d_22"), ("drn_d_38", "d_38"), ("drn_d_22_slim", "d_22")]
)
def test_every_conv_has_the_released_drn_d_geometry(name, variant):
    # Released weights, renamed as `tavaal.models.weights` renames them, meet a conv of the
    # same kernel, stride, dilation and padding: they run as they were trained.
    rename = FOREIGN_LAYOUTS["drn_d_22"][1]
    with torch.device("meta"):
        model = build_segmentation_model(name, (3, 64, 64), NUM_CLASSES)
    ours = {
        module_name: (m.kernel_size[0], m.stride[0], m.dilation[0], m.padding[0])
        for module_name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and module_name != "classifier"
    }
    released = {
        rename(f"{conv}.weight").removesuffix(".weight"): geometry
        for conv, geometry in released_convs(variant).items()
    }
    assert ours == released
    # Where the paper's form (§2) and the released one differ: the first conv of levels 5, 6.
    assert released["groups.2.0.0.conv1"] == (3, 1, 2, 2)
    assert released["groups.2.1.0.conv1"] == (3, 1, 4, 4)
