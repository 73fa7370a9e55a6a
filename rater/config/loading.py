"""Loading: one TOML file read into the sections, checked key by key, then the environment.

Secrets and URLs can come from the environment (`RATER_DATABASE_URL`, `RATER_REDIS_URL`,
`RATER_ESL_PASSWORD`), which wins over the file. Errors name the key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from rater.config.sanity import validate
from rater.config.sections import Config
from rater.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/rater.toml")


def load_config(
    path: str | Path | None = None, env: typing.Mapping[str, str] | None = None
) -> Config:
    """Read and validate a TOML file (None: defaults only), then apply the environment."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    cfg = _build(Config, raw, "")
    cfg = _apply_env(cfg, env)
    validate(cfg)
    return cfg


def _apply_env(cfg: Config, env: typing.Mapping[str, str]) -> Config:
    if env.get("RATER_REDIS_URL"):
        redis_cfg = dataclasses.replace(cfg.redis, url=env["RATER_REDIS_URL"])
        cfg = dataclasses.replace(cfg, redis=redis_cfg)
    if env.get("RATER_DATABASE_URL"):
        cfg = dataclasses.replace(
            cfg, database=dataclasses.replace(cfg.database, url=env["RATER_DATABASE_URL"])
        )
    if env.get("RATER_ESL_PASSWORD"):
        nodes = tuple(
            dataclasses.replace(n, password=env["RATER_ESL_PASSWORD"]) for n in cfg.freeswitch
        )
        cfg = dataclasses.replace(cfg, freeswitch=nodes)
    return cfg


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(hints[name], value, key)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, dict):  # a single [freeswitch] table
            value = [value]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{key}: expected a non-empty list of tables")
        return tuple(_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{key}: expected a table of strings")
        return dict(value)
    if isinstance(origin, type) and issubclass(origin, types.UnionType):  # pragma: no cover
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {tp}")  # pragma: no cover
