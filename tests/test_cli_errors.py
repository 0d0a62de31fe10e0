"""Bad input gets one clear line (exit code 2, no traceback) naming what is wrong and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.registry import DATASETS
from tests.conftest import bench_cli


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr  # progress lines may precede it; the error itself is one line
    return lines[0]


def _main(args: list[str], capsys, monkeypatch, cwd: Path) -> subprocess.CompletedProcess:
    """The console entry point in-process (same code path as the `bench` script, without the import cost)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_unknown_method_through_the_installed_script(tmp_path):
    line = _one_line_error(bench_cli(["run", "-m", "r3d1", "-d", "synthetic"], tmp_path))
    assert line.startswith("error: unknown method 'r3d1': did you mean r3d18")


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "-m", "r18lstm", "-d", "synthetic"], "unknown method 'r18lstm': did you mean r18_lstm"),
    (["run", "-m", "r3d18", "-d", "dfwe"], "unknown dataset 'dfwe': did you mean dfew"),
    (["run", "-m", "r3d18", "--set", "optim.lrr=1"], "did you mean lr"),
    (["run", "-m", "r3d18", "--set", "train.epochs=many"], "expected an integer"),
    (["run", "-m", "ifdd", "--protocol", "faithfull"], "did you mean faithful"),
    (["profile", "-m", "nope"], "unknown method 'nope'"),
])
def test_unknown_names_and_keys(tmp_path, capsys, monkeypatch, args, expected):
    line = _one_line_error(_main(args, capsys, monkeypatch, tmp_path))
    assert expected in line


def test_missing_data_folder_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    proc = _main(["run", "-m", "r3d18", "-d", "dfew", "--root", str(tmp_path / "nowhere")], capsys, monkeypatch, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    text = proc.stderr
    assert str(tmp_path / "nowhere") in text and "bench data check --dataset dfew" in text
    assert "dfew-dataset.github.io" in text  # the EULA route


def test_corrupt_frame_names_the_file(tmp_path, capsys, monkeypatch):
    root = tmp_path / "syn"
    options = {"clips_per_class": 3, "folds": 2, "resolution": 32}
    manifest = DATASETS.get("synthetic").build_manifest(root, 1, options)
    clip = next(r for r in manifest.records if r.split == "train")
    frames = sorted((Path(manifest.root) / clip.rel_path).glob("*.jpg"))
    for frame in frames:  # every frame truncated, so whichever the sampler picks is corrupt
        frame.write_bytes(frame.read_bytes()[:40])
    train = [r for r in manifest.records if r.split == "train"]
    args = ["run", "-m", "test_tiny", "-d", "synthetic", "--fold", "1", "--root", str(root), "--epochs", "1",
            "--batch-size", str(len(train)), "--workers", "0", "--no-progress", "--no-latency",
            "--set", "data.size=32", "--set", "data.frames=4"]
    for k, v in options.items():
        args += ["--set", f"data.options.{k}={v}"]
    line = _one_line_error(_main(args, capsys, monkeypatch, tmp_path))
    assert any(str(f) in line for f in frames) and "corrupt" in line
    status = next((tmp_path / "results" / "runs").rglob("status"))
    assert status.read_text().strip() == "failed" and (status.parent / "error.txt").is_file()
    assert not (status.parent / "result.json").exists()  # a failed run never leaves a partial result


def test_report_without_runs_says_what_to_do(tmp_path, capsys, monkeypatch):
    (tmp_path / "results").mkdir()
    proc = _main(["report"], capsys, monkeypatch, tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "no completed result.json under results/runs" in proc.stderr
    assert "bench report --results results/examples" in proc.stderr
