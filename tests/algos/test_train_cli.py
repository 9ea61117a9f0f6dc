"""``langnav train``: strict config (bad keys named), --help-config, the experiment YAMLs,
the trainer registry, and the train -> checkpoint -> evaluation path end to end."""
from __future__ import annotations

import json
import os

import pytest

from agent.algos.config import TrainConfig, load_train_config, resolved_out_dir
from agent.algos.train import TRAINERS, trainer_class
from agent.cli import main
from agent.config import ConfigError, all_config_keys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = os.path.join(REPO, "habitat_configs", "experiments")
SMOKE = os.path.join(EXPERIMENTS, "smoke_bc.yaml")


def test_unknown_override_key_is_named(capsys):
    with pytest.raises(ConfigError, match=r"unknown config key 'bc\.epoch'.*did you mean 'bc\.epochs'"):
        load_train_config(SMOKE, ["bc.epoch=3"])
    assert main(["train", "--config", SMOKE, "dagger.beta=0.5"]) == 2
    assert "unknown config key 'dagger.beta'" in capsys.readouterr().err


def test_unknown_yaml_key_is_named_with_its_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"_base_: {SMOKE}\nbc:\n  epochs: 2\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=rf"'bc\.learning_rate' in {path}"):
        load_train_config(str(path))


def test_bad_values_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="'backend.width' must be a positive multiple of 32"):
        load_train_config(None, ["backend.width=50"])
    with pytest.raises(ConfigError, match="'dagger.p' must be in"):
        load_train_config(None, ["dagger.p=1.5"])
    with pytest.raises(ConfigError, match="'trainer' expects one of"):
        load_train_config(None, ["trainer=reinforce"])


def test_help_config_lists_every_key(capsys):
    assert main(["train", "--config", SMOKE, "--help-config"]) == 0
    text = capsys.readouterr().out
    for key in all_config_keys(TrainConfig):
        assert key in text, key
    assert "bc.inflection_coef (float, default 3.2)" in text
    assert "dagger.p (float, default 0.75)" in text


def test_experiment_files_load_with_their_intent():
    from agent.algos.config import experiment_trainer, load_goal_generator_config

    files = {name[:-5]: os.path.join(EXPERIMENTS, name)
             for name in os.listdir(EXPERIMENTS) if name.endswith(".yaml")}
    configs = {name: load_train_config(path) for name, path in files.items()
               if experiment_trainer(path) != "goal_generator"}
    generator = load_goal_generator_config(files["goal_generator"])
    assert generator.trainer == "goal_generator" and generator.data_dir == "data/default"
    assert generator.rgb_encoder.layers == (7, 14) and generator.train.free_bits > 0
    for name in ("bc", "dagger", "bc_glove", "bc_blind", "smoke_bc"):
        assert name in configs, name
    assert configs["bc"].trainer == "bc" and configs["bc"].bc.lr == 1e-3
    assert configs["bc"].bc.inflection_coef == 3.2
    assert configs["bc"].backend.width == 64 and configs["bc"].eval.selection == "last"
    # the blind control differs from BC in the instruction only (same feature dropout)
    assert configs["bc"].model.policy.feature_dropout == 0.5
    assert configs["bc_blind"].model.policy.feature_dropout == 0.5
    assert configs["smoke_bc"].model.policy.feature_dropout == 0.0
    assert configs["bc"].model.instruction_encoder.type == "transformer"
    assert configs["bc_glove"].model.instruction_encoder.type == "glove_lstm"
    assert configs["bc_blind"].model.policy.instruction_blind
    assert not configs["bc"].model.policy.instruction_blind
    assert configs["dagger"].trainer == "dagger" and configs["dagger"].dagger.p == 0.75
    # dagger_glove.yaml can start from a bc_glove.yaml run (dagger.init_from): same model
    assert configs["dagger_glove"].trainer == "dagger"
    assert configs["dagger_glove"].model == configs["bc_glove"].model
    assert configs["smoke_bc"].data_dir == "data/tiny"
    seeds = {resolved_out_dir(load_train_config(os.path.join(EXPERIMENTS, "bc.yaml"), [f"seed={s}"]))
             for s in (0, 1)}
    assert len(seeds) == 2  # one run directory per seed


def test_trainer_registry():
    assert {"bc", "dagger", "gail", "airl"} <= set(TRAINERS)
    assert trainer_class("bc").__name__ == "BCTrainer"
    assert trainer_class("dagger").__name__ == "DAggerTrainer"
    with pytest.raises(ValueError, match="unknown trainer 'ppo2'"):
        trainer_class("ppo2")


def smoke_overrides(data_dir, out_dir, *extra):
    return [f"data_dir={data_dir}", f"out_dir={out_dir}",
            f"features.cache_dir={out_dir}/features", "bc.max_episodes=2", "bc.batch_size=2",
            "torch_threads=1", "progress=false", *extra]


def test_langnav_train_writes_a_resumable_run(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", SMOKE,
                 *smoke_overrides(tiny_dataset, out, "bc.epochs=2", "eval.splits=[]")]) == 0
    assert "bc: 2 updates" in capsys.readouterr().out
    with open(out / "result.json") as f:
        first = json.load(f)["train"]
    assert first["updates"] == 2 and first["training_frames"] > 0
    # the same command with a longer schedule continues the run instead of starting over
    assert main(["train", "--config", SMOKE,
                 *smoke_overrides(tiny_dataset, out, "bc.epochs=3", "eval.splits=[]")]) == 0
    with open(out / "result.json") as f:
        second = json.load(f)["train"]
    assert second["updates"] == 3 and second["samples"] == 3 * first["training_frames"]
    assert second["wall_time_s"] > first["wall_time_s"]


@pytest.mark.slow
def test_train_then_evaluate_selected_on_val_seen_then_langnav_eval(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--config", SMOKE, *smoke_overrides(
        tiny_dataset, out, "bc.epochs=40", "checkpoint_interval=20", "eval.max_episodes=2",
        "eval.selection=best_val_seen", "eval.selection_max_episodes=2")]) == 0
    with open(out / "eval" / "selection.json") as f:
        selection = json.load(f)
    assert selection["selection"] == "best_val_seen" and len(selection["candidates"]) == 2
    for split in ("val_seen", "val_unseen"):
        with open(out / "eval" / f"stats_{split}.json") as f:
            stats = json.load(f)
        assert stats["agent"] == "smoke_bc" and stats["aggregate"]["num_episodes"] == 2
        assert stats["run"]["training_frames"] > 0 and stats["run"]["wall_time_s"] > 0
        assert stats["run"]["checkpoint"] == selection["checkpoint"]
        assert stats["run"]["selection"] == "best_val_seen"
    # the checkpoint alone is enough for `langnav eval` (dataset and resolution inside it)
    assert main(["eval", "--agent", selection["checkpoint"], "--split", "val_seen",
                 "--max-episodes", "1", "--num-envs", "1", "--out", str(tmp_path / "again")]) == 0
    with open(tmp_path / "again" / "stats_val_seen.json") as f:
        again = json.load(f)
    first_episode = next(iter(again["episodes"]))
    assert again["episodes"][first_episode]["trajectory"] == \
        stats_val_seen(out)["episodes"][first_episode]["trajectory"]


def stats_val_seen(out):
    with open(out / "eval" / "stats_val_seen.json") as f:
        return json.load(f)
