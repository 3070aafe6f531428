"""Run the official VAAL and TA-VAAL code on deterministic weights and batches; write golden values.

    python tests/official/make_official_goldens.py VAAL_DIR TAVAAL_DIR [OUT_DIR]

VAAL_DIR: a git checkout of sinhasam/vaal at commit 67263f3, TAVAAL_DIR: of cubeyoung/TA-VAAL at
1161071; OUT_DIR defaults to this folder. Nothing of their code is copied: it is imported from
those folders and run as it is, changed only where it must be to run here, in float64, at a small
size:
- on the CPU: `.cuda()` returns its receiver and `torch.cuda.device` is a no-op (TA-VAAL calls
  them unconditionally; VAAL runs with args.cuda = False);
- VAAL's BCELoss compares D's (B, 1) output with a (B,) target: torch of its time warned and
  paired the elements in order, today's torch refuses; the target is reshaped to the output's
  shape, which pairs them as then (`_pair_bce_elements`);
- sizes: latent 8 (32x32 RGB images, the VAE's only input size), batches of 2 (VAAL's task model
  is a linear layer: its training is not what is compared), and TA-VAAL's module constants
  (SUBSET, ADDENDUM, EPOCHV, BATCH) set so that `train_vaal` runs two iterations;
- the VAE / discriminator classes that TA-VAAL's `query_samples` instantiates get latent 8 and the
  deterministic weights.
Every parameter starts from `deterministic.parameter_value` (named as in the official modules),
every image from `deterministic.uniform`. What is recorded (losses, reparameterisation noise, the
summary of every gradient and of every parameter after every optimizer step, the sampler's
choice) is what tests/test_official_equality.py compares our code with. A third file records
the official initialisation: per parameter, the std and max |value| over four seeds.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from deterministic import parameter_value, summary, uniform  # noqa: E402

# The commits the goldens are of (docs/methods.md, "Equal to the official codes").
PINNED = {
    "sinhasam/vaal": "67263f32665990a9408430a86df5b6ecd96a812d",
    "cubeyoung/TA-VAAL": "11610718c431f848d19aa6a94b781dfc0dcfd81d",
}
LATENT = 8
BATCH = 2
SHAPE = (3, 32, 32)


class Images(Dataset):
    """(image, label, index) of deterministic images, as both official loaders yield them."""

    def __init__(self, key: str, count: int, with_index: bool = True, labels=None):
        self.x = uniform(key, (count, *SHAPE))
        self.y = torch.arange(count) % 10 if labels is None else torch.as_tensor(labels)
        self.with_index = with_index

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return (self.x[i], self.y[i], i) if self.with_index else (self.x[i], self.y[i])


def fill(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(parameter_value(name, tuple(p.shape)))
    return module


class Recorder:
    """Losses at every backward, every randn draw, and per optimizer step the gradient and the
    updated value of every parameter, by '<model>.<parameter>' name."""

    def __init__(self, models: dict[str, nn.Module]):
        self.models = models  # may gain models later (TA-VAAL builds its VAE inside the query)
        self.losses: list[float] = []
        self.draws: list[torch.Tensor] = []
        self.uniform_draws: list[list[float]] = []
        self.steps: list[dict] = []

    def name(self, parameter: torch.Tensor) -> str:
        for key, model in self.models.items():
            for name, p in model.named_parameters():
                if p is parameter:
                    return f"{key}.{name}"
        raise KeyError("a parameter of no recorded model")

    @contextlib.contextmanager
    def active(self):
        backward, randn, np_uniform = torch.Tensor.backward, torch.randn, np.random.uniform
        steps = {cls: cls.step for cls in (torch.optim.Adam, torch.optim.SGD)}
        recorder = self

        def record_backward(tensor, *args, **kwargs):
            recorder.losses.append(float(tensor))
            return backward(tensor, *args, **kwargs)

        def record_randn(*args, **kwargs):
            out = randn(*args, **kwargs)
            recorder.draws.append(out.detach().clone())
            return out

        def record_uniform(*args, **kwargs):
            out = np_uniform(*args, **kwargs)
            # TA-VAAL casts the noise to float32 before use.
            recorder.uniform_draws.append(out.astype(np.float32).astype(float).ravel().tolist())
            return out

        def wrap(step):
            def record_step(optimizer, *args, **kwargs):
                params = [p for group in optimizer.param_groups for p in group["params"]]
                names = [recorder.name(p) for p in params]
                grads = {
                    name: summary(name, p.grad)
                    for name, p in zip(names, params, strict=True)
                    if p.grad is not None
                }
                out = step(optimizer, *args, **kwargs)
                values = {name: summary(name, p) for name, p in zip(names, params, strict=True)}
                recorder.steps.append({"grads": grads, "params": values})
                return out

            return record_step

        torch.Tensor.backward, torch.randn, np.random.uniform = (
            record_backward,
            record_randn,
            record_uniform,
        )
        for cls, step in steps.items():
            cls.step = wrap(step)
        try:
            yield self
        finally:
            torch.Tensor.backward, torch.randn, np.random.uniform = backward, randn, np_uniform
            for cls, step in steps.items():
                cls.step = step


@contextlib.contextmanager
def _pair_bce_elements():
    functional = torch.nn.functional
    original = functional.binary_cross_entropy

    def paired(input, target, *args, **kwargs):
        if target.shape != input.shape and target.numel() == input.numel():
            target = target.reshape(input.shape)
        return original(input, target, *args, **kwargs)

    functional.binary_cross_entropy = paired
    try:
        yield
    finally:
        functional.binary_cross_entropy = original


def _import_from(folder: Path, *modules: str):
    sys.path.insert(0, str(folder))
    try:
        return [__import__(name, fromlist=["*"]) for name in modules]
    finally:
        sys.path.remove(str(folder))


def _commit(folder: Path, repository: str) -> str:
    """The checkout's commit, which must be the pinned one."""
    out = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    commit = out.stdout.strip()
    if commit != PINNED[repository]:
        raise SystemExit(
            f"{folder}: expected a git checkout of {repository} at {PINNED[repository]}, "
            f"found {commit or 'no git checkout'}"
        )
    return commit


