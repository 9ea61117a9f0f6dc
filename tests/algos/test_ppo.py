"""Recurrent PPO: it solves a tiny fixed-reward navigation task from scratch; minibatched
gradients equal the full batch; hidden states reset at episode boundaries; time-outs
bootstrap with the final observation's value."""
from __future__ import annotations

import math

import pytest
import torch

from agent.algos.features import ObservationFeaturizer
from agent.algos.ppo import PPO, RolloutBuffer
from agent.algos.rollout import EpisodeSampler, RolloutCollector, episode_statistics
from agent.config import ModelConfig, load_config
from agent.datasets.vocab import Vocab
from agent.envs.base import MOVE_FORWARD, STOP, heading_to_quaternion
from agent.envs.houses.floorplan import FloorPlan, Rect, Room, Wall
from agent.envs.houses.generator import write_house
from agent.envs.vector_env import VectorEnv
from agent.models.feature_cache import FeatureCache
from agent.models.policy import build_policy

SIDE = 32  # learning resolution of these tests
TEXT = "walk forward and stop"
TINY_MODEL = ["policy.type=seq2seq", "rgb_encoder.output_size=16", "depth_encoder.channels=[8, 8]",
              "depth_encoder.kernel_sizes=[8, 4]", "depth_encoder.strides=[4, 2]",
              "depth_encoder.output_size=16", "instruction_encoder.hidden_size=8",
              "policy.hidden_size=32", "policy.prev_action_embedding_size=8"]
GOAL_RADIUS = 0.5  # success radius of the tiny task (the room is smaller than 3 m)



def room_plan(width: float = 4.0, depth: float = 3.0) -> FloorPlan:
    h = 0.05
    walls = [Wall(Rect(-h, -h, width + h, h), 2.6), Wall(Rect(-h, depth - h, width + h, depth + h), 2.6),
             Wall(Rect(-h, -h, h, depth + h), 2.6), Wall(Rect(width - h, -h, width + h, depth + h), 2.6)]
    room = Room(0, "living room", Rect(0, 0, width, depth), "wood", (0.6, 0.4, 0.2), "green",
                (0.2, 0.6, 0.2))
    return FloorPlan("room", 0, "standard", [room], [], walls, [])


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """An empty 4 m x 3 m room; the goal lies 1.5 m (6 forward steps) ahead of the start."""
    root = tmp_path_factory.mktemp("ppo_room")
    scene = write_house(room_plan(), str(root / "scenes"))
    vocab = Vocab.from_texts([TEXT])
    episode = {"episode_id": "0", "trajectory_id": 0, "scene_id": scene,
               "start_position": [0.75, 0.0, 1.5], "start_rotation": heading_to_quaternion(-math.pi / 2),
               "goals": [{"position": [2.25, 0.0, 1.5], "radius": 3.0}],
               "instruction": {"instruction_text": TEXT, "instruction_tokens": vocab.encode(TEXT)}}
    backend = {"backend": "houses", "scenes_dir": str(root / "scenes"), "width": SIDE,
               "height": SIDE, "privileged": True}
    cache = FeatureCache(str(root / "features"), "mobilenet_v2_imagenet",
                         {"width": SIDE, "height": SIDE, "hfov": 90.0, "camera_height": 1.25})
    return {"vocab": vocab, "episode": episode, "backend": backend, "cache": cache}


def tiny_policy(vocab, seed=0):
    torch.manual_seed(seed)
    return build_policy(load_config(ModelConfig, None, TINY_MODEL), vocab)


def make_collector(task, policy, *, num_envs=4, num_steps=32, step_cap=16):
    envs = VectorEnv(task["backend"], num_envs, in_process=True)
    featurizer = ObservationFeaturizer(policy.rgb_encoder, width=SIDE, height=SIDE, cache=task["cache"])
    return RolloutCollector(envs, EpisodeSampler([task["episode"]], 0), featurizer,
                            num_steps=num_steps, step_cap_of=lambda episode: step_cap,
                            success_distance=GOAL_RADIUS, success_bonus=2.0)


