"""`langnav eval --stop-gate P`: a decoding rule for policies with a progress monitor — STOP
is ruled out while the predicted progress is below P. P = 0 changes nothing; P above any
sigmoid output rules STOP out everywhere; the gate is part of the run's identity and of the
method name; checkpoints without a progress monitor and baseline agents refuse it."""
from __future__ import annotations

import pytest

from agent.algos.bc import BCTrainer
from agent.algos.checkpoint import latest_checkpoint
from agent.algos.config import load_train_config
from agent.envs.base import STOP
from eval.agents import make_agent
from eval.evaluator import evaluate_split


@pytest.fixture(scope="module")
def checkpoints(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("stop_gate")
    paths = {}
    for name, progress in (("progress", "true"), ("plain", "false")):
        cfg = load_train_config(None, [
            f"data_dir={tiny_dataset}", f"out_dir={root / name}",
            f"features.cache_dir={root / 'features'}", "backend.width=64", "backend.height=64",
            "model.policy.hidden_size=32", "model.instruction_encoder.type=glove_lstm",
            "model.instruction_encoder.hidden_size=16", "torch_threads=1", "num_envs=1",
            "progress=false", "bc.max_episodes=3", "bc.batch_size=3", "bc.epochs=30",
            "bc.lr=3e-3", f"model.policy.progress_monitor={progress}"])
        BCTrainer.from_config(cfg).train()
        paths[name] = latest_checkpoint(str(root / name))
    return paths


def _run(agent, data, out, max_episodes=3):
    backend = {"backend": "houses", "scenes_dir": f"{data}/scenes", **agent.backend_overrides}
    return evaluate_split(agent, agent.name, data, "train", str(out), backend_cfg=backend,
                          num_envs=1, max_episodes=max_episodes, in_process=True)


def test_gate_zero_changes_nothing_and_an_impossible_gate_never_stops(checkpoints, tiny_dataset,
                                                                     tmp_path):
    plain = _run(make_agent(checkpoints["progress"], 1, tiny_dataset), tiny_dataset, tmp_path / "a")
    zero = make_agent(checkpoints["progress"], 1, tiny_dataset, stop_gate=0.0)
    assert zero.name.endswith("+stop-gate0")
    gated0 = _run(zero, tiny_dataset, tmp_path / "b")
    for key, ep in plain["episodes"].items():
        assert gated0["episodes"][key]["trajectory"]["actions"] == ep["trajectory"]["actions"]
    # the trained policy stops in these training episodes; with P > 1 it never may
    assert any(ep["stop_called"] for ep in plain["episodes"].values())
    never = _run(make_agent(checkpoints["progress"], 1, tiny_dataset, stop_gate=1.5),
                 tiny_dataset, tmp_path / "c", max_episodes=1)
    for ep in never["episodes"].values():
        assert STOP not in ep["trajectory"]["actions"] and not ep["stop_called"]


def test_gate_is_part_of_the_run_identity_and_refused_without_progress(checkpoints, tiny_dataset,
                                                                      tmp_path):
    from agent.run_identity import RunIdentityError

    _run(make_agent(checkpoints["progress"], 1, tiny_dataset), tiny_dataset, tmp_path, 1)
    with pytest.raises(RunIdentityError, match="stop_gate"):
        _run(make_agent(checkpoints["progress"], 1, tiny_dataset, stop_gate=0.5),
             tiny_dataset, tmp_path, 1)
    with pytest.raises(ValueError, match="progress monitor"):
        make_agent(checkpoints["plain"], 1, tiny_dataset, stop_gate=0.5)
    with pytest.raises(ValueError, match="learned checkpoint"):
        make_agent("handcrafted", 1, tiny_dataset, stop_gate=0.5)
