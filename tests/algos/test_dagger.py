"""DAgger: the β = p^i schedule, rollouts labelled by the expert, data aggregated under unique
keys per iteration, iteration 0 (β = 1) equal to teacher forcing, resumable collection."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.algos.checkpoint import load_checkpoint
from agent.algos.config import load_train_config
from agent.algos.dagger import DAggerTrainer, iteration_key_prefix
from agent.algos.features import beta_for_iteration
from agent.datasets.episodes import index_by_id, load_gt, load_split, split_paths
from agent.datasets.trajectory_store import TrajectoryStore
from agent.envs.factory import make_env


def dagger_config(data_dir, out_dir, features_dir, *extra):
    return load_train_config(None, [
        "trainer=dagger", f"data_dir={data_dir}", f"out_dir={out_dir}",
        f"features.cache_dir={features_dir}", "backend.width=64", "backend.height=64",
        "backend.max_episode_steps=120", "model.policy.hidden_size=64",
        "model.instruction_encoder.hidden_size=32", "torch_threads=1", "num_envs=2",
        "progress=false", "bc.batch_size=3", "checkpoint_interval=1000", *extra])


def test_beta_schedule():
    assert [beta_for_iteration(0.75, i) for i in range(4)] == [1.0, 0.75, 0.5625, 0.421875]
    assert beta_for_iteration(1.0, 9) == 1.0
    assert beta_for_iteration(0.0, 0) == 0.0  # VLN-CE: p = 0 means never the expert
    with pytest.raises(ValueError):
        beta_for_iteration(0.5, -1)


def test_iteration_schedule_is_unique_at_beta_one_and_cycles_below(tiny_dataset, tmp_path):
    cfg = dagger_config(tiny_dataset, tmp_path / "run", tmp_path / "features",
                        "bc.max_episodes=5", "dagger.episodes_per_iteration=12", "dagger.p=0.5")
    trainer = DAggerTrainer.from_config(cfg)
    first = trainer.iteration_requests(0)  # β = 1: each episode at most once
    assert len(first) == 5 and len({r.episode["episode_id"] for r in first}) == 5
    second = trainer.iteration_requests(1)  # β = 0.5: 12 rollouts cycling over 5 episodes
    assert len(second) == 12 and len({r.unique_key for r in second}) == 12
    assert all(r.unique_key.startswith(iteration_key_prefix(1)) for r in second)
    counts = np.bincount([int(r.unique_key.split("/")[1]) for r in second])
    assert counts.tolist() == [1] * 12
    ids = [r.episode["episode_id"] for r in second]
    assert all(ids.count(i) in (2, 3) for i in set(ids))
    assert [r.unique_key for r in trainer.iteration_requests(1)] == [r.unique_key for r in second]
    assert {r.seed for r in second} == {(0, 1, n) for n in range(12)}


@pytest.fixture(scope="module")
def dagger_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("dagger")
    cfg = dagger_config(tiny_dataset, out / "run", out / "features", "bc.max_episodes=4",
                        "dagger.iterations=2", "dagger.episodes_per_iteration=3",
                        "dagger.p=0.5", "dagger.epochs=2", "seed=1")
    trainer = DAggerTrainer.from_config(cfg)
    metrics = trainer.train()
    trainer.close()
    return cfg, trainer, metrics


def test_dagger_aggregates_labelled_rollouts(dagger_run, tiny_dataset):
    cfg, trainer, metrics = dagger_run
    assert metrics["iteration"] == 2 and trainer.phase == "collect"
    assert [s["beta"] for s in trainer.collect_stats] == [1.0, 0.5]
    with TrajectoryStore(trainer.store_path, readonly=True) as store:
        unique = store.unique_keys()
        records = {u: store.get_by_id(u, fields=["actions", "prev_actions"]) for u in unique}
        lengths = store.lengths()
    assert len(unique) == 6 and len(set(unique)) == 6
    assert sum(u.startswith("it000/") for u in unique) == 3
    assert sum(u.startswith("it001/") for u in unique) == 3
    assert metrics["training_frames"] == sum(lengths)
    # 2 epochs over 3 episodes, then over all 6 (aggregated), in batches of 3
    assert metrics["updates"] == 2 * 1 + 2 * 2

    gt = load_gt(split_paths(tiny_dataset, "train")[1])
    for u in unique[:3]:  # iteration 0, β = 1: exactly teacher forcing
        record = records[u]
        expected = gt[record["episode_id"]]["actions"]
        assert record["actions"].tolist() == expected
        assert record["prev_actions"][1:].tolist() == expected[:-1]
        assert record["expert_steps"] == len(expected) and record["beta"] == 1.0
    for u in unique[3:]:
        assert records[u]["source"] == "dagger_iter_1" and records[u]["beta"] == 0.5
        assert 0 <= records[u]["expert_steps"] <= len(records[u]["actions"])


def test_dagger_labels_are_the_experts_action_in_each_visited_state(dagger_run, tiny_dataset):
    """Replay the executed actions of iteration 1 and ask the expert in every state."""
    cfg, trainer, _ = dagger_run
    episodes = index_by_id(load_split(split_paths(tiny_dataset, "train")[0])[0])
    env = make_env({"backend": "houses", "scenes_dir": f"{tiny_dataset}/scenes",
                    "sensors": [], "max_steps": 120})
    with TrajectoryStore(trainer.store_path, readonly=True) as store:
        records = [store.get_by_id(u, fields=["actions", "prev_actions", "positions"])
                   for u in store.unique_keys() if u.startswith("it001/")]
    deviated = 0
    for record in records:
        env.reset(episodes[record["episode_id"]])
        labels, executed = record["actions"].tolist(), record["prev_actions"][1:].tolist()
        for t, label in enumerate(labels):
            assert env.expert_action() == label, (record["episode_id"], t)
            assert np.allclose(env.agent_state[0], record["positions"][t], atol=1e-4)
            if t < len(executed):
                deviated += executed[t] != label
                env.step(executed[t])
    env.close()
    assert deviated > 0  # β = 0.5: the policy drove some of the steps


def test_collection_skips_what_the_store_already_holds(dagger_run):
    cfg, trainer, _ = dagger_run
    with TrajectoryStore(trainer.store_path, readonly=True) as store:
        before = store.unique_keys()
    summary = trainer.collect(1)
    assert summary["episodes"] == 0
    with TrajectoryStore(trainer.store_path, readonly=True) as store:
        assert store.unique_keys() == before


def test_non_aggregated_training_uses_the_last_iteration_only(dagger_run, tiny_dataset, tmp_path):
    cfg, trainer, _ = dagger_run
    with TrajectoryStore(trainer.store_path, readonly=True) as store:
        assert len(trainer.training_keys(store, 1)) == 6
        other = DAggerTrainer.from_config(dagger_config(
            tiny_dataset, tmp_path / "x", tmp_path / "f", "bc.max_episodes=4",
            "dagger.aggregate=false"))
        last = other.training_keys(store, 1)
        assert last == [store.key_of(u) for u in store.unique_keys() if u.startswith("it001/")]


def test_dagger_killed_in_training_resumes_to_the_same_losses_and_data(dagger_run, tiny_dataset,
                                                                        tmp_path):
    import os

    from agent.algos.checkpoint import latest_checkpoint, load_checkpoint

    cfg, straight, _ = dagger_run
    expected = [h["action_loss"] for h in straight.history]
    args = (tiny_dataset, tmp_path / "run", tmp_path / "features", "bc.max_episodes=4",
            "dagger.iterations=2", "dagger.episodes_per_iteration=3", "dagger.p=0.5",
            "dagger.epochs=2", "seed=1")
    first = DAggerTrainer.from_config(dagger_config(*args, "total_updates=1"))
    first.train()
    first_losses = [h["action_loss"] for h in first.history]
    # killed after update 1 before its checkpoint: the last one is from after collection 0
    os.remove(latest_checkpoint(str(tmp_path / "run")))
    kept = load_checkpoint(latest_checkpoint(str(tmp_path / "run")))
    assert kept["trainer_state"]["phase"] == "train" and kept["counters"]["updates"] == 0
    resumed = DAggerTrainer.from_config(dagger_config(*args))
    resumed.train()
    assert first_losses == expected[:1]
    assert [h["action_loss"] for h in resumed.history] == expected
    with TrajectoryStore(straight.store_path, readonly=True) as a, \
            TrajectoryStore(resumed.store_path, readonly=True) as b:
        assert sorted(a.unique_keys()) == sorted(b.unique_keys())
        for u in a.unique_keys():  # iteration 1 rolled out with the same policy and coins
            assert a.get_by_id(u, ["actions"])["actions"].tolist() == \
                b.get_by_id(u, ["actions"])["actions"].tolist()


def test_dagger_init_from_a_bc_run_starts_at_iteration_one_on_the_expert_store(
        tiny_dataset, tmp_path):
    """A BC run on the shared expert store stands in for iteration 0 (β = 1)."""
    from agent.algos.bc import BCTrainer
    from agent.algos.checkpoint import CheckpointError

    features = tmp_path / "features"
    common = ("bc.max_episodes=4", "seed=1")
    bc = BCTrainer.from_config(dagger_config(tiny_dataset, tmp_path / "bc", features,
                                             "trainer=bc", "bc.epochs=1", *common))
    bc.train()
    bc.close()
    cfg = dagger_config(tiny_dataset, tmp_path / "dagger", features, *common,
                        "dagger.iterations=2", "dagger.episodes_per_iteration=3",
                        "dagger.p=0.5", "dagger.epochs=1", f"dagger.init_from={tmp_path / 'bc'}")
    trainer = DAggerTrainer.from_config(cfg)
    metrics = trainer.train()
    trainer.close()
    assert trainer.initialised_from == bc.last_checkpoint
    assert [s["iteration"] for s in trainer.collect_stats] == [1]  # no iteration-0 rollouts
    assert [s["beta"] for s in trainer.collect_stats] == [0.5]
    with TrajectoryStore(trainer.store_path, readonly=True) as store:
        unique = store.unique_keys()
        own_frames = sum(store.lengths())
    assert len(unique) == 3 and all(u.startswith("it001/") for u in unique)
    with TrajectoryStore(bc.expert_store_path(), readonly=True) as store:
        expert_frames = sum(store.lengths())
        assert len(store.keys()) == 4  # recorded once by BC, read again by DAgger
    assert metrics["training_frames"] == expert_frames + own_frames
    # one epoch over the 4 expert + 3 rollout episodes, batches of 3
    assert metrics["updates"] == 3 and metrics["iteration"] == 2

    wrong = dagger_config(tiny_dataset, tmp_path / "other", features, *common,
                          "model.policy.hidden_size=32", f"dagger.init_from={tmp_path / 'bc'}")
    with pytest.raises(CheckpointError, match="dagger.init_from"):
        DAggerTrainer.from_config(wrong).train()
    missing = dagger_config(tiny_dataset, tmp_path / "other2", features, *common,
                            f"dagger.init_from={tmp_path / 'nowhere'}")
    with pytest.raises(FileNotFoundError, match="dagger.init_from"):
        DAggerTrainer.from_config(missing).train()
    # a checkpoint trained on another vocabulary (here: its words in another order) warm-starts
    # with its instruction-embedding rows moved to their words' indices in this vocabulary
    foreign = load_checkpoint(bc.last_checkpoint)
    words = list(foreign["vocab"]["word_list"])
    shuffled = words[:2] + words[2:][::-1]
    foreign["vocab"] = dict(foreign["vocab"], word_list=shuffled, sha1="0" * 40)
    names = [k for k in foreign["policy_state"] if k.endswith("instruction_encoder.embedding.weight")]
    assert names, "the default instruction encoder has a vocabulary embedding"
    original = {k: foreign["policy_state"][k].clone() for k in names}
    for k in names:
        foreign["policy_state"][k] = original[k][[words.index(w) for w in shuffled]]
    torch.save(foreign, str(tmp_path / "foreign.pt"))
    other = DAggerTrainer.from_config(dagger_config(
        tiny_dataset, tmp_path / "other3", features, *common,
        f"dagger.init_from={tmp_path / 'foreign.pt'}"))
    other.warm_start(str(tmp_path / "foreign.pt"), key="dagger.init_from")
    state = other.policy.state_dict()
    for k in names:
        assert torch.equal(state[k], original[k]), k
    other.close()
