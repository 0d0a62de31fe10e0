"""Evaluations beyond train-then-test: zero-shot evaluation, late fusion of saved predictions (MHPF), and
basic-to-compound evaluation (the Compound Expression transformation of Team RAS, 9th ABAW).

* `zero_shot`: a method registered with `zero_shot=True` (CLIP label matching) is evaluated with no training; the
  result is a result.json whose protocol says `training: zero-shot` (the report keeps such rows apart). Without
  weights it is labelled as measuring nothing.
* `fuse`: the per-video class probabilities of completed runs on the same test split, combined by a fixed mean
  or by Multi-Head Probability Fusion: H heads of per-class softmax weights over the sources, mixed by a
  softmax over heads, fitted (class-weighted NLL) on the TRAINING split's predictions only, never on test.
* `compound`: a model trained on MAFW's 11 single classes scores the 43-class `mafw_compound` test split with no
  compound training: Pair-Wise Probability Aggregation (a compound class scores the mean, product or sum of its
  parts' probabilities) or Pair-Wise Feature Similarity Aggregation (the cosine of the video features to each
  compound class's text embedding, for models with `encode_video`/`encode_text`). Compound parts come from the
  class names (`anger_disgust` -> anger, disgust; datasets.md §3.5).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from bench.api import RANDOM_INIT_LABEL, build_model
from bench.data.loader import ClipDataset
from bench.data.manifest import load_manifest
from bench.errors import BenchError
from bench.evaluate import aggregate, evaluate, predict_views, save_predictions
from bench.metrics import compute_metrics
from bench.registry import DATASETS, METHODS
from bench.runtime import resolve_device
from bench.spec import RunSpec, resolve_spec
from bench.store import (
    SCHEMA_VERSION,
    atomic_write_bytes,
    atomic_write_text,
    environment,
    now_iso,
    run_dir,
    run_result,
    write_result,
)
from bench.weights import apply_init, load_weights

FUSION_RULES = ("mean", "mhpf")
COMPOUND_RULES = ("ppa_mean", "ppa_product", "ppa_sum", "pfsa")
ZERO_SHOT_WITHOUT_WEIGHTS = f"{RANDOM_INIT_LABEL}: a zero-shot evaluation without weights measures nothing"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def video_probabilities(preds: dict[str, np.ndarray], aggregate: str) -> np.ndarray:
    """Per-video class probabilities from saved predictions: softmax of the mean logits, or the mean softmax."""
    scores = np.asarray(preds["video_scores"], dtype=np.float64)
    return scores if aggregate == "mean_softmax" else _softmax(scores)


# ------------------------------------------------------------------------------------------------- zero-shot


def zero_shot(method: str, dataset: str, *, fold: int | None = None, flags: dict | None = None,
              sets: list[str] | None = None, results: Path = Path("results")) -> dict:
    info = METHODS.get(method)
    if not info.zero_shot:
        able = [n for n in METHODS.names() if METHODS.get(n).zero_shot]
        raise BenchError(f"{method} is not evaluable zero-shot (it needs training); zero-shot methods: {', '.join(able)}")
    spec = resolve_spec(method, dataset, fold=fold, flags=flags, sets=sets)
    manifest = load_manifest(spec)
    model = build_model(info, len(manifest.classes), spec.data.frames, spec.data.size, manifest.classes,
                        **spec.model.kwargs)
    init = apply_init(model, info, spec.model.init)
    if init["kind"] == "scratch":
        init["label"] = ZERO_SHOT_WITHOUT_WEIGHTS
    device = resolve_device(spec.train.device)
    model.to(device)
    test = manifest.split("test")
    ds = ClipDataset(manifest, test, spec.data, train=False, seed=spec.seed)
    metrics, preds = evaluate(model, ds, test, manifest.classes, batch_size=spec.train.batch_size,
                              workers=spec.data.workers, device=device, precision=spec.train.precision,
                              aggregate_how=spec.data.aggregate)
    from bench.data.sampling import views_per_video
    from bench.profile import profile_model

    views = float(np.mean([views_per_video(r.num_frames, spec.data) for r in test]))
    profile = profile_model(model.cpu(), (3, spec.data.frames, spec.data.size, spec.data.size), views_per_video=views,
                            latency=False)
    run_id = f"{spec.run_id}-zeroshot"
    rdir = run_dir(results, spec).with_name(run_id)
    save_predictions(rdir / "predictions.npz", preds, manifest.classes)
    atomic_write_text(rdir / "spec.yaml", spec.to_yaml())
    result = run_result(spec=spec, family=info.family, variant_of=info.variant_of, duration_s=0.0, selected_epoch=0,
                        views_per_video=views, init=init, metrics={**metrics, "epoch": 0, "split": "test"},
                        metrics_last=None, profile=profile,
                        env={**environment(device), "manifest_sha256": manifest.checksum()},
                        data={"n_train": 0, "n_val": 0, "n_test": len(test), "skipped": manifest.skipped},
                        training="zero-shot", run_id=run_id)
    write_result(rdir, result)
    return {**result, "dir": str(rdir.resolve())}


# ------------------------------------------------------------------------------------------------- sources


def _spec_of(rdir: Path) -> RunSpec:
    return RunSpec.from_dict(yaml.safe_load((rdir / "spec.yaml").read_text()))


def source_model(rdir: Path, classes: tuple[str, ...]):
    """The model of a completed run as it produced its test predictions (selected checkpoint, or the zero-shot
    init), with its spec."""
    result = json.loads((rdir / "result.json").read_text())
    spec = _spec_of(rdir)
    info = METHODS.get(spec.method)
    model = build_model(info, len(classes), spec.data.frames, spec.data.size, classes, **spec.model.kwargs)
    if (result.get("protocol") or {}).get("training") == "zero-shot":
        apply_init(model, info, spec.model.init)
    else:
        ckpt = rdir / "checkpoints" / ("best.pt" if spec.train.selection != "last" else "last.pt")
        if not ckpt.is_file():
            raise BenchError(f"{ckpt}: the run's checkpoint is needed to predict another split; it was not kept "
                             "(curated example runs ship without checkpoints)")
        report = load_weights(model, ckpt)
        if report.missing or report.mismatched:
            raise BenchError(f"{ckpt}: does not fit {spec.method} ({len(report.missing)} missing keys)")
    return model, spec


def split_probabilities(rdir: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(video ids, labels, probabilities) of a completed run on `split` (test: its saved predictions; another
    split: predicted once with the test-time views and cached as predictions_<split>.npz)."""
    rdir = Path(rdir)
    spec = _spec_of(rdir)
    if split == "test":
        preds = dict(np.load(rdir / "predictions.npz"))
        return preds["video_ids"], preds["labels"], video_probabilities(preds, spec.data.aggregate)
    cache = rdir / f"predictions_{split}.npz"
    if not cache.is_file():
        manifest = load_manifest(spec)
        records = manifest.split(split)
        if not records:
            raise BenchError(f"{rdir}: {spec.dataset} fold {spec.fold} has no {split} split to fit on")
        model, _ = source_model(rdir, manifest.classes)
        device = resolve_device(spec.train.device)
        model.to(device)
        ds = ClipDataset(manifest, records, spec.data, train=False, seed=spec.seed)
        _, preds = evaluate(model, ds, records, manifest.classes, batch_size=spec.train.batch_size,
                            workers=spec.data.workers, device=device, precision=spec.train.precision,
                            aggregate_how=spec.data.aggregate)
        save_predictions(cache, preds, manifest.classes)
    preds = dict(np.load(cache))
    return preds["video_ids"], preds["labels"], video_probabilities(preds, spec.data.aggregate)


