#!/usr/bin/env python3
"""BC update throughput and where its time goes, for one experiment config.

    python tools/bench_bc.py --config habitat_configs/experiments/bc_nav.yaml [key=value ...]
        [--episodes 256] [--updates 20] [--threads 1]

Reads the first ``--episodes`` records of the config's expert store (recorded by a training
run; recorded here if missing), then times ``--updates`` BC updates three ways:

* ``store``     — batches read and decoded from the LMDB store every time (the old path);
* ``in-memory`` — records decoded once (``bc.in_memory``), random batches;
* ``bucketed``  — in-memory batches of similar-length episodes (``bc.bucket_by_length``).

Per way it prints samples/s (real steps; padded steps in brackets) and the milliseconds per
update spent collating, in the forward pass (timed separately without gradients) and in
backward + optimiser, and the bound the update alone would allow (no data time). Figures,
not assertions: run it on an idle machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import torch


def _time_updates(trainer: Any, batches: Callable[[Sequence[int]], Dict[str, Any]],
                  orders: List[np.ndarray]) -> Dict[str, float]:
    collate_s = update_s = forward_s = 0.0
    real = padded = 0
    for rows in orders:
        t0 = time.perf_counter()
        batch = batches(rows)
        t1 = time.perf_counter()
        trainer.update(batch)
        t2 = time.perf_counter()
        with torch.no_grad():
            steps, size = batch["actions"].shape
            trainer.policy.forward_sequence_outputs(
                batch["observations"], trainer.policy.initial_hidden(size),
                batch["prev_actions"], batch["episode_start_masks"])
        t3 = time.perf_counter()
        collate_s += t1 - t0
        update_s += t2 - t1
        forward_s += t3 - t2
        real += int(batch["lengths"].sum())
        padded += steps * size
    n = len(orders)
    total = collate_s + update_s
    return {"samples_per_s": real / total, "padded_per_s": padded / total,
            "bound_samples_per_s": real / update_s, "collate_ms": 1e3 * collate_s / n,
            "forward_ms": 1e3 * forward_s / n, "backward_step_ms": 1e3 * (update_s - forward_s) / n,
            "padding_share": 1.0 - real / padded}


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*", default=[])
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the config's torch_threads)")
    args = parser.parse_args(list(argv))
    if args.episodes < 1 or args.updates < 1:
        parser.error("--episodes and --updates must be positive")

    from agent.algos.bc import BCTrainer
    from agent.algos.config import load_train_config

    cfg = load_train_config(args.config, [f"bc.max_episodes={args.episodes}", "progress=false",
                                          *args.overrides])
    trainer = BCTrainer.from_config(cfg)
    if args.threads:
        torch.set_num_threads(args.threads)
    keys = trainer.ensure_expert_data()
    sources = [(trainer.expert_store_path(), keys)]
    dataset = torch.utils.data.ConcatDataset(trainer.training_datasets(sources))
    size, batch_size = len(dataset), cfg.bc.batch_size
    rng = np.random.default_rng(0)
    random_orders = [rng.choice(size, batch_size, replace=False) for _ in range(args.updates)]
    rows: Dict[str, Dict[str, float]] = {}

    from agent.datasets.torch_dataset import collate_episodes

    def from_store(indices: Sequence[int]) -> Dict[str, Any]:
        return collate_episodes([dataset[int(i)] for i in indices])

    trainer.update(from_store(random_orders[0]))  # warm-up: allocations, instruction cache
    rows["store"] = _time_updates(trainer, from_store, random_orders)
    if cfg.bc.in_memory:
        memory = trainer.batch_source(dataset, sources)
        rows["in-memory"] = _time_updates(trainer, memory, random_orders)
        order = trainer.epoch_order(size, phase=99, lengths=memory.lengths)
        bucketed = [order[i * batch_size:(i + 1) * batch_size]
                    for i in range(min(args.updates, len(order) // batch_size))]
        rows["bucketed"] = _time_updates(trainer, memory, bucketed)
    trainer.close()
    print(f"BC updates, {args.config} (batch {batch_size} episodes, {size} episodes in RAM, "
          f"torch threads {torch.get_num_threads()}, {args.updates} timed updates each)")
    print(f"{'batches':<10} {'samples/s':>10} {'(padded)':>9} {'bound':>8} {'collate ms':>11} "
          f"{'forward ms':>11} {'bwd+step ms':>12} {'padding':>8}")
    for name, r in rows.items():
        print(f"{name:<10} {r['samples_per_s']:10.0f} {r['padded_per_s']:9.0f} "
              f"{r['bound_samples_per_s']:8.0f} {r['collate_ms']:11.1f} {r['forward_ms']:11.1f} "
              f"{r['backward_step_ms']:12.1f} {r['padding_share']:8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