def buffers(module: nn.Module, prefix: str) -> dict[str, list[float]]:
    return {
        f"{prefix}.{name}": summary(f"{prefix}.{name}", b)
        for name, b in module.named_buffers()
        if b.is_floating_point()
    }


def vaal_goldens(folder: Path) -> dict:
    model, solver = _import_from(folder, "model", "solver")
    vae = fill(model.VAE(z_dim=LATENT, nc=3))
    disc = fill(model.Discriminator(z_dim=LATENT))
    # Only the VAE and D are compared; VAAL trains its task model on the side.
    # It predicts class 0 everywhere, and the validation images are of class 0: the solver keeps
    # a "best" model only if the validation accuracy is above 0.
    task = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(SHAPE)), 10))
    with torch.no_grad():
        task[1].weight.zero_()
        task[1].bias.copy_(10.0 * (torch.arange(10) == 0))
    validation = DataLoader(Images("vaal/validation", 2, labels=[0, 0]), batch_size=2)
    labeled = DataLoader(Images("vaal/labeled", 2 * BATCH), batch_size=BATCH)
    unlabeled = DataLoader(Images("vaal/unlabeled", 2 * BATCH), batch_size=BATCH)
    pool = DataLoader(Images("vaal/pool", 12), batch_size=4)
    test = DataLoader(Images("vaal/test", 2, with_index=False), batch_size=2)
    args = SimpleNamespace(
        num_images=BATCH, train_epochs=1, batch_size=BATCH, num_vae_steps=2, num_adv_steps=1,
        beta=1.0, adversary_param=1.0, cuda=False, budget=4,
    )  # fmt: skip
    run = solver.Solver(args, test)
    recorder = Recorder({"vae": vae, "disc": disc, "task": task})
    with recorder.active(), _pair_bce_elements():
        run.train(labeled, validation, task, vae, disc, unlabeled)
    probabilities = []
    hook = disc.register_forward_hook(lambda m, i, o: probabilities.append(o.detach().clone()))
    chosen = run.sample_for_labeling(vae, disc, pool)
    hook.remove()
    # Steps: task SGD, VAE Adam x2, D Adam; draws: eps of L and U per VAE forward.
    adam = [s for s in recorder.steps if not any(k.startswith("task.") for k in s["grads"])]
    eps = [d.reshape(-1).tolist() for d in recorder.draws if tuple(d.shape) == (BATCH, LATENT)]
    return {
        "official": {"repository": "sinhasam/vaal", "commit": _commit(folder, "sinhasam/vaal")},
        "latent": LATENT,
        "batch": BATCH,
        "vae_parameters": {n: list(p.shape) for n, p in vae.named_parameters()},
        "disc_parameters": {n: list(p.shape) for n, p in disc.named_parameters()},
        # backward order: task, VAE, VAE, D
        "losses": recorder.losses,
        # per VAE update: eps of its labeled forward, then of its unlabeled forward
        "eps": eps[:4],
        "steps": adam,
        "vae_buffers": buffers(vae, "vae"),
        "sampler": {
            "pool_batch": 4,
            "budget": 4,
            "probabilities": torch.cat(probabilities).reshape(-1).tolist(),
            "chosen": [int(i) for i in chosen],
        },
    }


