"""Job resources sized from the data and the model (tavaal.resources)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tavaal.adversarial import bank_chunk_rows
from tavaal.cli import main
from tavaal.config import ExperimentConfig, merge_configs
from tavaal.models import list_task_models
from tavaal.models.drn import list_segmentation_models
from tavaal.resources import (
    BASE_MB,
    MODEL_COSTS,
    _model_cost,
    experiment_estimate,
    query_estimate,
    train_estimate,
)
from tavaal.training import ENSEMBLE, PLAIN

REPO = Path(__file__).resolve().parents[1]


def exp(**changes) -> ExperimentConfig:
    data = {
        "dataset": "cifar10",
        "model": "resnet18",
        "methods": ["random", "entropy", "coreset", "vaal", "ensemble_varr"],
        "initial_size": 1000,
        "budget": 1000,
        "stages": 10,
        **changes,
    }
    return ExperimentConfig.from_dict("x", data)


def test_estimates_grow_with_what_the_job_does():
    e = exp()
    first, last = train_estimate(e, PLAIN, 0, "cpu"), train_estimate(e, PLAIN, 9, "cpu")
    assert last.seconds > first.seconds  # 10x the labels, 10x the images
    assert train_estimate(e, ENSEMBLE, 9, "cpu").seconds > 4 * last.seconds  # 5 members
    # A GPU node: the CUDA context's host memory, far shorter training.
    assert train_estimate(e, PLAIN, 9, "cuda").mem_mb >= BASE_MB["gpu"]
    assert train_estimate(e, PLAIN, 9, "cuda").seconds < last.seconds / 50
    vaal, random = query_estimate(e, "vaal", 0, "cuda"), query_estimate(e, "random", 0, "cuda")
    assert vaal.seconds > 10 * random.seconds  # the VAE/D training dominates
    pool = exp(vae={"train_on": "pool"}, subset_size=0)
    assert query_estimate(pool, "vaal", 0, "cuda").seconds > vaal.seconds
    # Requests: safety factors, round numbers, a floor.
    assert first.mem_mb % 250 == 0 and first.runtime_minutes >= 5
    assert last.runtime_minutes * 60 >= 2 * last.seconds


def test_big_models_ask_for_more_memory_on_a_cpu():
    small = exp(dataset="fashion_mnist", model="small_cnn")
    vgg = exp(model="vgg16_bn")
    assert (
        train_estimate(vgg, PLAIN, 0, "cpu").mem_mb
        > 2 * train_estimate(small, PLAIN, 0, "cpu").mem_mb
    )


def test_every_task_model_has_a_cost():
    assert sorted(MODEL_COSTS) == sorted(list_task_models() + list_segmentation_models())
    # The 224x224 models at their reference size: VGG16-BN is the slower and the larger.
    resnet = _model_cost("resnet18_imagenet", (3, 224, 224))
    vgg = _model_cost("vgg16_bn_224", (3, 224, 224))
    assert resnet["cpu"] == MODEL_COSTS["resnet18_imagenet"].cpu_images_per_second
    assert vgg["cpu"] < resnet["cpu"] and vgg["gpu"] < resnet["gpu"]
    assert vgg["activations"] > resnet["activations"]
    # Smaller images run faster, in proportion to their pixels.
    assert _model_cost("resnet18_imagenet", (3, 112, 112))["cpu"] == pytest.approx(4 * 3.9)


def test_experiment_estimate_counts_the_jobs_of_the_workflow():
    e = exp(methods=["random", "vaal", "tavaal"], seeds=[0, 1], stages=3)
    estimate = experiment_estimate(e, "cuda")
    # Stage 0 per recipe (plain, ranking_ranker) and seed; then 2 trainings + 2 queries per chain.
    assert estimate.jobs == 2 * 2 + 3 * 2 * (2 + 2)
    assert 0 < estimate.longest_chain_hours < estimate.hours


def test_readme_preset_hours_are_the_estimates():
    """The presets page's table shows what `tavaal estimate` computes, not typed numbers."""
    readme = (REPO / "docs" / "presets.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|.*\| ([\d.]+) \|$", readme, re.M)
    shown = {name: float(hours) for name, hours in rows if (REPO / f"presets/{name}.yaml").exists()}
    # Every paper preset (vaal_*, tavaal_*, segmentation ones included) has its row.
    papers = {p.stem for p in (REPO / "presets").glob("*vaal_*.yaml")}
    assert papers >= {"vaal_cityscapes", "vaal_bdd100k", "vaal_ablation_bdd100k"}
    assert papers <= set(shown), sorted(papers - set(shown))
    for name, hours in shown.items():
        config = merge_configs(REPO / "config.yaml", REPO / f"presets/{name}.yaml")
        total = sum(
            experiment_estimate(ExperimentConfig.from_dict(e, config["experiments"][e])).hours
            for e in config["run_experiments"]
        )
        assert hours == pytest.approx(round(total), abs=0.5), name