def find_run(results: Path, method: str, dataset: str, fold: int | None) -> Path:
    """The one completed run of `method` on `dataset`/`fold` (its own recipe preferred)."""
    info = DATASETS.get(dataset)
    fold = fold if fold is not None else info.folds[0]
    base = Path(results) / "runs" / dataset / (f"fold{fold}" if fold is not None else "single") / method
    done = sorted(p.parent for p in base.glob("*/result.json"))
    if not done:
        raise BenchError(f"no completed run of {method} on {dataset} fold {fold} under {base}; run it first "
                         f"(bench run -m {method} -d {dataset} --fold {fold})")
    if len(done) > 1:
        own = resolve_spec(method, dataset, fold=fold).run_id
        mine = [d for d in done if d.name == own]
        if not mine:
            raise BenchError(f"{base}: {len(done)} completed runs of {method}; name them with --runs DIR,DIR")
        return mine[0]
    return done[0]


# ------------------------------------------------------------------------------------------------- fusion


def fit_mhpf(probs: list[np.ndarray], labels: np.ndarray, num_classes: int, heads: int = 3, steps: int = 500,
             lr: float = 0.05, seed: int = 0) -> dict[str, np.ndarray]:
    """Multi-Head Probability Fusion weights fitted on (training) predictions: per head, a softmax over the
    sources for each class; the heads mixed by a softmax. Class-weighted NLL of the fused probabilities."""
    g = torch.Generator().manual_seed(seed)
    p = torch.tensor(np.stack(probs), dtype=torch.float64)  # S, N, K
    y = torch.tensor(labels, dtype=torch.long)
    counts = torch.bincount(y, minlength=num_classes).double()
    class_w = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    src_logits = (0.01 * torch.randn(heads, len(probs), num_classes, generator=g, dtype=torch.float64)).requires_grad_()
    head_logits = torch.zeros(heads, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([src_logits, head_logits], lr=lr)
    for _ in range(steps):
        fused = mhpf_apply(p, src_logits.softmax(1), head_logits.softmax(0))
        loss = -(class_w[y] * torch.log(fused[torch.arange(len(y)), y].clamp(min=1e-12))).sum() / class_w[y].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"source_weights": src_logits.softmax(1).detach().numpy(), "head_weights": head_logits.softmax(0).detach().numpy()}


