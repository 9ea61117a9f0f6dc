"""Typed, frozen experiment configuration: dataclasses + YAML + dotted overrides.

One frozen dataclass per entry point / section, every field with a one-line help text
(``config_field(default, help="...")``), which :func:`format_help` prints as ``--help``.

Loading (:func:`load_config`):

1. the YAML file, after the files named by its optional ``_base_`` key (a path or a
   list of paths relative to the file) have been merged underneath it, recursively;
2. dotted overrides ``a.b.c=value``; ``value`` is parsed as YAML (``3``, ``1.0e-4``,
   ``[64, 64]``, ``null``, ``{hidden_size: 256}``), except that a field typed ``str`` takes
   the text literally (YAML would read ``yes`` as a bool);
3. the merged mapping is checked against the dataclasses: an unknown key is an error that
   names the full dotted key, the file or override it came from and close matches; a
   value of the wrong type is an error naming key, expected type and source.

Supported field types: ``int``, ``float`` (ints are widened; strings such as ``1e-4``,
which PyYAML reads as ``str``, are parsed), ``str``, ``bool``, ``Optional[X]``,
``Literal[...]``, ``List[X]`` / ``Tuple[X, ...]`` (stored as tuples, so a built config
cannot be changed in place) and nested config dataclasses. Config dataclasses must be
``frozen=True``; derive changed copies with ``dataclasses.replace``.

Checkpoints store :func:`config_to_dict` and rebuild with :func:`config_from_dict`.
The model sections live here (:class:`ModelConfig`); the training entry point's root
config, which nests ``model``, is ``agent.algos.config.TrainConfig``.
This module imports neither torch nor anything heavy.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Type, TypeVar

import yaml

__all__ = [
    "ConfigError", "config_field", "config_section", "load_config", "config_from_dict",
    "config_to_dict", "config_to_yaml", "format_help", "all_config_keys", "read_yaml_with_bases",
    "InstructionEncoderConfig", "RGBEncoderConfig", "DepthEncoderConfig", "PolicyConfig",
    "ModelConfig", "GoalGeneratorModelConfig",
]

T = TypeVar("T")
BASE_KEY = "_base_"
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.I)


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, wrong type, bad YAML)."""


# --------------------------------------------------------------------------- field helpers

def config_field(default: Any = dataclasses.MISSING, *, help: str,
                 default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field carrying its one-line ``help`` text (shown by :func:`format_help`).

    List defaults must be given as tuples (configs are immutable)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError(f"config_field default {default!r} is mutable; use a tuple")
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"help": help})


def config_section(section_cls: type, *, help: str) -> Any:
    """A nested config section, default-constructed from ``section_cls``."""
    return dataclasses.field(default_factory=section_cls, metadata={"help": help})


# --------------------------------------------------------------------------- type handling

_HINT_CACHE: Dict[type, Dict[str, Any]] = {}


def _field_types(cls: type) -> Dict[str, Any]:
    """Resolved annotations of a config dataclass (works with postponed annotations)."""
    if cls not in _HINT_CACHE:
        if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
            raise TypeError(f"{cls!r} is not a dataclass type")
        if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"config class {cls.__name__} must be @dataclass(frozen=True)")
        _HINT_CACHE[cls] = typing.get_type_hints(cls)
    return _HINT_CACHE[cls]


