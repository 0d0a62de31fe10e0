"""The defects found by trying the tool from the outside, each through the installed `bench` script, each on a
real file in the real format (a torchvision state_dict, a DFEW layout, result.json files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures_data import write_dfew

from tests.conftest import bench_cli

TINY_SYNTHETIC = ["--set", "data.options.clips_per_class=2", "--set", "data.options.folds=2", "--set",
                  "data.options.resolution=32", "--workers", "0", "--no-progress", "--no-latency"]


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Caught " not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------------------
# weights: the README's --init and --source commands on real state_dict files


@pytest.mark.slow
def test_run_with_k400_init_from_a_real_torchvision_state_dict(tmp_path, data_home):
    from torchvision.models.video import mvit_v2_s

    torch.manual_seed(0)
    source = mvit_v2_s().state_dict()
    path = tmp_path / "mvit_v2_s.pth"
    torch.save(source, path)
    proc = bench_cli(["run", "-m", "ifdd", "-d", "synthetic", "--fold", "1", "--init", f"k400_mvit_v2_s:{path}",
                      "--epochs", "1", "--batch-size", "4", *TINY_SYNTHETIC], tmp_path,
                     {"DFER_DATA_HOME": str(data_home)}, check=True)
    assert "init k400_mvit_v2_s" in proc.stderr
    (result_file,) = (tmp_path / "results" / "runs").rglob("result.json")
    init = json.loads(result_file.read_text())["protocol"]["init"]
    assert init["kind"] == "k400_mvit_v2_s" and init["path"] == str(path) and len(init["sha256"]) == 64
    report = init["report"]
    assert report["loaded"] > 100 and report["unexpected"] == [] and report["mismatched"] == []
    assert "head.1.weight" in report["notes"]["dropped"] and report["notes"]["resized_rel_pos"]  # 32² input


@pytest.mark.slow
def test_eval_with_the_official_ifdd_source(tmp_path, data_home):
    """A checkpoint in the released trainer's format ({'model','opt','epoch'}, DataParallel prefix, released key
    names) evaluates through `bench eval --source ifdd_official`, and equals the port loaded directly."""
    from bench.methods import ifdd

    torch.manual_seed(0)
    port = ifdd.build_ifdd(7, 16, 32)
    released = {"module." + k: v for k, v in ifdd.to_released_names(port.state_dict()).items()}
    path = tmp_path / "IFDD_DFEW_best_val_acc.pth"
    torch.save({"model": released, "opt": {}, "epoch": 37}, path)
    proc = bench_cli(["eval", "--checkpoint", str(path), "-m", "ifdd", "-d", "synthetic", "--fold", "1",
                      "--source", "ifdd_official", "--workers", "0", "--json",
                      *[a for a in TINY_SYNTHETIC if a not in ("--workers", "0", "--no-progress", "--no-latency")]],
                     tmp_path, {"DFER_DATA_HOME": str(data_home)}, check=True)
    ev = json.loads(proc.stdout)
    assert ev["load_report"]["missing"] == [] and ev["load_report"]["unexpected"] == []
    assert ev["load_report"]["notes"]["epoch"] == 37 and ev["load_report"]["loaded"] == len(port.state_dict())
    assert 0.0 <= ev["metrics"]["uar"] <= 1.0 and ev["metrics"]["n_test"] > 0


# ----------------------------------------------------------------------------------------------------------
# data: a frame corrupted after the last check


def _dfew(tmp_path: Path) -> tuple[Path, Path, dict]:
    root = write_dfew(tmp_path, n_clips=10)
    env = {"DFER_BENCH_CACHE": str(tmp_path / "cache"), "DFER_BENCH_CONFIG": str(tmp_path / "none.yaml")}
    first_test_clip = root / "Clip" / "clip_224x224_16f" / "00001"  # fold 1 tests clips 1, 6
    return root, first_test_clip / "7.jpg", env


def test_data_check_finds_a_frame_truncated_after_the_last_check(tmp_path):
    root, frame, env = _dfew(tmp_path)
    check = ["data", "check", "-d", "dfew", "--root", str(root), "--fold", "1"]
    assert bench_cli(check, tmp_path, env).returncode == 0
    frame.write_bytes(frame.read_bytes()[:100])  # `head -c 100`
    again = bench_cli(check, tmp_path, env)
    text = " ".join((again.stdout + again.stderr).split())
    assert again.returncode == 1 and "NOT usable" in text and "7.jpg" in text and "corrupt" in text


@pytest.mark.slow
def test_run_stops_with_one_line_keeps_its_epoch_and_resumes_after_the_fix(tmp_path):
    """The frame is corrupted after the check, so the run meets it in a loader worker during the test evaluation:
    one line (not a worker traceback); the trained epoch is checkpointed before evaluating, and once the frame
    is restored the same command resumes after epoch 1 instead of training again."""
    root, frame, env = _dfew(tmp_path)
    assert bench_cli(["data", "check", "-d", "dfew", "--root", str(root), "--fold", "1"], tmp_path, env).returncode == 0
    good = frame.read_bytes()
    frame.write_bytes(good[:100])
    run = ["run", "-m", "test_tiny", "-d", "dfew", "--root", str(root), "--fold", "1", "--epochs", "1",
           "--batch-size", "2", "--workers", "1", "--no-progress", "--no-latency", "--set", "data.frames=16"]
    line = _one_line_error(bench_cli(run, tmp_path, env))
    assert str(frame) in line and "corrupt" in line
    (ckpt,) = (tmp_path / "results" / "runs").rglob("last.pt")
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1 and state["pending_eval"] is True
    frame.write_bytes(good)
    resumed = bench_cli(run, tmp_path, env, check=True)
    assert "resuming after epoch 1" in resumed.stderr
    (result,) = (tmp_path / "results" / "runs").rglob("result.json")
    lines = [json.loads(x) for x in (result.parent / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["eval"]["uar"] == json.loads(result.read_text())["metrics"]["uar"]


# ----------------------------------------------------------------------------------------------------------
# flags


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "-m", "test_tiny", "--epochs", "0"], "train.epochs=0: must be at least 1"),
    pytest.param(["run", "-m", "test_tiny", "--batch-size", "-4"], "train.batch_size=-4: must be at least 1",
                 marks=pytest.mark.slow),
    pytest.param(["run", "-m", "test_tiny", "--lr", "0"], "optim.lr=0.0: must be positive", marks=pytest.mark.slow),
    (["report", "--results", "no_such_dir"], "no_such_dir: results directory not found"),
])
def test_bad_flag_values_are_one_line_errors(tmp_path, args, expected):
    assert expected in _one_line_error(bench_cli(args, tmp_path))


# ----------------------------------------------------------------------------------------------------------
# listing


@pytest.mark.slow
def test_list_methods_fits_80_columns_and_names_the_ifdd_paper(tmp_path):
    from bench.registry import METHODS

    proc = bench_cli(["list", "methods"], tmp_path, {"COLUMNS": "80"}, check=True)
    lines = proc.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80, max(lines, key=len)
    shown = [n for n in METHODS.names() if METHODS.get(n).family != "test"]
    for name in shown:  # one line per method, variants included
        assert sum(name in ln.replace("└", " ").split() for ln in lines) == 1, name
    assert "test_tiny" not in proc.stdout
    wide = json.loads(bench_cli(["list", "methods", "--json"], tmp_path, check=True).stdout)
    ifdd = next(r for r in wide if r["name"] == "ifdd")
    assert ifdd["paper"] == ('Wang & Chai, "Lifting Scheme-Based Implicit Disentanglement of Emotion-Related '
                             'Facial Dynamics in the Wild", AAAI 2025, arXiv 2412.13168')

