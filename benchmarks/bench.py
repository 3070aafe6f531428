"""Benchmark of tavaal's task-learner training data path and of every query strategy.

    python benchmarks/bench.py [--device auto|cpu|cuda] [--out benchmarks/out/results.json]
                               [--quick] [--candidates N] [--train-images N] [--methods M ...]

Two measurements, on synthetic CIFAR-shaped data (uint8 N x 32 x 32 x 3, 10 classes):

1. Training throughput of ResNet-18 (SGD, batch 128, pad-4 crop + flip), images/s:
   - "ours": the real `tavaal.training.train_task_learner` (whole uint8 train set as one tensor on
     the device, `torch.randperm` batches, `augment_images` + `to_tensor_batch` on the device);
   - "reference": the loop of the official VAAL / TA-VAAL code, a `torch.utils.data.DataLoader`
     over a Dataset returning PIL images through per-sample torchvision transforms.
2. Query seconds of each registered strategy, with a QueryContext built the way
   `tavaal.stage.run_query` builds it, on an untrained ResNet-18 (+ Ranker / ensemble / dropout
   exactly as the method's checkpoint would hold them). VAAL / TA-VAAL train their VAE and
   discriminator for a fixed, small number of iterations; the cost of the papers' full schedule is
   extrapolated from the seconds per iteration.

On CPU the default sizes are scaled down so that a run takes minutes, and per-10k-candidate
numbers are extrapolated (labelled as such in the JSON). See benchmarks/README.md; the code is in
benchmarks/tavaal_bench/, one module per concern.
"""

from tavaal_bench.cli import main

if __name__ == "__main__":
    main()
