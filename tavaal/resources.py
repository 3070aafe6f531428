"""What a job needs: memory (host RSS) and run time, sized from the data and the model.

The workflow's rules declare `mem_mb` and `runtime` (minutes) from these estimates, and
`tavaal estimate` adds up GPU hours of a preset. The model of a job's cost:

- memory: a process base (Python, torch and the array libraries: peak RSS 0.55-0.91 GB measured
  on the default run and Fashion-MNIST, up to 1.2 GB before jobs stopped importing pandas and
  scipy; a CUDA context adds host memory on a GPU node), the arrays the
  job holds (memory-mapped test split, the query's training bank, embeddings, MC samples), and
  on a CPU the weights, gradients, optimizer state and activations; times SAFETY_MEMORY;
- time: a start-up, then images through the task learner at the model's throughput (training,
  and three times faster for inference), and VAE/discriminator iterations at a cost that grows
  with batch x pixels x base_channels^2; times SAFETY_TIME for a request, as is for estimates.

Throughputs on a GPU are assumptions for one A100-class GPU (not measured here; no GPU was
available), on a CPU measured on this project's 2-core machine at one thread. They scale with the
input's pixels relative to the model's reference input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from tavaal.adversarial import (
    ADVERSARIAL,
    DEFAULT_MAX_CACHED_BYTES,
    FROZEN_VAE,
    PIXEL_DISCRIMINATOR,
    PLAIN_VAE,
    Variant,
    bank_chunk_rows,
    training_iterations,
)
from tavaal.config import ExperimentConfig
from tavaal.data import known_input_shape, known_split_sizes, known_task, stored_as_files
from tavaal.errors import ConfigError
from tavaal.strategies import strategy_class
from tavaal.strategies.badge import FEATURE_BLOCK_BYTES as BADGE_BLOCK_BYTES
from tavaal.training import TrainingRecipe, ensemble_members

SAFETY_MEMORY = 1.5
SAFETY_TIME = 2.0
BASE_MB = {"cpu": 1200, "gpu": 3500}
STARTUP_SECONDS = {"cpu": 5, "gpu": 30}
MIN_RUNTIME_MINUTES = 5
# Classes assumed where the count matters (MC-dropout probabilities; the last layer's size):
# the most any registered dataset has (CIFAR-100), so estimates err on the large side.
MAX_CLASSES = 100
# The same for segmentation (per-pixel logits): the most a registered segmentation dataset has
# (Cityscapes and BDD100K, 19 train ids).
SEGMENTATION_MAX_CLASSES = 19
# Host memory a segmentation query scores with at most, besides its inference batch: the float64
# groups of score rows (`tavaal.tasks.segmentation.SCORE_BLOCK_BYTES`, 64 MB) and their
# temporaries (a float32 copy, softmax and entropy intermediates): four such blocks.
SEGMENTATION_SCORING_MB = 4 * 64


@dataclass(frozen=True)
class ModelCost:
    """Training images/s at `reference` input size, and forward activations per sample."""

    reference: tuple[int, ...]
    cpu_images_per_second: float
    gpu_images_per_second: float
    activation_floats: float


# CPU: measured at one thread (small_cnn ~600 img/s on Fashion-MNIST, digits_cnn on 8x8 digits,
# resnet18 17 img/s on CIFAR-shaped inputs: docs/benchmarks.md); VGG16-BN and the MLP from their
# multiply-adds relative to those. GPU: docs/presets.md's assumptions for an A100-class GPU.
MODEL_COSTS = {
    "mlp": ModelCost((2,), 50_000, 50_000, 100),
    "digits_cnn": ModelCost((1, 8, 8), 3_000, 20_000, 12_000),
    "small_cnn": ModelCost((1, 28, 28), 600, 20_000, 60_000),
    "resnet18": ModelCost((3, 32, 32), 17, 4_000, 1_200_000),
    "vgg16_bn": ModelCost((3, 32, 32), 8, 2_500, 900_000),
    # The 224x224 models. CPU: measured here at one thread, training steps (forward, backward,
    # SGD with momentum) on batches of 8 at 224x224, median of the timed steps at load average
    # ~2: resnet18_imagenet 3.9 img/s (2.0 s per step), vgg16_bn_224 0.37 img/s (19-25 s per
    # step). GPU: not measured; the CPU figure times the GPU/CPU ratio of the 32x32 entries
    # above (4,000/17 for ResNet-18, 2,500/8 for VGG16-BN), which errs on the slow side (a GPU
    # is better filled by 224x224 images). Activations: the outputs of every leaf module of one
    # forward pass at 224x224 (forward hooks, ReLU outputs included): 8.05 M and 42.2 M floats.
    "resnet18_imagenet": ModelCost((3, 224, 224), 3.9, 900, 8_050_000),
    "vgg16_bn_224": ModelCost((3, 224, 224), 0.37, 115, 42_200_000),
    # DRN-D (segmentation, `tavaal.models.drn`). CPU: measured here at one thread, training
    # steps (forward, cross-entropy over 19 classes, backward, SGD with momentum) on batches of
    # 8 at 128x128, second-fastest of 4 steps, at load average ~2.8 (a CI run beside it):
    # drn_d_22 1.5 img/s, drn_d_38 1.34 img/s. GPU: the CPU figure times ResNet-18's GPU/CPU
    # ratio (4,000/17), as for the 224x224 models. Activations: the outputs of every leaf
    # module of one forward pass (meta device, forward hooks) at 688x688, 211.3 M and 317.3 M
    # floats, scaled to 128x128.
    "drn_d_22": ModelCost((3, 128, 128), 1.5, 350, 7_312_000),
    "drn_d_38": ModelCost((3, 128, 128), 1.34, 315, 10_983_000),
    # drn_d_22_slim (DRN-D-22 at a quarter of the widths), measured the same way at load
    # average ~0.5: 21.5, 26.5 and 21.4 img/s in three runs (median 21.5); GPU 21.5 x 4,000/17;
    # activations 1.832 M floats at 128x128 (forward hooks; 52.9 M at 688x688).
    "drn_d_22_slim": ModelCost((3, 128, 128), 21.5, 5_060, 1_832_000),
}
# One VAE/D iteration (one VAE and one D update, batches of 64 labeled + 64 unlabeled) of the
# papers' VAE (32x32 inputs, 128 base channels): 5.7 s on this CPU (docs/benchmarks.md), 0.03 s
# assumed on a GPU. Other sizes scale with batch x pixels x base_channels^2.
VAE_ITERATION_SECONDS = {"cpu": 5.7, "gpu": 0.03}
VAE_REFERENCE_UNITS = 64 * 32 * 32 * 128**2
VAE_MIN_SECONDS = {"cpu": 0.01, "gpu": 0.002}
# A dataset read from its files (ImageNet; `tavaal.data.image_files`) is decoded while a job
# runs, by one worker per CPU of the job: DECODE_THREADS CPUs (the rules' `threads`), each
# decoding DECODE_IMAGES_PER_SECOND ImageNet-sized JPEGs to 224x224 (measured on this project's
# CPU: 297-352 images/s with 2 workers, benchmarks/decode_throughput.py, docs/benchmarks.md).
# A job runs at the slower of the model and the decoders.
DECODE_THREADS = 8
DECODE_IMAGES_PER_SECOND = 150.0
# Batches a training loop decodes ahead of the one it trains on (`ImageFiles.prefetch`).
DECODE_AHEAD = 2
# Data-parallel training jobs (`train.processes`, `tavaal.distributed`): a model, not a
# measurement (no multi-GPU machine was available). N processes each run 1/N of every global
# batch at the one-GPU throughput (smaller per-GPU batches, which fill a GPU less, are not
# modelled), then sum the gradients with a ring all-reduce, not overlapped with the backward
# pass: 2 (N - 1) / N x the weights' bytes per step over a bus of ALL_REDUCE_BYTES_PER_SECOND
# (GPU: NCCL's bus bandwidth on PCIe 4.0 x16, ~20 GB/s, assumed; NVLink is ~10x faster; CPU:
# gloo over the loopback, assumed). Rank 0 alone evaluates the test split; every rank decodes
# its share with job_threads CPUs of its own. Each process holds its own copy of the job's
# host memory, and forking the processes and meeting costs PROCESS_GROUP_SECONDS (assumed).
ALL_REDUCE_BYTES_PER_SECOND = {"cpu": 1e9, "gpu": 20e9}
PROCESS_GROUP_SECONDS = 10
# GPU counts `tavaal estimate` shows the wall-clock time of the longest training job for.
SHOWN_PROCESSES = (1, 4, 8)


@dataclass(frozen=True)
class JobEstimate:
    mem_mb: int  # to request: with the safety factor, rounded up to 250 MB
    seconds: float  # expected run time, no safety factor
    runtime_minutes: int  # to request: seconds x SAFETY_TIME, at least MIN_RUNTIME_MINUTES


def device_kind(device: str) -> str:
    """ "cpu" when the config pins jobs to the CPU; else a GPU node is assumed (`auto` on a
    cluster resolves to the GPU the job is given)."""
    return "cpu" if str(device).startswith("cpu") else "gpu"


def job_threads(exp: ExperimentConfig) -> int:
    """CPUs of a job that reads `exp`'s dataset: DECODE_THREADS when its images are read from
    their files, else 1 (the arrays are memory-mapped; torch runs one thread per job)."""
    return DECODE_THREADS if stored_as_files(exp.dataset) else 1


def train_threads(exp: ExperimentConfig) -> int:
    """CPUs of a training job: `job_threads` for each of its `train.processes`."""
    return job_threads(exp) * exp.train.processes


def _decoded_rate(exp: ExperimentConfig, rate: float) -> float:
    """Images/s of a job whose model alone runs at `rate`: no faster than its decoders."""
    if not stored_as_files(exp.dataset):
        return rate
    return min(rate, DECODE_IMAGES_PER_SECOND * job_threads(exp))


def train_estimate(
    exp: ExperimentConfig,
    recipe: TrainingRecipe,
    stage: int,
    device: str,
    processes: int | None = None,
) -> JobEstimate:
    """The job training `recipe` at `stage` on `processes` GPUs (default `train.processes`):
    its wall-clock `seconds`, and the host memory of all its processes."""
    processes = exp.train.processes if processes is None else processes
    kind = device_kind(device)
    shape = _input_shape(exp)
    n_train, n_test = _sizes(exp)
    members = ensemble_members(exp, recipe)
    cost = _model_cost(exp.model, shape)
    # Training passes see the crops of a segmentation set (train.crop_size), evaluation the
    # whole images: DRN's cost and activations at the crop's pixels.
    train_cost = _model_cost(exp.model, _training_shape(exp, shape))
    rate = _decoded_rate(exp, train_cost[kind])
    labeled = exp.labeled_size(stage)
    if exp.train.iterations > 0:
        images = exp.train.iterations * exp.train.batch_size
        steps = exp.train.iterations
        validations = exp.train.iterations // exp.train.validate_every
    else:
        images = exp.train.epochs * labeled
        steps = exp.train.epochs * math.ceil(labeled / exp.train.batch_size)
        validations = exp.train.epochs // exp.train.validate_every
    inference_rate = _decoded_rate(exp, 3 * cost[kind])
    # Validation is shared out among the processes, the test split evaluated by rank 0 alone.
    inference = (n_test + validations * exp.train.validation_size / processes) / inference_rate
    training = images / (rate * processes) + steps * _all_reduce_seconds(exp, kind, processes)
    seconds = STARTUP_SECONDS[kind] + members * (training + inference)
    if processes > 1:
        seconds += PROCESS_GROUP_SECONDS
    sample_bytes = math.prod(shape)
    if stored_as_files(exp.dataset):
        # Decoded batch by batch: the batches in flight and one inference batch, no split.
        held = (1 + DECODE_AHEAD) * exp.train.batch_size + exp.query.inference_batch_size
        memory = BASE_MB[kind] + _mb(held * sample_bytes)
    else:
        memory = BASE_MB[kind] + _mb(n_test * sample_bytes + labeled * sample_bytes)
    if kind == "cpu":
        weights = 16 * _model_facts(exp.model, shape)[0]  # weights, gradients, two moments
        activations = 3 * 4 * train_cost["activations"] * exp.train.batch_size
        memory += _mb(members * weights + activations)
    if _segmentation(exp):
        # The labeled images' masks and the test masks (uint8, one byte a pixel: their pages of
        # the memory map), and the copy of the labeled images and masks that training gathers
        # (`tavaal.training`, moved to the device on a GPU, kept on a CPU); on a CPU the
        # evaluation's per-pixel logits of an inference batch, of each member and their softmax.
        memory += _mb((labeled + n_test) * _pixels(shape))
        memory += _mb(labeled * (sample_bytes + _pixels(shape)))
        if kind == "cpu":
            memory += _mb(2 * members * _batch_logit_bytes(exp, shape))
    return _estimate(processes * memory, seconds)


def longest_training_text(*exps: ExperimentConfig, device: str = "auto") -> str:
    """The wall-clock hours of the longest training job of the experiments on each of
    SHOWN_PROCESSES GPUs (`longest_training_hours`), to 3 significant digits, joined by "/"
    ("-" where a task trains on one process only): `tavaal estimate`'s column and the README's
    cost table."""
    shown = []
    for processes in SHOWN_PROCESSES:
        hours = [longest_training_hours(exp, device, processes) for exp in exps]
        shown.append("-" if None in hours else f"{max(hours):.3g}")
    return "/".join(shown)


def _all_reduce_seconds(exp: ExperimentConfig, kind: str, processes: int) -> float:
    """One step's gradient sum over `processes` (ring all-reduce of the float32 weights)."""
    if processes == 1:
        return 0.0
    weight_bytes = 4 * _model_facts(exp.model, _input_shape(exp))[0]
    return 2 * (processes - 1) / processes * weight_bytes / ALL_REDUCE_BYTES_PER_SECOND[kind]