def mhpf_apply(p, source_weights, head_weights):
    """fused[n, k] = sum_h a_h sum_s w[h, s, k] p[s, n, k] (works on numpy arrays and tensors)."""
    per_head = (source_weights[:, :, None, :] * p[None]).sum(1)  # H, N, K
    return (head_weights[:, None, None] * per_head).sum(0)


def fuse(sources: list[Path], rule: str = "mean", results: Path = Path("results")) -> dict:
    if rule not in FUSION_RULES:
        raise BenchError(f"--rule {rule}: use {' or '.join(FUSION_RULES)}")
    if len(sources) < 2:
        raise BenchError("bench fuse needs two or more completed runs")
    metas = [json.loads((Path(s) / "result.json").read_text()) for s in sources]
    tests = [split_probabilities(Path(s), "test") for s in sources]
    ids0, labels0 = tests[0][0], tests[0][1]
    for s, (ids, labels, _) in zip(sources[1:], tests[1:], strict=True):
        if list(ids) != list(ids0) or list(labels) != list(labels0):
            raise BenchError(f"{s}: not the same test split as {sources[0]} (other videos or labels); fuse runs of "
                             "one dataset and fold")
    classes = metas[0]["metrics"]["classes"]
    weights: dict[str, Any] = {}
    if rule == "mean":
        fused = np.mean([t[2] for t in tests], axis=0)
    else:
        trains = [split_probabilities(Path(s), "train") for s in sources]
        for s, (ids, _labels, _) in zip(sources[1:], trains[1:], strict=True):
            if list(ids) != list(trains[0][0]):
                raise BenchError(f"{s}: other training videos than {sources[0]}")
        fitted = fit_mhpf([t[2] for t in trains], trains[0][1], len(classes))
        fused = mhpf_apply(np.stack([t[2] for t in tests]), fitted["source_weights"], fitted["head_weights"])
        weights = {k: v.tolist() for k, v in fitted.items()}
    metrics = compute_metrics(labels0, fused.argmax(1), classes)
    names = [m["method"] for m in metas]
    key = hashlib.sha256(json.dumps([str(s) for s in sources] + [rule]).encode()).hexdigest()[:8]
    dataset, fold = metas[0]["dataset"], metas[0]["fold"]
    method = f"fused[{rule}]:" + "+".join(names)
    rdir = Path(results) / "runs" / dataset / (f"fold{fold}" if fold is not None else "single") / "fused" / \
        f"fused-{rule}-{dataset}-f{fold or 0}-{key}"
    buf = io.BytesIO()
    np.savez_compressed(buf, classes=np.array(classes), video_ids=ids0, labels=labels0, video_scores=fused)
    atomic_write_bytes(rdir / "predictions.npz", buf.getvalue())
    result = {
        "schema_version": SCHEMA_VERSION, "run_id": rdir.name, "status": "completed", "created_at": now_iso(),
        "method": method, "family": "fusion", "parent": None, "dataset": dataset, "fold": fold,
        "seed": metas[0]["seed"], "protocol_name": rule, "config_hash": key,
        "spec": {"fusion": {"rule": rule, "sources": [m["run_id"] for m in metas]}},
        "protocol": {"training": "fused", "rule": rule, "fitted_on": "train split" if rule == "mhpf" else None,
                     "sources": [{"run_id": m["run_id"], "method": m["method"], "dir": str(s),
                                  "training": (m.get("protocol") or {}).get("training", "trained")}
                                 for m, s in zip(metas, sources, strict=True)],
                     "selection": "sources' own", "frames": None, "size": None, "init": {"kind": "sources"}},
        "metrics": {**metrics, "epoch": None, "split": "test"}, "fusion_weights": weights,
        "profile": {"gmacs": sum((m.get("profile") or {}).get("gmacs") or 0 for m in metas),
                    "params_total": sum((m.get("profile") or {}).get("params_total") or 0 for m in metas)},
        "env": environment(torch.device("cpu")), "data": {"n_test": len(ids0)},
        "artifacts": {"predictions": "predictions.npz"},
    }
    write_result(rdir, result)
    return {**result, "dir": str(rdir.resolve())}


