"""Typed experiment configuration.

An experiment is a dataset with its protocol. The dataclasses below hold every setting with its
default; `ExperimentConfig.from_dict` rejects unknown keys and wrong types with a `ConfigError`
that names the key path (e.g. ``experiments.digits.vae.latent_dim``).

They are also the source of the experiment part of the workflow's schema,
schemas/config.schema.yaml (`tavaal.config_schema`): each setting is declared with `option`,
which keeps its description and its JSON-schema constraints beside its default, so that adding
a setting is one edit here (then `tavaal schema --write`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tavaal.errors import ConfigError


def option(default: Any = dataclasses.MISSING, doc: str = "", registry: str = "", **schema: Any):
    """A setting: its default (none: a required key), its description and its JSON-schema
    constraints (`minimum=1`, `items={"minimum": 0}`, ...) for schemas/config.schema.yaml.
    `registry` names the registry whose names a string must be ("datasets", "models",
    "methods"), listed in the schema by `tavaal.config_schema`, which may import them."""
    return field(default=default, metadata={"doc": doc, "registry": registry, "schema": schema})


@dataclass(frozen=True)
class TrainConfig:
    """Task-learner training (TA-VAAL supplement Table 1; VAAL supplement Table 3)."""

    epochs: int = option(200, "Passes over the labeled set per stage.", minimum=1)
    iterations: int = option(
        0,
        "Train for this many optimizer steps instead of epochs passes over the labeled set "
        "(0 = use epochs); VAAL's official code trains a fixed number of iterations at every "
        "stage.",
        minimum=0,
    )
    batch_size: int = option(
        128, "Minibatch size (the global batch when processes > 1).", minimum=1
    )
    optimizer: Literal["sgd", "adam"] = option("sgd")
    lr: float = option(
        0.1, "Initial learning rate, multiplied by gamma at each milestone.", exclusiveMinimum=0
    )
    momentum: float = option(0.9, minimum=0)
    weight_decay: float = option(5e-4, minimum=0)
    milestones: tuple[int, ...] = option(
        (160,),
        "Epochs (iterations when iterations > 0) after which the learning rate is multiplied "
        "by gamma.",
        items={"minimum": 1},
    )
    gamma: float = option(0.1, exclusiveMinimum=0)
    dropout: float = option(
        0.0,
        "Dropout before each layer of the classifier head, for every method alike, so that the "
        "methods of one training recipe train identical models; the MC-dropout methods (bald, "
        "var_ratio, dbal) need it > 0.",
        minimum=0,
        exclusiveMaximum=1,
    )
    augment: bool = option(
        True,
        "Augment training images (image datasets only) as set by augmentation and hflip: a "
        "random crop and a horizontal flip (TA-VAAL §4.2). TA-VAAL arXiv §5.3 uses it for "
        "CIFAR-10 and SVHN, normalisation only for Fashion-MNIST; on 8×8 digits it destroys the "
        "signal. Evaluation uses the stored images unchanged.",
    )
    augmentation: Literal["pad_crop", "resized_crop"] = option(
        "pad_crop",
        "The crop when augment is on. pad_crop: crop of the image zero-padded by crop_padding "
        "(CIFAR-style). resized_crop: ImageNet-style random-resized crop, for large images "
        "(e.g. 224 px): a box of area fraction in crop_scale and aspect ratio in crop_ratio "
        "resized back to the stored size; crop_padding is then unused.",
    )
    crop_padding: int = option(
        4,
        "pad_crop: zero padding before the random crop (0 = no crop; VAAL flips only).",
        minimum=0,
    )
    crop_scale: tuple[float, float] = option(
        (0.08, 1.0),
        "resized_crop: [min, max] area fraction of the image the crop box covers, drawn "
        "uniformly (0 < min <= max <= 1).",
        items={"exclusiveMinimum": 0, "maximum": 1},
    )
    crop_ratio: tuple[float, float] = option(
        (0.75, 4 / 3),
        "resized_crop: [min, max] aspect ratio (width / height) of the crop box, drawn "
        "log-uniformly (0 < min <= max); when 10 draws do not fit in the image, the centre "
        "crop of the largest box of an allowed aspect ratio.",
        items={"exclusiveMinimum": 0},
    )
    hflip: bool = option(True, "Random horizontal flip when augment is on.")
    crop_size: int = option(
        0,
        "Segmentation datasets only: side of the square random crop taken from each image "
        "and its mask together when augment is on (VAAL supp. Table 2: 688; TA-VAAL supp. "
        "Table 1: 412); 0 = the whole image, flipped only. A crop larger than the image is "
        "padded (mask pixels 255).",
        minimum=0,
    )
    validation_size: int = option(
        0,
        "Model selection (VAAL's official code: 5000): hold out this many train-split samples, "
        "never labeled or queried, and keep the weights with the best accuracy on them; 0 = "
        "off, keep the last weights. The test split is never used for selection.",
        minimum=0,
    )
    validate_every: int = option(
        1, "Epochs (iterations when iterations > 0) between validations.", minimum=1
    )
    checkpoint_every: int = option(
        0,
        "Save a resumable checkpoint every N epochs (0 = never); a restarted job resumes from it.",
        minimum=0,
    )
    init_weights: str = option(
        "",
        'State dict file every task-learner training starts from ("" = from scratch, the '
        "model's own initialisation). tavaal's own layout, or torchvision's for "
        "resnet18_imagenet, vgg16_bn and vgg16_bn_224, or the released DRN-D's (fyu/drn) for "
        "drn_d_22 and drn_d_38 (tavaal.models.weights maps them); a foreign layout's ImageNet "
        "classifier is not loaded. Read with weights_only, checked against the model before any "
        "job; its sha256 enters the training settings hash. The DRN authors' segmentation code "
        "starts from ImageNet weights; neither paper's classification code does.",
    )
    randaugment_ops: int = option(
        0,
        "Strong training recipe (Munjal et al., CVPR 2022; docs/methods.md), for every method "
        "alike: RandAugment operations per training image (Cubuk et al. 2020), drawn from "
        "torchvision's 14, after the crop and flip of augment; 0 = off. Image classification "
        "datasets only.",
        minimum=0,
    )
    randaugment_magnitude: int = option(
        9, "RandAugment's global magnitude, 0..30 (torchvision's scale).", minimum=0, maximum=30
    )
    swa_start: int = option(
        0,
        "Strong training recipe: stochastic weight averaging (Izmailov et al. 2018) from this "
        "epoch on, at the constant learning rate swa_lr; the average of the weights after each "
        "later epoch, with batch-norm statistics recomputed on the labeled set, is the "
        "trained model. 0 = off. Needs epochs (not iterations) and no validation_size.",
        minimum=0,
    )
    swa_lr: float = option(0.0005, "Constant learning rate of the SWA epochs.", exclusiveMinimum=0)
    processes: int = option(
        1,
        "Data-parallel processes of one training job, one per GPU of the job's node (the train "
        "rules ask for that many GPUs; gloo on a CPU; tavaal.distributed); every process takes "
        "its share of each global batch of batch_size. How the work is split, not what is "
        "computed: left out of the training settings, since any number gives the same model up "
        "to floating-point reordering. Classification datasets only.",
        minimum=1,
    )


@dataclass(frozen=True)
class RankerConfig:
    """Loss-prediction module / Ranker (Yoo & Kweon 2019; TA-VAAL §3.1)."""

    hidden: int = option(128, "Hidden width of the loss-prediction module.", minimum=1)
    weight: float = option(
        1.0,
        "eta of TA-VAAL eq. 2 (lambda in Learning Loss): weight of the ranker loss.",
        minimum=0,
    )
    margin: float = option(1.0, "xi of the Learning-Loss margin loss.", minimum=0)
    detach_epoch: int = option(
        120,
        "After this epoch (pass over the labeled set) the ranker's gradient no longer reaches "
        "the backbone (official code: 120 of 200).",
        minimum=0,
    )


@dataclass(frozen=True)
class VAEConfig:
    """VAE + discriminator trained inside VAAL / TA-VAAL queries."""

    latent_dim: int = option(64, "Size of the latent code.", minimum=1)
    base_channels: int = option(
        128,
        "Channels of the first conv layer of the image VAE (VAAL: 128 -> 256 -> 512 -> 1024).",
        minimum=1,
    )
    hidden: int = option(64, "Hidden width of the MLP VAE used for vector data.", minimum=1)
    beta: float = option(1.0, "Weight of the KL term in the VAE's loss.", minimum=0)
    recon_weight: float = option(
        1.0, "Weight of the VAE's reconstruction and KL terms in its loss.", minimum=0
    )
    adversary_weight: float = option(
        1.0, "Weight of the VAE's adversarial term (fooling D) in its loss.", minimum=0
    )
    lr: float = option(5e-4, "Learning rate of the VAE.", exclusiveMinimum=0)
    disc_lr: float = option(5e-4, "Learning rate of the discriminator D.", exclusiveMinimum=0)
    disc_hidden: int = option(512, "Hidden width of the discriminator.", minimum=1)
    disc_depth: int = option(
        3,
        "Linear layers of the discriminator (official code: 3; the papers' text: a 5-layer MLP).",
        minimum=1,
    )
    batch_size: int = option(
        64, "Points drawn from each of the labeled set and the pool per batch.", minimum=1
    )
    input_size: int = option(
        0,
        "Side of the square images the VAE and D train on; 0 = as stored. VAAL's VAE was built "
        "for 32x32 inputs (and 64 for BDD100K): larger images (e.g. 224 px) are resized to this "
        "size on the device, antialiased, once per query.",
        minimum=0,
        maximum=512,
    )
    epochs: int = option(
        100,
        "Passes over labeled + training pool, converted to iterations when iterations is 0 "
        "(TA-VAAL code: (|L| + |subset|) * epochs / batch).",
        minimum=1,
    )
    iterations: int = option(
        0, "Fixed number of VAE/D iterations (0 = derive from epochs).", minimum=0
    )
    vae_steps: int = option(
        1, "VAE updates per iteration (VAAL's code: 2; TA-VAAL's: 1).", minimum=1
    )
    disc_steps: int = option(1, "Discriminator updates per iteration, after the VAE's.", minimum=1)
    kl_reduction: Literal["mean", "sum"] = option(
        "mean",
        "How the KL term is reduced over batch and latent dimensions: mean (TA-VAAL's code) or "
        "sum (VAAL's code, no division by the batch).",
    )
    train_on: Literal["subset", "pool"] = option(
        "subset",
        "Train on labeled + candidate subset, or labeled + whole unlabeled pool (VAAL).",
    )
    rank_normalization: Literal["quantile", "zscore_sigmoid", "sigmoid", "official"] = option(
        "sigmoid",
        "How the Ranker output r is normalised before conditioning the decoder and D (TA-VAAL "
        "§3.3, §7.1; tavaal.adversarial.conditioning): sigmoid = sigmoid(r) for both, the "
        "paper's text; official = sigmoid(r) into the decoder but raw r into D, as the official "
        "code; quantile = r's mid-rank over labeled + training pool, in (0, 1), blind to any "
        "increasing transform of r; zscore_sigmoid = sigmoid of r standardised over the same "
        "points. The paper's form is the default: our studies found no measurable benefit of "
        "quantile (AULC - random, TA-VAAL: digits +1.5 quantile vs -2.6 sigmoid, Fashion-MNIST "
        '-0.6 vs -0.7, intervals overlapping; docs/results/studies.md, "When does TA-VAAL '
        'help?").',
    )
    checkpoint_every: int = option(
        0, "Save a resumable VAE/D state every N iterations inside a query (0 = never).", minimum=0
    )
    init: Literal["official", "kaiming"] = option(
        "official",
        "Initial VAE weights (tavaal.models.vae): official = as VAAL's and TA-VAAL's code "
        "effectively leave them (their weight_init never reaches fc_mu, fc_logvar nor the "
        "transposed convolutions, which keep PyTorch's defaults; the rest Kaiming-normal); "
        "kaiming = Kaiming-normal for every layer, what this project did before (the CPU "
        "configs keep it so their results stand).",
    )


@dataclass(frozen=True)
class QueryConfig:
    """Settings of the uncertainty baselines."""

    mc_samples: int = option(
        10, "Stochastic forward passes T of the MC-dropout methods (VAAL: 10).", minimum=2
    )
    ensemble_size: int = option(
        5, "Independently trained task learners M of ensemble_varr.", minimum=2
    )
    inference_batch_size: int = option(
        512, "Batch size of inference passes over candidates.", minimum=1
    )


@dataclass(frozen=True)
class EmbeddingConfig:
    """What the embedding-based methods (`Strategy.reads_embedding`: typiclust, probcover)
    select on."""

    source: Literal["task_model", "vae", "file"] = option(
        "task_model",
        "task_model = the stage's task learner's penultimate features; vae = the latent means of "
        "a plain VAE trained in the query with the vae settings (unsupervised, as "
        "vae_wasserstein trains it); file = a file a person brings (path; e.g. the features of "
        "a pretrained network; tavaal.data.embeddings).",
    )
    path: str = option(
        "",
        "With source file: a .npy array (float, 2-D) with one row per train sample, in the "
        "prepared dataset's order; checked for its row count and for NaN or infinite values.",
    )


@dataclass(frozen=True)
class OracleConfig:
    """Who labels the queried samples (VAAL §3.3, §5.2): a simulated oracle, ideal (noise 0) or
    noisy, or a person (kind human: practitioner mode, docs/labeling.md). The noisy oracle gives
    a wrong label to a fixed `noise` fraction of the train split, always another class of the
    same confusion group; which samples it gets wrong, and what it says, is fixed per seed
    (`tavaal.oracle`)."""

    kind: Literal["simulated", "human"] = option(
        "simulated",
        "simulated = answers from the dataset's labels (ideal or noisy); human = the workflow "
        "stops at each request and a person fills its labels file (tavaal.practitioner; needs "
        "an image_folders dataset).",
    )
    noise: float = option(
        0.0,
        "Fraction of the train split the oracle labels wrongly (VAAL 0.1, 0.2, 0.3).",
        minimum=0,
        exclusiveMaximum=1,
    )
    confusion: Literal["dataset", "groups", "any"] = option(
        "dataset",
        "Which wrong class: dataset = another class of the same dataset class group "
        "(CIFAR-100's 20 super-classes, VAAL §5.2); groups = of the same list in groups; any = "
        "any other class.",
    )
    groups: tuple[tuple[int, ...], ...] = option(
        (),
        "Class indices that a labeler may confuse, one list per group (read with confusion "
        "groups and noise > 0).",
        items={"minItems": 1, "items": {"minimum": 0}},
    )
    labels_dir: str = option(
        "labels",
        "Human oracle: root of the labels files people fill, one per request, mirroring "
        "results/: <labels_dir>/<experiment>/<method>/seed<s>/stage<k>/labels.csv (the shared "
        "initial pool: <labels_dir>/<experiment>/stage0/seed<s>/labels.csv). Kept outside "
        "results/.",
        minLength=1,
    )
    initial_labels: str = option(
        "",
        "Human oracle: a CSV (path,label; paths relative to the image folder) of labels already "
        "at hand; those images are the initial pool (initial_size must equal its row count). "
        "Empty: the initial pool is drawn at random and goes to the person first.",
    )

    @property
    def ideal(self) -> bool:
        return self.kind == "simulated" and self.noise == 0.0

    @property
    def human(self) -> bool:
        return self.kind == "human"


@dataclass(frozen=True)
class ExperimentConfig:
    """One dataset with its active-learning protocol."""

    name: str
    dataset: str = option(
        doc="A registered dataset (tavaal.data.list_datasets()) or the name of an image_folders "
        "entry (checked against both before any job).",
        registry="datasets",
    )
    model: str = option(
        doc="Task learner of the dataset's task: a classifier (tavaal.models.list_task_models()) "
        "or a segmentation network (tavaal.models.drn.list_segmentation_models()).",
        registry="models",
    )
    normalization: Literal["dataset", "half"] = option(
        "dataset",
        "Input scaling of task learner and VAE: dataset = per-channel mean/std of the train "
        "split; half = (x - 0.5) / 0.5, images on [-1, 1], as VAAL's official code.",
    )
    methods: tuple[str, ...] = option(
        ("random",),
        "Query strategies to run (tavaal.strategies.list_strategies()).",
        registry="methods",
        minItems=1,
        uniqueItems=True,
    )
    seeds: tuple[int, ...] = option(
        (0,),
        "Random seeds; every method runs once per seed.",
        minItems=1,
        uniqueItems=True,
        items={"minimum": 0},
    )
    initial_size: int = option(
        1000,
        "Size of the random initial labeled pool (stage 0), the same for every method.",
        minimum=1,
    )
    initial_excluded_classes: int = option(
        0,
        "Biased initial pool (VAAL §5.2): this many classes, drawn at random per seed, have no "
        "sample in the initial labeled set (the same pool for every method).",
        minimum=0,
    )
    budget: int = option(1000, "Samples labeled per query.", minimum=1)
    stages: int = option(
        10, "Training stages (points on the learning curve); stages - 1 queries.", minimum=1
    )
    subset_size: int = option(
        10000,
        "Random candidate subset scored per query (10x the budget in the papers); 0 = whole pool.",
        minimum=0,
    )
    train: TrainConfig = field(default_factory=TrainConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)

    @classmethod
    def from_dict(
        cls, name: str, data: dict[str, Any], where: str | None = None
    ) -> ExperimentConfig:
        where = where or f"experiments.{name}"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        config = build_dataclass(cls, {"name": name, **data}, where)
        config.validate(where)
        return config

    def validate(self, where: str) -> None:
        """Checks of the values alone. Names of datasets, models and methods are checked against
        their registries by `tavaal.validation.check_experiment`, where those are known."""
        if not self.methods:
            raise ConfigError(f"{where}.methods: at least one method is required")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"{where}.methods: a method is listed twice")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"{where}.seeds: need distinct non-negative integers")
        for key in ("initial_size", "budget", "stages"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(self, key)}")
        if self.subset_size < 0:
            raise ConfigError(f"{where}.subset_size: must be >= 0 (0 = whole pool)")
        if 0 < self.subset_size < self.budget:
            raise ConfigError(
                f"{where}.subset_size: {self.subset_size} is smaller than the budget {self.budget}"
            )
        for key in ("epochs", "batch_size", "validate_every", "processes"):
            if getattr(self.train, key) < 1:
                raise ConfigError(f"{where}.train.{key}: must be >= 1")
        for key in (
            "iterations",
            "crop_padding",
            "crop_size",
            "checkpoint_every",
            "validation_size",
        ):
            if getattr(self.train, key) < 0:
                raise ConfigError(f"{where}.train.{key}: must be >= 0")
        if not 0.0 <= self.train.dropout < 1.0:
            raise ConfigError(f"{where}.train.dropout: must be in [0, 1)")
        self._validate_crop(where)
        self._validate_strong_recipe(where)
        for key in ("latent_dim", "batch_size", "vae_steps", "disc_steps", "disc_depth", "epochs"):
            if getattr(self.vae, key) < 1:
                raise ConfigError(f"{where}.vae.{key}: must be >= 1")
        if self.vae.input_size and not 8 <= self.vae.input_size <= 512:
            raise ConfigError(
                f"{where}.vae.input_size: 0 (as stored) or a side in 8..512, got "
                f"{self.vae.input_size}"
            )
        if self.initial_excluded_classes < 0:
            raise ConfigError(f"{where}.initial_excluded_classes: must be >= 0")
        if self.oracle.human:
            self._validate_human(where)
        elif self.oracle.initial_labels:
            raise ConfigError(f"{where}.oracle.initial_labels: only read by the human oracle")
        if not 0.0 <= self.oracle.noise < 1.0:
            raise ConfigError(f"{where}.oracle.noise: must be in [0, 1), got {self.oracle.noise}")
        if self.oracle.confusion == "groups" and self.oracle.noise:
            if not self.oracle.groups:
                raise ConfigError(f"{where}.oracle.groups: confusion 'groups' needs the groups")
            seen: set[int] = set()
            for i, group in enumerate(self.oracle.groups):
                for cls in group:
                    if cls < 0 or cls in seen:
                        problem = "is negative" if cls < 0 else "appears twice"
                        raise ConfigError(f"{where}.oracle.groups[{i}]: class {cls} {problem}")
                    seen.add(cls)
        elif self.oracle.groups:
            raise ConfigError(
                f"{where}.oracle.groups: only read with confusion 'groups' and noise > 0"
            )
        if self.query.mc_samples < 2 or self.query.ensemble_size < 2:
            raise ConfigError(f"{where}.query: mc_samples and ensemble_size must be >= 2")
        if self.embedding.source == "file" and not self.embedding.path:
            raise ConfigError(f"{where}.embedding.path: source 'file' needs the .npy file's path")
        if self.embedding.source != "file" and self.embedding.path:
            raise ConfigError(f"{where}.embedding.path: only read with source 'file'")

    def _validate_crop(self, where: str) -> None:
        """The resized crop's ranges: an area fraction in (0, 1], a positive aspect ratio, each
        given as [min, max]."""
        low, high = self.train.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ConfigError(
                f"{where}.train.crop_scale: need 0 < min <= max <= 1 (area fractions of the "
                f"image), got [{low}, {high}]"
            )
        low, high = self.train.crop_ratio
        if not 0.0 < low <= high:
            raise ConfigError(
                f"{where}.train.crop_ratio: need 0 < min <= max (width / height), "
                f"got [{low}, {high}]"
            )

    def _validate_strong_recipe(self, where: str) -> None:
        """RandAugment's counts and SWA's schedule; SWA's average replaces model selection on
        a validation split and needs epochs after its start."""
        train = self.train
        if train.randaugment_ops < 0:
            raise ConfigError(f"{where}.train.randaugment_ops: must be >= 0 (0 = off)")
        if not 0 <= train.randaugment_magnitude <= 30:
            raise ConfigError(
                f"{where}.train.randaugment_magnitude: must be in 0..30, got "
                f"{train.randaugment_magnitude}"
            )
        if train.swa_start < 0:
            raise ConfigError(f"{where}.train.swa_start: must be >= 0 (0 = off)")
        if not train.swa_start:
            return
        if train.iterations:
            raise ConfigError(
                f"{where}.train.swa_start: counts epochs; train.iterations is set "
                f"({train.iterations}): use epochs with SWA"
            )
        if train.swa_start >= train.epochs:
            raise ConfigError(
                f"{where}.train.swa_start: {train.swa_start} leaves no epoch to average "
                f"(train.epochs is {train.epochs})"
            )
        if train.validation_size:
            raise ConfigError(
                f"{where}.train.swa_start: SWA keeps the average of the last epochs, "
                "train.validation_size keeps the best on validation; set one of them"
            )
        if not train.swa_lr > 0:
            raise ConfigError(f"{where}.train.swa_lr: must be > 0, got {train.swa_lr}")

    def _validate_human(self, where: str) -> None:
        """What a person labeling the queries cannot do: be noisy on purpose, label a held-out
        validation split nobody asked for, or hide classes whose labels are unknown."""
        if self.oracle.noise:
            raise ConfigError(
                f"{where}.oracle.noise: a simulated oracle's setting; the human oracle's labels "
                "are what the person says"
            )
        if self.train.validation_size:
            raise ConfigError(
                f"{where}.train.validation_size: the human oracle labels only queried samples; "
                "set it to 0"
            )
        if self.initial_excluded_classes:
            raise ConfigError(
                f"{where}.initial_excluded_classes: needs known labels; the human oracle's pool "
                "has none"
            )
        if not self.oracle.labels_dir:
            raise ConfigError(f"{where}.oracle.labels_dir: must name a folder")

    def labeled_size(self, stage: int) -> int:
        return self.initial_size + stage * self.budget

    def to_dict(self) -> dict[str, Any]:
        return plain_data(dataclasses.asdict(self))

    def select(self, *paths: str) -> dict[str, Any]:
        """The settings at dotted `paths` ("budget", "vae", "query.mc_samples"), by path.

        Keys that came later are left out of a section while they hold the default that means
        "as before" (`LATER_DEFAULTS`), so that results made before them keep their hashes.
        """
        plain = self.to_dict()
        selected = {}
        for path in paths:
            value: Any = plain
            for key in path.split("."):
                value = value[key]
            later = LATER_DEFAULTS.get(path, {})
            if later:
                value = {k: v for k, v in value.items() if k not in later or v != later[k]}
            selected[path] = value
        return selected

    def oracle_settings(self) -> dict[str, Any]:
        """What the oracle's answers depend on; empty for the ideal oracle, so that results made
        before the oracle option existed keep their settings hash."""
        if self.oracle.ideal:
            return {}
        if self.oracle.human:
            # Where the files live is not what they say: their contents are checked instead.
            return self.select("oracle.kind")
        # The simulated oracle's keys only, as before the human oracle existed (same hashes).
        noisy = self.select("oracle")["oracle"]
        return {"oracle": {key: noisy[key] for key in ("noise", "confusion", "groups")}}

    def train_settings(self) -> dict[str, Any]:
        """The `train` section as a trained model depends on it. The augmentation choice came
        later: with the default "pad_crop" its keys are left out, so that models trained before
        it existed keep their settings hash; with "resized_crop" they replace the unused
        `crop_padding`. `crop_size` (segmentation) came later too: left out while it is 0, and
        `init_weights`, replaced by the file's sha256 when set."""
        train = self.to_dict()["train"]
        # Equal results on any number of processes (docs/cluster.md, "Several GPUs per
        # training job"), so changing it retrains nothing and a resume continues on any number.
        del train["processes"]
        if not train["crop_size"]:
            del train["crop_size"]
        # The initial weights enter as the file's contents, not its path, and only when set
        # (models trained from scratch keep their hash).
        path = train.pop("init_weights")
        if path:
            train["init_weights_sha256"] = file_sha256(path, "train.init_weights")
        # The strong recipe came later: left out while off, so earlier models keep their hash.
        if not train["randaugment_ops"]:
            del train["randaugment_ops"], train["randaugment_magnitude"]
        if not train["swa_start"]:
            del train["swa_start"], train["swa_lr"]
        later = ("augmentation", "crop_scale", "crop_ratio")
        if train["augmentation"] == "pad_crop":
            return {key: value for key, value in train.items() if key not in later}
        return {key: value for key, value in train.items() if key != "crop_padding"}

    def embedding_settings(self) -> dict[str, Any]:
        """What an embedding-based query depends on: the source, and a file's contents (its
        sha256), not its path, or the VAE's settings."""
        if self.embedding.source == "file":
            digest = file_sha256(self.embedding.path, "embedding.path")
            return {"embedding": {"source": "file", "sha256": digest}}
        if self.embedding.source == "vae":
            return {"embedding": {"source": "vae"}, **self.select("vae")}
        return {"embedding": {"source": self.embedding.source}}

    def pool_settings(self) -> dict[str, Any]:
        """What the initial pool (and the held-out validation split) depend on."""
        settings = self.select("dataset", "initial_size", "train.validation_size")
        if self.initial_excluded_classes:
            settings.update(self.select("initial_excluded_classes"))
        return {**settings, **self.oracle_settings()}


