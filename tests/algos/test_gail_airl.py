"""GAIL and AIRL on the tiny houses dataset: misaligned-pair rules, the discriminator
learns to tell expert from misaligned pairs, the policy rewards equal their formulas computed
by hand, the "+gt-reward" name, and kill-and-resume restores the identical training state."""
from __future__ import annotations

import math
import os

import pytest
import torch
from torch.nn import functional as F

from agent.algos.adversarial import (
    EXPERT, GT_REWARD_SUFFIX, MISALIGNED, discriminator_loss, misaligned_candidates,
    padded_tokens,
)
from agent.algos.checkpoint import CheckpointError
from agent.algos.config import load_train_config
from agent.algos.reward_map import reward_ranking_accuracy
from agent.algos.train import build_trainer
from agent.algos.rollout import collate_trajectories
from agent.datasets.episodes import house_of, load_gt, load_split, split_paths
from eval.metrics import ndtw

from small_model import SMALL_MODEL  # noqa: E402  (tests/algos/small_model.py)

AIRL_YAML = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "habitat_configs", "experiments", "airl.yaml")



@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory):
    """One feature cache + expert recording for every trainer of this module."""
    return str(tmp_path_factory.mktemp("features"))


def small_config(trainer, data_dir, out_dir, feature_dir, *extra):
    overrides = _config_overrides(data_dir, out_dir, feature_dir)
    overrides[0] = f"trainer={trainer}"
    return load_train_config(None, overrides + list(extra))


@pytest.fixture(scope="module")
def train_split(tiny_dataset):
    episodes, vocab = load_split(split_paths(tiny_dataset, "train")[0])
    return episodes, load_gt(split_paths(tiny_dataset, "train")[1])


def test_misaligned_candidates_follow_the_rules(train_split):
    episodes, gt = train_split
    candidates = misaligned_candidates(episodes, gt, min_goal_distance=3.0, max_ndtw=0.5)
    by_id = {str(ep["episode_id"]): ep for ep in episodes}
    assert sum(len(v) for v in candidates.values()) > len(episodes)  # pairs exist
    rejected_near = rejected_similar = 0
    for eid, episode in by_id.items():
        goal = episode["goals"][0]["position"]
        assert all(house_of(by_id[o]) == house_of(episode) for o in candidates[eid])
        for other in episodes:
            oid = str(other["episode_id"])
            if house_of(other) != house_of(episode):
                continue
            allowed = oid in candidates[eid]
            distance = math.dist(other["goals"][0]["position"], goal)
            similar = ndtw(gt[oid]["locations"], gt[eid]["locations"])
            if allowed:
                assert other["trajectory_id"] != episode["trajectory_id"]
                assert distance >= 3.0 and similar <= 0.5
            elif other["trajectory_id"] != episode["trajectory_id"]:
                assert distance < 3.0 or similar > 0.5  # refused only by the rules
                rejected_near += distance < 3.0
                rejected_similar += similar > 0.5
    assert rejected_near + rejected_similar > 0  # the rules did exclude something here


def pair_accuracy(trainer):
    """Every expert pair and every misaligned pair of the trainer's episodes -> (a function
    giving D's per-kind metrics on them, the number of misaligned pairs)."""
    ids = trainer.expert.episode_ids
    expert = [trainer.expert.trajectory(e) for e in ids]
    misaligned = [trainer.expert.trajectory(e).with_instruction(
        padded_tokens(trainer.episode_by_id[o]["instruction"]["instruction_tokens"]))
        for e in ids for o in trainer.misaligned[e]]
    assert misaligned
    batch = collate_trajectories(expert + misaligned)
    kinds = torch.tensor([EXPERT] * len(expert) + [MISALIGNED] * len(misaligned))

    def accuracy():
        with torch.no_grad():
            step_logits, absorbing_logits, _ = trainer.discriminate(batch)
            return discriminator_loss(step_logits, absorbing_logits, batch, kinds,
                                      misaligned_weight=1.0)[1]

    return accuracy, len(misaligned)


