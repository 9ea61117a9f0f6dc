"""Build a NavEnv from a backend config (a flat dict, usually one YAML file under
habitat_configs/): ``{"backend": "houses" | "habitat", "scenes_dir": ..., <constructor
keyword arguments>...}``.

The backend's module is imported only here, when it is selected, so that choosing the
houses backend never touches habitat and vice versa. Keys that a backend config carries
for other readers (its name, the dataset location) are listed in :data:`NON_ENV_KEYS` and
not passed to the constructor; any other key that the backend's constructor does not
accept is an error naming the key and the accepted ones.

:func:`load_backend_config` reads such a YAML file (or gives the houses default for a dataset
directory); evaluation and the trainers both use it.
"""
from __future__ import annotations

import importlib
import inspect
import os
from typing import Any, Dict, Optional, Tuple

from agent.envs.base import NavEnv

#: backend name -> (module, class); modules are imported when the backend is selected
BACKENDS: Dict[str, Tuple[str, str]] = {
    "houses": ("agent.envs.houses.env", "HousesEnv"),
    "habitat": ("agent.envs.habitat_env", "HabitatEnv"),
}

#: backend-config keys read by datasets / evaluation, not by the env constructor
NON_ENV_KEYS = ("name", "data_dir")


class BackendConfigError(ValueError):
    """A backend config names an unknown backend or passes keys its env does not take."""


def backend_env_class(backend: str) -> type:
    """The NavEnv subclass for ``backend`` (imports its module)."""
    if backend not in BACKENDS:
        raise BackendConfigError(f"unknown backend {backend!r}; choose one of "
                                 f"{', '.join(sorted(BACKENDS))}")
    module_name, class_name = BACKENDS[backend]
    return getattr(importlib.import_module(module_name), class_name)


def env_kwargs(backend_cfg: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """``(backend, constructor keyword arguments)`` from a backend config, validated
    against the env class's constructor signature."""
    if "backend" not in backend_cfg:
        raise BackendConfigError(f"backend config has no 'backend' key; choose one of "
                                 f"{', '.join(sorted(BACKENDS))}")
    backend = str(backend_cfg["backend"])
    env_cls = backend_env_class(backend)
    params = inspect.signature(env_cls.__init__).parameters
    accepted = [n for n, p in params.items()
                if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    kwargs = {k: v for k, v in backend_cfg.items() if k != "backend" and k not in NON_ENV_KEYS}
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        raise BackendConfigError(
            f"backend {backend!r}: unknown config keys {unknown}; {env_cls.__name__} accepts "
            f"{accepted} (and {list(NON_ENV_KEYS)} for other readers)")
    missing = [n for n in accepted if params[n].default is inspect.Parameter.empty
               and n not in kwargs]
    if missing:
        raise BackendConfigError(f"backend {backend!r}: config lacks required keys {missing}")
    return backend, kwargs


def make_env(backend_cfg: Dict[str, Any]) -> NavEnv:
    """Construct the environment a backend config describes.

    Raises :class:`BackendConfigError` for an unknown backend or key; the habitat backend
    raises ``HabitatUnavailableError`` (an ImportError) when habitat-sim is missing.
    """
    backend, kwargs = env_kwargs(backend_cfg)
    env_cls = backend_env_class(backend)
    # sequences from YAML arrive as lists; constructors take tuples for 'sensors'
    if isinstance(kwargs.get("sensors"), list):
        kwargs["sensors"] = tuple(kwargs["sensors"])
    return env_cls(**kwargs)


def houses_backend_config(data_dir: str, width: int = 128, height: int = 128) -> Dict[str, Any]:
    """The houses backend over the scenes of dataset ``data_dir``."""
    return {"backend": "houses", "scenes_dir": os.path.join(data_dir, "scenes"),
            "width": width, "height": height}


def load_backend_config(path: Optional[str], data_dir: Optional[str], **defaults: Any) -> Dict[str, Any]:
    """The backend YAML (habitat or houses), or the houses default for ``data_dir``."""
    if path is None:
        if data_dir is None:
            raise ValueError("--data DIR is required (or a --backend-config naming data_dir)")
        return houses_backend_config(data_dir, **defaults)
    import yaml

    try:
        with open(path) as f:
            cfg = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"backend config not found: {path}") from None
    if not isinstance(cfg, dict) or "backend" not in cfg:
        raise ValueError(f"backend config {path} must be a mapping with a 'backend' key")
    return cfg
