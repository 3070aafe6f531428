"""VAE and discriminator of VAAL (§3), with TA-VAAL's rank conditioning (§3.2-3.3, eq. 3-6).

Image VAE sizing rule (VAAL's Wasserstein-autoencoder architecture, generalised to any H x W):
the encoder has four layers with channels base, 2*base, 4*base, 8*base, each conv + BN + ReLU.
A layer is a 4x4 stride-2 conv (padding 1, halving the map, rounding down) while the map is at
least 4x4; once it is smaller it becomes a 3x3 stride-1 conv (padding 1, size kept), so the map
never shrinks below 2x2 through striding:
    32x32: 32-16-8-4-2 (VAAL exactly),  28x28: 28-14-7-3-3,  8x8: 8-4-2-2-2.
Linear layers map the flattened last map to mu and logvar. The decoder is VAAL's: a linear layer
to an 8*base map at the size the encoder's last layer received, then transposed convs that undo
encoder layers 3, 2, 1 (8b->4b->2b->b channels; output_padding restores odd sizes exactly), then
a 1x1 conv to the input channels. The output is unbounded: it is compared by MSE with the
normalised input.

Vector data (D,) gets the MLP VAE of TA-VAAL §4.1: 2-layer MLPs with ReLU for encoder and decoder.

Initialisation (`vae.init`). "official" reproduces what VAAL's and TA-VAAL's `weight_init`
(model.py / models/query_models.py) actually do: it Kaiming-normalises the Conv2d and Linear
layers inside the encoder and decoder and sets batch norm to identity, but never reaches
`fc_mu` / `fc_logvar` (its fallback passes the module's *name*, a string, to kaiming_init) nor
the transposed convolutions (not an `nn.Conv2d`), which keep PyTorch's default initialisation;
the last 1x1 layer, a ConvTranspose2d(base, C, 1) there, keeps that layer's default too (here it
is the equivalent Conv2d, initialised as the transposed layer would be). "kaiming" applies
Kaiming-normal to every layer. The discriminator is Kaiming-normal either way, as in both codes.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from tavaal.errors import ConfigError
from tavaal.models.base import kaiming_init

VAEInit = Literal["official", "kaiming"]


def _with_condition(x: Tensor, r: Tensor | None, cond_dim: int, who: str) -> Tensor:
    """cat(x, r) for a conditional module (TA-VAAL eq. 3-6); r is (N,) or (N, cond_dim)."""
    if cond_dim == 0:
        if r is not None:
            raise ValueError(f"{who} was built with cond_dim=0 but got a condition r")
        return x
    if r is None:
        raise ValueError(f"{who} was built with cond_dim={cond_dim} and needs a condition r")
    r = r.reshape(x.shape[0], cond_dim).to(dtype=x.dtype)
    return torch.cat([x, r], dim=1)


class VAE(nn.Module):
    """Encoder -> (mu, logvar) -> z -> decoder conditioned on r (TA-VAAL eq. 4).

    The encoder never sees r; only the decoder does.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        latent_dim: int,
        cond_dim: int,
        encoder: nn.Module,
        encoded_dim: int,
        decoder: nn.Module,
        init: VAEInit = "official",
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.cond_dim = cond_dim
        self.encoder = encoder
        self.fc_mu = nn.Linear(encoded_dim, latent_dim)
        self.fc_logvar = nn.Linear(encoded_dim, latent_dim)
        self.decoder = decoder
        if init == "kaiming":
            kaiming_init(self)
        elif init == "official":
            # Only the Conv2d / Linear / batch-norm layers inside encoder and decoder (module doc).
            for block in (encoder, decoder):
                kaiming_init(block, transposed=False)
        else:
            raise ConfigError(f"vae.init must be 'official' or 'kaiming', got {init!r}")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.encoder(x)
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def decode(self, z: Tensor, r: Tensor | None = None) -> Tensor:
        return self.decoder(_with_condition(z, r, self.cond_dim, "VAE.decode"))

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x: Tensor, r: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction, mu, logvar); z is sampled in train mode and is mu in eval mode."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return self.decode(z, r), mu, logvar


