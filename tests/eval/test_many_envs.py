"""Issue #15 item 6, no change in results: a learned checkpoint (a tiny DAgger run trained
here on the tiny dataset) gives the same trajectories and metrics evaluated with 1 env as
with 8 envs in 2 worker processes (where the evaluator runs the policy on the running
episodes only, and the envs of a worker share their houses), and DAgger collection stores
the same rollouts with 1 env as with 8 envs in 2 workers (batched resets, the policy on the
running slots). The learned agent acting on a subset of slots equals acting on all of them.

Tolerance: trajectories, actions and stop decisions must be identical; metrics are compared
to 1e-9 and stored features to 1e-5 (the policy and the image encoder run at other batch
sizes, which may change float rounding in the last bits; an argmax tie broken differently
would show as a different trajectory and fail the test — it has not happened here)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from agent.algos.checkpoint import latest_checkpoint, load_policy_agent
from agent.algos.config import load_train_config
from agent.algos.dagger import DAggerTrainer
from agent.algos.features import collect_episodes
from agent.datasets.episodes import load_split, split_paths
from agent.datasets.trajectory_store import TrajectoryStore
from agent.envs.factory import houses_backend_config
from agent.envs.houses.env import HousesEnv
from agent.envs.vector_env import VectorEnv
from eval.evaluator import evaluate_split

RES = 64
MANY, WORKERS = 8, 2


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """A DAgger run: teacher forcing on 4 episodes, then supervised epochs (p = 0.5, so
    the next iteration would mix the policy's sampled actions with the expert's)."""
    out = tmp_path_factory.mktemp("many_envs")
    cfg = load_train_config(None, [
        "trainer=dagger", f"data_dir={tiny_dataset}", f"out_dir={out / 'run'}",
        f"features.cache_dir={out / 'features'}", f"backend.width={RES}",
        f"backend.height={RES}", "backend.max_episode_steps=120",
        "model.policy.hidden_size=64", "model.instruction_encoder.hidden_size=32",
        "torch_threads=1", "num_envs=2", "progress=false", "bc.batch_size=4", "bc.lr=1e-3",
        "checkpoint_interval=1000", "bc.max_episodes=4", "dagger.iterations=1",
        "dagger.episodes_per_iteration=10", "dagger.p=0.5", "dagger.epochs=40", "seed=3"])
    trainer = DAggerTrainer.from_config(cfg)
    trainer.train()
    yield trainer, latest_checkpoint(str(out / "run"))
    trainer.close()


def _evaluate(checkpoint, data_dir, out, num_envs, num_workers):
    agent = load_policy_agent(checkpoint, num_slots=num_envs)
    cfg = dict(houses_backend_config(data_dir, RES, RES), max_steps=40)
    return evaluate_split(agent, "learned", data_dir, "val_unseen", str(out), backend_cfg=cfg,
                          num_envs=num_envs, num_workers=num_workers, sample=12)


def test_evaluation_with_one_env_equals_eight_envs_in_two_workers(trained, tiny_dataset,
                                                                  tmp_path):
    _, checkpoint = trained
    one = _evaluate(checkpoint, tiny_dataset, tmp_path / "one", 1, 1)
    many = _evaluate(checkpoint, tiny_dataset, tmp_path / "many", MANY, WORKERS)
    assert list(one["episodes"]) == list(many["episodes"]) and len(one["episodes"]) == 12
    for eid, a in one["episodes"].items():
        b = many["episodes"][eid]
        assert a["trajectory"] == b["trajectory"], eid  # actions, positions, headings
        assert a["stop_called"] == b["stop_called"], eid
        for key, value in a["metrics"].items():
            assert value == pytest.approx(b["metrics"][key], abs=1e-9), (eid, key)
    for key, value in one["aggregate"].items():
        assert value == pytest.approx(many["aggregate"][key], abs=1e-9), key
    # 12 episodes in 8 slots: the last wave ran beside ended slots (the subset forward)
    lengths = [len(e["trajectory"]["actions"]) for e in one["episodes"].values()]
    assert len(lengths) > MANY and min(lengths) >= 1


def test_policy_agent_acting_on_some_slots_equals_acting_on_all(trained, tiny_dataset):
    _, checkpoint = trained
    episodes, _ = load_split(split_paths(tiny_dataset, "val_seen")[0])
    agent = load_policy_agent(checkpoint, num_slots=4)
    with HousesEnv(os.path.join(tiny_dataset, "scenes"), width=RES, height=RES) as env:
        observations = [env.reset(ep) for ep in episodes[:4]]
        later = [env.step(1)[0] for _ in range(4)]
    with torch.no_grad():
        _, hidden = agent.act(observations, None, [0.0] * 4)  # every slot has a state
        full_actions, full = agent.act(later, hidden, [1.0] * 4)
        rows = [3, 1]
        actions, part = agent.act_rows(rows, [later[r] for r in rows], hidden, [1.0, 1.0])
    assert actions == [full_actions[r] for r in rows]
    for r in range(4):
        want = full if r in rows else hidden  # ended slots keep their state
        torch.testing.assert_close(part.rnn[r], want.rnn[r], rtol=1e-5, atol=1e-6)
        assert int(part.prev_actions[r]) == int(want.prev_actions[r])
    # a fresh state has a row per slot; no rows: nothing runs
    actions, state = agent.act_rows([2], [later[2]], None, [0.0])
    assert len(actions) == 1 and state.rnn.shape[0] == 4
    assert agent.act_rows([], [], state, []) == ([], state)


def _collect(trainer, requests, path, num_envs, num_workers):
    cfg = dict(trainer.backend_cfg, privileged=True)
    with VectorEnv(cfg, num_envs, num_workers=num_workers) as envs, TrajectoryStore(path) as store:
        collect_episodes(envs, requests, trainer.featurizer, store, source="test", beta=0.5,
                         policy=trainer.policy, sample_policy_actions=True)
    with TrajectoryStore(path, readonly=True) as store:
        return {u: store.get_by_id(u) for u in store.unique_keys()}


def test_dagger_collection_with_one_env_equals_eight_envs_in_two_workers(trained, tmp_path):
    trainer, _ = trained
    requests = trainer.iteration_requests(1)  # beta 0.5: policy and expert mixed
    assert len(requests) == 10 and trainer.beta(1) == 0.5
    trainer.policy.eval()
    one = _collect(trainer, requests, str(tmp_path / "one"), 1, 1)
    many = _collect(trainer, requests, str(tmp_path / "many"), MANY, WORKERS)
    assert sorted(one) == sorted(many) == sorted(r.unique_key for r in requests)
    mixed = 0
    for key, a in one.items():
        b = many[key]
        for field in ("actions", "prev_actions", "positions", "headings", "instruction_tokens"):
            np.testing.assert_array_equal(a[field], b[field], err_msg=f"{key} {field}")
        np.testing.assert_array_equal(a["depth"], b["depth"], err_msg=key)
        field = trainer.featurizer.rgb_field
        np.testing.assert_allclose(np.asarray(a[field], dtype=np.float32),
                                   np.asarray(b[field], dtype=np.float32), rtol=1e-5, atol=1e-5)
        assert a["expert_steps"] == b["expert_steps"]
        mixed += 0 < a["expert_steps"] < len(a["actions"])
    assert mixed > 0  # the policy chose some of the executed actions
