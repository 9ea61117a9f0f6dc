"""VectorEnv with several envs per worker process: on the tiny houses dataset, 6 envs in 2
workers behave exactly like 6 envs in this process (observations, dones, infos), calls on a
subset of envs come back in the caller's order, a failing env is named while the others keep
stepping, and evaluation gives the same per-episode results whatever the layout."""
from __future__ import annotations

import numpy as np
import pytest

from agent.datasets.episodes import load_split, split_paths
from agent.envs.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT
from agent.envs.factory import houses_backend_config
from agent.envs.vector_env import (
    EnvWorkerError, VectorEnv, _picklable, default_num_workers, worker_blocks,
)

NUM_ENVS = 6


@pytest.fixture(scope="module")
def episodes(tiny_dataset):
    """Episodes of several houses, seen and unseen, interleaved."""
    seen, _ = load_split(split_paths(tiny_dataset, "val_seen")[0])
    unseen, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    picked = [ep for pair in zip(seen[::5], unseen[::5]) for ep in pair]
    assert len({ep["scene_id"] for ep in picked[:NUM_ENVS]}) >= 2
    return picked


@pytest.fixture(scope="module")
def env_pair(tiny_dataset):
    """(6 envs in 2 worker processes, the same 6 envs in this process)."""
    cfg = dict(houses_backend_config(tiny_dataset, 32, 32), privileged=True)
    with VectorEnv(cfg, NUM_ENVS, num_workers=2) as workers, \
            VectorEnv(cfg, NUM_ENVS, in_process=True) as local:
        assert workers.num_workers == 2 and not workers.in_process
        yield workers, local


def _assert_same_observations(a, b, where):
    assert sorted(a) == sorted(b), where
    for key in a:
        if key == "instruction":
            assert a[key]["text"] == b[key]["text"], where
            np.testing.assert_array_equal(a[key]["tokens"], b[key]["tokens"], err_msg=where)
        else:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, (where, key)
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{where} {key}")


def _assert_same_steps(got, want, where):
    assert len(got) == len(want), where
    for k, ((obs_a, done_a, info_a), (obs_b, done_b, info_b)) in enumerate(zip(got, want)):
        _assert_same_observations(obs_a, obs_b, f"{where} result {k}")
        assert done_a == done_b and info_a == info_b, (where, k, info_a, info_b)


def test_default_layout_keeps_one_env_per_worker_up_to_two_envs():
    assert default_num_workers(1) == 1 and default_num_workers(2) == 2
    assert 1 <= default_num_workers(16) <= 16
    assert worker_blocks(6, 2) == [range(0, 3), range(3, 6)]
    assert worker_blocks(5, 2) == [range(0, 3), range(3, 5)]
    assert worker_blocks(2, 2) == [range(0, 1), range(1, 2)]
    with pytest.raises(ValueError, match="num_workers"):
        VectorEnv({"backend": "houses"}, 2, num_workers=0)


def test_envs_in_two_workers_match_envs_in_process(env_pair, episodes):
    """Same episodes and actions: identical observations, dones and infos, including steps
    and resets of a shuffled subset of envs spread over both workers."""
    workers, local = env_pair
    queue = list(episodes[NUM_ENVS:])
    first = episodes[:NUM_ENVS]
    for i, (a, b) in enumerate(zip(workers.reset(first), local.reset(first))):
        _assert_same_observations(a, b, f"reset env {i}")
    rng = np.random.default_rng(0)
    actions_p = {STOP: 0.04, MOVE_FORWARD: 0.56, TURN_LEFT: 0.2, TURN_RIGHT: 0.2}
    ends = 0
    for t in range(40):
        indices = list(range(NUM_ENVS))
        if t % 3 == 2:  # a subset, out of order, in both workers
            indices = [int(i) for i in rng.permutation(NUM_ENVS)[:4]]
        actions = rng.choice(list(actions_p), size=len(indices), p=list(actions_p.values()))
        results = workers.step(actions.tolist(), indices=indices)
        _assert_same_steps(results, local.step(actions.tolist(), indices=indices), f"step {t}")
        ended = [i for i, (_, done, _) in zip(indices, results) if done]
        if ended:
            ends += len(ended)
            new = [queue.pop(0) for _ in ended]
            for k, (a, b) in enumerate(zip(workers.reset(new, ended), local.reset(new, ended))):
                _assert_same_observations(a, b, f"step {t} reset of env {ended[k]}")
    assert ends >= 1, "some episode must end (STOP) and be reset on its own"


def test_calls_on_a_subset_come_back_in_the_callers_order(env_pair, episodes):
    workers, local = env_pair
    workers.reset(episodes[:NUM_ENVS])
    local.reset(episodes[:NUM_ENVS])
    order = [5, 0, 3]
    states = workers.call("agent_state", indices=order)
    for (pos, heading), (want_pos, want_heading) in zip(states, local.call("agent_state",
                                                                            indices=order)):
        np.testing.assert_array_equal(pos, want_pos)
        assert heading == want_heading
    for (pos, _), i in zip(states, order):
        np.testing.assert_allclose(pos, episodes[i]["start_position"], atol=1e-6)
    goals = [(episodes[i]["start_position"], episodes[i]["goals"][0]["position"]) for i in (4, 1)]
    assert workers.call("geodesic_distance", goals, indices=[4, 1]) == \
        local.call("geodesic_distance", goals, indices=[4, 1])
    assert workers.call_at(2, "expert_action") == local.call_at(2, "expert_action")
    _assert_same_steps([workers.step_at(4, TURN_LEFT)], [local.step_at(4, TURN_LEFT)], "step_at")
    with pytest.raises(IndexError, match="out of range"):
        workers.step([MOVE_FORWARD], indices=[NUM_ENVS])
    with pytest.raises(ValueError, match="2 arguments for 1 envs"):
        workers.step([MOVE_FORWARD, MOVE_FORWARD], indices=[0])