def conv_plan(height: int, width: int, layers: int = 4) -> tuple[list[int], list[tuple[int, int]]]:
    """Strides of the encoder layers and the map sizes before/after each (see module doc)."""
    strides = []
    sizes = [(height, width)]
    for _ in range(layers):
        h, w = sizes[-1]
        if h >= 4 and w >= 4:
            strides.append(2)
            sizes.append((h // 2, w // 2))
        else:
            strides.append(1)
            sizes.append((h, w))
    return strides, sizes


def _conv(c_in: int, c_out: int, stride: int) -> nn.Module:
    kernel = 4 if stride == 2 else 3
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _deconv(
    c_in: int, c_out: int, stride: int, size_in: tuple[int, int], size_out: tuple[int, int]
) -> nn.Module:
    if stride == 2:
        # (in - 1) * 2 - 2 + 4 = 2 * in; output_padding adds the row/column lost to flooring.
        extra = (size_out[0] - 2 * size_in[0], size_out[1] - 2 * size_in[1])
        layer = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, output_padding=extra, bias=False)
    else:
        layer = nn.ConvTranspose2d(c_in, c_out, 3, 1, 1, bias=False)
    return nn.Sequential(layer, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvVAE(VAE):
    def __init__(
        self,
        input_shape: tuple[int, int, int],
        latent_dim: int,
        cond_dim: int = 0,
        base_channels: int = 128,
        init: VAEInit = "official",
    ) -> None:
        channels, height, width = input_shape
        strides, sizes = conv_plan(height, width)
        widths = [base_channels * 2**i for i in range(len(strides))]
        inputs = [channels, *widths[:-1]]
        encoder = nn.Sequential(
            *(_conv(i, o, s) for i, o, s in zip(inputs, widths, strides, strict=True)),
            nn.Flatten(),
        )
        last_h, last_w = sizes[-1]
        start_h, start_w = sizes[-2]
        top = widths[-1]
        layers: list[nn.Module] = [
            nn.Linear(latent_dim + cond_dim, top * start_h * start_w),
            nn.Unflatten(1, (top, start_h, start_w)),
        ]
        # Undo encoder layers len-2 .. 0, halving the channels each time (8b -> 4b -> 2b -> b).
        c_in = top
        for i in reversed(range(len(strides) - 1)):
            layers.append(_deconv(c_in, c_in // 2, strides[i], sizes[i + 1], sizes[i]))
            c_in //= 2
        output = nn.Conv2d(c_in, channels, 1)
        layers.append(output)
        decoder = nn.Sequential(*layers)
        super().__init__(
            input_shape, latent_dim, cond_dim, encoder, top * last_h * last_w, decoder, init
        )
        if init == "official":
            _transposed_default_init(output)


def _transposed_default_init(conv: nn.Conv2d) -> None:
    """PyTorch's default initialisation of ConvTranspose2d(in, out, 1), the official codes' last
    layer, for the equivalent 1x1 Conv2d(in, out): the transposed layer's weight is (in, out, 1, 1),
    so its fan-in is `out`, and the bound of weight and bias is 1 / sqrt(out)."""
    transposed = torch.empty(conv.in_channels, conv.out_channels, 1, 1)
    nn.init.kaiming_uniform_(transposed, a=math.sqrt(5))
    bound = 1.0 / math.sqrt(conv.out_channels)
    with torch.no_grad():
        conv.weight.copy_(transposed.transpose(0, 1))
        if conv.bias is not None:
            conv.bias.uniform_(-bound, bound)


class MLPVAE(VAE):
    def __init__(
        self,
        input_shape: tuple[int],
        latent_dim: int,
        cond_dim: int = 0,
        hidden: int = 64,
        init: VAEInit = "official",
    ) -> None:
        (dim,) = input_shape
        encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        decoder = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim)
        )
        super().__init__(input_shape, latent_dim, cond_dim, encoder, hidden, decoder, init)


def build_vae(
    input_shape: tuple[int, ...],
    latent_dim: int,
    cond_dim: int = 0,
    base_channels: int = 128,
    hidden: int = 64,
    init: VAEInit = "official",
) -> VAE:
    """Conv VAE for (C, H, W) inputs, MLP VAE for (D,) inputs; cond_dim=1 for TA-VAAL;
    `init`: how the weights start (module doc)."""
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise ConfigError(f"VAE input_shape must be (C, H, W) or (D,), got {shape}")
    if latent_dim < 1 or cond_dim < 0:
        raise ConfigError(
            f"VAE needs latent_dim >= 1 and cond_dim >= 0, got {latent_dim} and {cond_dim}"
        )
    if len(shape) == 3:
        if base_channels < 1:
            raise ConfigError(f"VAE base_channels must be >= 1, got {base_channels}")
        return ConvVAE(shape, latent_dim, cond_dim, base_channels, init)
    if len(shape) == 1:
        if hidden < 1:
            raise ConfigError(f"VAE hidden width must be >= 1, got {hidden}")
        return MLPVAE(shape, latent_dim, cond_dim, hidden, init)
    raise ConfigError(f"VAE input_shape must be (C, H, W) or (D,), got {shape}")


class Discriminator(nn.Module):
    """MLP on cat(mu, r) (TA-VAAL eq. 3, 6) or mu (VAAL) returning logits (N,).

    P(labeled) = sigmoid(logit); the caller applies it (BCE-with-logits is the stable form).
    """

    def __init__(self, latent_dim: int, cond_dim: int = 0, hidden: int = 512, depth: int = 3):
        super().__init__()
        if latent_dim < 1 or cond_dim < 0 or hidden < 1 or depth < 1:
            raise ConfigError(
                "discriminator needs latent_dim >= 1, cond_dim >= 0, hidden >= 1, depth >= 1; "
                f"got {latent_dim}, {cond_dim}, {hidden}, {depth}"
            )
        self.cond_dim = cond_dim
        widths = [latent_dim + cond_dim] + [hidden] * (depth - 1) + [1]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(c_in, c_out), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])  # no ReLU after the logit layer
        kaiming_init(self)

    def forward(self, mu: Tensor, r: Tensor | None = None) -> Tensor:
        return self.net(_with_condition(mu, r, self.cond_dim, "Discriminator")).squeeze(1)


class PixelDiscriminator(Discriminator):
    """The discriminator of VAAL's "no VAE" ablation (§5.1): the same MLP on the flattened
    (normalised) input instead of a latent code; logits (N,)."""

    def __init__(self, input_shape: tuple[int, ...], hidden: int = 512, depth: int = 3):
        features = 1
        for size in input_shape:
            features *= size
        super().__init__(features, 0, hidden, depth)
        self.input_shape = tuple(input_shape)

    def forward(self, x: Tensor, r: Tensor | None = None) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"PixelDiscriminator expects {self.input_shape}, got {x.shape[1:]}")
        return super().forward(x.flatten(1), r)


def build_discriminator(
    latent_dim: int, cond_dim: int = 0, hidden: int = 512, depth: int = 3
) -> Discriminator:
    """`depth` Linear layers in all (official code: 3; the papers' text: 5-layer MLP)."""
    return Discriminator(latent_dim, cond_dim, hidden, depth)