# Section -> keys added after results existed, with the value that reproduces the earlier
# behaviour: left out of `ExperimentConfig.select` while they hold it.
LATER_DEFAULTS: dict[str, dict[str, Any]] = {"vae": {"input_size": 0, "init": "kaiming"}}


def file_sha256(path: str | Path, key: str) -> str:
    """sha256 of a file's bytes; a ConfigError naming `key` when it cannot be read."""
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ConfigError(f"{key}: {path}: {exc.strerror or exc}") from None
    return _file_sha256(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    # Cached by (path, mtime, size): every training job's hash reads it at workflow start.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_hash(settings: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-able settings mapping (recorded in every result file)."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a workflow config file (YAML) without running code from it."""
    path = Path(path)
    try:
        with path.open() as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def merge_configs(*paths: str | Path) -> dict[str, Any]:
    """Config files merged as Snakemake merges `--configfile`s: mappings merge key by key, any
    other value (lists included) of a later file replaces the earlier one."""

    def merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    merged: dict[str, Any] = {}
    for path in paths:
        merge(merged, load_config(path))
    return merged


def selected_experiments(config: dict[str, Any]) -> list[str]:
    """`run_experiments` if set, else every experiment the config defines."""
    wanted = config.get("run_experiments")
    return list(wanted) if wanted is not None else list(config.get("experiments") or {})


def experiment_from_config(config: dict[str, Any], name: str) -> ExperimentConfig:
    experiments = config.get("experiments")
    if not isinstance(experiments, dict) or not experiments:
        raise ConfigError("experiments: the config defines no experiments")
    if name not in experiments:
        raise ConfigError(
            f"experiments.{name}: no such experiment; defined: {', '.join(experiments)}"
        )
    return ExperimentConfig.from_dict(name, experiments[name])


def build_dataclass(cls, data: dict[str, Any], where: str = ""):
    """A `cls` from a mapping of its fields (JSON or YAML data), each value checked against its
    type hint and nested dataclasses built alike. A `ConfigError` names the first unknown,
    missing or ill-typed key by its path below `where` (the bare key when `where` is "")."""

    def path(key: str) -> str:
        return f"{where}.{key}" if where else key

    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{path(unknown[0])}: unknown key; allowed keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        values[key] = _coerce(hints[key], value, path(key))
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{path(missing[0])}: required key is missing")
    return cls(**values)


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return build_dataclass(hint, value, where)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if args[-1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} items, got {value!r}")
        return tuple(
            _coerce(item, v, f"{where}[{i}]")
            for i, (item, v) in enumerate(zip(args, value, strict=True))
        )
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: unsupported union type in config schema")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint!r}")


def plain_data(value):
    """Tuples (of tuples) as lists, inside dicts too: a setting as YAML and JSON hold it."""
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v) for v in value]
    return value