# ------------------------------------------------------------------------------------------------- compound


def compound_parts(compound_classes: tuple[str, ...], basic_classes: tuple[str, ...]) -> list[list[int]]:
    """Indices of each compound class's parts among the basic classes, from the names (`anger_disgust`)."""
    index = {c.lower(): i for i, c in enumerate(basic_classes)}
    parts = []
    for name in compound_classes:
        pieces = name.lower().split("_")
        missing = [p for p in pieces if p not in index]
        if missing:
            raise BenchError(f"compound class {name!r}: {missing} not among the model's classes {list(basic_classes)}")
        parts.append([index[p] for p in pieces])
    return parts


def ppa(probs: np.ndarray, parts: list[list[int]], how: str = "mean") -> np.ndarray:
    """Pair-wise (and triple) probability aggregation: score[n, c] = mean | product | sum of probs[n, parts[c]]."""
    fn = {"mean": np.mean, "product": np.prod, "sum": np.sum}[how]
    return np.stack([fn(probs[:, p], axis=1) for p in parts], axis=1)


def compound(run: Path, rule: str = "ppa_mean", dataset: str = "mafw_compound", out_dir: Path | None = None) -> dict:
    """Score the compound test split of the run's fold with a model trained on the basic classes."""
    if rule not in COMPOUND_RULES:
        raise BenchError(f"--compound {rule}: use one of {', '.join(COMPOUND_RULES)}")
    run = Path(run)
    base_spec = _spec_of(run)
    comp_spec = resolve_spec(base_spec.method, dataset, fold=base_spec.fold,
                             flags={"data": {"root": base_spec.data.root}} if base_spec.data.root else None)
    for section in ("data",):  # the same frames, size, sampling and views as the trained model
        setattr(comp_spec, section, getattr(base_spec, section))
    basic = tuple(json.loads((run / "result.json").read_text())["metrics"]["classes"])
    manifest = load_manifest(comp_spec)
    parts = compound_parts(manifest.classes, basic)
    model, spec = source_model(run, basic)
    device = resolve_device(spec.train.device)
    model.to(device)
    test = manifest.split("test")
    ds = ClipDataset(manifest, test, spec.data, train=False, seed=spec.seed)
    if rule == "pfsa":
        if not (hasattr(model, "encode_video") and hasattr(model, "encode_text")):
            raise BenchError(f"--compound pfsa needs a model with encode_video/encode_text (CLIP methods); "
                             f"{spec.method} has none: use ppa_mean")
        scores = _pfsa_scores(model, ds, manifest.classes, device, spec)
        basic_probs = None
    else:
        views = predict_views(model, ds, batch_size=spec.train.batch_size, workers=spec.data.workers, device=device,
                              precision=spec.train.precision)  # 11-way scores; the labels are compound ones
        scores_11 = aggregate(views, len(test), spec.data.aggregate)
        basic_probs = video_probabilities({"video_scores": scores_11}, spec.data.aggregate)
        scores = ppa(basic_probs, parts, rule.split("_")[1])
    labels = np.array([r.label for r in test])
    metrics = compute_metrics(labels, scores.argmax(1), list(manifest.classes))
    out_dir = Path(out_dir) if out_dir else run / f"compound_{rule}"
    buf = io.BytesIO()
    np.savez_compressed(buf, classes=np.array(manifest.classes), video_ids=np.array([r.clip_id for r in test]),
                        labels=labels, video_scores=scores, basic_classes=np.array(basic),
                        **({"basic_probs": basic_probs} if basic_probs is not None else {}))
    atomic_write_bytes(out_dir / "predictions.npz", buf.getvalue())
    result = {"kind": "compound", "created_at": now_iso(), "rule": rule, "source_run": str(run),
              "method": spec.method, "dataset": dataset, "fold": spec.fold, "basic_classes": list(basic),
              "metrics": metrics, "training": "no compound training (basic classes only)"}
    atomic_write_text(out_dir / "eval.json", json.dumps(result, indent=2))
    return {**result, "out_dir": str(out_dir.resolve())}


