"""`bench data verify`: is this prepared dataset the one the papers used? A fingerprint compared with the release
(bench/data/fingerprint.py), a released checkpoint evaluated on the user's fold under its method's official test
protocol and compared with its published per-fold number, and a diagnosis when the two disagree.

The verdict uses bench/stats.py: the published number inside the checkpoint's 95% interval (a stratified
bootstrap over the evaluated test videos) `matches`; otherwise `N points below (or above), beyond sampling noise: a
preparation difference`. The diagnosis re-evaluates the same checkpoint under the preparation mistakes the
official repositories' issue threads keep meeting, each applied to the test views before normalisation or as a
spec change: colour channels swapped (BGR), frame order reversed, a tighter or looser face crop, [0, 1] input
vs mean/std normalisation, and (DFEW) the other frame variant read as if it were this one. An alternative
`closes the gap` when its interval holds the published number and it beats the data as prepared in a paired
randomisation test (p < 0.05). What no switch can undo (another resolution, a missing class, other clips) is
for the fingerprint to show. `--quick` evaluates a stratified subset of the test videos.
"""

from __future__ import annotations

import copy
import json
import platform
import random
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from bench import stats
from bench.data.fingerprint import compare as compare_fingerprint
from bench.data.fingerprint import fingerprint, reference_for
from bench.errors import BenchError
from bench.registry import DATASETS, METHODS
from bench.store import atomic_write_json, atomic_write_text

QUICK_VIDEOS = 300
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


# ----------------------------------------------------------------------------------------------------------
# preparation alternatives (view hooks get (C, T, H, W) in [0, 1], before normalisation)


def swap_rb(x: torch.Tensor, record=None) -> torch.Tensor:
    return x.flip(0)


def reverse_time(x: torch.Tensor, record=None) -> torch.Tensor:
    return x.flip(1)


def zoom(x: torch.Tensor, record=None, scale: float = 1.0) -> torch.Tensor:
    """scale > 1: the central 1/scale of the frame resized back (a tighter face crop); < 1: the frame shrunk
    into a border of its own edge pixels (a looser crop)."""
    c, t, h, w = x.shape
    frames = x.permute(1, 0, 2, 3)
    if scale > 1:
        ch, cw = round(h / scale), round(w / scale)
        top, left = (h - ch) // 2, (w - cw) // 2
        out = F.interpolate(frames[:, :, top:top + ch, left:left + cw], size=(h, w), mode="bilinear",
                            align_corners=False, antialias=True)
    else:
        sh, sw = round(h * scale), round(w * scale)
        small = F.interpolate(frames, size=(sh, sw), mode="bilinear", align_corners=False, antialias=True)
        top, left = (h - sh) // 2, (w - sw) // 2
        out = F.pad(small, (left, w - sw - left, top, h - sh - top), mode="replicate")
    return out.permute(1, 0, 2, 3).clamp(0, 1)


def tighter(x: torch.Tensor, record=None) -> torch.Tensor:
    return zoom(x, scale=1.25)


def looser(x: torch.Tensor, record=None) -> torch.Tensor:
    return zoom(x, scale=0.8)


def alternatives(spec, dataset: str, root: Path) -> list[dict[str, Any]]:
    """The preparation alternatives that apply to this spec: name, what it undoes, a view hook or spec changes."""
    out: list[dict[str, Any]] = [
        {"name": "bgr", "undoes": "colour channels stored as BGR (OpenCV's order)", "hook": swap_rb},
        {"name": "reversed", "undoes": "frames numbered or sorted in reverse order", "hook": reverse_time},
        {"name": "tighter_crop", "undoes": "face crops with a wider margin than the release's", "hook": tighter},
        {"name": "looser_crop", "undoes": "face crops tighter than the release's", "hook": looser},
    ]
    if spec.data.mean is None:
        out.append({"name": "mean_std", "undoes": "frames stored or fed after ImageNet mean/std normalisation "
                    "where the method reads [0, 1]", "data": {"mean": IMAGENET[0], "std": IMAGENET[1]}})
    else:
        out.append({"name": "unit_range", "undoes": "a method trained on [0, 1] pixels fed mean/std-normalised "
                    "frames", "data": {"mean": None, "std": None}})
    if dataset == "dfew":
        from bench.datasets.dfew import DEFAULT_VARIANT, VARIANTS

        now = VARIANTS.get(str(spec.data.options.get("variant", DEFAULT_VARIANT)).lower())
        other = "clip_224x224" if now == "clip_224x224_16f" else "clip_224x224_16f"
        if (Path(root) / other).is_dir() or any(Path(root).glob(f"*/{other}")):
            out.append({"name": f"variant_{other}", "undoes": f"the other frame variant ({other}) expected by the "
                        "checkpoint", "options": {"variant": other}})
    return out