def _is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _optional_inner(tp: Any) -> Tuple[bool, Any]:
    """``(True, X)`` for ``Optional[X]``, else ``(False, tp)``."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != len(typing.get_args(tp)) and len(args) == 1:
            return True, args[0]
        raise TypeError(f"unsupported Union type {tp!r} in a config (only Optional[X])")
    return False, tp


def _type_name(tp: Any) -> str:
    optional, inner = _optional_inner(tp)
    if optional:
        return f"Optional[{_type_name(inner)}]"
    origin = typing.get_origin(inner)
    if origin is Literal:
        return "one of " + "|".join(repr(a) for a in typing.get_args(inner))
    if origin in (list, tuple):
        return f"list[{_type_name(typing.get_args(inner)[0])}]"
    if _is_config_class(inner):
        return "section"
    return getattr(inner, "__name__", repr(inner))


class _Source:
    """Remembers which file or override set each dotted key (for error messages)."""

    def __init__(self) -> None:
        self.by_key: Dict[str, str] = {}

    def record(self, mapping: Any, origin: str, prefix: str = "") -> None:
        if isinstance(mapping, dict):
            for k, v in mapping.items():
                self.record(v, origin, f"{prefix}{k}.")
        self.by_key[prefix.rstrip(".")] = origin

    def of(self, dotted: str) -> str:
        dotted = re.sub(r"\[\d+\]", "", dotted)  # a list element comes from its list's source
        if dotted in self.by_key:
            return self.by_key[dotted]
        for key, origin in self.by_key.items():
            if key.startswith(dotted + "."):
                return origin
        return "<defaults>"


def _coerce(value: Any, tp: Any, key: str, source: _Source, root: type) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists → tuples)."""
    optional, inner = _optional_inner(tp)
    if value is None:
        if optional:
            return None
        raise _type_error(key, value, tp, source)
    if _is_config_class(inner):
        if isinstance(value, inner):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' is a section and needs a mapping, got "
                              f"{value!r} (from {source.of(key)})")
        return _build(inner, value, key + ".", source, root)
    origin = typing.get_origin(inner)
    if origin is Literal:
        if value in typing.get_args(inner) and type(value) is not bool:
            return value
        raise _type_error(key, value, tp, source)
    if origin in (list, tuple):
        args = typing.get_args(inner)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"config key '{key}': use Tuple[X, ...], not {inner!r}")
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, value, tp, source)
        return tuple(_coerce(v, args[0], f"{key}[{i}]", source, root)
                     for i, v in enumerate(value))
    return _coerce_scalar(value, inner, tp, key, source)


def _coerce_scalar(value: Any, inner: Any, tp: Any, key: str, source: _Source) -> Any:
    if inner is bool:
        if isinstance(value, bool):
            return value
    elif inner is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif inner is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML (YAML 1.1) reads "1e-4" as a string; it is unambiguously a float here.
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            return float(value)
    elif inner is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"config key '{key}': unsupported annotation {tp!r}")
    raise _type_error(key, value, tp, source)


def _type_error(key: str, value: Any, tp: Any, source: _Source) -> ConfigError:
    return ConfigError(f"config key '{key}' expects {_type_name(tp)}, got {value!r} "
                       f"({type(value).__name__}) from {source.of(key)}")


# --------------------------------------------------------------------------- building

def all_config_keys(cls: type, prefix: str = "") -> List[str]:
    """Every dotted key of a config class, sections included, depth first."""
    keys: List[str] = []
    for name, tp in _field_types(cls).items():
        dotted = prefix + name
        keys.append(dotted)
        inner = _optional_inner(tp)[1]
        if _is_config_class(inner):
            keys.extend(all_config_keys(inner, dotted + "."))
    return keys


def _unknown_key_error(dotted: str, source: _Source, root: type) -> ConfigError:
    close = difflib.get_close_matches(dotted, all_config_keys(root), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown config key '{dotted}' in {source.of(dotted)}{hint} "
                       f"(see --help-config for all keys of {root.__name__})")


def _build(cls: Type[T], mapping: Dict[str, Any], prefix: str, source: _Source,
           root: type) -> T:
    types = _field_types(cls)
    for key in mapping:
        if not isinstance(key, str) or key not in types:
            raise _unknown_key_error(f"{prefix}{key}", source, root)
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        dotted = prefix + f.name
        if f.name in mapping:
            kwargs[f.name] = _coerce(mapping[f.name], types[f.name], dotted, source, root)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"required config key '{dotted}' is missing "
                              f"({_help_of(f)}); set it in the YAML or as {dotted}=...")
    return cls(**kwargs)


