"""Ahead-of-time compilation for devices this machine does not have: the real TPU (or GPU) compiler as the judge of
what fits and what it costs.

    targets.py   "v5e:2x4", "v6e:1x1", "h100:8" → compile-only devices of that topology, and their memory
    scales.py    datasets to compile for: on disk, synthetic scales, or counts alone (~10× Electronics)
    report.py    one compiled program → per-chip bytes, fit, FLOPs, op census of the optimized HLO
    plan.py      the smallest topology that fits a model + dataset, the largest batch that fits a topology

The programs are the trainer's own (train.Trainer with `target=mesh`): nothing here rebuilds a model's step. The
command line is `python -m experiments.aot` (README, "Planning a run").
"""