def test_estimate_command(capsys):
    assert main(["estimate", str(REPO / "config.yaml"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("experiment") and "CPU-core hours" in out[0]
    assert [line.split()[0] for line in out[1:-1]] == ["moons", "digits"]
    assert out[-1].startswith("total")


def test_segmentation_jobs_are_sized_from_masks_and_per_pixel_logits():
    """A Cityscapes query on a CPU holds its inference batch's per-pixel logits (19 classes at
    1376x688, twice) and T pooled MC passes: 8 more images a batch cost ~1.24 GB more."""
    exp = ExperimentConfig.from_dict(
        "c",
        {
            "dataset": "cityscapes",
            "model": "drn_d_22",
            "methods": ["bald"],
            "initial_size": 100,
            "budget": 100,
            "train": {"dropout": 0.3},
            "query": {"inference_batch_size": 8, "mc_samples": 10},
        },
    )
    wider = dataclasses.replace(exp, query=dataclasses.replace(exp.query, inference_batch_size=16))
    logits_mb = 4 * 8 * 19 * 1376 * 688 / 1024**2
    grown = (
        query_estimate(wider, "bald", 0, "cpu").mem_mb
        - query_estimate(exp, "bald", 0, "cpu").mem_mb
    )
    assert abs(grown - 1.5 * (2 + 10 / 64) * logits_mb) <= 250
    # Training holds the labeled and test masks, one byte a pixel, beside the images.
    train = train_estimate(exp, PLAIN, 0, "gpu")
    images_and_masks = (100 + 500) * 4 * 1376 * 688 / 1024**2
    assert train.mem_mb >= 1.5 * images_and_masks


def cityscapes(**changes) -> ExperimentConfig:
    data = {
        "dataset": "cityscapes",
        "model": "drn_d_22",
        "methods": ["random", "bald", "vaal"],
        "initial_size": 300,
        "budget": 150,
        "stages": 7,
        "subset_size": 0,
        "train": {"epochs": 50, "batch_size": 8, "crop_size": 688, "dropout": 0.3},
        "vae": {"input_size": 128, "train_on": "pool"},
        "query": {"inference_batch_size": 16},
        **changes,
    }
    return ExperimentConfig.from_dict("c", data)


MB = 1024**2
CITY_PIXELS = 1376 * 688  # a stored Cityscapes image (3 bytes a pixel) and its mask (1 byte)


def test_a_segmentation_training_job_holds_its_splits_and_the_activations_of_its_crops():
    """Lower bound: the labeled and test images and masks, and the activations of a batch of
    688x688 crops (DRN-D-22: 211.3 M floats an image, measured at 688x688); upper bound: the
    labeled split twice (memory map and training's copy), three times the activations
    (forward, gradients, temporaries), the process, all with the 1.5 safety factor."""
    e = cityscapes()
    labeled, n_test = 1200, 500
    splits = (labeled + n_test) * 4 * CITY_PIXELS / MB
    activations = 8 * 4 * 211_300_000 / MB
    for stage, n in ((0, 300), (6, labeled)):
        assert e.labeled_size(stage) == n
    cpu = train_estimate(e, PLAIN, 6, "cpu")
    assert 1.5 * (splits + activations) <= cpu.mem_mb
    assert cpu.mem_mb <= 1.5 * (BASE_MB["cpu"] + 2 * splits + 3 * activations + 2000) + 250
    # On a GPU the activations are on the device: the host holds the splits.
    gpu = train_estimate(e, PLAIN, 6, "cuda")
    assert (
        1.5 * (BASE_MB["gpu"] + splits) <= gpu.mem_mb <= 1.5 * (BASE_MB["gpu"] + 2 * splits) + 250
    )
    # Activations at the crop, not the whole 1376x688 image (twice the pixels).
    assert cpu.mem_mb < 1.5 * 3 * (2 * activations)


def test_segmentation_training_time_is_drn_cost_at_the_crops_pixels():
    """Training images pass at DRN's throughput scaled to the crop's pixels (350 img/s at 128x128
    assumed on a GPU), evaluation at the whole image's: time is affine in crop pixels."""
    s = {
        c: train_estimate(
            cityscapes(train={"epochs": 50, "crop_size": c}), PLAIN, 6, "cuda"
        ).seconds
        for c in (206, 412, 688)
    }
    images = 50 * 1200  # epochs x labeled
    per_pixel = images / (350 * 128 * 128)
    assert s[688] - s[412] == pytest.approx(per_pixel * (688**2 - 412**2), rel=1e-6)
    assert (s[688] - s[412]) / (s[412] - s[206]) == pytest.approx(
        (688**2 - 412**2) / (412**2 - 206**2), rel=1e-6
    )
    # The training part of a 688 crop costs (688/412)^2 times that of a 412 crop.
    evaluation = s[412] - per_pixel * 412**2
    assert (s[688] - evaluation) / (s[412] - evaluation) == pytest.approx((688 / 412) ** 2)


def test_segmentation_query_memory_does_not_grow_with_the_pools_logits():
    """Queries keep no (N, K, H, W) logits (72 MB an image at 19 x 1376 x 688 float32), nor the
    pooled score rows of the pool: each further candidate costs its image's and mask's pages."""
    e = cityscapes()
    logits_per_image = 4 * 19 * CITY_PIXELS / MB
    for method in ("bald", "entropy"):
        first, last = query_estimate(e, method, 0, "cuda"), query_estimate(e, method, 5, "cuda")
        fewer = 5 * 150  # candidates: the whole unlabeled pool, 750 fewer at stage 5
        per_candidate = (first.mem_mb - last.mem_mb) / fewer
        assert per_candidate <= 1.5 * 4 * CITY_PIXELS / MB + 1  # image + mask pages
        assert per_candidate < logits_per_image / 10
        assert first.mem_mb < 1.5 * (BASE_MB["gpu"] + 2675 * 4 * CITY_PIXELS / MB + 2000)


def test_a_resized_bank_of_large_images_counts_the_rows_it_gathers():
    """VAAL's bank of 2,975 Cityscapes images resized to 128 px reads the labeled images' pages
    too (a random query does not) and gathers full-size rows a chunk at a time: 47 of them
    (512 MB as float32 on the device), never the whole bank at full size (8.4 GB)."""
    e = cityscapes()
    assert bank_chunk_rows((3, 688, 1376)) == 47
    assert bank_chunk_rows((3, 32, 32)) == 4096
    vaal, random = query_estimate(e, "vaal", 0, "cuda"), query_estimate(e, "random", 0, "cuda")
    image = 3 * CITY_PIXELS / MB
    assert 1.5 * (300 + 47) * image - 250 <= vaal.mem_mb - random.mem_mb
    assert vaal.mem_mb - random.mem_mb < 1.5 * 2975 * image / 4