def _deep_merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    """``top`` over ``base``; mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml_tree(path: str, source: _Source, stack: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """A YAML file with its ``_base_`` files merged underneath, recursively."""
    path = os.path.abspath(path)
    if path in stack:
        raise ConfigError(f"_base_ cycle: {' -> '.join(stack + (path,))}")
    if not os.path.isfile(path):
        where = f" (named in _base_ of {stack[-1]})" if stack else ""
        raise FileNotFoundError(f"config file not found: {path}{where}")
    with open(path, "r", encoding="utf-8") as fh:
        try:
            content = yaml.safe_load(fh)
        except yaml.YAMLError as e:
            raise ConfigError(f"cannot parse YAML {path}: {e}") from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(content).__name__}")
    bases = content.pop(BASE_KEY, None)
    if isinstance(bases, str):
        bases = [bases]
    if bases is not None and not (isinstance(bases, list)
                                  and all(isinstance(b, str) for b in bases)):
        raise ConfigError(f"{BASE_KEY} in {path} must be a path or a list of paths")
    merged: Dict[str, Any] = {}
    for base in bases or ():
        base_path = os.path.join(os.path.dirname(path), base)
        merged = _deep_merge(merged, _read_yaml_tree(base_path, source, stack + (path,)))
    source.record(content, path)
    return _deep_merge(merged, content)


def read_yaml_with_bases(path: str) -> Dict[str, Any]:
    """The mapping of a YAML config file with its ``_base_`` files merged in (unchecked)."""
    return _read_yaml_tree(path, _Source())


def _field_type_at(cls: type, dotted: str) -> Optional[Any]:
    """Annotation of ``dotted`` inside ``cls``, or None if the key does not exist."""
    tp: Any = cls
    for part in dotted.split("."):
        inner = _optional_inner(tp)[1]
        if not _is_config_class(inner) or part not in _field_types(inner):
            return None
        tp = _field_types(inner)[part]
    return tp


def _apply_override(cls: type, mapping: Dict[str, Any], override: str,
                    source: _Source) -> Dict[str, Any]:
    key, eq, text = override.partition("=")
    key = key.strip()
    origin = f"command-line override '{override}'"
    if not eq or not key:
        raise ConfigError(f"override '{override}' must look like a.b.c=value")
    tp = _field_type_at(cls, key)
    if tp is None:
        source.by_key[key] = origin
        raise _unknown_key_error(key, source, cls)
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse the value of {origin}: {e}") from None
    if _optional_inner(tp)[1] is str and value is not None and not isinstance(value, str):
        value = text  # a str field takes the text as written ("yes", "1.0", "007")
    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    source.record(nested, origin)
    return _deep_merge(mapping, nested)


def load_config(cls: Type[T], yaml_path: Optional[str] = None,
                overrides: Sequence[str] = ()) -> T:
    """Build a frozen ``cls`` from defaults, ``yaml_path`` (with ``_base_``) and overrides.

    Raises ConfigError naming the dotted key and its file/override on an unknown key or a
    value of the wrong type; FileNotFoundError for a missing file."""
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of 'a.b=value' strings, not one string")
    source = _Source()
    mapping = _read_yaml_tree(yaml_path, source) if yaml_path is not None else {}
    for override in overrides:
        mapping = _apply_override(cls, mapping, override, source)
    return _build(cls, mapping, "", source, cls)


def config_from_dict(cls: Type[T], mapping: Dict[str, Any], origin: str = "<dict>") -> T:
    """Rebuild a config from :func:`config_to_dict` output (e.g. stored in a checkpoint)."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"config from {origin} must be a mapping, got {type(mapping).__name__}")
    source = _Source()
    source.record(mapping, origin)
    return _build(cls, mapping, "", source, cls)


def config_to_dict(cfg: Any) -> Dict[str, Any]:
    """Plain nested dict of a config (tuples become lists), YAML/JSON/torch.save friendly."""
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        raise TypeError(f"config_to_dict needs a config instance, got {type(cfg).__name__}")

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(cfg)


