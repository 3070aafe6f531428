"""Shapes, sizing, determinism and dropout of the task learners, Ranker, VAE and discriminator."""

import re

import pytest
import torch
from torch import nn

from tavaal.errors import ConfigError
from tavaal.losses import ranking_loss
from tavaal.models import (
    VAE,
    Discriminator,
    LinearRanker,
    LossPredictionModule,
    TaskModel,
    TaskOutput,
    build_discriminator,
    build_ranker,
    build_task_model,
    build_vae,
    list_task_models,
)
from tavaal.models.vae import conv_plan

BATCH = 2
NUM_CLASSES = 5

# (model, input_shape, embedding_dim, per-sample tap shapes)
TASK_CASES = [
    ("resnet18", (1, 8, 8), 512, [(64, 8, 8), (128, 4, 4), (256, 2, 2), (512, 1, 1)]),
    ("resnet18", (3, 8, 8), 512, [(64, 8, 8), (128, 4, 4), (256, 2, 2), (512, 1, 1)]),
    ("resnet18", (1, 28, 28), 512, [(64, 28, 28), (128, 14, 14), (256, 7, 7), (512, 4, 4)]),
    ("resnet18", (3, 32, 32), 512, [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]),
    # VGG pools while the map is >= 2x2: 8-4-2-1-1-1, 28-14-7-3-1-1, 32-16-8-4-2-1; its
    # embedding is the second 4096-wide layer of the standard head.
    ("vgg16_bn", (1, 8, 8), 4096, [(64, 4, 4), (128, 2, 2), (256, 1, 1), (512, 1, 1), (512, 1, 1)]),
    ("vgg16_bn", (3, 8, 8), 4096, [(64, 4, 4), (128, 2, 2), (256, 1, 1), (512, 1, 1), (512, 1, 1)]),
    (
        "vgg16_bn",
        (1, 28, 28),
        4096,
        [(64, 14, 14), (128, 7, 7), (256, 3, 3), (512, 1, 1), (512, 1, 1)],
    ),
    (
        "vgg16_bn",
        (3, 32, 32),
        4096,
        [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2), (512, 1, 1)],
    ),
    # ImageNet ResNet-18 (He et al. 2016): stem to 1/4 (conv /2, max-pool /2), then /1 /2 /2 /2.
    (
        "resnet18_imagenet",
        (3, 224, 224),
        512,
        [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)],
    ),
    ("resnet18_imagenet", (1, 32, 32), 512, [(64, 8, 8), (128, 4, 4), (256, 2, 2), (512, 1, 1)]),
    # VGG16-BN at 224: taps after the pools of blocks 2-5, 224-112-56-28-14-7.
    (
        "vgg16_bn_224",
        (3, 224, 224),
        4096,
        [(128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)],
    ),
    ("digits_cnn", (1, 8, 8), 128, [(32, 8, 8), (64, 4, 4)]),
    ("digits_cnn", (3, 8, 8), 128, [(32, 8, 8), (64, 4, 4)]),
    ("small_cnn", (1, 28, 28), 128, [(16, 14, 14), (32, 7, 7)]),
    ("small_cnn", (3, 32, 32), 128, [(16, 16, 16), (32, 8, 8)]),
    ("mlp", (2,), 32, [(32,)]),
]


# The smallest input each image model accepts (the others take any image; mlp takes vectors).
SMALLEST_SHAPE = {"mlp": (2,), "resnet18_imagenet": (1, 32, 32), "vgg16_bn_224": (1, 32, 32)}


def smallest_shape(name):
    return SMALLEST_SHAPE.get(name, (1, 8, 8))


def test_registry_names():
    assert list_task_models() == [
        "digits_cnn",
        "mlp",
        "resnet18",
        "resnet18_imagenet",
        "small_cnn",
        "vgg16_bn",
        "vgg16_bn_224",
    ]


def test_unknown_model_lists_known_names():
    with pytest.raises(ConfigError, match="unknown task model 'alexnet'.*digits_cnn.*vgg16_bn"):
        build_task_model("alexnet", (3, 32, 32), 10)


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet18_imagenet", "vgg16_bn", "vgg16_bn_224", "digits_cnn"]
)
def test_image_models_reject_vector_shapes(name):
    with pytest.raises(ConfigError, match="needs an image input_shape"):
        build_task_model(name, (2,), 2)