@torch.no_grad()
def greedy_episode(policy, collector, max_steps=16):
    """Deterministic rollout of the task's episode in slot 0 -> (actions, final distance)."""
    envs, episode = collector.envs, collector.sampler.episodes[0]
    obs = envs.reset_at(0, episode)
    state, mask, actions = policy.initial_state(1), torch.zeros(1), []
    info = {}
    for _ in range(max_steps):
        inputs = collector._encode([obs], [episode["scene_id"]])
        action, state = policy.act(inputs, state, mask, deterministic=True)
        obs, done, info = envs.step_at(0, int(action[0]))
        actions.append(int(action[0]))
        mask = torch.ones(1)
        if done:
            break
    return actions, info.get("distance_to_goal", float("inf"))


def test_ppo_solves_a_tiny_navigation_task_from_scratch(task):
    policy = tiny_policy(task["vocab"])
    collector = make_collector(task, policy)
    ppo = PPO(policy, lr=1e-3, num_mini_batch=2, ppo_epochs=4, entropy_coef=0.01)
    generator = torch.Generator().manual_seed(0)
    success_rates = []
    for _ in range(28):
        buffer = collector.collect(policy, generator)
        buffer.rewards = buffer.env_rewards.clone()  # the fixed reward: distance decrease + bonus
        buffer.compute_returns_and_advantages(0.99, 0.95)
        metrics = ppo.update(buffer, generator)
        assert math.isfinite(metrics["pg_loss"]) and metrics["num_updates"] == 8
        success_rates.append(episode_statistics(collector.pop_finished(), GOAL_RADIUS)["sr"])
    assert success_rates[0] < 0.2  # a random policy rarely stops at the goal
    assert sum(success_rates[-3:]) / 3 > 0.8
    actions, final_distance = greedy_episode(policy, collector)
    assert actions[-1] == STOP and final_distance < GOAL_RADIUS, (actions, final_distance)
    assert actions.count(MOVE_FORWARD) >= 5
    collector.envs.close()