@pytest.mark.parametrize("trainer_name", ["airl", "gail"])
def test_discriminator_separates_expert_from_misaligned_pairs(tiny_dataset, feature_dir,
                                                              tmp_path, trainer_name):
    cfg = small_config(trainer_name, tiny_dataset, str(tmp_path / "run"), feature_dir,
                       "rl.discriminator.lr=3e-3", "rl.discriminator.batch_size=6")
    trainer = build_trainer(cfg)
    trainer.setup()
    trainer.collect()  # agent negatives from the initial policy
    ids = trainer.expert.episode_ids
    accuracy, num_misaligned = pair_accuracy(trainer)
    before = accuracy()
    for _ in range(130):
        metrics = trainer.train_discriminator()
        assert {"loss_expert", "accuracy_agent", "accuracy_misaligned"} <= set(metrics)
    after = accuracy()
    checkpoint = trainer.save()
    trainer.close_envs()
    assert min(before["accuracy_expert"], before["accuracy_misaligned"]) < 0.9
    assert after["accuracy_expert"] > 0.9 and after["accuracy_misaligned"] > 0.9, after
    # the reward itself (f, without log π) ranks the true instruction first on these pairs
    ranking = reward_ranking_accuracy(checkpoint, "train", max_episodes=len(ids), num_envs=1,
                                      in_process=True)
    assert ranking["pairs"] == num_misaligned
    assert ranking["ranking_accuracy"] > 0.9 and ranking["mean_margin"] > 0, ranking


