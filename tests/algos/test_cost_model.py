"""`langnav bench train`'s cost model: exclusive per-part CPU accounting, and each phase's
CPU attributed to the parts that phase really runs (real envs, renderer and trainers on the
tiny dataset)."""
from __future__ import annotations

import time

import pytest

from agent.algos.cost_model import PARTS, SectionTimer, bench_train, format_rows


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


class _Work:
    def outer(self) -> None:
        _spin(0.05)
        self.inner()

    def inner(self) -> None:
        _spin(0.1)


def test_section_timer_counts_nested_parts_once_and_restores():
    original_outer, original_inner = _Work.__dict__["outer"], _Work.__dict__["inner"]
    timer = SectionTimer()
    timer.wrap(_Work, "outer", "env")
    timer.wrap(_Work, "inner", "render")
    start = time.process_time()
    _Work().outer()
    total = time.process_time() - start
    timer.restore()
    assert _Work.__dict__["outer"] is original_outer and _Work.__dict__["inner"] is original_inner
    assert timer.calls == {"env": 1, "render": 1}
    assert timer.cpu["render"] == pytest.approx(0.1, abs=0.03)
    assert timer.cpu["env"] == pytest.approx(0.05, abs=0.03)  # exclusive of render
    assert timer.cpu["env"] + timer.cpu["render"] == pytest.approx(total, abs=0.01)


def test_each_phase_is_charged_to_the_parts_it_runs(tiny_dataset, tmp_path, capsys):
    from agent.envs.houses.renderer import Renderer

    render = Renderer.__dict__["render"]
    rows = bench_train(None, [f"data_dir={tiny_dataset}", "backend.width=64", "backend.height=64",
                              "torch_threads=1", "num_envs=1", "bc.max_episodes=2",
                              "bc.batch_size=2", "rl.ppo.num_steps=8", "rl.ppo.num_mini_batch=1"],
                       seconds=0.1, episodes=1, phases=["bc_update", "dagger_collect", "gail"],
                       work_dir=str(tmp_path))
    assert Renderer.__dict__["render"] is render  # instrumentation removed
    by = {row["phase"]: row for row in rows}
    assert list(by) == ["record", "bc_update", "dagger_collect", "gail"]  # record added
    for row in rows:
        assert set(row["ms_per_unit"]) == set(PARTS)
        assert row["per_s_workers"] > 0 and row["per_s_one_process"] > 0
        assert row["slowest_part"] in PARTS
        assert row["bound_two_cores_per_s"] == pytest.approx(2000.0 / row["ms_per_unit_total"])
    record = by["record"]["ms_per_unit"]
    assert record["render"] > 0 and record["rgb_encoder"] > 0 and record["env"] > 0
    assert record["policy_forward"] == record["backward"] == record["optimiser"] == 0
    update = by["bc_update"]["ms_per_unit"]
    assert update["policy_forward"] > 0 and update["backward"] > 0 and update["optimiser"] > 0
    assert update["render"] == update["env"] == update["rgb_encoder"] == 0
    assert by["bc_update"]["unit"] == "sample"
    collect = by["dagger_collect"]["ms_per_unit"]
    assert collect["policy_forward"] > 0 and collect["render"] > 0 and collect["ipc"] > 0
    assert collect["backward"] == 0
    gail = by["gail"]["ms_per_unit"]
    assert gail["discriminator"] > 0 and gail["policy_forward"] > 0 and gail["render"] > 0
    table = format_rows(rows)
    assert "dagger_collect" in table and "slowest part alone" in table
    assert "gail" in capsys.readouterr().out


def test_unknown_phase_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown phases"):
        bench_train(None, [], phases=["nope"], work_dir=str(tmp_path))