def longest_training_hours(
    exp: ExperimentConfig, device: str = "auto", processes: int = 1
) -> float | None:
    """Wall-clock hours of the experiment's longest training job (the last stage's) on
    `processes` GPUs; None when its task trains on one process only (segmentation)."""
    from tavaal.distributed import supports

    recipes = {strategy_class(m).recipe for m in exp.methods}
    if processes > 1 and not supports(known_task(exp.dataset)):
        return None
    last = exp.stages - 1
    return max(train_estimate(exp, r, last, device, processes).seconds for r in recipes) / 3600


def query_estimate(exp: ExperimentConfig, method: str, stage: int, device: str) -> JobEstimate:
    kind = device_kind(device)
    strategy = strategy_class(method)
    adversary = _query_adversary(exp, strategy)
    shape = _input_shape(exp)
    n_train, _ = _sizes(exp)
    labeled = exp.labeled_size(stage)
    unlabeled = max(n_train - labeled - exp.train.validation_size, 0)
    candidates = unlabeled if exp.subset_size == 0 else min(exp.subset_size, unlabeled)
    cost = _model_cost(exp.model, shape)
    rate = _decoded_rate(exp, 3 * cost[kind])  # inference
    sample_bytes = math.prod(shape)
    seconds = STARTUP_SECONDS[kind]
    # Inputs are gathered per inference batch; a dataset of arrays is memory-mapped, so its
    # candidates' pages count, files are decoded batch by batch.
    held = exp.query.inference_batch_size if stored_as_files(exp.dataset) else candidates
    if adversary is not None and not stored_as_files(exp.dataset):
        # The adversary's bank reads labeled + pool (or subset) rows of the memory map.
        held = max(held, labeled + _adversary_pool(exp, candidates, unlabeled))
    memory = BASE_MB[kind] + _mb(held * sample_bytes)
    if strategy.uses_task_model:
        passes = ensemble_members(exp, strategy.recipe)
        seconds += passes * candidates / rate
        parameters, embedding_dim = _model_facts(exp.model, shape)
        memory += _mb(passes * 4 * parameters)
        if _segmentation(exp):
            # The inference batch's per-pixel logits (on a CPU: of every member, and the
            # upsampled logits of the true loss), the MC passes of the pooled grid on the host,
            # the groups of score rows; no logits of the whole pool are kept.
            if kind == "cpu":
                memory += _mb(2 * passes * _batch_logit_bytes(exp, shape))
            if strategy.needs_dropout:
                memory += _mb(exp.query.mc_samples * _batch_logit_bytes(exp, shape) / 64)
            memory += SEGMENTATION_SCORING_MB
            # The candidates' true loss (TA-VAAL Fig. 8; `tavaal.stage`): no logits are kept, so
            # one more pass of the first member over them, reading their masks.
            seconds += candidates / rate
            memory += _mb(candidates * _pixels(shape))
        elif strategy.needs_dropout:
            memory += _mb(4 * exp.query.mc_samples * candidates * MAX_CLASSES)
        if method == "coreset":
            seconds += labeled / rate
            memory += _mb(2 * 4 * (labeled + candidates) * embedding_dim)
        if method in ("typiclust", "probcover"):
            # The embeddings of labeled ∪ candidates, float32 and k-means' float64 copy, and
            # one block of typicality distances (`tavaal.diversity.typicality`).
            memory += _mb(12 * (labeled + candidates) * embedding_dim) + 64
        if method == "badge":
            # The candidates' float32 features (and their device copy), two float64 (N, K)
            # residual arrays and one float64 block of features (`kmeans_pp_seeding`).
            memory += _mb(
                2 * 4 * candidates * embedding_dim
                + 2 * 8 * candidates * MAX_CLASSES
                + min(BADGE_BLOCK_BYTES, 8 * candidates * embedding_dim)
            )
    if adversary is not None:
        pool = _adversary_pool(exp, candidates, unlabeled)
        memory += _mb(_bank_gather_bytes(exp, shape, labeled + pool))
        iterations = training_iterations(exp.vae, labeled, pool)
        # The adversary's inputs: the stored images, or their copy at vae.input_size.
        if len(shape) == 3 and exp.vae.input_size:
            shape = (shape[0], exp.vae.input_size, exp.vae.input_size)
        pixels = math.prod(shape[1:]) if len(shape) == 3 else 1
        units = exp.vae.batch_size * pixels * exp.vae.base_channels**2
        reference = VAE_ITERATION_SECONDS[kind] * units / VAE_REFERENCE_UNITS
        seconds += iterations * max(
            reference * _adversary_steps(adversary, exp), VAE_MIN_SECONDS[kind]
        )
        seconds += (labeled + pool) / rate  # the ranker's r, and scoring
        if kind == "cpu":
            # The query's inputs, normalised to float32, up to the bank's 2 GB cap.
            memory += min(_mb(4 * (labeled + pool) * math.prod(shape)), 2048)
    return _estimate(memory, seconds)