def test_hidden_state_is_reset_at_episode_boundaries(task):
    """Steps that start an episode are computed from a zero state (not the previous
    episode's), and PPO's replay of whole sequences with the masks reproduces the
    rollout's log-probabilities exactly; replaying without the masks does not."""
    policy = tiny_policy(task["vocab"], seed=1)
    collector = make_collector(task, policy, num_envs=2, num_steps=12, step_cap=4)
    generator = torch.Generator().manual_seed(1)
    collector.collect(policy, generator)  # a first rollout: states carry over to the next
    buffer = collector.collect(policy, generator)
    starts = (buffer.episode_start_masks == 0).nonzero().tolist()
    assert len(starts) >= 4 and any(t > 0 for t, _ in starts)
    for t, b in starts:
        obs = {k: v[t, b:b + 1] for k, v in buffer.observations.items()}
        with torch.no_grad():
            logits, value, _ = policy(obs, policy.initial_hidden(1), torch.zeros(1, dtype=torch.long),
                                      torch.zeros(1))  # a fresh episode: zero state, start token
        assert buffer.old_values[t, b].item() == pytest.approx(value.item(), abs=1e-5)
        log_prob = torch.log_softmax(logits, -1)[0, buffer.actions[t, b]]
        assert buffer.old_log_probs[t, b].item() == pytest.approx(log_prob.item(), abs=1e-5)
    sample = buffer.sample(torch.arange(2))
    with torch.no_grad():
        logits, _, _ = policy.forward_sequence(sample.observations, sample.old_initial_hidden,
                                               sample.prev_actions, sample.episode_start_masks)
        replayed = torch.log_softmax(logits, -1).gather(2, sample.actions.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(replayed, sample.old_log_probs, atol=1e-5, rtol=1e-5)
        no_resets, _, _ = policy.forward_sequence(sample.observations, sample.old_initial_hidden,
                                                  sample.prev_actions, torch.ones_like(sample.episode_start_masks))
        wrong = torch.log_softmax(no_resets, -1).gather(2, sample.actions.unsqueeze(-1)).squeeze(-1)
    assert (wrong - sample.old_log_probs).abs().max() > 1e-3
    terms = PPO(policy).loss_terms(sample)
    assert terms["approx_kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["clip_fraction"].item() == 0.0
    collector.envs.close()


def test_time_out_is_a_truncation_bootstrapped_with_the_final_value(task):
    policy = tiny_policy(task["vocab"], seed=2)
    collector = make_collector(task, policy, num_envs=2, num_steps=10, step_cap=3)
    buffer = collector.collect(policy, torch.Generator().manual_seed(2))
    finished = collector.pop_finished()
    truncated = [trace for trace in finished if trace.truncated]
    stopped = [trace for trace in finished if trace.stop_called]
    assert truncated and all(t.length == 3 for t in truncated)
    assert torch.all(buffer.truncated <= buffer.episode_ends)
    assert torch.all(buffer.bootstrap_values[buffer.truncated == 0] == 0)
    # recompute V(final obs) by hand for one truncated episode: replay it from its start
    trace = truncated[0]
    trajectory = trace.trajectory()
    t_len = trajectory.length + 1  # the final observation is the extra row
    obs = {k: v.unsqueeze(1) for k, v in trajectory.observations.items()}
    obs["instruction_tokens"] = trace.instruction_tokens.view(1, 1, -1).expand(t_len, 1, -1)
    prev = torch.cat([torch.zeros(1, dtype=torch.long), trajectory.actions]).view(t_len, 1)
    masks = torch.ones(t_len, 1)
    masks[0] = 0.0
    with torch.no_grad():
        _, values, _ = policy.forward_sequence(obs, policy.initial_hidden(1), prev, masks)
    bootstraps = buffer.bootstrap_values[buffer.truncated == 1].tolist()
    assert any(abs(v - values[-1, 0].item()) < 1e-5 for v in bootstraps)
    if stopped:  # STOP is terminal: no observation is kept after it
        assert len(stopped[0].observations) == stopped[0].length
    collector.envs.close()


def _random_buffer(policy, num_envs=4, t_len=6, seed=0) -> RolloutBuffer:
    g = torch.Generator().manual_seed(seed)
    buffer = RolloutBuffer(t_len, num_envs)
    tokens = torch.tensor([1, 2, 3, 4, 0, 0])
    for t in range(t_len):
        buffer.store_observations(t, {
            "rgb_features": torch.rand(num_envs, 1280, 1, 1, generator=g),
            "depth": torch.rand(num_envs, SIDE, SIDE, 1, generator=g) * 5,
            "instruction_tokens": tokens.expand(num_envs, -1)})
    buffer.actions = torch.randint(0, 4, (t_len, num_envs), generator=g)
    buffer.prev_actions = torch.randint(0, 4, (t_len, num_envs), generator=g)
    buffer.episode_start_masks[0, :] = 0.0
    buffer.episode_start_masks[3, 1] = 0.0
    buffer.old_log_probs = -torch.rand(t_len, num_envs, generator=g) - 1.0
    buffer.old_values = torch.randn(t_len, num_envs, generator=g)
    buffer.advantages = torch.randn(t_len, num_envs, generator=g)
    buffer.returns = torch.randn(t_len, num_envs, generator=g)
    buffer.old_initial_hidden = torch.randn(num_envs, 1, policy.hidden_size, generator=g)
    return buffer


def _gradient(policy, loss):
    params = [p for p in policy.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


def test_minibatched_gradient_equals_full_batch(task):
    policy = tiny_policy(task["vocab"], seed=3)
    ppo = PPO(policy, normalize_advantage=False)
    buffer = _random_buffer(policy)
    full = _gradient(policy, ppo.loss_terms(buffer.sample(torch.arange(4)))["loss"])
    # one minibatch = the whole batch, in the shuffled column order of the update
    (only,) = list(buffer.sequence_minibatches(1, torch.Generator().manual_seed(5)))
    torch.testing.assert_close(_gradient(policy, ppo.loss_terms(only)["loss"]), full,
                               atol=1e-6, rtol=1e-5)
    # two minibatches: their step-weighted gradients add up to the full batch's
    # (the entropy/pg/value terms are means over valid steps)
    total = torch.zeros_like(full)
    steps = buffer.valid_mask.sum()
    for sample in buffer.sequence_minibatches(2, torch.Generator().manual_seed(6)):
        weight = sample.valid_mask.sum() / steps
        total += weight * _gradient(policy, ppo.loss_terms(sample)["loss"])
    torch.testing.assert_close(total, full, atol=1e-6, rtol=1e-5)
