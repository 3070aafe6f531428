"""The benchmark behind benchmarks/bench.py (see benchmarks/README.md), one module per concern:

- settings:  profiles (sizes per device), resolved settings, the benchmark's experiment config
- synthetic: the synthetic CIFAR-shaped dataset
- reference: the official codes' data path (DataLoader over PIL images, per-sample transforms)
- train:     training throughput, ours (`train_task_learner`) against the reference loop
- data_path: the two data paths alone, without the model
- query:     query seconds per method, with a QueryContext built as `run_query` builds it
- adversary: VAE/D timing of VAAL / TA-VAAL and its full-schedule extrapolation
- memory:    peak RSS / GPU memory probes
- runtime:   progress lines, device sync, load average
- output:    JSON file and the printed table
- cli:       flags and `main`

Importing the package (or any module) does no work: everything runs from `cli.main`.
"""