@pytest.mark.parametrize("name", ["resnet18_imagenet", "vgg16_bn_224"])
@pytest.mark.parametrize("shape", [(3, 31, 224), (3, 224, 31), (1, 8, 8)])
def test_224_models_reject_images_under_32(name, shape):
    message = f"needs images of at least 32x32 (it is meant for 224x224), got input_shape {shape}"
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_task_model(name, shape, 2)


@pytest.mark.parametrize(
    ("name", "parameters"),
    # The known counts of the 1000-class ImageNet models (torchvision's resnet18 and vgg16_bn).
    [("resnet18_imagenet", 11_689_512), ("vgg16_bn_224", 138_365_992)],
)
def test_224_models_have_the_known_parameter_counts(name, parameters):
    with torch.device("meta"):  # no memory, no initialisation cost
        model = build_task_model(name, (3, 224, 224), 1000, dropout=0.5)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == (
        # The 7x7 stem + 16 3x3 convs in 8 blocks + 3 projection shortcuts; VGG16's 13 convs.
        20 if name == "resnet18_imagenet" else 13
    )
    # The head the MC-dropout methods sample: its dropouts, then the classifier.
    head = [*model.hidden, model.dropout]
    if name == "vgg16_bn_224":
        # Linear(25088, 4096)-ReLU-Dropout-Linear(4096, 4096)-ReLU-Dropout-Linear(4096, 1000).
        kinds = [type(m) for m in head]
        assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout]
        assert (head[0].in_features, head[0].out_features) == (512 * 7 * 7, 4096)
        assert (head[3].in_features, head[3].out_features) == (4096, 4096)
    else:
        assert head == [model.dropout]
    assert all(m.p == 0.5 for m in head if isinstance(m, nn.Dropout))
    assert (model.classifier.in_features, model.classifier.out_features) == (
        model.embedding_dim,
        1000,
    )


@pytest.mark.parametrize("dropout", [-0.1, 1.0])
def test_invalid_dropout(dropout):
    with pytest.raises(ConfigError, match="dropout"):
        build_task_model("mlp", (2,), 2, dropout=dropout)


@pytest.mark.parametrize(
    ("name", "shape", "embedding_dim", "taps"), TASK_CASES, ids=lambda v: str(v)
)
def test_task_model_and_ranker_shapes(name, shape, embedding_dim, taps):
    torch.manual_seed(0)
    model = build_task_model(name, shape, NUM_CLASSES)
    assert isinstance(model, TaskModel)
    assert model.embedding_dim == embedding_dim
    with torch.no_grad():
        out = model(torch.randn(BATCH, *shape))
    assert isinstance(out, TaskOutput)
    assert out.logits.shape == (BATCH, NUM_CLASSES)
    assert out.embedding.shape == (BATCH, embedding_dim)
    assert [tuple(f.shape) for f in out.features] == [(BATCH, *t) for t in taps]

    ranker = build_ranker(model, shape, hidden=16)
    pred = ranker(out.features)
    assert pred.shape == (BATCH,)
    assert model.training  # the dummy forward restored the train mode
    linears = [m for m in ranker.modules() if isinstance(m, nn.Linear)]
    if name == "mlp":
        # TA-VAAL §4.1: a single-layer perceptron on the mid-layer tap.
        assert isinstance(ranker, LinearRanker)
        assert [(m.in_features, m.out_features) for m in linears] == [(32, 1)]
    else:
        # Learning Loss: one Linear(C, hidden) per tap, sized from the real taps, + the head.
        assert isinstance(ranker, LossPredictionModule)
        expected = [(t[0], 16) for t in taps] + [(16 * len(taps), 1)]
        assert [(m.in_features, m.out_features) for m in linears] == expected


def test_ranker_matches_hand_computed_pooling():
    torch.manual_seed(0)
    model = build_task_model("digits_cnn", (1, 8, 8), 3)
    ranker = build_ranker(model, (1, 8, 8), hidden=4)
    taps = [torch.randn(BATCH, 32, 8, 8), torch.randn(BATCH, 64, 4, 4)]
    branches = [
        torch.relu(branch[0](tap.mean(dim=(2, 3))))
        for branch, tap in zip(ranker.branches, taps, strict=True)
    ]
    expected = ranker.head(torch.cat(branches, dim=1)).squeeze(1)
    assert torch.allclose(ranker(taps), expected)
    with pytest.raises(ValueError, match="channels"):
        ranker(taps[:1])