# ----------------------------------------------------------------------------------------------------------
# expected (published) numbers


def parse_with(text: str) -> tuple[str, str | None, Path]:
    """METHOD:SOURCE:FILE (SOURCE empty for a checkpoint already in the method's names, e.g. a run's own)."""
    parts = text.split(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[2]:
        raise BenchError(f"--with {text!r}: use METHOD:SOURCE:FILE, e.g. mae_dfer:finetuned:/ckpt/dfew_fold1.pth "
                         "(SOURCE empty for a run's own checkpoint: r18_gru::results/.../checkpoints/last.pt)")
    method, source, path = parts
    if method not in METHODS:
        METHODS.get(method)  # one line with the close matches
    return method, (source or None), Path(path).expanduser()


def expected_numbers(method: str, dataset: str, fold: int | None, checkpoint: Path, expect: str | None,
                     literature: list[dict]) -> dict[str, Any] | None:
    """The number the checkpoint should reach on this fold: --expect, the run's own result when the checkpoint
    sits in a run directory, else the method's published per-fold row (literature files)."""
    if expect:
        out: dict[str, Any] = {"source": "--expect"}
        for item in expect.split(","):
            key, _, value = item.partition("=")
            if key.strip() not in ("uar", "war") or not value:
                raise BenchError(f"--expect {expect!r}: use uar=NN.N[,war=NN.N] (percent)")
            out[key.strip()] = float(value)
        return out
    result = checkpoint.resolve().parent.parent / "result.json"
    if checkpoint.parent.name == "checkpoints" and result.is_file():
        r = json.loads(result.read_text())
        if r.get("method") == method and r.get("dataset") == dataset and r.get("fold") == fold:
            return {"source": f"the run's own result ({result})", "uar": 100 * r["metrics"]["uar"],
                    "war": 100 * r["metrics"]["war"]}
    from bench.report.literature import LITERATURE_DATASETS

    names = {*METHODS.get(method).literature, method}  # the method's literature rows, or a --reported row naming it
    split = f"fold{fold}" if fold is not None else None
    wanted = {LITERATURE_DATASETS.get(dataset), dataset}
    rows = [r for r in literature if r["method"] in names and r["dataset"] in wanted
            and (split is None and "official" in r["split"] or r["split"].replace(" ", "") == split)
            and (r.get("uar") is not None or r.get("war") is not None)]
    if not rows:
        return None
    r = min(rows, key=lambda r: r.get("uar") is None)  # a row with UAR first; else WAR carries the verdict
    return {"source": f"{r['method']}, {r['split']}: {r['source']}", "uar": r.get("uar"), "war": r.get("war")}


def verdict(measured: dict[str, Any], published: float, metric: str = "uar") -> dict[str, Any]:
    """`matches` when the published number lies inside the measured 95% interval, else how far below/above."""
    lo, hi, point = 100 * measured["lo"], 100 * measured["hi"], 100 * measured["point"]
    name = metric.upper()
    if stats.published_inside(lo, hi, published):
        return {"verdict": "matches", "metric": metric,
                "text": f"matches: the published {name} {published:.2f} lies inside [{lo:.2f}, {hi:.2f}]"}
    side = "below" if point < published else "above"
    return {"verdict": side, "gap": point - published, "metric": metric,
            "text": f"{abs(point - published):.2f} {name} points {side} ({point:.2f} [{lo:.2f}, {hi:.2f}] vs "
                    f"{published:.2f}), beyond sampling noise: a preparation difference"}


# ----------------------------------------------------------------------------------------------------------
# the command


def _subset(records: list, n: int, seed: int = 0) -> list:
    if len(records) <= n:
        return records
    rng = random.Random(seed)
    by: dict[int, list] = {}
    for r in records:
        by.setdefault(r.label, []).append(r)
    out = []
    for recs in by.values():
        out += rng.sample(recs, min(len(recs), max(1, round(n * len(recs) / len(records)))))
    return sorted(out, key=lambda r: r.clip_id)


def verify(dataset: str, root: str | None, fold: int | None, options: dict, *, with_: str | None = None,
           expect: str | None = None, quick: bool = False, device: str | None = None, workers: int | None = None,
           literature: list[dict] | None = None, progress: Callable[[str], None] | None = None,
           bar: Progress | None = None) -> dict[str, Any]:
    """The verify report (JSON-able): fingerprint, its mismatch lines, and with a checkpoint the verdict and the
    diagnosis. Nothing is written into the dataset directory. `progress` gets a line per stage, `bar` (a rich
    Progress) a bar per evaluation."""
    info = DATASETS.get(dataset)
    if fold is not None and fold not in info.folds:
        if info.folds == (None,):
            raise BenchError(f"{dataset} has one train/test split, no folds; drop --fold {fold}")
        raise BenchError(f"{dataset} has folds {', '.join(map(str, info.folds))}, not {fold}; pass --fold with one "
                         "of them")
    options = {k: v for k, v in options.items() if v is not None}
    fp = fingerprint(dataset, root, [fold] if fold is not None or info.folds == (None,) else None, options,
                     quick=quick, progress=progress)
    ref = reference_for(dataset, options, fp.get("variant", "") or str(options.get("variant", "")))
    report: dict[str, Any] = {"dataset": dataset, "fold": fold, "root": fp["root"], "quick": quick,
                              "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "fingerprint": fp, "reference": (ref or {}).get("source"),
                              "mismatches": compare_fingerprint(fp, ref), "environment": _environment()}
    if with_:
        report["checkpoint"] = check_checkpoint(dataset, Path(fp["root"]), fold, options, with_, expect, quick,
                                                device, workers, literature or [], progress, bar)
    return report


def check_checkpoint(dataset: str, root: Path, fold: int | None, options: dict, with_: str, expect: str | None,
                     quick: bool, device: str | None, workers: int | None, literature: list[dict],
                     progress: Callable[[str], None] | None, bar: Progress | None = None) -> dict[str, Any]:
    from bench.evaluation_cli import evaluate_records, load_checkpoint_model

    method, source, path = parse_with(with_)
    info = DATASETS.get(dataset)
    fold = fold if fold is not None else info.folds[0]
    sets = [f"data.options.{k}={v}" for k, v in options.items() if not str(k).startswith("_")]
    loaded = load_checkpoint_model(path, method=method, dataset=dataset, fold=fold, source=source, device=device,
                                   workers=workers, root=root, sets=sets, manifest_options={"_readonly_root": True})
    if loaded.spec.method != method:
        raise BenchError(f"{path}: a checkpoint of {loaded.spec.method}'s run, not of {method}; fix --with")
    test = loaded.manifest.split("test")
    records = _subset(test, QUICK_VIDEOS) if quick else test
    classes = len(loaded.manifest.classes)

    def run(desc: str, data=None, hook=None, manifest_options=None):
        if progress:
            progress(f"evaluating {desc} on {len(records)} test videos")
        target = loaded
        if manifest_options:
            target = copy.copy(loaded)
            target.manifest = DATASETS.get(dataset).build_manifest(
                root, fold, {**loaded.spec.data.options, **manifest_options, "_readonly_root": True})
            ids = {r.clip_id for r in records}
            recs = [r for r in target.manifest.split("test") if r.clip_id in ids]
        else:
            recs = records
        metrics, preds = evaluate_records(target, recs, data=data, view_hook=hook, desc=desc, progress=bar)
        pred = preds["video_scores"].argmax(1)
        return {"metrics": metrics, "labels": preds["labels"], "pred": pred, "ids": preds["video_ids"],
                "ci": stats.metric_intervals(preds["labels"], pred, classes)}

    base = run("the data as prepared")
    expected = expected_numbers(method, dataset, fold, path, expect, literature)
    out: dict[str, Any] = {"method": method, "source": source, "file": str(path), "sha256": loaded.report.sha256,
                           "protocol": loaded.spec.protocol, "test_videos": len(records),
                           "uar": _pct(base["ci"]["uar"]), "war": _pct(base["ci"]["war"]), "expected": expected}
    if expected is None:
        out["verdict"] = {"verdict": "no reference", "text": f"no published per-fold number of {method} on "
                          f"{dataset} fold {fold}: pass --expect uar=NN.N"}
        return out
    # UAR where the source publishes it; a source with WAR only (Former-DFER's per-fold rows) is read on WAR
    metric = "uar" if expected.get("uar") is not None else "war"
    target = expected[metric]
    out["verdict"] = verdict(base["ci"][metric], target, metric)
    diagnosis = []
    for alt in alternatives(loaded.spec, dataset, root):
        data = None
        if "data" in alt:
            data = copy.deepcopy(loaded.spec.data)
            for k, v in alt["data"].items():
                setattr(data, k, v)
        try:
            res = run(alt["name"], data=data, hook=alt.get("hook"), manifest_options=alt.get("options"))
        except BenchError as e:
            diagnosis.append({"name": alt["name"], "undoes": alt["undoes"], "error": str(e)})
            continue
        row = {"name": alt["name"], "undoes": alt["undoes"], "uar": _pct(res["ci"]["uar"]),
               "war": _pct(res["ci"]["war"])}
        if np.array_equal(res["ids"], base["ids"]):
            row["p_vs_prepared"] = stats.randomisation_p([(base["labels"], res["pred"], base["pred"])], metric, 2000,
                                                         stats.SEED)
        inside = row[metric]["lo"] <= target <= row[metric]["hi"]
        better = row[metric]["point"] > out[metric]["point"] and row.get("p_vs_prepared", 1.0) < 0.05
        row["closes_gap"] = bool(inside and better)
        diagnosis.append(row)
    out["diagnosis"] = diagnosis
    closing = [d for d in diagnosis if d.get("closes_gap")]
    if out["verdict"]["verdict"] != "matches":
        if closing:
            best = min(closing, key=lambda d: abs(d[metric]["point"] - target))  # the closest to it
            got = best[metric]
            out["cause"] = {"name": best["name"], "text": f"{best['undoes']}: undoing it gives {metric.upper()} "
                            f"{got['point']:.2f} [{got['lo']:.2f}, {got['hi']:.2f}], which holds the published "
                            f"{target:.2f}"}
        else:
            out["cause"] = {"name": None, "text": "no preparation switch tried here closes the gap; see the "
                            "fingerprint lines (resolution, frames per clip, class counts) for what a switch "
                            "cannot undo"}
    return out


def _pct(ci: dict) -> dict[str, float]:
    return {"point": 100 * ci["point"], "lo": 100 * ci["lo"], "hi": 100 * ci["hi"]}


def _environment() -> dict[str, Any]:
    import bench

    return {"dfer_bench": bench.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


# ----------------------------------------------------------------------------------------------------------
# the one-page report


def render_markdown(rep: dict[str, Any]) -> str:
    fp = rep["fingerprint"]
    lines = [f"# `bench data verify`: {rep['dataset']}" + (f" fold {rep['fold']}" if rep["fold"] is not None else ""),
             "", f"Root: `{rep['root']}`{' (quick: a stratified subset)' if rep['quick'] else ''}; reference: "
             f"{rep['reference'] or 'none shipped for this dataset'}.", "", "## Fingerprint", ""]
    lines += ["| fold | split | clips | frames per clip (min / median / max, <16) | resolution | channel mean (RGB) |",
              "|---|---|---|---|---|---|"]
    for f in fp["folds"]:
        for split, s in f["splits"].items():
            fr = s["frames"]
            frames = f"{fr.get('min')} / {fr.get('median')} / {fr.get('max')}, {fr.get('under_16')}" if fr.get("n") \
                else "-"
            res = "x".join(map(str, s.get("resolution") or [])) or "-"
            lines.append(f"| {f['fold'] if f['fold'] is not None else '-'} | {split} | {s['clips']} | {frames} | {res} | "
                         f"{s.get('channel_mean', '-')} |")
    lines += ["", "## Differences from the release", ""]
    lines += [f"- **{m['kind']}**: {m['text']}" + (f" (fix: {m['fix']})" if m["fix"] else "") for m in rep["mismatches"]]
    if not rep["mismatches"]:
        lines.append("- none found")
    ck = rep.get("checkpoint")
    if ck:
        u = ck["uar"]
        lines += ["", "## Released checkpoint", "",
                  f"`{ck['method']}` ({ck['source'] or 'own names'}) `{ck['file']}` (sha256 {ck['sha256'][:12]}), "
                  f"protocol `{ck['protocol']}`, {ck['test_videos']} test videos: UAR {u['point']:.2f} "
                  f"[{u['lo']:.2f}, {u['hi']:.2f}], WAR {ck['war']['point']:.2f}.",
                  "", _expected_text(ck.get("expected")), "", f"**Verdict: {ck['verdict']['text']}**"]
        metric = ck["verdict"].get("metric", "uar")
        if ck.get("diagnosis"):
            lines += ["", f"| alternative | undoes | {metric.upper()} [95%] | p vs prepared | closes the gap |",
                      "|---|---|---|---|---|"]
            for d in ck["diagnosis"]:
                if "error" in d:
                    lines.append(f"| {d['name']} | {d['undoes']} | {d['error']} | | |")
                    continue
                p = d.get("p_vs_prepared")
                m = d[metric]
                lines.append(f"| {d['name']} | {d['undoes']} | {m['point']:.2f} [{m['lo']:.2f}, "
                             f"{m['hi']:.2f}] | {'' if p is None else f'{p:.3g}'} | "
                             f"{'yes' if d['closes_gap'] else 'no'} |")
        if ck.get("cause"):
            lines += ["", f"**Diagnosis: {ck['cause']['text']}**"]
    env = rep["environment"]
    lines += ["", "## Environment", "", ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    return "\n".join(lines)


def _expected_text(expected: dict | None) -> str:
    if not expected:
        return ""
    parts = [f"{m.upper()} {expected[m]:.2f}" for m in ("uar", "war") if expected.get(m) is not None]
    return f"Expected: {', '.join(parts)} ({expected['source']})."


def write_report(rep: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "verify.json", rep)
    atomic_write_text(out_dir / "verify.md", render_markdown(rep))
    return [out_dir / "verify.json", out_dir / "verify.md"]
