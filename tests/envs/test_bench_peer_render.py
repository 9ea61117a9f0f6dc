"""Smoke tests of tools/bench_peer_render.py (a benchmark script: figures are printed, never
asserted)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "bench_peer_render.py")
QUICK = ["--repeats", "1", "--seconds", "0.2", "--sizes", "32", "--poses", "8"]


def _run(*args: str, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_houses_half_runs():
    out = _run(*QUICK, "--houses-only")
    assert out.returncode == 0, out.stderr
    assert "repeat 1  32x32  houses" in out.stdout
    assert "median 32x32: houses" in out.stdout and "load average at end" in out.stdout


def test_unavailable_peer_is_one_line_and_exit_2(tmp_path):
    """A MiniWorld that cannot be imported: one line saying why, status 2, nothing measured."""
    fake = tmp_path / "miniworld"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    out = _run(*QUICK, env_extra={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench_peer_render: cannot measure: miniworld")
    assert "repeat 1" not in out.stdout


@pytest.mark.skipif(importlib.util.find_spec("miniworld") is None,
                    reason="miniworld (the optional 'bench' extra) is not installed")
def test_both_halves_run_interleaved():
    out = _run(*QUICK)
    if out.returncode == 2:
        pytest.skip(f"MiniWorld cannot render headless here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    assert "houses/miniworld" in out.stdout and "median 32x32" in out.stdout