def test_ranker_rejects_wrong_input_shape():
    model = build_task_model("mlp", (2,), 2)
    with pytest.raises(ConfigError, match="input_shape"):
        build_ranker(model, (3,))


def test_mlp_hidden_width_and_linear_count():
    model = build_task_model("mlp", (2,), 2)
    linears = [model.layer1[1], model.layer2[0], model.classifier]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 32), (32, 32), (32, 2)]
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 3


@pytest.mark.parametrize("name", list_task_models())
def test_same_seed_same_parameters(name):
    shape = smallest_shape(name)
    torch.manual_seed(7)
    first = build_task_model(name, shape, 3)
    torch.manual_seed(7)
    second = build_task_model(name, shape, 3)
    torch.manual_seed(8)
    third = build_task_model(name, shape, 3)

    def same(one, other):  # tensor by tensor: no copy of VGG16's 134 M parameters
        pairs = zip(one.parameters(), other.parameters(), strict=True)
        return all(torch.equal(p, q) for p, q in pairs)

    assert same(first, second)
    assert not same(first, third)


@pytest.mark.parametrize(("name", "shape"), [("mlp", (2,)), ("digits_cnn", (1, 8, 8))])
def test_dropout_stochastic_in_train_deterministic_in_eval(name, shape):
    torch.manual_seed(0)
    model = build_task_model(name, shape, 3, dropout=0.5)
    x = torch.randn(8, *shape)
    model.train()
    first, second = model(x), model(x)
    assert not torch.allclose(first.logits, second.logits)
    # Dropout sits after the embedding: the embedding itself is untouched by the mask.
    assert torch.allclose(first.embedding, second.embedding)
    model.eval()
    assert torch.equal(model(x).logits, model(x).logits)
    # p = 0 is the identity: train-mode output equals eval-mode output (no batch norm in mlp).
    plain = build_task_model("mlp", (2,), 3, dropout=0.0)
    v = torch.randn(4, 2)
    assert torch.equal(plain.train()(v).logits, plain.eval()(v).logits)


@pytest.mark.parametrize(
    ("height", "strides", "sizes"),
    [
        (32, [2, 2, 2, 2], [32, 16, 8, 4, 2]),  # VAAL's 32x32 layout
        (28, [2, 2, 2, 1], [28, 14, 7, 3, 3]),
        (8, [2, 2, 1, 1], [8, 4, 2, 2, 2]),
    ],
)
def test_vae_conv_plan(height, strides, sizes):
    got_strides, got_sizes = conv_plan(height, height)
    assert got_strides == strides
    assert got_sizes == [(s, s) for s in sizes]


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (1, 28, 28), (3, 32, 32), (3, 7, 5), (2,)])
@pytest.mark.parametrize("cond_dim", [0, 1])
def test_vae_reconstructs_exact_shape(shape, cond_dim):
    torch.manual_seed(0)
    vae = build_vae(shape, latent_dim=6, cond_dim=cond_dim, base_channels=4, hidden=16)
    assert isinstance(vae, VAE)
    x = torch.randn(3, *shape)
    r = torch.rand(3) if cond_dim else None
    recon, mu, logvar = vae(x, r)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (3, 6)
    assert vae.decode(mu, r).shape == x.shape
    if cond_dim:
        # r of shape (N, 1) is the same condition as (N,).
        vae.eval()
        assert torch.equal(vae.decode(mu, r), vae.decode(mu, r.unsqueeze(1)))


def test_vae_layers_follow_vaal():
    vae = build_vae((3, 32, 32), latent_dim=32, base_channels=8)
    convs = [m for m in vae.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size, m.stride) for m in convs] == [
        (8 * k, (4, 4), (2, 2)) for k in (1, 2, 4, 8)
    ]
    assert vae.fc_mu.in_features == 64 * 2 * 2
    deconvs = [m for m in vae.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in deconvs] == [(64, 32), (32, 16), (16, 8)]
    assert vae.decoder[0].out_features == 64 * 4 * 4


def test_vae_conditioning_reaches_decoder_only():
    torch.manual_seed(0)
    vae = build_vae((2,), latent_dim=3, cond_dim=1, hidden=8).eval()
    x = torch.randn(4, 2)
    low, mu_low, _ = vae(x, torch.zeros(4))
    high, mu_high, _ = vae(x, torch.ones(4))
    assert torch.equal(mu_low, mu_high)  # the encoder never sees r
    assert not torch.allclose(low, high)  # the decoder does (TA-VAAL eq. 4)
    assert vae.decoder[0].in_features == 3 + 1
    with pytest.raises(ValueError, match="needs a condition"):
        vae.decode(mu_low)
    plain = build_vae((2,), latent_dim=3, hidden=8)
    with pytest.raises(ValueError, match="cond_dim=0"):
        plain.decode(mu_low, torch.zeros(4))