def test_a_failing_env_is_named_and_the_others_keep_stepping(env_pair, episodes):
    workers, local = env_pair
    workers.reset(episodes[:NUM_ENVS])
    local.reset(episodes[:NUM_ENVS])
    actions = [MOVE_FORWARD, TURN_LEFT, MOVE_FORWARD, TURN_RIGHT, 9, MOVE_FORWARD]
    with pytest.raises(EnvWorkerError) as info:
        workers.step(actions)
    message = str(info.value)
    assert "environment 4 (worker 1) failed" in message and "action 9" in message
    assert "ValueError" in message and "environment 3 " not in message
    assert sorted(info.value.env_errors) == [4]
    # the other envs of the call did step (env 3 and 5 share the failing env's worker)
    keep = [0, 1, 2, 3, 5]
    assert info.value.results[4] is None
    _assert_same_steps([info.value.results[i] for i in keep],
                       local.step([actions[i] for i in keep], indices=keep), "partial results")
    # in-process, the env's own exception, after the other envs of the call ran
    with pytest.raises(ValueError, match="action 9"):
        local.step([9, TURN_LEFT], indices=[4, 5])
    with pytest.raises(EnvWorkerError, match="environment 4"):
        workers.step([9, TURN_LEFT], indices=[4, 5])
    # and every env, the failed one included, keeps going in step with the in-process envs
    more = [MOVE_FORWARD] * NUM_ENVS
    _assert_same_steps(workers.step(more), local.step(more), "after the failures")

    bad = dict(episodes[1])
    del bad["instruction"]
    with pytest.raises(EnvWorkerError, match=r"environment 1 \(worker 0\) failed") as info:
        workers.reset([episodes[0], bad, episodes[2]], indices=[0, 1, 2])
    assert "missing key" in str(info.value) and sorted(info.value.env_errors) == [1]
    assert info.value.results[0] is not None and info.value.results[2] is not None
    workers.reset_at(1, episodes[1])
    assert workers.step_at(1, MOVE_FORWARD)[2]["steps"] == 1


def test_a_result_that_cannot_be_pickled_fails_only_its_own_env():
    replies = _picklable([("ok", lambda: 1), ("ok", 3), ("error", ("its traceback", None))])
    assert replies[0][0] == "error" and "pickle" in replies[0][1].lower()
    assert replies[1:] == [("ok", 3), ("error", "its traceback")]


def test_a_worker_that_cannot_build_its_envs_says_why(tmp_path):
    with VectorEnv({"backend": "houses", "scenes_dir": str(tmp_path), "bogus_key": 1}, 2,
                   num_workers=1) as envs:
        with pytest.raises(EnvWorkerError, match=r"(?s)worker 0 \(envs 0-1\) could not build"
                                                 r".*bogus_key"):
            envs.reset([{}, {}])


def test_config_and_cli_carry_the_worker_count():
    from agent.algos.config import load_train_config
    from agent.cli import build_parser

    default = load_train_config(None, [])
    assert default.num_workers is None and default.eval.num_workers is None
    cfg = load_train_config(None, ["num_envs=16", "num_workers=2", "eval.num_workers=1"])
    assert (cfg.num_envs, cfg.num_workers, cfg.eval.num_workers) == (16, 2, 1)
    args = build_parser().parse_args(["eval", "--agent", "expert", "--out", "x",
                                      "--num-envs", "6", "--workers", "2"])
    assert (args.num_envs, args.workers) == (6, 2)
    assert build_parser().parse_args(["eval", "--agent", "expert", "--out", "x"]).workers is None


@pytest.mark.parametrize("agent_name", ["handcrafted", "expert"])
def test_evaluation_is_the_same_with_one_env_and_with_six_in_two_workers(
        tiny_dataset, tmp_path, agent_name):
    from eval.agents import make_agent
    from eval.evaluator import evaluate_split

    def run(num_envs, num_workers, out):
        return evaluate_split(make_agent(agent_name, num_envs, tiny_dataset, seed=3), agent_name,
                              tiny_dataset, "val_unseen", str(tmp_path / out),
                              backend_cfg=houses_backend_config(tiny_dataset, 32, 32),
                              num_envs=num_envs, num_workers=num_workers, sample=9, seed=3)

    one, six = run(1, None, "one"), run(6, 2, "six")
    assert list(one["episodes"]) == list(six["episodes"]) and len(one["episodes"]) == 9
    for eid, want in one["episodes"].items():
        got = six["episodes"][eid]
        assert got["metrics"] == want["metrics"], eid
        assert got["trajectory"] == want["trajectory"] and got["stop_called"] == want["stop_called"]
    assert one["aggregate"] == six["aggregate"]