def config_to_yaml(cfg: Any) -> str:
    """The config as YAML text that :func:`load_config` reads back to an equal config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)


def _help_of(f: dataclasses.Field) -> str:
    text = f.metadata.get("help")
    if not text:
        raise TypeError(f"config field '{f.name}' has no help text; use config_field(help=...)")
    return text


def format_help(cls: type, prefix: str = "") -> str:
    """Every dotted key with its type, default and help line (the ``--help-config`` text)."""
    lines: List[str] = []
    types = _field_types(cls)
    for f in dataclasses.fields(cls):
        dotted, tp = prefix + f.name, types[f.name]
        inner = _optional_inner(tp)[1]
        if _is_config_class(inner):
            lines.append(f"{dotted}:  [{inner.__name__}] {_help_of(f)}")
            lines.append(format_help(inner, dotted + "."))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(list(f.default) if isinstance(f.default, tuple) else f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "REQUIRED"
        lines.append(f"  {dotted} ({_type_name(tp)}, default {default})\n      {_help_of(f)}")
    return "\n".join(lines)


# =========================================================================== model configs

@dataclasses.dataclass(frozen=True)
class InstructionEncoderConfig:
    """How an instruction becomes features: GloVe/LSTM over the checkpoint's vocabulary ids,
    or a pretrained text transformer (BERT family, CLIP, any AutoModel text encoder) over its
    own tokenizer's pieces of the instruction text."""

    type: Literal["glove_lstm", "transformer"] = config_field(
        "glove_lstm", help="glove_lstm: GloVe-50d + LSTM (VLN-CE); transformer: a pretrained "
                           "text encoder (BERT family, CLIP text tower, any AutoModel text model)")
    name: str = config_field(
        "minilm", help="transformer: 'minilm' (offline package), a Hugging Face hub id (e.g. "
                       "openai/clip-vit-base-patch32, bert-base-uncased) or a local dir")
    input: Literal["text", "vocab_table"] = config_field(
        "text", help="transformer: text = its own tokenizer reads the instruction text (words "
                     "outside the dataset vocabulary keep their meaning); vocab_table = the "
                     "dataset words' pieces via a table (checkpoints made before text input)")
    overflow: Literal["windows", "truncate"] = config_field(
        "windows", help="transformer: an instruction longer than the model's limit (CLIP: 77 "
                        "tokens) is encoded in consecutive windows (features concatenated, "
                        "sentence = mean of the windows') or cut; both are counted")
    freeze: bool = config_field(
        True, help="transformer: keep its weights fixed (encodings are then cached per instruction)")
    max_length: int = config_field(
        512, help="transformer: tokens per window incl. special tokens (capped by the model's "
                  "own limit, e.g. 77 for CLIP)")
    cache_size: int = config_field(
        16384, help="transformer (frozen): distinct instructions kept encoded (~60 KB each)")
    hidden_size: int = config_field(128, help="glove_lstm: LSTM hidden size per direction")
    bidirectional: bool = config_field(True, help="glove_lstm: bidirectional LSTM")
    freeze_embeddings: bool = config_field(True, help="glove_lstm: keep the GloVe vectors fixed")


@dataclasses.dataclass(frozen=True)
class RGBEncoderConfig:
    """ImageNet MobileNetV2 over RGB frames (frozen by default, so features can be cached)."""

    weights: Optional[str] = config_field(
        None, help="torchvision MobileNetV2 state dict (.pth); null = the offline weights package")
    freeze: bool = config_field(True, help="keep the backbone fixed and in eval mode")
    output_size: int = config_field(256, help="size of the pooled RGB projection")
    layers: Tuple[int, ...] = config_field(
        (19,), help="MobileNetV2 features[:k] outputs concatenated into the spatial map (19 = "
                    "whole backbone, 1280 ch at stride 32; 7 = 32 ch at stride 8; 14 = 96 ch "
                    "at stride 16)")
    grid_size: Optional[int] = config_field(
        None, help="average-pool every layer to grid_size x grid_size; null = native grids "
                   "(which must agree)")