def test_vae_samples_in_train_mode_only():
    torch.manual_seed(0)
    vae = build_vae((2,), latent_dim=3, hidden=8)
    x = torch.randn(4, 2)
    vae.train()
    assert not torch.equal(vae(x)[0], vae(x)[0])
    vae.eval()
    recon, mu, _ = vae(x)
    assert torch.equal(recon, vae.decode(mu))


def test_vae_mlp_is_two_layers_each():
    vae = build_vae((2,), latent_dim=3, hidden=8)
    enc = [m for m in vae.encoder.modules() if isinstance(m, nn.Linear)] + [vae.fc_mu]
    dec = [m for m in vae.decoder.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in enc] == [(2, 8), (8, 3)]
    assert [(m.in_features, m.out_features) for m in dec] == [(3, 8), (8, 2)]


def test_vae_same_seed_same_parameters():
    params = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        vae = build_vae((1, 8, 8), latent_dim=4, cond_dim=1, base_channels=4)
        params.append(torch.cat([p.flatten() for p in vae.parameters()]))
    assert torch.equal(params[0], params[1])
    assert not torch.equal(params[0], params[2])


@pytest.mark.parametrize("shape", [(2, 8), (1, 1, 8, 8)])
def test_vae_rejects_bad_shapes(shape):
    with pytest.raises(ConfigError, match="input_shape"):
        build_vae(shape, latent_dim=4)


@pytest.mark.parametrize("depth", [1, 3, 5])
@pytest.mark.parametrize("cond_dim", [0, 1])
def test_discriminator_shapes_and_depth(depth, cond_dim):
    torch.manual_seed(0)
    disc = build_discriminator(latent_dim=6, cond_dim=cond_dim, hidden=16, depth=depth)
    assert isinstance(disc, Discriminator)
    linears = [m for m in disc.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == depth
    assert linears[0].in_features == 6 + cond_dim
    assert linears[-1].out_features == 1
    assert sum(isinstance(m, nn.ReLU) for m in disc.modules()) == depth - 1
    mu = torch.randn(5, 6)
    r = torch.rand(5) if cond_dim else None
    logits = disc(mu, r)
    assert logits.shape == (5,)
    if cond_dim:
        assert torch.equal(logits, disc(mu, r.unsqueeze(1)))


def test_discriminator_outputs_unbounded_logits_and_uses_r():
    torch.manual_seed(0)
    disc = build_discriminator(latent_dim=4, cond_dim=1, hidden=8, depth=2)
    mu = torch.randn(3, 4)
    assert not torch.equal(disc(mu, torch.zeros(3)), disc(mu, torch.full((3,), 10.0)))
    with pytest.raises(ValueError, match="needs a condition"):
        disc(mu)
    # The last layer is a bare Linear: its bias comes out as is, no sigmoid squashes it.
    with torch.no_grad():
        disc.net[-1].weight.zero_()
        disc.net[-1].bias.fill_(5.0)
    assert disc(mu, torch.zeros(3)).tolist() == [5.0, 5.0, 5.0]


def test_discriminator_validates_depth():
    with pytest.raises(ConfigError, match="depth"):
        build_discriminator(latent_dim=4, depth=0)


def test_discriminator_same_seed_same_parameters():
    torch.manual_seed(1)
    a = build_discriminator(8, 1, 16)
    torch.manual_seed(1)
    b = build_discriminator(8, 1, 16)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize(("name", "shape"), [("mlp", (2,)), ("digits_cnn", (1, 8, 8))])
def test_task_and_ranker_train_together(name, shape):
    """TA-VAAL eq. 2: L_T + eta * L_R backpropagates into the task model and the Ranker."""
    torch.manual_seed(0)
    model = build_task_model(name, shape, 3)
    ranker = build_ranker(model, shape)
    x, y = torch.randn(6, *shape), torch.tensor([0, 1, 2, 0, 1, 2])
    out = model(x)
    per_sample = nn.functional.cross_entropy(out.logits, y, reduction="none")
    total = per_sample.mean() + ranking_loss(ranker(out.features), per_sample)
    total.backward()
    for module in (model, ranker):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
