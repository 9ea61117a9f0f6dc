"""One direction of dependency (DESIGN.md): ``eval`` and ``agent.algos`` use ``agent.envs``
and ``agent.models``; ``agent.envs`` knows nothing of learning; nothing imports ``cli``.
Evaluating a checkpoint imports no training code (issue #15 item 4)."""
from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def _imported_modules(path: str):
    """``(line, module)`` of every import in a file, function-level (lazy) ones included."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # from agent import cli
                yield node.lineno, f"{node.module}.{alias.name}"


def _violations(patterns, forbidden):
    found = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
            for line, module in _imported_modules(path):
                if any(module == f or module.startswith(f + ".") for f in forbidden):
                    found.append(f"{os.path.relpath(path, ROOT)}:{line} imports {module}")
    return found


def test_import_eval_agents_imports_no_training_code():
    code = ("import eval.agents, sys; "
            "print([m for m in sys.modules if m.startswith('agent.algos')])")
    assert _run(code) == "[]"


def test_algos_config_does_not_import_eval():
    code = ("import agent.algos.config, sys; "
            "print([m for m in sys.modules if m == 'eval' or m.startswith('eval.')])")
    assert _run(code) == "[]"


def test_backend_config_of_a_yaml_does_not_import_eval(tmp_path):
    """The lazy path of backend_config_of (a backend YAML) too."""
    yaml_path = tmp_path / "backend.yaml"
    yaml_path.write_text("backend: houses\nscenes_dir: /nowhere/scenes\n")
    code = ("import agent.algos.config as c, sys; "
            f"cfg = c.load_train_config(None, ['backend.config={yaml_path}']); "
            "b = c.backend_config_of(cfg); assert b['scenes_dir'] == '/nowhere/scenes', b; "
            "print([m for m in sys.modules if m == 'eval' or m.startswith('eval.')])")
    assert _run(code) == "[]"


def test_no_import_cycle_in_the_sources():
    """Every import statement, lazy ones included: eval never imports agent.algos; envs,
    models and datasets import neither agent.algos nor eval; only the console entry point
    names agent.cli."""
    found = _violations(["eval/**/*.py"], ("agent.algos", "agent.cli"))
    found += _violations(["agent/envs/**/*.py", "agent/models/**/*.py", "agent/datasets/**/*.py"],
                         ("agent.algos", "eval", "agent.cli"))
    found += _violations(["agent/algos/**/*.py", "agent/*.py", "eval/**/*.py"], ("agent.cli",))
    found = [f for f in found if not f.startswith("agent/cli.py")]
    assert not found, "imports against DESIGN.md's direction:\n" + "\n".join(found)


@pytest.mark.slow
def test_loading_a_checkpoint_for_evaluation_imports_no_training_code(tiny_dataset, tmp_path):
    """``eval.agents.make_agent(PATH.pt)`` in a fresh interpreter: a working PolicyAgent and
    not one agent.algos module."""
    import torch

    from agent.algos.checkpoint import checkpoint_name, save_checkpoint
    from agent.algos.config import load_train_config
    from agent.config import config_to_dict
    from agent.datasets.episodes import load_split, split_paths
    from agent.models.policy import build_policy

    _, vocab = load_split(split_paths(tiny_dataset, "val_seen")[0])
    cfg = load_train_config(None, [f"data_dir={tiny_dataset}", f"out_dir={tmp_path}",
                                   "backend.width=32", "backend.height=32", "name=probe",
                                   "model.policy.hidden_size=16",
                                   "model.instruction_encoder.hidden_size=8"])
    torch.manual_seed(0)
    path = save_checkpoint(
        str(tmp_path / "checkpoints" / checkpoint_name(1, 10)), trainer="bc",
        config=config_to_dict(cfg), policy=build_policy(cfg.model, vocab), vocab=vocab,
        observation={"width": 32, "height": 32, "backend": {"backend": "houses"}},
        data_dir=tiny_dataset, counters={"updates": 1, "training_frames": 10, "wall_time_s": 1.0})
    code = ("import sys; from eval.agents import make_agent; "
            f"a = make_agent({path!r}, num_slots=1, data_dir=None); "
            "assert type(a).__name__ == 'PolicyAgent' and a.name == 'probe', a; "
            "assert a.backend_overrides == {'width': 32, 'height': 32}; "
            "print([m for m in sys.modules if m.startswith('agent.algos')])")
    assert _run(code) == "[]"