def _query_adversary(exp: ExperimentConfig, strategy) -> Variant | None:
    """What the query trains besides the task learner: the strategy's adversary, or the plain
    VAE whose codes an embedding-based method reads (`embedding.source: vae`)."""
    if strategy.reads_embedding and exp.embedding.source == "vae":
        return PLAIN_VAE
    return strategy.adversary


def _adversary_pool(exp: ExperimentConfig, candidates: int, unlabeled: int) -> int:
    """Unlabeled rows the adversary trains on: the candidate subset or the whole pool."""
    return candidates if exp.vae.train_on == "subset" else unlabeled


def _bank_gather_bytes(exp: ExperimentConfig, shape: tuple[int, ...], rows: int) -> float:
    """Host bytes of full-size uint8 rows `InputBank.load` gathers at once for `rows` bank rows:
    chunks of `bank_chunk_rows` rows (decoded from files or copied out of the memory map, then
    normalised or resized to vae.input_size), or every row at once when the bank, not resized,
    is kept raw (over the bank's float32 cap)."""
    sample_bytes = math.prod(shape)
    size = exp.vae.input_size
    resized = len(shape) == 3 and size and tuple(shape[1:]) != (size, size)
    if not resized and 4 * rows * sample_bytes > DEFAULT_MAX_CACHED_BYTES:
        return rows * sample_bytes
    return min(bank_chunk_rows(tuple(shape)), rows) * sample_bytes


