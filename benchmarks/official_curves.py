"""Learning curves of the official VAAL and TA-VAAL loops at the CPU scale of our Fashion-MNIST run.

Runs the official code of sinhasam/vaal (67263f3) and cubeyoung/TA-VAAL (1161071) from checkouts
given on the command line (none of it is copied here) on the protocol of
`presets/fashion_mnist_cpu.yaml`, starting every seed from our initial pool, and writes the test
accuracy of every stage to a JSON file. `--report` prints AULC - random, ours and official side by
side, paired by seed, with random taken from our run of the preset.

    python benchmarks/official_curves.py VAAL_CHECKOUT TAVAAL_CHECKOUT \
        --fmnist /usr/share/datasets/fashion-mnist --ours results --out curves.json \
        --methods vaal --seeds 0
    python benchmarks/official_curves.py VAAL_CHECKOUT TAVAAL_CHECKOUT \
        --fmnist /usr/share/datasets/fashion-mnist --ours results --out curves.json --report

One process runs one official code (their module names collide: `sampler`, `model`); several
processes may write the same JSON file (it is locked while updated). What the official code runs
unchanged: VAAL's `Solver.train` (VAE and discriminator, two VAE steps per iteration, KL summed)
and `AdversarySampler`; TA-VAAL's `train`/`train_epoch` (task learner + ranker, `LossPredLoss`),
`test` and `query_samples` (`train_vaal` and its sampler). What is changed, because it must be:

- CPU: `.cuda()` is a no-op and `torch.cuda.device` an empty context.
- Sizes of the preset: the official VAE/D classes are built with their channel counts scaled to
  16 base channels (128-256-512-1024 -> 16-32-64-128) and D's hidden width to 128, latent 32
  (TA-VAAL's own Fashion-MNIST call uses 28), for 28x28 inputs VAAL's VAE gets the 3x3 fourth
  convolution TA-VAAL's authors use for Fashion-MNIST (`f_filt`); the VAE/D learning rates
  (3e-3, 1e-3), beta 0.1, VAE/D batch 64 and 10 epochs over labeled + candidates; 2,000 random
  candidates per query, +200 per query from 200 to 1,200 labels.
- Task learner: our `small_cnn` (both sides train the same network), Adam 1e-3, weight decay
  5e-4, 15 epochs, batch 32, inputs normalised by the train split's mean and std as ours; the
  test split scored once per stage with the last weights. VAAL's task learner never influences
  its queries, so it is trained apart from the adversary (the official loop's joint SGD schedule
  is replaced by the preset's); `Solver.train` gets a one-layer stand-in task model.
- TA-VAAL's ranker: its `LossNet` hard-codes four 32x32-ResNet taps (it cannot run on 28x28), so
  the ranker is our loss-prediction module (the same GAP-FC-ReLU per tap, concatenated, linear)
  on small_cnn's two taps, hidden 64; its gradient into the backbone stops after 9 of 15 epochs.
- VAAL's `BCELoss` gets its (B,) target reshaped to D's (B, 1) output (today's torch refuses the
  pair); its sampler keeps the official train-mode scoring and `topk` of D's sigmoid.
- Seeds: Python, NumPy and torch are seeded per run (the official code is not).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import json
import math
import os
import random
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

PROTOCOL = {
    "initial_size": 200,
    "budget": 200,
    "stages": 6,
    "subset_size": 2000,
    "train_epochs": 15,
    "train_batch_size": 32,
    "train_lr": 1e-3,
    "train_weight_decay": 5e-4,
    "ranker_hidden": 64,
    "ranker_detach_epoch": 9,
    "latent_dim": 32,
    "vae_base_channels": 16,
    "disc_hidden": 128,
    "vae_epochs": 10,
    "vae_batch_size": 64,
    "vae_lr": 3e-3,
    "disc_lr": 1e-3,
    "beta": 0.1,
}
OFFICIAL_FILES = {
    "vaal": ["model.py", "solver.py", "sampler.py"],
    "tavaal": ["selection_methods.py", "train_test.py", "models/query_models.py", "config.py"],
}
METHOD_NAMES = {"vaal": "VAAL", "tavaal": "TA-VAAL"}
# The official VAE's widths are multiples of 128 (base 128) and its discriminator's hidden width
# 512; dividing by these gives the preset's 16 base channels and D hidden 128.
VAE_WIDTH_DIVISOR = 128 // PROTOCOL["vae_base_channels"]
DISC_WIDTH_DIVISOR = 512 // PROTOCOL["disc_hidden"]


# ---------------------------------------------------------------------------------------------
# Data: the real Fashion-MNIST, normalised as ours; samples carry their index as the official
# datasets do.


def _read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(folder: Path):

    def images(name: str) -> torch.Tensor:
        return torch.from_numpy(_read_idx(folder / name).astype(np.float32) / 255.0)[:, None]

    x_train = images("train-images-idx3-ubyte.gz")
    x_test = images("t10k-images-idx3-ubyte.gz")
    # Normalised by the train split's mean and std, as tavaal.data.tensors does.
    mean, std = x_train.mean(), x_train.std()
    x_train = (x_train - mean) / std
    x_test = (x_test - mean) / std
    y_train = torch.from_numpy(_read_idx(folder / "train-labels-idx1-ubyte.gz").astype(np.int64))
    y_test = torch.from_numpy(_read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    return IndexedImages(x_train, y_train), torch.utils.data.TensorDataset(x_test, y_test)


class IndexedImages:
    """(image, label, index), the item the official codes' datasets return."""

    def __init__(self, x, y) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int):
        return self.x[index], self.y[index], index


