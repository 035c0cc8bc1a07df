"""Reading a job config from TOML (with clear errors) and writing the resolved config back."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from mtrs.config.models import JobConfig
from mtrs.errors import MtrsUserError
from mtrs.outdir import write_text


def _format_validation_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key '{loc}' (check its spelling)"
    if kind == "missing":
        return f"{source}: missing required key '{loc}'"
    msg = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        return f"{source}: {msg}"  # a cross-check: the message names its keys
    return f"{source}: {loc}: {msg}"


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> JobConfig:
    """Validate a parsed config mapping.

    Args:
        raw: The parsed TOML tables.
        source: Name used in error messages (usually the file path).

    Returns:
        The validated job config.

    Raises:
        MtrsUserError: On any unknown, missing or invalid key.
    """
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as err:
        raise MtrsUserError(_format_validation_error(source, err)) from None


def load_config(path: str | Path) -> JobConfig:
    """Load and validate a TOML job config; data paths become absolute.

    Args:
        path: The TOML file. Relative data paths are resolved against its directory.

    Returns:
        The validated job config with absolute data paths.

    Raises:
        MtrsUserError: If the file is missing, is not TOML, or fails validation.
    """
    p = Path(path)
    if not p.is_file():
        raise MtrsUserError(f"{p}: config file not found")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise MtrsUserError(f"{p}: not valid TOML ({err})") from None
    cfg = config_from_dict(raw, str(p))
    base = p.resolve().parent
    data = cfg.data
    for key in ("interactions", "train", "valid", "test", "users", "items"):
        value = getattr(data, key)
        if value is not None and not Path(value).is_absolute():
            setattr(data, key, str((base / value).resolve()))
    return cfg


def override(cfg: JobConfig, values: Mapping[str, Any], source: str = "<config>") -> JobConfig:
    """A copy of a config with dotted keys set (command-line options), validated again.

    Every check of a config file runs on the result, so an option cannot bring in what the
    file could not (an unknown metric, ``epochs = 0``, ESMM's missing funnel).

    Args:
        cfg: The validated config.
        values: Dotted key (``"train.seed"``) → new value.
        source: Name used in error messages (usually the file path).

    Returns:
        The new config; ``cfg`` is left as it was.

    Raises:
        MtrsUserError: If a key is unknown or the result fails validation.
    """
    raw = cfg.model_dump()
    for key, value in values.items():
        *tables, leaf = key.split(".")
        table: Any = raw
        for name in tables:
            table = table.get(name)
            if not isinstance(table, dict):
                raise MtrsUserError(f"{source}: unknown key '{key}'")
        table[leaf] = value
    return config_from_dict(raw, source)


def config_to_dict(cfg: JobConfig) -> dict[str, Any]:
    """The config as plain TOML-ready data (``None`` values dropped)."""
    return cfg.model_dump(mode="json", exclude_none=True)


def dump_config(cfg: JobConfig, path: str | Path) -> None:
    """Write the resolved config (every default filled in) as TOML, atomically."""
    write_text(path, tomli_w.dumps(config_to_dict(cfg)))