def tavaal_goldens(folder: Path) -> dict:
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.device = lambda *a, **k: contextlib.nullcontext()
    resnet, query_models, train_test, selection = _import_from(
        folder, "models.resnet", "models.query_models", "train_test", "selection_methods"
    )
    backbone = fill(resnet.ResNet18(num_classes=10))
    module = fill(query_models.LossNet())
    models = {"backbone": backbone, "module": module}

    def sgd(m):  # main.py: LR, MOMENTUM, WDECAY of config.py
        return torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    optimizers = {"backbone": sgd(backbone), "module": sgd(module)}
    task_batch = 4
    train = DataLoader(Images("tavaal/train", task_batch, with_index=False), batch_size=task_batch)
    criterion = nn.CrossEntropyLoss(reduction="none")
    task_recorder = Recorder({"backbone": backbone, "module": module})
    with task_recorder.active():
        train_test.train_epoch(models, "TA-VAAL", criterion, optimizers, {"train": train}, 0, 120)
    task_buffers = {**buffers(backbone, "backbone"), **buffers(module, "module")}

    # The query: train_vaal for two iterations (SUBSET + ADDENDUM * (cycle + 1) = 4 rows over
    # BATCH = 2), then the sampler over the subset (batches of BATCH).
    selection.SUBSET, selection.ADDENDUM, selection.EPOCHV, selection.BATCH = 4, 0, 1, BATCH
    # The query gets a fresh task model and ranker: after one step of SGD at lr 0.1 their
    # eval-mode outputs are of the order of 1e6, and D would saturate on such a raw r.
    models = {
        "backbone": fill(resnet.ResNet18(num_classes=10)),
        "module": fill(query_models.LossNet()),
    }
    # The VAE and D that query_samples builds join the recorded models when built.
    tracked = dict(models)

    def vae_factory(*args):
        tracked["vae"] = fill(query_models.VAE(z_dim=LATENT))
        return tracked["vae"]

    def disc_factory(*args):
        tracked["disc"] = fill(query_models.Discriminator(LATENT))
        return tracked["disc"]

    selection.VAE, selection.Discriminator = vae_factory, disc_factory
    data = Images("tavaal/pool", 10)
    labeled_set, subset = [0, 1, 2, 3], [4, 5, 6, 7, 8, 9]
    args = SimpleNamespace(dataset="cifar10")
    np.random.seed(0)
    recorder = Recorder(tracked)
    probabilities = []
    original_init = query_models.Discriminator.__init__

    def hooked_init(self, *a, **k):
        original_init(self, *a, **k)
        self.register_forward_hook(lambda m, i, o: probabilities.append(o.detach().clone()))

    query_models.Discriminator.__init__ = hooked_init
    with recorder.active():
        arg = selection.query_samples(models, "TA-VAAL", data, subset, labeled_set, 0, args)
    query_models.Discriminator.__init__ = original_init
    vae, disc = tracked["vae"], tracked["disc"]
    eps = [d.reshape(-1).tolist() for d in recorder.draws if tuple(d.shape) == (BATCH, LATENT)]
    sampled = probabilities[-len(subset) // BATCH :]
    return {
        "official": {
            "repository": "cubeyoung/TA-VAAL",
            "commit": _commit(folder, "cubeyoung/TA-VAAL"),
        },
        "latent": LATENT,
        "batch": BATCH,
        "task": {
            "batch": task_batch,
            "parameters": {
                **{f"backbone.{n}": list(p.shape) for n, p in backbone.named_parameters()},
                **{f"module.{n}": list(p.shape) for n, p in module.named_parameters()},
            },
            "loss": task_recorder.losses,
            # one SGD step per optimizer: backbone, then module
            "steps": task_recorder.steps,
            "buffers": task_buffers,
        },
        "vae_parameters": {n: list(p.shape) for n, p in vae.named_parameters()},
        "disc_parameters": {n: list(p.shape) for n, p in disc.named_parameters()},
        "labeled_set": labeled_set,
        "subset": subset,
        # backward order: VAE, D, VAE, D (iterations 0 and 1)
        "losses": recorder.losses,
        # iteration 0's r: uniform noise for the labeled, then the unlabeled batch
        "noise_r": recorder.uniform_draws,
        # eps of the labeled and unlabeled VAE forward of each VAE update (iterations 0, 1)
        "eps": [eps[0], eps[1], eps[4], eps[5]],
        "steps": recorder.steps,
        "vae_buffers": buffers(vae, "vae"),
        "sampler": {
            "probabilities": torch.cat(sampled).reshape(-1).tolist(),
            "order": [int(i) for i in arg],
        },
    }


def init_goldens(vaal: Path, tavaal: Path) -> dict:
    """std and max |value| of every parameter as the official constructors leave it, over four
    seeds, at the CIFAR size (latent 32) in float32."""
    (vaal_model,) = _import_from(vaal, "model")
    (tavaal_models,) = _import_from(tavaal, "models.query_models")
    builders = {
        "vaal_vae": lambda: vaal_model.VAE(z_dim=32, nc=3),
        "vaal_disc": lambda: vaal_model.Discriminator(z_dim=32),
        "tavaal_vae": lambda: tavaal_models.VAE(z_dim=32),
        "tavaal_disc": lambda: tavaal_models.Discriminator(32),
    }
    found = {}
    for key, build in builders.items():
        values: dict[str, list[torch.Tensor]] = {}
        for seed in range(4):
            torch.manual_seed(seed)
            for name, p in build().named_parameters():
                values.setdefault(name, []).append(p.detach().reshape(-1).double())
        found[key] = {
            name: {
                "std": float(torch.cat(v).std()),
                "max_abs": float(torch.cat(v).abs().max()),
                "count": int(sum(t.numel() for t in v)),
            }
            for name, v in values.items()
        }
    return {
        "official": {
            "sinhasam/vaal": _commit(vaal, "sinhasam/vaal"),
            "cubeyoung/TA-VAAL": _commit(tavaal, "cubeyoung/TA-VAAL"),
        },
        "seeds": 4,
        "layers": found,
    }


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    vaal, tavaal = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    out = Path(argv[2]) if len(argv) == 3 else HERE
    _commit(vaal, "sinhasam/vaal"), _commit(tavaal, "cubeyoung/TA-VAAL")  # fail early
    init = init_goldens(vaal, tavaal)
    torch.set_default_dtype(torch.float64)
    goldens = {"vaal": vaal_goldens(vaal), "tavaal": tavaal_goldens(tavaal), "init": init}
    for name, value in goldens.items():
        value["torch"] = torch.__version__
        value["script"] = "tests/official/make_official_goldens.py"
        path = out / f"{name}.json"
        path.write_text(json.dumps(value, indent=0, sort_keys=True) + "\n")
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