def initial_pool(ours: list[Path], seed: int, n_train: int) -> list[int]:
    """Our stage-0 labeled pool of `seed`: read from the first of our runs that has it, else
    drawn by the same function (it depends only on the dataset size, the size and the seed)."""
    import pandas as pd

    from tavaal.pool import initial_indices

    for results_dir in ours:
        path = results_dir / "fmnist" / "stage0" / f"seed{seed}" / "labeled.parquet"
        if path.exists():
            return [int(i) for i in np.sort(pd.read_parquet(path)["index"].to_numpy())]
    return [int(i) for i in initial_indices(n_train, PROTOCOL["initial_size"], seed)]


# ---------------------------------------------------------------------------------------------
# What must change for the official code to run here at the preset's sizes.


def _run_on_cpu() -> None:

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.cuda.device = lambda *args, **kwargs: contextlib.nullcontext()


def _scaled(value, divisor: int):
    """An official channel count (a multiple of 128, or 512 in D) at the preset's width."""
    return value // divisor if isinstance(value, int) and value >= 128 else value


def _scaled_nn(divisor: int, fourth_conv_kernel: int | None) -> types.SimpleNamespace:
    """`torch.nn` as an official model module sees it while it builds a network: the same,
    except that channel counts shrink by `divisor`; `fourth_conv_kernel` gives VAAL's VAE the
    28x28 geometry (its 512->1024 conv and 1024->512 deconv)."""

    def widths(args, kernel_key):
        args = list(args)
        big = (args[0], args[1]) in {(512, 1024), (1024, 512)}
        args[0], args[1] = _scaled(args[0], divisor), _scaled(args[1], divisor)
        if big and fourth_conv_kernel is not None and kernel_key:
            args[2] = fourth_conv_kernel
        return args

    class Conv2d(nn.Conv2d):
        def __init__(self, *args, **kwargs):
            super().__init__(*widths(args, True), **kwargs)

    class ConvTranspose2d(nn.ConvTranspose2d):
        def __init__(self, *args, **kwargs):
            super().__init__(*widths(args, True), **kwargs)

    class Linear(nn.Linear):
        def __init__(self, *args, **kwargs):
            super().__init__(*widths(args, False), **kwargs)

    class BatchNorm2d(nn.BatchNorm2d):
        def __init__(self, channels, *args, **kwargs):
            super().__init__(_scaled(channels, divisor), *args, **kwargs)

    namespace = types.SimpleNamespace(**{k: getattr(nn, k) for k in dir(nn) if not k[:1] == "_"})
    namespace.Conv2d, namespace.ConvTranspose2d = Conv2d, ConvTranspose2d
    namespace.Linear, namespace.BatchNorm2d = Linear, BatchNorm2d
    return namespace


