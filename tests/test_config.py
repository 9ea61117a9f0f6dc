"""The config system: YAML + _base_ + dotted overrides, strict keys and types, frozen."""
from __future__ import annotations

import dataclasses
import os
from typing import List, Literal, Optional, Tuple

import pytest
import yaml

from agent.config import (
    ConfigError, ModelConfig, all_config_keys, config_field, config_from_dict, config_section,
    config_to_dict, config_to_yaml, format_help, load_config, read_yaml_with_bases,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# A config with every supported field type; postponed annotations (the __future__ import)
# exercise the get_type_hints resolution.
@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimiser."""

    lr: float = config_field(2.5e-4, help="learning rate")
    betas: Tuple[float, ...] = config_field((0.9, 0.999), help="Adam betas")
    schedule: Literal["constant", "linear"] = config_field("constant", help="lr schedule")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Entry point used by these tests."""

    optim: OptimConfig = config_section(OptimConfig, help="optimiser")
    steps: int = config_field(100, help="number of updates")
    run_name: str = config_field("run", help="name of the run directory")
    max_episodes: Optional[int] = config_field(None, help="episode limit (null = all)")
    splits: List[str] = config_field(("train",), help="dataset splits")
    verbose: bool = config_field(False, help="log more")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A root config nesting the project's model sections, as a trainer's config does."""

    model: ModelConfig = config_section(ModelConfig, help="networks")
    seed: int = config_field(0, help="random seed")


def write_yaml(path, content) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content) if not isinstance(content, str) else content)
    return str(path)


def test_defaults_without_file_equal_the_dataclass_defaults():
    assert load_config(TrainConfig) == TrainConfig()
    assert load_config(ExperimentConfig) == ExperimentConfig()


def test_yaml_then_overrides_in_order(tmp_path):
    path = write_yaml(tmp_path / "a.yaml", {"steps": 5, "optim": {"lr": 0.1}})
    cfg = load_config(TrainConfig, path, ["optim.lr=0.5", "splits=[train, val_seen]",
                                          "max_episodes=7", "steps=9"])
    assert cfg.steps == 9 and cfg.optim.lr == 0.5 and cfg.max_episodes == 7
    assert cfg.splits == ("train", "val_seen")
    assert cfg.optim.betas == (0.9, 0.999)  # untouched defaults stay


def test_override_values_are_yaml_but_str_fields_keep_the_text():
    cfg = load_config(TrainConfig, None, ["run_name=yes", "verbose=yes", "max_episodes=null"])
    assert cfg.run_name == "yes" and cfg.verbose is True and cfg.max_episodes is None
    cfg = load_config(TrainConfig, None, ["run_name=007", "optim={lr: 0.25}"])
    assert cfg.run_name == "007" and cfg.optim.lr == 0.25


def test_base_files_merge_recursively_relative_to_each_file(tmp_path):
    write_yaml(tmp_path / "common" / "root.yaml", {"steps": 1, "run_name": "root",
                                                   "optim": {"lr": 1.0, "schedule": "linear"}})
    write_yaml(tmp_path / "common" / "mid.yaml", {"_base_": "root.yaml", "steps": 2,
                                                  "optim": {"lr": 2.0}})
    child = write_yaml(tmp_path / "exp" / "child.yaml",
                       {"_base_": "../common/mid.yaml", "optim": {"betas": [0.5, 0.6]}})
    cfg = load_config(TrainConfig, child)
    assert cfg.steps == 2 and cfg.run_name == "root"
    assert read_yaml_with_bases(child)["optim"] == {"lr": 2.0, "schedule": "linear",
                                                     "betas": [0.5, 0.6]}
    # sections merge key by key through both levels
    assert cfg.optim == OptimConfig(lr=2.0, betas=(0.5, 0.6), schedule="linear")


def test_base_cycle_and_missing_base_are_reported(tmp_path):
    a = write_yaml(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write_yaml(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(TrainConfig, a)
    c = write_yaml(tmp_path / "c.yaml", {"_base_": "nowhere.yaml"})
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_config(TrainConfig, c)


def test_unknown_key_names_dotted_key_file_and_close_match(tmp_path):
    path = write_yaml(tmp_path / "typo.yaml", {"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    message = str(err.value)
    assert "'optim.lrr'" in message and path in message and "'optim.lr'" in message


def test_unknown_key_in_a_base_file_names_that_file(tmp_path):
    base = write_yaml(tmp_path / "base.yaml", {"stepz": 3})
    child = write_yaml(tmp_path / "child.yaml", {"_base_": "base.yaml", "steps": 1})
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, child)
    assert "'stepz'" in str(err.value) and base in str(err.value)


def test_unknown_section_and_unknown_override_are_errors(tmp_path):
    path = write_yaml(tmp_path / "s.yaml", {"optimizer": {"lr": 0.1}})
    with pytest.raises(ConfigError, match=r"'optimizer'.*did you mean 'optim'"):
        load_config(TrainConfig, path)
    with pytest.raises(ConfigError, match=r"'model\.policy\.hiden_size'.*override.*"
                                          r"'model\.policy\.hidden_size'"):
        load_config(ExperimentConfig, None, ["model.policy.hiden_size=3"])
    with pytest.raises(ConfigError, match="a.b.c=value"):
        load_config(TrainConfig, None, ["steps"])


@pytest.mark.parametrize("override, fragment", [
    ("steps=many", "'steps' expects int"),
    ("steps=true", "'steps' expects int"),          # a bool is not an int
    ("steps=1.5", "'steps' expects int"),
    ("verbose=1", "'verbose' expects bool"),
    ("optim.lr=fast", "'optim.lr' expects float"),
    ("optim.lr=null", "'optim.lr' expects float"),  # not Optional
    ("optim.schedule=cosine", "'optim.schedule' expects one of 'constant'|'linear'"),
    ("optim.betas=[0.9, x]", r"'optim.betas\[1\]' expects float.*override 'optim.betas="),
    ("splits=train", "'splits' expects list"),
    ("optim=3", "'optim' is a section"),
])
def test_type_errors_name_key_and_expected_type(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(TrainConfig, None, [override])


def test_type_error_from_a_file_names_the_file(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"steps": "ten"})
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    assert "'steps' expects int" in str(err.value) and path in str(err.value)


def test_numbers_widen_to_float_and_yaml11_exponents_parse(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string; a float field parses it
    path = write_yaml(tmp_path / "f.yaml", "optim:\n  lr: 1e-4\n  betas: [1, 0.5]\n")
    cfg = load_config(TrainConfig, path)
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (1.0, 0.5) and all(isinstance(b, float) for b in cfg.optim.betas)


def test_built_configs_are_frozen_and_sequences_immutable():
    cfg = load_config(TrainConfig, None, ["splits=[a, b]"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 3.0  # type: ignore[misc]
    assert isinstance(cfg.splits, tuple)
    assert dataclasses.replace(cfg, steps=3).steps == 3 and cfg.steps == 100


def test_non_frozen_config_classes_and_mutable_defaults_are_refused():
    @dataclasses.dataclass
    class Loose:
        x: int = config_field(1, help="x")

    with pytest.raises(TypeError, match="frozen"):
        load_config(Loose)
    with pytest.raises(TypeError, match="mutable"):
        config_field([1, 2], help="a list default")


def test_dict_round_trip_and_yaml_round_trip(tmp_path):
    cfg = load_config(ExperimentConfig, None, ["model.policy.type=seq2seq",
                                               "model.depth_encoder.channels=[8, 16]",
                                               "model.rgb_encoder.weights=/x/y.pth"])
    as_dict = config_to_dict(cfg)
    assert as_dict["model"]["depth_encoder"]["channels"] == [8, 16]  # plain lists
    assert config_from_dict(ExperimentConfig, as_dict) == cfg
    path = write_yaml(tmp_path / "dump.yaml", config_to_yaml(cfg))
    assert load_config(ExperimentConfig, path) == cfg
    as_dict["model"]["policy"]["hiden"] = 1
    with pytest.raises(ConfigError, match=r"'model\.policy\.hiden' in checkpoint"):
        config_from_dict(ExperimentConfig, as_dict, origin="checkpoint")


def test_format_help_lists_every_key_with_type_default_and_help():
    text = format_help(TrainConfig)
    assert "optim.lr (float, default 0.00025)" in text and "learning rate" in text
    assert "max_episodes (Optional[int], default None)" in text
    assert "splits (list[str], default ['train'])" in text
    # every field of the project's configs carries help text (format_help raises otherwise)
    project_help = format_help(ExperimentConfig)
    for key in all_config_keys(ExperimentConfig):
        assert key in project_help


def test_missing_help_text_is_refused():
    @dataclasses.dataclass(frozen=True)
    class NoHelp:
        x: int = 1

    with pytest.raises(TypeError, match="no help text"):
        format_help(NoHelp)


def test_required_keys_must_be_given(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class NeedsData:
        data_dir: str = config_field(help="dataset directory")

    with pytest.raises(ConfigError, match="required config key 'data_dir'"):
        load_config(NeedsData)
    assert load_config(NeedsData, None, ["data_dir=/d"]).data_dir == "/d"


def test_model_sections_of_the_experiment_yaml_files_load():
    for name in ("bc", "dagger"):
        path = os.path.join(REPO, "habitat_configs", "experiments", f"{name}.yaml")
        cfg = config_from_dict(ModelConfig, read_yaml_with_bases(path)["model"], origin=path)
        assert cfg.policy.type == "cma"