@dataclasses.dataclass(frozen=True)
class DepthEncoderConfig:
    """Small CNN over depth (metres / 10), trained from scratch or from a point-goal run."""

    channels: Tuple[int, ...] = config_field(
        (32, 64, 64), help="output channels of the conv layers (habitat-baselines SimpleCNN)")
    kernel_sizes: Optional[Tuple[int, ...]] = config_field(
        None, help="kernel size per conv layer; null = 8, 4, then 3s (SimpleCNN)")
    strides: Optional[Tuple[int, ...]] = config_field(
        None, help="stride per conv layer; null = 4, 2, then 1s (SimpleCNN)")
    spatial_size: int = config_field(4, help="spatial grid (s x s) the depth features are pooled to")
    output_size: int = config_field(128, help="size of the pooled depth vector")
    weights: Optional[str] = config_field(
        None, help="start the depth CNN from this run's checkpoint (e.g. a point-goal run: "
                   "its depth_encoder.cnn weights); null = trained from scratch")
    freeze: bool = config_field(
        False, help="keep the depth CNN fixed (VLN-CE freezes its point-goal depth encoder); "
                    "needs weights")


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """The recurrent actor-critic over encoded observations."""

    type: Literal["cma", "seq2seq"] = config_field(
        "cma", help="cma: cross-modal attention (VLN-CE CMA); seq2seq: concat -> GRU")
    hidden_size: int = config_field(512, help="GRU hidden size")
    prev_action_embedding_size: int = config_field(32, help="previous-action embedding size")
    instruction_blind: bool = config_field(
        False, help="control experiment: every instruction is replaced by an empty one")
    feature_dropout: float = config_field(
        0.0, help="environmental dropout (R2R-EnvDrop): in supervised training, drop this "
                  "fraction of the RGB feature channels with one mask per episode, so start "
                  "views cannot be memorised in place of reading the instruction; off in eval "
                  "and in PPO updates")
    point_goal: bool = config_field(
        False, help="privileged diagnostic: feed the goal's distance and bearing in the "
                    "agent's frame (with instruction_blind: a point-goal agent, the ceiling of "
                    "perception + control); never for a VLN result")
    progress_monitor: bool = config_field(
        False, help="auxiliary head predicting the share of the path walked (Ma et al. 2019, "
                    "VLN-CE's progress monitor), trained with bc.progress_coef")
    room_heads: bool = config_field(
        False, help="auxiliary heads predicting the type and wall colour of the room the agent "
                    "stands in (labels from the houses' floor plans), trained with bc.room_coef")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Every network of an agent."""

    instruction_encoder: InstructionEncoderConfig = config_section(
        InstructionEncoderConfig, help="instruction encoder")
    rgb_encoder: RGBEncoderConfig = config_section(RGBEncoderConfig, help="RGB encoder")
    depth_encoder: DepthEncoderConfig = config_section(DepthEncoderConfig, help="depth encoder")
    policy: PolicyConfig = config_section(PolicyConfig, help="recurrent policy")


@dataclasses.dataclass(frozen=True)
class GoalGeneratorModelConfig:
    """The variational goal generator (agent/models/goal_generator.py): a conditional VAE
    over instructions given an expert trajectory."""

    rgb_pool: int = config_field(
        2, help="the stored RGB features (C, h, w) are average-pooled to rgb_pool x rgb_pool "
                "per step (C * rgb_pool^2 inputs)")
    depth_pool: int = config_field(
        4, help="depth (metres / 10) average-pooled to depth_pool x depth_pool per step")
    action_embedding_size: int = config_field(16, help="embedding of the step's action")
    hidden_size: int = config_field(
        256, help="trajectory encoder (bidirectional GRU: hidden_size/2 per direction), "
                  "instruction encoder and decoder GRU size")
    word_embedding_size: int = config_field(128, help="word embedding (encoder and decoder)")
    latent_size: int = config_field(16, help="dimensions of the latent z")
    attention: bool = config_field(
        True, help="the decoder attends over the trajectory encoder's steps (else it sees "
                   "only the trajectory summary and z)")
    dropout: float = config_field(0.1, help="dropout on the decoder's outputs in training")
    max_length: int = config_field(
        120, help="words generated at most (training targets longer than this are cut)")