def _training_shape(exp: ExperimentConfig, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The input a training step sees: a segmentation set's square crop (train.crop_size,
    taken when train.augment is on), else the stored shape."""
    if _segmentation(exp) and exp.train.augment and exp.train.crop_size and len(shape) == 3:
        return (shape[0], exp.train.crop_size, exp.train.crop_size)
    return shape


def _adversary_steps(variant: Variant, exp: ExperimentConfig) -> float:
    """Cost of one schedule iteration of a query's adversary, in units of VAAL's reference
    iteration (1 VAE + 1 D update). A D update on codes costs about half a VAE update (an
    encoder pass, no decoder); a frozen VAE's D phase repeats the schedule with D updates only;
    a D on pixels is an MLP, negligible next to a conv VAE."""
    vae_steps, disc_steps = exp.vae.vae_steps, exp.vae.disc_steps
    steps = {
        ADVERSARIAL: vae_steps + 0.5 * disc_steps,
        FROZEN_VAE: vae_steps + 0.5 * disc_steps,
        PLAIN_VAE: vae_steps,
        PIXEL_DISCRIMINATOR: 0.0,
    }[variant]
    return steps / 1.5


@dataclass(frozen=True)
class ExperimentEstimate:
    jobs: int
    hours: float  # every train and query job, one after the other
    longest_chain_hours: float  # one (method, seed) chain: the wall time with enough devices


def experiment_estimate(exp: ExperimentConfig, device: str = "auto") -> ExperimentEstimate:
    """Expected device hours of every training and query of `exp` (no safety factor), with
    stage 0 trained once per recipe and seed as the workflow does."""
    recipes = {strategy_class(m).recipe.name: strategy_class(m).recipe for m in exp.methods}
    stage0 = {name: train_estimate(exp, r, 0, device).seconds for name, r in recipes.items()}
    # Device hours: a training job holds train.processes GPUs for its wall-clock time.
    gpus = exp.train.processes
    total = len(exp.seeds) * gpus * sum(stage0.values())
    jobs = len(exp.seeds) * len(stage0)
    longest = 0.0
    for method in exp.methods:
        recipe = strategy_class(method).recipe
        chain = stage0[recipe.name]
        for stage in range(exp.stages):
            if stage > 0:
                seconds = train_estimate(exp, recipe, stage, device).seconds
                chain += seconds
                total += len(exp.seeds) * gpus * seconds
            if stage + 1 < exp.stages:
                seconds = query_estimate(exp, method, stage, device).seconds
                chain += seconds
                total += len(exp.seeds) * seconds
        jobs += len(exp.seeds) * (2 * exp.stages - 2)
        longest = max(longest, chain)
    return ExperimentEstimate(jobs=jobs, hours=total / 3600, longest_chain_hours=longest / 3600)


def _estimate(memory_mb: float, seconds: float) -> JobEstimate:
    mem = 250 * math.ceil(SAFETY_MEMORY * memory_mb / 250)
    minutes = max(MIN_RUNTIME_MINUTES, math.ceil(SAFETY_TIME * seconds / 60))
    return JobEstimate(mem_mb=int(mem), seconds=float(seconds), runtime_minutes=int(minutes))


def _mb(n_bytes: float) -> float:
    return n_bytes / 1024**2


def _input_shape(exp: ExperimentConfig) -> tuple[int, ...]:
    shape = known_input_shape(exp.dataset)
    if shape is None:
        raise ConfigError(f"experiments.{exp.name}.dataset: {exp.dataset} declares no input shape")
    return shape


def _sizes(exp: ExperimentConfig) -> tuple[int, int]:
    sizes = known_split_sizes(exp.dataset)
    if sizes is None:
        raise ConfigError(f"experiments.{exp.name}.dataset: {exp.dataset} declares no split sizes")
    return sizes


def _model_cost(model: str, shape: tuple[int, ...]) -> dict[str, float]:
    """Images/s on each device and activations per sample, scaled to `shape`'s pixels."""
    if model not in MODEL_COSTS:
        raise ConfigError(f"no cost model for task model {model!r}")
    cost = MODEL_COSTS[model]
    scale = max(_pixels(shape) / _pixels(cost.reference), 1e-3)
    return {
        "cpu": cost.cpu_images_per_second / scale,
        "gpu": cost.gpu_images_per_second / scale,
        "activations": cost.activation_floats * scale,
    }


def _pixels(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if len(shape) == 3 else 1


def _segmentation(exp: ExperimentConfig) -> bool:
    return known_task(exp.dataset) == "segmentation"


def _batch_logit_bytes(exp: ExperimentConfig, shape: tuple[int, ...]) -> float:
    """float32 per-pixel logits of one inference batch of a segmentation model."""
    return 4.0 * exp.query.inference_batch_size * SEGMENTATION_MAX_CLASSES * _pixels(shape)


@cache
def _model_facts(model: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, embedding width), from the model built on torch's meta device: nothing is
    allocated, so even VGG16's 134 M parameters cost no memory here."""
    import torch

    from tavaal.models import build_task_model
    from tavaal.models.drn import build_segmentation_model, list_segmentation_models

    build = build_segmentation_model if model in list_segmentation_models() else build_task_model
    with torch.device("meta"):
        built = build(model, shape, MAX_CLASSES)
    return sum(p.numel() for p in built.parameters()), built.embedding_dim