@torch.no_grad()
def _pfsa_scores(model, ds: ClipDataset, classes: tuple[str, ...], device: torch.device, spec: RunSpec) -> np.ndarray:
    """Cosine similarity of each video's features (mean over its views) to each compound class's text embedding."""
    from bench.data.loader import batches, make_loader

    texts = model.encode_text([f"a face showing {' and '.join(c.split('_'))}" for c in classes])
    texts = torch.nn.functional.normalize(texts.float(), dim=-1)
    feats: dict[int, list[torch.Tensor]] = {}
    model.eval()
    for batch in batches(make_loader(ds, spec.train.batch_size, workers=spec.data.workers, shuffle=False,
                                     drop_last=False, seed=0, epoch=0)):
        clip = batch["clip"].to(device).flatten(0, 1)
        f = torch.nn.functional.normalize(model.encode_video(clip).float(), dim=-1)
        f = f.view(batch["clip"].shape[0], -1, f.shape[-1]).mean(1)
        for v, row in zip(batch["video"].tolist(), f, strict=True):
            feats.setdefault(v, []).append(row)
    video = torch.stack([torch.stack(feats[i]).mean(0) for i in range(len(ds.records))])
    return (torch.nn.functional.normalize(video, dim=-1) @ texts.T).cpu().numpy()
