"""Published numbers beside reproduced ones: `results/reference/literature.csv` rows, matched to a method by
the row names its registration lists (`register_method(literature=...)`), never typed into code."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.registry import METHODS

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LITERATURE = REPO_ROOT / "results" / "reference" / "literature.csv"
# rows this project added from primary sources (per-fold logs, repository READMEs, tables the survey lacks), same
# columns and conventions; the survey's own file stays a byte-identical copy
ADDED_LITERATURE = REPO_ROOT / "results" / "reference" / "literature_added.csv"
# our dataset name -> the literature CSV's "dataset" string
LITERATURE_DATASETS: dict[str, str] = {"dfew": "DFEW", "ferv39k": "FERV39k", "mafw": "MAFW"}
_KIND_RANK = {"paper": 0, "repo": 1, "secondary": 2, "third-party": 3}


def literature_names(method: str) -> tuple[str, ...]:
    """The literature.csv row names a registered method reproduces (none for an unknown method)."""
    return METHODS.get(method).literature if method in METHODS else ()


def _short_source(source: str) -> str:
    s = re.split(r" \(| - |; |, |'", source or "", maxsplit=1)[0].strip()
    m = re.search(r"Table (\d+)", source or "")
    if m and "Table" not in s:
        s += f" T{m.group(1)}"
    return s[:48]


def load_literature(path: Path | None) -> list[dict]:
    """Rows of literature.csv with numbers parsed (None where empty)."""
    if path is None or not Path(path).is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for i, r in enumerate(csv.DictReader(f)):
            row: dict[str, Any] = dict(r)
            row["_row"] = i
            for k in ("uar", "war", "params_m", "gflops"):
                v = (r.get(k) or "").strip()
                try:
                    row[k] = float(v) if v else None
                except ValueError:
                    row[k] = None
            rows.append(row)
    return rows


def load_reported(paths: Sequence[Path]) -> list[dict]:
    """Rows of a user's own --reported CSVs (literature.csv's columns), in order; a missing file is one line."""
    rows: list[dict] = []
    for path in paths:
        if not Path(path).is_file():
            raise BenchError(f"{path}: --reported file not found (a CSV with the columns of literature.csv)")
        rows += load_literature(Path(path))
    return rows


def load_all_literature(path: Path | None = None) -> list[dict]:
    """The survey's rows (or `path`) followed by the project's added rows."""
    rows = load_literature(path or DEFAULT_LITERATURE)
    return rows + [{**r, "_row": len(rows) + i} for i, r in enumerate(load_literature(ADDED_LITERATURE))]


def _split_rank(split: str) -> int:
    s = (split or "").lower()
    if re.fullmatch(r"fold\s*\d+", s):
        return 2  # a single fold of a 5-fold protocol
    if "pooled" in s:
        return 1  # SVFAP pools predictions over folds: not the mean-over-folds convention
    return 0


def reported_for(method: str, dataset: str, literature: list[dict]) -> dict[str, Any]:
    """Published numbers for (our method, our dataset): the best-ranked row with numbers.

    Ranking: whole-protocol rows before pooled and single-fold ones; then source_kind paper, repo,
    third-party; then CSV order. A missing params/GFLOPs value is taken from the next-ranked row of the
    same method and dataset that has it, and its source is listed too.
    """
    names = literature_names(method)
    lit_dataset = LITERATURE_DATASETS.get(dataset, dataset)
    empty = {"reported_uar": None, "reported_war": None, "reported_params_m": None, "reported_gflops": None,
             "reported_split": "", "reported_source": "", "literature_method": "; ".join(names)}
    if not names:
        return empty
    cands = [r for r in literature if r["method"] in names and r["dataset"] == lit_dataset
             and any(r[k] is not None for k in ("uar", "war", "params_m", "gflops"))]
    if not cands:
        return empty
    cands.sort(key=lambda r: (_split_rank(r["split"]), _KIND_RANK.get(r["source_kind"], 3), r["_row"]))
    acc = next((r for r in cands if r["uar"] is not None or r["war"] is not None), cands[0])
    out = dict(empty)
    out.update(reported_uar=acc["uar"], reported_war=acc["war"], reported_split=acc["split"])
    sources = [acc]
    for k in ("params_m", "gflops"):
        src = next((r for r in [acc, *cands] if r[k] is not None), None)
        out[f"reported_{k}"] = src[k] if src else None
        if src is not None and src not in sources:
            sources.append(src)
    out["reported_source"] = "; ".join(f"{r['source_kind']}: {_short_source(r['source'])}" for r in sources)
    return out


# ----------------------------------------------------------------------------------------------------------
# aggregation