def test_alignment_pretraining_teaches_the_reward_from_the_expert_store_alone(
        tiny_dataset, feature_dir, tmp_path):
    """rl.adversarial.pretrain_disc_updates: expert vs misaligned pairs only, no environment
    step and no agent example; logged, checkpointed, and not repeated after a resume."""
    import json

    out_dir = tmp_path / "run"
    extra = ("rl.adversarial.pretrain_disc_updates=120", "rl.discriminator.pretrain_batch_size=6",
             "rl.discriminator.lr=3e-3", "total_updates=0")
    trainer = build_trainer(small_config("gail", tiny_dataset, str(out_dir), feature_dir, *extra))
    trainer.setup()
    ids = trainer.expert.episode_ids
    batch, kinds = trainer.sample_discriminator_batch(6, agent_examples=False)
    assert set(kinds.tolist()) == {EXPERT, MISALIGNED}  # no agent example is asked for
    accuracy, num_misaligned = pair_accuracy(trainer)
    before = accuracy()
    trainer.pretrain_discriminator(chunk=40)
    after = accuracy()
    assert trainer.counters.training_frames == 0 and trainer.counters.updates == 0
    assert trainer.disc_rounds == 0 and trainer.disc_pretrain_updates == 120
    assert not trainer.agent_pool  # no rollout was collected
    assert min(before["accuracy_expert"], before["accuracy_misaligned"]) < 0.9
    assert after["accuracy_expert"] > 0.9 and after["accuracy_misaligned"] > 0.9, after
    logged = [json.loads(line) for line in open(out_dir / "train_log.jsonl")]
    assert [e["step"] for e in logged if e.get("phase") == "disc_pretrain"] == [40, 80, 120]
    weights = {k: v.clone() for k, v in trainer.reward_net.state_dict().items()}
    trainer.close_envs()

    again = build_trainer(small_config("gail", tiny_dataset, str(out_dir), feature_dir, *extra))
    again.setup()  # resumes the checkpoint written at the end of pre-training
    assert again.disc_pretrain_updates == 120
    again.pretrain_discriminator()
    assert again.disc_pretrain_updates == 120
    for key, value in again.reward_net.state_dict().items():
        assert torch.equal(value, weights[key]), key
    again.close_envs()

    # rl.reward.init_from: an instruction-blind control in its own run directory starts from
    # this pre-trained reward (weights, optimiser, pre-training steps) and does not pre-train
    control = build_trainer(small_config(
        "gail", tiny_dataset, str(tmp_path / "blind"), feature_dir, *extra,
        "model.policy.instruction_blind=true", f"rl.reward.init_from={out_dir}"))
    assert control.policy.instruction_blind and control.disc_pretrain_updates == 120
    for key, value in control.reward_net.state_dict().items():
        assert torch.equal(value, weights[key]), key
    control.setup()
    control.pretrain_discriminator()
    assert control.disc_pretrain_updates == 120 and control.counters.training_frames == 0
    for key, value in control.reward_net.state_dict().items():
        assert torch.equal(value, weights[key]), key
    control.close_envs()
    with pytest.raises(CheckpointError, match="rl.reward.init_from=.*gail.*airl"):
        build_trainer(small_config("airl", tiny_dataset, str(tmp_path / "airl"), feature_dir,
                                   f"rl.reward.init_from={out_dir}"))

    # `langnav reward-rank` on the run directory: the pre-trained reward ranks the own
    # instruction first on these training pairs, with a house-clustered interval
    import subprocess
    import sys

    out = tmp_path / "rank.json"
    cmd = [sys.executable, "-m", "agent.cli", "reward-rank", "--checkpoint", str(out_dir),
           "--split", "train", "--sample", "0", "--max-episodes", str(len(ids)),
           "--num-envs", "1", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ranks the own instruction above a misaligned one" in done.stdout
    ranking = json.loads(out.read_text())
    assert ranking["pairs"] == num_misaligned
    lo, hi = ranking["ranking_accuracy_ci"]
    assert 0.9 < ranking["ranking_accuracy"] and lo <= ranking["ranking_accuracy"] <= hi


def test_reward_encoders_can_start_as_copies_of_the_policys(tiny_dataset, feature_dir, tmp_path):
    cfg = small_config("airl", tiny_dataset, str(tmp_path / "run"), feature_dir,
                       "rl.reward.encoders_from_policy=true", "rl.discriminator.lr=1e-2")
    trainer = build_trainer(cfg)
    names = ("instruction_encoder", "rgb_encoder", "depth_encoder")
    policy_before = {n: {k: v.clone() for k, v in getattr(trainer.policy, n).state_dict().items()}
                     for n in names}
    for name in names:
        mine = getattr(trainer.reward_net, name).state_dict()
        assert mine.keys() == policy_before[name].keys()
        for key, value in mine.items():
            assert torch.equal(value, policy_before[name][key]), (name, key)
    trainer.setup()
    trainer.collect()
    trainer.train_discriminator(3)  # own parameters: the policy's encoders do not move
    moved = False
    for name in names:
        for key, value in getattr(trainer.policy, name).state_dict().items():
            assert torch.equal(value, policy_before[name][key]), (name, key)
        moved |= any(not torch.equal(v, policy_before[name][k])
                     for k, v in getattr(trainer.reward_net, name).state_dict().items())
    assert moved
    trainer.close_envs()


def _rewards_by_hand(trainer, buffer, policy_reward):
    """Each rollout episode alone through the reward network; the reward of step k is
    policy_reward(r, h, k, trajectory) (+ γ/(1−γ) · absorbing after STOP) -> those rewards
    and the means of their two parts (what label_rewards logs)."""
    gamma = trainer.config.rl.ppo.gamma
    expected = torch.full_like(buffer.rewards, float("nan"))
    steps, absorbing_steps = [], []
    trajectories, where = trainer.collector.labelling_trajectories()
    for trajectory, positions in zip(trajectories, where):
        single = collate_trajectories([trajectory])
        with torch.no_grad():
            out = trainer.reward_net(single.observations, single.actions, single.lengths,
                                     single.instruction_tokens)
        r, h, absorbing = out.rewards[:, 0], out.potentials[:, 0], out.absorbing_rewards[0]
        for t, b, k in positions:
            stop_step = trajectory.ends_with_stop and k == trajectory.length - 1
            expected[t, b] = policy_reward(r, h, k, stop_step, t, b)
            steps.append(float(expected[t, b]))
            if stop_step:
                absorbing_steps.append(float(absorbing_value(trainer, absorbing)))
                expected[t, b] += gamma / (1 - gamma) * absorbing_value(trainer, absorbing)
    parts = {"learned_step_reward_mean": sum(steps) / len(steps)}
    if absorbing_steps:  # logged only when some episode stopped
        parts["learned_absorbing_reward_mean"] = sum(absorbing_steps) / len(absorbing_steps)
    return expected, parts


def absorbing_value(trainer, absorbing_logit):
    return F.softplus(absorbing_logit) if trainer.trainer_name == "gail" else absorbing_logit


def test_airl_policy_reward_is_f_minus_log_pi_by_hand(tiny_dataset, feature_dir, tmp_path):
    cfg = small_config("airl", tiny_dataset, str(tmp_path / "run"), feature_dir,
                       "rl.ppo.num_steps=12")
    trainer = build_trainer(cfg)
    trainer.setup()
    trainer.collect()
    buffer = trainer.collect()  # episodes that began in the previous rollout are read whole
    gamma = cfg.rl.ppo.gamma

    def airl_reward(r, h, k, stop_step, t, b):
        next_h = 0.0 if stop_step else h[k + 1]  # h(absorbing) = 0
        return r[k] + gamma * next_h - h[k] - buffer.old_log_probs[t, b]

    expected, parts = _rewards_by_hand(trainer, buffer, airl_reward)
    labelled = trainer.label_rewards(buffer)
    assert trainer.reward_parts == pytest.approx(parts, abs=1e-4)
    trainer.close_envs()
    assert not torch.isnan(expected).any()
    torch.testing.assert_close(labelled, expected, atol=1e-4, rtol=1e-4)


def test_airl_discriminator_recomputes_pi_with_each_samples_own_instruction(
        tiny_dataset, feature_dir, tmp_path):
    cfg = small_config("airl", tiny_dataset, str(tmp_path / "run"), feature_dir)
    trainer = build_trainer(cfg)
    trainer.setup()
    trainer.collect()
    batch, kinds = trainer.sample_discriminator_batch()
    with torch.no_grad():
        step_logits, _, outputs = trainer.discriminate(batch)
    gamma = cfg.rl.ppo.gamma
    policy = trainer.policy
    for j in range(batch.actions.shape[1]):  # π by hand: one step at a time from a zero state
        length = int(batch.lengths[j])
        state, mask = policy.initial_state(1), torch.zeros(1)
        for k in range(length):
            obs = {key: value[k, j:j + 1] for key, value in batch.observations.items()}
            obs["instruction_tokens"] = batch.instruction_tokens[j:j + 1]
            with torch.no_grad():
                logits, _, rnn = policy(obs, state.rnn, state.prev_actions, mask)
            action = batch.actions[k, j]
            log_pi = torch.log_softmax(logits, -1)[0, action]
            stop_step = bool(batch.ends_with_stop[j]) and k == length - 1
            next_h = 0.0 if stop_step else outputs.potentials[k + 1, j]
            f = outputs.rewards[k, j] + gamma * next_h - outputs.potentials[k, j]
            assert step_logits[k, j].item() == pytest.approx(float(f - log_pi), abs=1e-4)
            state = state._replace(rnn=rnn, prev_actions=action.view(1))
            mask = torch.ones(1)
    assert (kinds == MISALIGNED).any()
    trainer.close_envs()


def test_gail_policy_reward_is_minus_log_one_minus_d(tiny_dataset, feature_dir, tmp_path):
    cfg = small_config("gail", tiny_dataset, str(tmp_path / "run"), feature_dir)
    trainer = build_trainer(cfg)
    assert trainer.reward_net.potential_head is None  # GAIL's f has no shaping term
    trainer.setup()
    buffer = trainer.collect()

    def gail_reward(r, h, k, stop_step, t, b):
        return -torch.log(1 - torch.sigmoid(r[k]))

    expected, parts = _rewards_by_hand(trainer, buffer, gail_reward)
    labelled = trainer.label_rewards(buffer)
    # the logged parts: mean step reward softplus(f) and absorbing reward softplus(f_abs)
    assert trainer.reward_parts == pytest.approx(parts, abs=1e-4)
    assert parts["learned_absorbing_reward_mean"] > 0  # some episode did STOP here
    assert all(value > 0 for value in trainer.reward_parts.values())  # softplus
    trainer.close_envs()
    torch.testing.assert_close(labelled, expected, atol=1e-4, rtol=1e-4)
    assert torch.all(labelled > 0)


def test_gt_reward_debug_option_is_named_everywhere(tiny_dataset, feature_dir, tmp_path):
    cfg = small_config("airl", tiny_dataset, str(tmp_path / "run"), feature_dir,
                       "rl.adversarial.gt_reward_coef=1.0", "rl.adversarial.total_env_frames=20",
                       "rl.adversarial.warmup_disc_rounds=0")
    trainer = build_trainer(cfg)
    assert trainer.method_name == "airl" + GT_REWARD_SUFFIX
    result = trainer.train()
    assert result["method"].endswith(GT_REWARD_SUFFIX)
    assert all(entry["method"].endswith(GT_REWARD_SUFFIX) for entry in trainer.history)
    from agent.algos.checkpoint import load_checkpoint, run_meta_of

    checkpoint = load_checkpoint(result["checkpoint"])
    assert run_meta_of(checkpoint)["method"].endswith(GT_REWARD_SUFFIX)


def test_fixed_reward_baseline_is_ppo_on_the_distance_reward(tiny_dataset, feature_dir, tmp_path):
    cfg = small_config("airl", tiny_dataset, str(tmp_path / "run"), feature_dir,
                       "rl.reward_type=gt_distance", "total_updates=2",
                       "rl.adversarial.total_env_frames=100000", "rl.ppo.normalize_reward=false")
    trainer = build_trainer(cfg)
    assert "gt-distance" in trainer.method_name and not trainer.misaligned
    trainer.setup()
    assert trainer.expert is None  # no discriminator, no expert data
    buffer = trainer.collect()
    metrics = trainer.train_policy(buffer)
    torch.testing.assert_close(buffer.rewards, buffer.env_rewards)
    assert "learned_reward_mean" not in metrics and "disc/loss" not in trainer.run_iteration()
    trainer.close_envs()


def _state_of(trainer):
    state = {f"policy.{k}": v.clone() for k, v in trainer.policy.state_dict().items()}
    state.update({f"reward.{k}": v.clone() for k, v in trainer.reward_net.state_dict().items()})
    for name, optimizer in (("ppo_opt", trainer.ppo.optimizer), ("disc_opt", trainer.disc_optimizer)):
        for index, slot in optimizer.state_dict()["state"].items():
            for key, value in slot.items():
                state[f"{name}.{index}.{key}"] = torch.as_tensor(value).clone()
    stats = trainer.normalizer.return_stats
    state["normalizer"] = torch.tensor([stats.mean, stats.var, stats.count], dtype=torch.float64)
    state["rollout_generator"] = trainer.rollout_generator.get_state()
    state["disc_generator"] = trainer.disc_generator.get_state()
    return state


def test_kill_and_resume_restores_identical_training_state(tiny_dataset, feature_dir, tmp_path):
    def run(out_dir, total_updates):
        cfg = small_config("airl", tiny_dataset, str(out_dir), feature_dir,
                           f"total_updates={total_updates}", "checkpoint_interval=100",
                           "rl.adversarial.total_env_frames=100000")
        trainer = build_trainer(cfg)
        result = trainer.train()
        return trainer, result

    uninterrupted, _ = run(tmp_path / "a", 4)
    first, _ = run(tmp_path / "b", 2)  # stops (as if killed) right after its checkpoint
    del first
    resumed, result = run(tmp_path / "b", 4)
    assert resumed.resumed_from is not None and "u00000002" in resumed.resumed_from
    assert result["updates"] == 4
    a, b = _state_of(uninterrupted), _state_of(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert uninterrupted.counters.training_frames == resumed.counters.training_frames
    assert [t.episode_id for t in uninterrupted.collector.traces] == \
        [t.episode_id for t in resumed.collector.traces]
    assert [h["ppo/pg_loss"] for h in uninterrupted.history[2:]] == \
        [h["ppo/pg_loss"] for h in resumed.history]


@pytest.mark.slow
def test_sigkill_during_training_then_resume_equals_uninterrupted(tiny_dataset, feature_dir, tmp_path):
    """A real kill (SIGKILL of the training process right after its first periodic
    checkpoint) and a resume give the same final state as an uninterrupted run."""
    import json
    import signal
    import subprocess
    import sys
    import time

    overrides = ["total_updates=6", "checkpoint_interval=2", "rl.adversarial.total_env_frames=100000"]

    def config(out_dir):
        return small_config("airl", tiny_dataset, str(out_dir), feature_dir, *overrides)

    uninterrupted = build_trainer(config(tmp_path / "a"))
    uninterrupted.train()
    killed_dir = tmp_path / "b"
    cli_overrides = _config_overrides(tiny_dataset, killed_dir, feature_dir) + overrides
    script = ("import sys, torch; torch.set_num_threads(1)\n"
              "from agent.algos.config import load_train_config\n"
              "from agent.algos.train import build_trainer\n"
              "build_trainer(load_train_config(None, sys.argv[1:])).train()\n")
    process = subprocess.Popen([sys.executable, "-c", script, *cli_overrides],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = killed_dir / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if checkpoints.exists() and any(p.name.startswith("ckpt_u00000002") and p.suffix == ".pt"
                                        for p in checkpoints.iterdir()):  # not the .tmp file
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = build_trainer(config(killed_dir))
    resumed.train()
    assert resumed.resumed_from is not None
    a, b = _state_of(uninterrupted), _state_of(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.dumps(uninterrupted.counters.as_dict()["training_frames"]) == \
        json.dumps(resumed.counters.as_dict()["training_frames"])


def _config_overrides(data_dir, out_dir, feature_dir):
    """The overrides of :func:`small_config` for a command line."""
    return ["trainer=airl", f"data_dir={data_dir}", f"out_dir={out_dir}",
            f"features.cache_dir={feature_dir}", "backend.width=32", "backend.height=32",
            "num_envs=2", "rl.in_process_envs=true", "rl.ppo.num_steps=8", "rl.ppo.num_mini_batch=1",
            "rl.ppo.ppo_epochs=2", "rl.reward.hidden_size=32", "rl.reward.action_embedding_size=8",
            "rl.discriminator.batch_size=3", "rl.discriminator.updates_per_round=1",
            "rl.adversarial.warmup_disc_rounds=1", "rl.adversarial.warmup_updates_per_round=1",
            "rl.adversarial.critic_warmup_updates=1", "bc.max_episodes=6", "progress=false",
            *SMALL_MODEL]


def test_bench_adversarial_times_ppo_gail_and_airl_from_the_shipped_config(
        tiny_dataset, feature_dir, tmp_path, capsys):
    """`langnav bench adversarial` trains each variant of airl.yaml (tiny model) for a few
    PPO iterations and prints frames/s relative to PPO on the fixed reward."""
    import glob
    import tempfile

    from agent.cli import main

    overrides = _config_overrides(tiny_dataset, str(tmp_path / "ignored"), feature_dir)[1:]
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "langnav_bench_adversarial_*")))
    code = main(["bench", "adversarial", *overrides, "model.instruction_encoder.type=glove_lstm",
                 "rl.init_from=null", "--config", AIRL_YAML, "--iterations", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.split() and line.split()[0] in ("ppo_gt", "gail", "airl")}
    assert sorted(rows) == ["airl", "gail", "ppo_gt"], out
    assert "x1.00 of PPO" in rows["ppo_gt"] and "disc share 0%" in rows["ppo_gt"]
    for name in ("gail", "airl"):  # a real discriminator step was timed
        frames_per_s = float(rows[name].split()[1])
        disc_s = float(rows[name].split("disc ")[1].split("s")[0])
        assert frames_per_s > 0 and disc_s > 0, rows[name]
    # its scratch run directories are gone; a stray key is refused by the other benchmarks
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "langnav_bench_adversarial_*")))
    assert after == before
    assert main(["bench", "render", "data_dir=x"]) == 2
    assert "only 'adversarial'" in capsys.readouterr().err