def _build_scaled(module, cls, divisor: int, fourth_conv_kernel: int | None, *args):
    """Instantiate the official `cls` (its own __init__ and weight_init) at the scaled widths."""
    real_nn, real_view = module.nn, module.View

    def view(size):
        # The official View calls super(View, self), so the name must be its own class while
        # it is built.
        module.View = real_view
        try:
            return real_view(tuple(_scaled(s, divisor) for s in size))
        finally:
            module.View = view

    module.nn, module.View = _scaled_nn(divisor, fourth_conv_kernel), view
    try:
        return cls(*args)
    finally:
        module.nn, module.View = real_nn, real_view


class _AdamAtPresetRates:
    """`optim` as the official query code sees it: its Adam(lr=5e-4) for the VAE and for D runs
    at the preset's rates instead (which one it is, the parameters tell)."""

    def __init__(self) -> None:
        self._optim = torch.optim
        self.vae_parameters: set[int] = set()

    def __getattr__(self, name):
        return getattr(self._optim, name)

    def Adam(self, params, lr):  # noqa: N802 - the name the official code calls
        params = list(params)
        is_vae = id(params[0]) in self.vae_parameters
        return self._optim.Adam(params, lr=PROTOCOL["vae_lr" if is_vae else "disc_lr"])


# ---------------------------------------------------------------------------------------------
# The task learner both loops train: our small_cnn with the preset's recipe.


def new_task_model():
    from tavaal.models.small import small_cnn

    return small_cnn((1, 28, 28), 10)


