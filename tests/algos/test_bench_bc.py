"""tools/bench_bc.py runs on a tiny config and prints its three rows of figures."""
from __future__ import annotations

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_tool():
    spec = importlib.util.spec_from_file_location("bench_bc", os.path.join(ROOT, "tools", "bench_bc.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_bc_prints_store_memory_and_bucketed_rows(tiny_dataset, tmp_path, capsys):
    tool = load_tool()
    code = tool.main(["--config", os.path.join(ROOT, "habitat_configs/experiments/bc_glove.yaml"),
                      f"data_dir={tiny_dataset}", f"out_dir={tmp_path}/run",
                      f"features.cache_dir={tmp_path}/features", "model.policy.hidden_size=32",
                      "model.instruction_encoder.hidden_size=16", "bc.batch_size=2", "num_envs=2",
                      "--episodes", "4", "--updates", "2", "--threads", "1"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"store", "in-memory", "bucketed"}
    for fields in rows.values():
        assert float(fields[1]) > 0 and float(fields[3]) >= float(fields[1])  # bound >= total
