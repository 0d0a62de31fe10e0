"""Where each dataset lives: `--root` flag, then the dataset's environment variable, then the user config file
(`~/.config/dfer-bench/config.yaml`, or $DFER_BENCH_CONFIG) with `roots: {dfew: /data/DFEW}`, then
`$DFER_DATA_HOME/<default_root>` (default `~/dfer-data`)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from bench.api import DatasetInfo
from bench.errors import DataError


def config_path() -> Path:
    return Path(os.environ.get("DFER_BENCH_CONFIG", Path.home() / ".config" / "dfer-bench" / "config.yaml"))


def data_home() -> Path:
    return Path(os.environ.get("DFER_DATA_HOME", Path.home() / "dfer-data"))


def resolve_root(info: DatasetInfo, flag: str | None = None) -> tuple[Path, str]:
    """(root, where it came from)."""
    if flag:
        return Path(flag).expanduser(), "--root"
    if os.environ.get(info.env_var):
        return Path(os.environ[info.env_var]).expanduser(), f"${info.env_var}"
    cfg = config_path()
    if cfg.is_file():
        try:
            roots = (yaml.safe_load(cfg.read_text()) or {}).get("roots", {}) or {}
        except yaml.YAMLError as e:
            raise DataError(f"{cfg}: not valid YAML ({e.__class__.__name__}); fix or delete it") from None
        if info.name in roots:
            return Path(roots[info.name]).expanduser(), str(cfg)
    return data_home() / info.default_root, "default ($DFER_DATA_HOME)"


def is_present(info: DatasetInfo, root: Path) -> bool:
    if info.is_present is not None:
        return bool(info.is_present(root))
    return root.is_dir()


def missing_message(info: DatasetInfo, root: Path, source: str) -> str:
    """What the dataset is, how to get it, the layout expected, and the command to check it."""
    lines = [
        f"{info.title} ({info.name}) not found at {root} (from {source}).",
        f"Set it with --root PATH, ${info.env_var}, or 'roots: {{{info.name}: PATH}}' in {config_path()}.",
    ]
    if info.access:
        lines += ["How to obtain it:", info.access.strip()]
    if info.layout:
        lines += ["Expected layout:", info.layout.rstrip()]
    lines.append(f"Then check it with: bench data check --dataset {info.name} --root PATH")
    return "\n".join(lines)