def train_plain(model, train_set, labeled: list[int], generator) -> None:
    """VAAL's task learner (it never reaches the adversary): Adam, the preset's epochs and batch,
    batches drawn as VAAL's `querry_dataloader` (random order, last partial batch dropped)."""
    from torch.utils.data import DataLoader, SubsetRandomSampler

    loader = DataLoader(
        train_set,
        batch_size=PROTOCOL["train_batch_size"],
        sampler=SubsetRandomSampler(labeled, generator=generator),
        drop_last=True,
    )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=PROTOCOL["train_lr"], weight_decay=PROTOCOL["train_weight_decay"]
    )
    model.train()
    for _ in range(PROTOCOL["train_epochs"]):
        for images, labels, _ in loader:
            loss = torch.nn.functional.cross_entropy(model(images).logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def test_accuracy(model, test_set) -> float:
    from torch.utils.data import DataLoader

    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(test_set, batch_size=1000):
            correct += int((model(images).logits.argmax(1) == labels).sum())
    return correct / len(test_set)


# ---------------------------------------------------------------------------------------------
# The two loops.


class StandIn(nn.Module):
    """Stands in for VAAL's task model inside `Solver.train`: the code steps it on every labeled
    batch and keeps its best validation copy, but its task model never reaches the adversary.
    It always answers `label`, so its validation on a one-image batch of that label succeeds
    (the code's `best_model` exists only after a validation accuracy above 0)."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.register_buffer("logits", nn.functional.one_hot(torch.tensor(label), 10).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), 10) + 0 * self.unused


def run_vaal(checkout: Path, train_set, test_set, labeled: list[int], seed: int, record) -> None:
    from torch.utils.data import DataLoader, SubsetRandomSampler

    sys.path.insert(0, str(checkout))
    import model as vaal_model
    import solver as vaal_solver

    adam = _AdamAtPresetRates()
    vaal_solver.optim = adam
    args = types.SimpleNamespace(
        budget=PROTOCOL["budget"],
        batch_size=PROTOCOL["vae_batch_size"],
        train_epochs=PROTOCOL["vae_epochs"],
        num_vae_steps=2,
        num_adv_steps=1,
        beta=PROTOCOL["beta"],
        adversary_param=1,
        cuda=False,
        num_images=None,
    )
    stand_in_batch = torch.utils.data.Subset(train_set, labeled[:1])
    solver = vaal_solver.Solver(args, DataLoader([(x, y) for x, y, _ in stand_in_batch]))
    # D's output is (B, 1), the code's target (B,): the torch of its time paired them, today's
    # refuses. Reshaped, the loss is the code's.
    solver.bce_loss = lambda preds, target: nn.functional.binary_cross_entropy(
        preds, target.view_as(preds)
    )
    generator = torch.Generator().manual_seed(seed)
    for stage in range(PROTOCOL["stages"]):
        start = time.process_time()
        task_model = new_task_model()
        train_plain(task_model, train_set, labeled, generator)
        accuracy = test_accuracy(task_model, test_set)
        train_seconds = time.process_time() - start
        query_seconds = None
        if stage < PROTOCOL["stages"] - 1:
            start = time.process_time()
            taken = set(labeled)
            unlabeled = [i for i in range(len(train_set)) if i not in taken]
            candidates = random.sample(unlabeled, PROTOCOL["subset_size"])
            vae = _build_scaled(
                vaal_model, vaal_model.VAE, VAE_WIDTH_DIVISOR, 3, PROTOCOL["latent_dim"], 1
            )
            discriminator = _build_scaled(
                vaal_model,
                vaal_model.Discriminator,
                DISC_WIDTH_DIVISOR,
                None,
                PROTOCOL["latent_dim"],
            )
            adam.vae_parameters = {id(p) for p in vae.parameters()}
            # Solver.train runs num_images * train_epochs // batch_size iterations: the preset's
            # epochs over labeled + candidates.
            args.num_images = len(labeled) + len(candidates)
            batch = PROTOCOL["vae_batch_size"]
            labeled_loader = DataLoader(
                train_set,
                batch_size=batch,
                sampler=SubsetRandomSampler(labeled, generator=generator),
                drop_last=True,
            )
            candidate_loader = DataLoader(
                train_set,
                batch_size=batch,
                sampler=SubsetRandomSampler(candidates, generator=generator),
                drop_last=False,
            )
            _, vae, discriminator = solver.train(
                labeled_loader,
                DataLoader(stand_in_batch),
                StandIn(int(train_set.y[labeled[0]])),
                vae,
                discriminator,
                candidate_loader,
            )
            picked = solver.sample_for_labeling(vae, discriminator, candidate_loader)
            labeled = labeled + [int(i) for i in picked]
            query_seconds = time.process_time() - start
        record(stage, accuracy, train_seconds, query_seconds)


def run_tavaal(checkout: Path, train_set, test_set, labeled: list[int], seed: int, record) -> None:
    from torch.utils.data import DataLoader, SubsetRandomSampler

    from tavaal.models.ranker import build_ranker

    sys.path.insert(0, str(checkout))
    import config as tavaal_config
    import models.query_models as query_models
    import selection_methods
    import train_test

    batch = PROTOCOL["vae_batch_size"]
    budget = PROTOCOL["budget"]
    subset_size = PROTOCOL["subset_size"]
    # The query's constants (config.py, star-imported): its loaders' and VAE's batch, the
    # candidates, the budget and the VAE epochs that set train_vaal's iterations.
    for module in (tavaal_config, selection_methods):
        module.BATCH, module.SUBSET, module.ADDENDUM = batch, subset_size, budget
        module.EPOCHV = PROTOCOL["vae_epochs"]
    adam = _AdamAtPresetRates()
    selection_methods.optim = adam

    def vae(*_official_args):
        # The official Fashion-MNIST call is VAE(28, 1, 3): latent 28; the preset's is 32.
        built = _build_scaled(
            query_models, query_models.VAE, VAE_WIDTH_DIVISOR, None, PROTOCOL["latent_dim"], 1, 3
        )
        adam.vae_parameters = {id(p) for p in built.parameters()}
        return built

    def discriminator(*_official_args):
        return _build_scaled(
            query_models,
            query_models.Discriminator,
            DISC_WIDTH_DIVISOR,
            None,
            PROTOCOL["latent_dim"],
        )

    selection_methods.VAE, selection_methods.Discriminator = vae, discriminator
    # train_vaal hard-codes beta = 1; the preset's beta replaces it where it is used.
    official_vae_loss = selection_methods.vae_loss
    selection_methods.vae_loss = lambda x, recon, mu, logvar, _beta: official_vae_loss(
        x, recon, mu, logvar, PROTOCOL["beta"]
    )

    class Backbone(nn.Module):
        """small_cnn as the official code calls its ResNet: (scores, features, taps). The code
        detaches taps 0-3 after the ranker's epochs; small_cnn has two, so they are repeated
        and the ranker reads the first two."""

        def __init__(self) -> None:
            super().__init__()
            self.net = new_task_model()

        def forward(self, x):
            out = self.net(x)
            return out.logits, out.embedding, [*out.features, *out.features]

    class Ranker(nn.Module):
        """Our loss-prediction module on small_cnn's two taps, output (N, 1) as LossNet's."""

        def __init__(self, backbone: Backbone) -> None:
            super().__init__()
            self.net = build_ranker(backbone.net, (1, 28, 28), PROTOCOL["ranker_hidden"])

        def forward(self, taps):
            return self.net(list(taps[:2])).unsqueeze(1)

    # query_samples reads args.dataset only, to choose its Fashion-MNIST VAE (replaced above).
    query_args = types.SimpleNamespace(dataset="fashionmnist")
    # Progress bars only: train_epoch wraps its loader in tqdm.
    train_test.tqdm = lambda loader, **_: loader
    test_loader = DataLoader(test_set, batch_size=1000)
    taken = set(labeled)
    unlabeled = [i for i in range(len(train_set)) if i not in taken]
    generator = torch.Generator().manual_seed(seed)
    for stage in range(PROTOCOL["stages"]):
        start = time.process_time()
        backbone = Backbone()
        module = Ranker(backbone)
        models = {"backbone": backbone, "module": module}
        optimizers, schedulers = {}, {}
        for name, net in models.items():
            optimizers[name] = torch.optim.Adam(
                net.parameters(),
                lr=PROTOCOL["train_lr"],
                weight_decay=PROTOCOL["train_weight_decay"],
            )
            schedulers[name] = torch.optim.lr_scheduler.MultiStepLR(optimizers[name], [])
        # main.py: drop_last on the first loader, not on the later ones.
        train_loader = DataLoader(
            train_set,
            batch_size=PROTOCOL["train_batch_size"],
            sampler=SubsetRandomSampler(labeled, generator=generator),
            drop_last=stage == 0,
        )
        dataloaders = {"train": train_loader, "test": test_loader}
        criterion = nn.CrossEntropyLoss(reduction="none")
        # The code detaches when its 0-based epoch > EPOCHL: EPOCHL = 8 stops the ranker's
        # gradient after 9 epochs.
        train_test.train(
            models,
            "TA-VAAL",
            criterion,
            optimizers,
            schedulers,
            dataloaders,
            PROTOCOL["train_epochs"],
            PROTOCOL["ranker_detach_epoch"] - 1,
        )
        accuracy = train_test.test(models, PROTOCOL["train_epochs"], "TA-VAAL", dataloaders, "test")
        accuracy /= 100.0
        train_seconds = time.process_time() - start
        query_seconds = None
        if stage < PROTOCOL["stages"] - 1:
            start = time.process_time()
            # main.py's query step, as written there.
            random.shuffle(unlabeled)
            subset = unlabeled[:subset_size]
            arg = selection_methods.query_samples(
                models, "TA-VAAL", train_set, subset, labeled, stage, query_args
            )
            labeled = labeled + [int(i) for i in torch.tensor(subset)[arg][-budget:].numpy()]
            unlabeled = list(torch.tensor(subset)[arg][:-budget].numpy()) + unlabeled[subset_size:]
            unlabeled = [int(i) for i in unlabeled]
            query_seconds = time.process_time() - start
        record(stage, accuracy, train_seconds, query_seconds)


# ---------------------------------------------------------------------------------------------
# Results file.


def _blob_id(path: Path) -> str:
    """The file's git blob id: compare with `git ls-tree COMMIT` of the official repository."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@contextlib.contextmanager
def _locked_results(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.exists() else {}
        yield results
        temporary = Path(str(path) + ".tmp")
        temporary.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        os.replace(temporary, path)


def run(args) -> None:

    torch.set_num_threads(args.threads)
    _run_on_cpu()
    checkout = {"vaal": args.vaal_checkout, "tavaal": args.tavaal_checkout}[args.method]
    train_set, test_set = load_fashion_mnist(args.fmnist)
    labeled = initial_pool(args.ours, args.seed, len(train_set))
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    with _locked_results(args.out) as results:
        results["protocol"] = PROTOCOL
        results.setdefault("official_files", {})[args.method] = {
            name: _blob_id(checkout / name) for name in OFFICIAL_FILES[args.method]
        }
        results.setdefault("runs", {}).setdefault(args.method, {})[str(args.seed)] = {
            "labels": [],
            "accuracy": [],
            "train_cpu_seconds": [],
            "query_cpu_seconds": [],
            "complete": False,
        }

    def record(stage, accuracy, train_seconds, query_seconds) -> None:
        with _locked_results(args.out) as results:
            entry = results["runs"][args.method][str(args.seed)]
            entry["labels"].append(PROTOCOL["initial_size"] + stage * PROTOCOL["budget"])
            entry["accuracy"].append(accuracy)
            entry["train_cpu_seconds"].append(round(train_seconds, 1))
            if query_seconds is not None:
                entry["query_cpu_seconds"].append(round(query_seconds, 1))
            entry["complete"] = stage == PROTOCOL["stages"] - 1
        print(
            f"{args.method} seed {args.seed} stage {stage}: accuracy {accuracy:.4f}, "
            f"train {train_seconds:.0f} s, query {query_seconds or 0:.0f} s (CPU)",
            flush=True,
        )

    loop = run_vaal if args.method == "vaal" else run_tavaal
    loop(checkout, train_set, test_set, labeled, args.seed, record)


# ---------------------------------------------------------------------------------------------
# Report.


def _ours_accuracies(results_dirs: list[Path]):
    """Our runs of the preset: (method, seed, labels, accuracy) from each folder's
    summary.parquet, or from its stages' metrics.json files when it has not been aggregated.
    Where folders overlap, the first one's row is kept (the runs are deterministic: a seed run
    alone gives the same numbers as in a run of all seeds)."""
    import pandas as pd

    from tavaal.layout import run_file

    columns = ["method", "seed", "labels", "accuracy"]
    frames = []
    for results_dir in results_dirs:
        summary = results_dir / "fmnist" / "summary.parquet"
        if summary.exists():
            frames.append(pd.read_parquet(summary)[columns])
            continue
        rows = []
        for method in ("random", "vaal", "tavaal"):
            for seed in (0, 1, 2):
                for stage in range(PROTOCOL["stages"]):
                    path = run_file(results_dir, "fmnist", method, seed, stage, "metrics.json")
                    if path.exists():
                        metrics = json.loads(path.read_text())
                        labels = PROTOCOL["initial_size"] + stage * PROTOCOL["budget"]
                        rows.append((method, seed, labels, metrics["accuracy"]))
        frames.append(pd.DataFrame(rows, columns=columns))
    ours = pd.concat(frames, ignore_index=True)
    return ours.drop_duplicates(["method", "seed", "labels"], keep="first").reset_index(drop=True)


def _interval(values) -> str:
    from tavaal.report.statistics import t_interval

    low, high = t_interval(values)
    if math.isnan(low):
        return "—"
    return f"[{low:+.3f}, {high:+.3f}]"


def report(args) -> str:
    import pandas as pd

    from tavaal.report.statistics import area_under_curve

    results = json.loads(args.out.read_text())
    ours = _ours_accuracies(args.ours)
    random_runs = ours[ours["method"] == "random"]
    random_aulc = {
        int(seed): area_under_curve(g["labels"], g["accuracy"])
        for seed, g in random_runs.groupby("seed")
        if len(g) == PROTOCOL["stages"]
    }
    lines = [
        "Test accuracy (%) per stage, mean over seeds (official runs: complete seeds only):",
        "",
        "| labels | Random (ours) | VAAL ours | VAAL official | TA-VAAL ours | TA-VAAL official |",
        "|---|---|---|---|---|---|",
    ]
    curves: dict[str, pd.DataFrame] = {"random": random_runs}
    for method in ("vaal", "tavaal"):
        curves[f"{method}/ours"] = ours[ours["method"] == method]
        rows = [
            {"seed": int(seed), "labels": label, "accuracy": accuracy}
            for seed, entry in results.get("runs", {}).get(method, {}).items()
            if entry["complete"]
            for label, accuracy in zip(entry["labels"], entry["accuracy"], strict=True)
        ]
        curves[f"{method}/official"] = pd.DataFrame(rows, columns=["seed", "labels", "accuracy"])
    order = ["random", "vaal/ours", "vaal/official", "tavaal/ours", "tavaal/official"]
    labels = [PROTOCOL["initial_size"] + k * PROTOCOL["budget"] for k in range(PROTOCOL["stages"])]
    for label in labels:
        cells = []
        for key in order:
            values = curves[key].loc[curves[key]["labels"] == label, "accuracy"]
            cells.append(f"{100 * values.mean():.1f}" if len(values) else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "AULC − Random (Random: our run), paired by seed, mean and 95% t interval; "
        "official − ours paired by seed:",
        "",
        "| method | seeds | ours | ours 95% | official | official 95% | official − ours | 95% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seed_gains: dict[str, dict[str, dict[int, float]]] = {}
    for method in ("vaal", "tavaal"):
        gains = {}
        for side in ("ours", "official"):
            frame = curves[f"{method}/{side}"]
            gains[side] = {
                int(seed): area_under_curve(g["labels"], g["accuracy"]) - random_aulc[int(seed)]
                for seed, g in frame.groupby("seed")
                if len(g) == PROTOCOL["stages"] and int(seed) in random_aulc
            }
        seed_gains[method] = gains
        seeds = sorted(set(gains["ours"]) & set(gains["official"]))
        ours_gain = [gains["ours"][s] for s in seeds]
        official_gain = [gains["official"][s] for s in seeds]
        difference = [o - u for o, u in zip(official_gain, ours_gain, strict=True)]

        def mean(values):
            return f"{np.mean(values):+.3f}" if values else "—"

        lines.append(
            f"| {METHOD_NAMES[method]} | {','.join(map(str, seeds)) or '—'} | {mean(ours_gain)} | "
            f"{_interval(ours_gain)} | {mean(official_gain)} | {_interval(official_gain)} | "
            f"{mean(difference)} | {_interval(difference)} |"
        )
    lines += ["", "Per seed, AULC − Random (ours / official):", ""]
    for method in ("vaal", "tavaal"):
        cells = [
            f"seed {seed} {per_seed['ours'].get(seed, math.nan):+.3f} / "
            f"{per_seed['official'].get(seed, math.nan):+.3f}"
            for per_seed in [seed_gains[method]]
            for seed in sorted(set(per_seed["ours"]) | set(per_seed["official"]))
        ]
        lines.append(f"- {METHOD_NAMES[method]}: " + ("; ".join(cells) or "—"))
    lines += ["", "CPU seconds per official query, mean (fastest–slowest):", ""]
    for method in ("vaal", "tavaal"):
        seconds = [
            s
            for entry in results.get("runs", {}).get(method, {}).values()
            for s in entry["query_cpu_seconds"]
        ]
        if seconds:
            lines.append(
                f"- {METHOD_NAMES[method]}: {np.mean(seconds):.0f} "
                f"({min(seconds):.0f}–{max(seconds):.0f}), {len(seconds)} queries"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vaal_checkout", type=Path, help="sinhasam/vaal at 67263f3")
    parser.add_argument("tavaal_checkout", type=Path, help="cubeyoung/TA-VAAL at 1161071")
    parser.add_argument("--fmnist", type=Path, required=True, help="folder of the IDX .gz files")
    parser.add_argument(
        "--ours",
        type=Path,
        nargs="+",
        required=True,
        help="our results folder(s) of the preset; the first that has a (method, seed) wins",
    )
    parser.add_argument("--out", type=Path, required=True, help="the JSON results file")
    parser.add_argument("--method", choices=["vaal", "tavaal"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="print the Markdown tables")
    args = parser.parse_args()
    if args.report:
        print(report(args))
        return
    if args.method is None or args.seed is None:
        parser.error("a run needs --method and --seed (one official code per process)")
    run(args)


if __name__ == "__main__":
    main()
