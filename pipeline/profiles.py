"""Profiles: short files of overrides (``profiles/<name>.yaml``) on the default ``params.yaml``.

``pipeline profile paper`` merges ``profiles/paper.yaml`` into ``params.yaml`` in place (blocks
merged key by key, lists and values replaced, comments kept), so DVC, ``dvc exp run -S`` and
every stage keep reading the one params file. A key the params file does not have is an error
(a typo would otherwise be ignored). ``git checkout params.yaml`` returns to the default.
"""
from __future__ import annotations

import io
from pathlib import Path

from .config import ConfigError, load_params, yaml_problem
from .files import atomic_write_bytes


def _merge(target, overrides, where: str, changed: list[str]) -> None:
    for key, value in overrides.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in target:
            raise ConfigError(f"{name}: not a key of the params file (known: {', '.join(map(str, target))})")
        if isinstance(value, dict) and isinstance(target[key], dict):
            _merge(target[key], value, name, changed)
        elif target[key] != value:
            target[key] = value
            changed.append(name)


def apply_profile(profile: str | Path, params: str | Path = Path("params.yaml")) -> list[str]:
    """Merge a profile (a name under ``profiles/`` or a file) into ``params``; returns the keys changed."""
    from ruamel.yaml import YAML, YAMLError

    path = Path(profile)
    if not path.suffix:
        path = Path(params).parent / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (Path(params).parent / "profiles").glob("*.yaml"))
        raise ConfigError(f"{path}: no such profile (known: {', '.join(known) or 'none'})")
    yaml = YAML()
    yaml.width = 4096      # never re-wrap the long flow-style lines of params.yaml
    load_params(params)    # the params file must exist and be a mapping (errors name it)
    doc = yaml.load(Path(params).read_text())
    try:
        overrides = yaml.load(path.read_text()) or {}
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: a profile is a mapping of params blocks")
    changed: list[str] = []
    _merge(doc, overrides, "", changed)
    out = io.StringIO()
    yaml.dump(doc, out)
    atomic_write_bytes(params, out.getvalue().encode())
    return changed
