"""End to end through the real CLI, per official-layout fixture: `bench data check`, `bench run` of the tiny
registered method `test_tiny`, then `bench report` over the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_data import write_dfew, write_ferv39k, write_mafw

from tests.conftest import bench_cli

pytestmark = pytest.mark.slow


RUN = ["--epochs", "1", "--batch-size", "2", "--set", "data.size=32", "--set", "data.frames=8", "--workers", "0",
       "--no-latency", "--no-progress"]


def _env(tmp: Path) -> dict:
    return {"DFER_BENCH_CACHE": str(tmp / "cache"), "DFER_BENCH_CONFIG": str(tmp / "none.yaml")}


def _check_and_run(tmp: Path, work: Path, dataset: str, root: Path, fold: str | None,
                   options: list[str] | None = None) -> dict:
    """`bench data check` (must be usable, exit 0) then `bench run`; returns the run's result.json."""
    fold_args = ["--fold", fold] if fold else []
    opts = options or []
    chk = bench_cli(["data", "check", "--dataset", dataset, "--root", str(root), "--json", *fold_args,
                 *[x for o in opts for x in ("-o", o)]], work, _env(tmp))
    assert chk.returncode == 0, chk.stdout + chk.stderr
    report = json.loads(chk.stdout)
    assert report["usable"] and report["folds"][0]["splits"]["test"]["found"] > 0
    before = set((work / "results").rglob("result.json"))
    run = bench_cli(["run", "-m", "test_tiny", "-d", dataset, "--root", str(root), *fold_args, *RUN,
                 *[x for o in opts for x in ("--set", f"data.options.{o}")]], work, _env(tmp))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    new = set((work / "results").rglob("result.json")) - before
    assert len(new) == 1
    return json.loads(new.pop().read_text())


def _report(tmp: Path, work: Path, n_results: int) -> None:
    rep = bench_cli(["report", "--results", "results", "--out", "reports", "--no-plots"], work, _env(tmp))
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    assert len(list((work / "results").rglob("result.json"))) == n_results
    assert any((work / "reports").rglob("*.md")) or any((work / "reports").rglob("*.csv"))


def test_e2e_dfew_16f_and_original_mp4(tmp_path: Path) -> None:
    """Unpadded 1..16.jpg names, a label-0 row, an extra nesting level; then the same clips as mp4 (PyAV)
    read through decord (variant=original)."""
    root = write_dfew(tmp_path, n_clips=10, variants=("clip_224x224_16f", "original"), nested=True)
    work = tmp_path / "work"
    work.mkdir()
    res = _check_and_run(tmp_path, work, "dfew", root, "1")
    assert "16001" in json.dumps(res)  # the dropped label-0 row is reported with the run
    _check_and_run(tmp_path, work, "dfew", root, "1", ["variant=original"])
    _report(tmp_path, work, 2)


def test_e2e_ferv39k(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _check_and_run(tmp_path, work, "ferv39k", write_ferv39k(tmp_path, per_class=1), None)
    _report(tmp_path, work, 1)


def test_e2e_mafw_png(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _check_and_run(tmp_path, work, "mafw", write_mafw(tmp_path, per_class=0), "1")
    _report(tmp_path, work, 1)


def test_run_with_wrong_root_is_one_line(tmp_path: Path) -> None:
    """A FERV39k root given for dfew: one line saying what the root looks like, exit 2, no traceback."""
    ferv = write_ferv39k(tmp_path, per_class=0)
    run = bench_cli(["run", "-m", "test_tiny", "-d", "dfew", "--fold", "1", "--root", str(ferv), *RUN], tmp_path, _env(tmp_path))
    out = run.stdout + run.stderr
    assert run.returncode == 2 and "Traceback" not in out and "looks like FERV39k" in " ".join(out.split())
