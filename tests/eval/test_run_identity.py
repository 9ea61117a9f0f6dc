"""Evaluation run directories record what produced them (agent, dataset split, instruction
mode, sample, seed): resuming with something else is an error naming the difference, and a
partial log whose last line a kill tore is repaired to the same stats as one clean run."""
from __future__ import annotations

import json
import os

import pytest
import torch

from agent.io_utils import read_jsonl_repaired
from agent.run_identity import RunIdentityError, dataset_identity, module_weights_sha1
from eval.agents import HandcraftedAgent, make_agent
from eval.evaluator import evaluate_split, houses_backend_config


def _evaluate(data, out, agent_name="handcrafted", agent=None, **kw):
    agent = agent or make_agent(agent_name, 2, data, seed=0)
    kw.setdefault("max_episodes", 3)
    return evaluate_split(agent, agent_name, data, "val_unseen", str(out),
                          backend_cfg=houses_backend_config(data, 32, 32), num_envs=2,
                          in_process=True, **kw)


def _same_stats(a, b):
    assert list(a["episodes"]) == list(b["episodes"])
    for eid in a["episodes"]:
        assert a["episodes"][eid]["metrics"] == b["episodes"][eid]["metrics"], eid
        assert a["episodes"][eid]["trajectory"] == b["episodes"][eid]["trajectory"], eid
    assert a["aggregate"] == b["aggregate"]


class WeightedHandcrafted(HandcraftedAgent):
    """The handcrafted agent carrying a (unused) torch policy: its identity is its weights."""

    def __init__(self, mean_forward: float, policy: torch.nn.Module):
        super().__init__(2, mean_forward, 0)
        self.policy = policy


def test_resume_with_another_agent_mode_or_sample_fails_naming_it(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    first = _evaluate(tiny_dataset, out)
    record = json.load(open(out / "identity_val_unseen.json"))
    assert record["identity"]["agent"]["kind"] == "HandcraftedAgent"
    assert record["identity"]["data"] == dataset_identity(tiny_dataset, "val_unseen")
    with pytest.raises(RunIdentityError, match=r'agent\.kind: "HandcraftedAgent" recorded, '
                                               r'"RandomAgent" now'):
        _evaluate(tiny_dataset, out, "random")
    with pytest.raises(RunIdentityError, match=r'instructions: "normal" recorded, "shuffled"'):
        _evaluate(tiny_dataset, out, instructions="shuffled")
    with pytest.raises(RunIdentityError, match=r"sample: null recorded, 3 now"):
        _evaluate(tiny_dataset, out, max_episodes=None, sample=3)
    with pytest.raises(RunIdentityError, match=r"seed: 0 recorded, 1 now"):
        _evaluate(tiny_dataset, out, seed=1)
    # the same agent and settings resume (nothing to run) to the same stats
    _same_stats(first, _evaluate(tiny_dataset, out))


def test_a_learned_agent_is_identified_by_its_weights(tiny_dataset, tmp_path):
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    assert module_weights_sha1(a) != module_weights_sha1(b)
    copy = torch.nn.Linear(3, 2)
    copy.load_state_dict(a.state_dict())
    assert module_weights_sha1(copy) == module_weights_sha1(a)
    out = tmp_path / "run"
    _evaluate(tiny_dataset, out, agent=WeightedHandcrafted(1.0, a), max_episodes=1)
    with pytest.raises(RunIdentityError, match=r"agent\.weights_sha1"):
        _evaluate(tiny_dataset, out, agent=WeightedHandcrafted(1.0, b), max_episodes=1)


def test_torn_partial_log_is_repaired_and_stats_equal_a_clean_run(tiny_dataset, tmp_path):
    clean = _evaluate(tiny_dataset, tmp_path / "clean", max_episodes=4)
    torn_dir = tmp_path / "torn"
    _evaluate(tiny_dataset, torn_dir, max_episodes=4)
    log = torn_dir / "partial_val_unseen.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    assert len(lines) == 4
    # a kill during the fourth append: half its line written, no newline
    log.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    os.remove(torn_dir / "stats_val_unseen.json")
    resumed = _evaluate(tiny_dataset, torn_dir, max_episodes=4)
    _same_stats(clean, resumed)
    text = log.read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 4
    assert sorted(json.loads(line)["episode_id"] for line in text.splitlines()) == \
        sorted(clean["episodes"])


def test_repair_drops_fragments_older_versions_glued_to_a_record(tmp_path):
    path = tmp_path / "log.jsonl"
    good = [{"episode_id": "1"}, {"episode_id": "2"}]
    path.write_text(json.dumps(good[0]) + "\n" + '{"episode_id": "9", "pos' + json.dumps(good[1])
                    + "\n" + '{"episode_id": "3"')
    assert read_jsonl_repaired(str(path)) == [good[0]]
    assert path.read_text() == json.dumps(good[0]) + "\n"
    assert read_jsonl_repaired(str(tmp_path / "absent.jsonl")) == []
