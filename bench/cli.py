"""`bench`: list, run, eval, compare, profile, report, sweep, data. Commands are thin: they build a spec and call the
library functions the tests call directly. Errors caused by input print one line (exit code 2; 3 when the run is
already being computed by another process)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.errors import BenchError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="dfer-bench: train, evaluate, profile and report DFER methods.")
list_app = typer.Typer(add_completion=False, no_args_is_help=True, help="List registered methods or datasets.")
app.add_typer(list_app, name="list")
out = Console()
err = Console(stderr=True)

try:  # dataset tools (check / pack / loader benchmark) live in their own module
    from bench.cli_data import data_app

    app.add_typer(data_app, name="data")
except ImportError:  # pragma: no cover
    pass


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------------------------------------- list
@list_app.command("methods")
def list_methods(pattern: Annotated[str, typer.Argument(help="fnmatch pattern")] = "*",
                 wide: Annotated[bool, typer.Option("--wide", help="also paper, recipes, test views, literature rows")] = False,
                 as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
                 show_all: Annotated[bool, typer.Option("--all", help="include the CI-only test methods")] = False) -> None:
    """Registered methods, variants under their parent (one line each; --wide or --json for the rest)."""
    from bench.registry import METHODS
    from bench.spec import default_data, describe_views

    infos = [METHODS.get(n) for n in METHODS.names(pattern)]
    infos = [i for i in infos if show_all or i.family != "test"]
    rows = [{"name": i.name, "family": i.family, "variant_of": i.variant_of, "frames": i.input.frames,
             "size": i.input.size, "channels": i.input.channels, "test_views": describe_views(default_data(i.name)),
             "test_views_note": i.test_views_note, "paper": i.paper.cite(), "code": i.paper.code,
             "weights": {k: w.description for k, w in i.weights.items()}, "needs_pretrained": i.needs_pretrained,
             "kwargs": i.kwargs, "loss": i.loss, "literature": list(i.literature),
             "recipe_datasets": sorted(i.recipe.datasets), "protocols": sorted(i.recipe.protocols) or ["default"],
             "description": i.description} for i in infos]
    if as_json:
        return _print_json(rows)
    by_name = {r["name"]: r for r in rows}
    ordered = []
    for r in rows:
        if r["variant_of"] not in by_name:
            ordered += [r] + [v for v in rows if v["variant_of"] == r["name"]]
    table = Table(title=f"methods ({sum(r['variant_of'] is None for r in rows)}, variants indented)", box=None,
                  pad_edge=False)
    table.add_column("method", no_wrap=True, min_width=max((len(r["name"]) + 2 for r in rows), default=6))
    # 80 columns: the longest variant name (29) + family (19, the longest family; a variant's description is cut,
    # --wide shows it) + input (7) + starts from (18, "needs s4d_pretrain") + 3 gaps of 2
    table.add_column("family / variant", overflow="ellipsis", no_wrap=True, max_width=None if wide else 19)
    table.add_column("input", no_wrap=True, min_width=7)
    table.add_column("starts from", no_wrap=True, min_width=18)
    if wide:
        for col in ("test views", "recipes", "literature rows", "paper"):
            table.add_column(col, overflow="fold")
    for r in ordered:
        variant = r["variant_of"] in by_name
        start = f"needs {r['needs_pretrained']}" if r["needs_pretrained"] else \
            ("scratch" + (f" +{len(r['weights'])} weights" if r["weights"] else ""))
        cells = [("└ " + r["name"]) if variant else r["name"], r["description"] if variant else r["family"],
                 "" if variant else f"{r['frames']}x{r['size']}²", "" if variant else start]
        if wide:
            cells += [r["test_views"] + (f" ({r['test_views_note']})" if r["test_views_note"] else ""),
                      ", ".join(r["recipe_datasets"]) or "-", "; ".join(r["literature"]) or "-", r["paper"]]
        table.add_row(*cells)
    out.print(table)


@list_app.command("datasets")
def list_datasets(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Registered datasets, and whether their data is present on this machine."""
    from bench.data.roots import is_present, resolve_root
    from bench.registry import DATASETS

    rows = []
    for info in DATASETS:
        root, source = resolve_root(info)
        present = "generated on first use" if info.generated else ("yes" if is_present(info, root) else "no")
        rows.append({"name": info.name, "title": info.title, "classes": list(info.classes),
                     "folds": [f for f in info.folds if f is not None], "protocol": info.protocol,
                     "root": str(root), "root_from": source, "present": present, "env_var": info.env_var})
    if as_json:
        return _print_json(rows)
    # 80 columns: the short facts in a table, each root path on a line of its own (paths do not fold well)
    table = Table(title="datasets (--json for everything)", box=None, pad_edge=False)
    table.add_column("name", no_wrap=True, min_width=max(len(r["name"]) for r in rows))
    table.add_column("folds", no_wrap=True, min_width=5)
    table.add_column("classes", overflow="ellipsis", no_wrap=True, max_width=44)
    table.add_column("present", no_wrap=True)
    for r in rows:
        table.add_row(r["name"], str(len(r["folds"])) if r["folds"] else "-",
                      f"{len(r['classes'])}: {', '.join(r['classes'])}", "generated" if r["present"].startswith("generated") else r["present"])
    out.print(table)
    out.print("folds: - = one train/test split")
    out.print("roots (--root, the env var in --json, or data.root):")
    for r in rows:
        out.print(f"  {r['name']}: {r['root']}  ({r['root_from']})", soft_wrap=True, markup=False, highlight=False)


# ---------------------------------------------------------------------------------------------- run
def _flags(epochs, batch_size, lr, device, precision, workers, root, init, selection, on_bad_clip) -> dict:
    flags: dict = {}
    if epochs is not None:
        flags.setdefault("train", {})["epochs"] = epochs
    if batch_size is not None:
        flags.setdefault("train", {})["batch_size"] = batch_size
    if lr is not None:
        flags.setdefault("optim", {})["lr"] = lr
    if device is not None:
        flags.setdefault("train", {})["device"] = device
    if precision is not None:
        flags.setdefault("train", {})["precision"] = precision
    if selection is not None:
        flags.setdefault("train", {})["selection"] = selection
    if workers is not None:
        flags.setdefault("data", {})["workers"] = workers
    if root is not None:
        flags.setdefault("data", {})["root"] = str(root)
    if on_bad_clip is not None:
        flags.setdefault("data", {}).setdefault("options", {})["on_bad_clip"] = on_bad_clip
    if init is not None:
        flags.setdefault("model", {})["init"] = init
    return flags


Method = Annotated[str, typer.Option("--method", "-m", help="registered method (bench list methods)")]
Dataset = Annotated[str, typer.Option("--dataset", "-d", help="registered dataset (bench list datasets)")]


@app.command()
def run(
    method: Method,
    dataset: Dataset = "synthetic",
    fold: Annotated[str | None, typer.Option(help="fold number, comma list, or 'all'")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    protocol: Annotated[str | None, typer.Option(help="method protocol, e.g. faithful | clean for IFDD")] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 | bf16 | fp16")] = None,
    workers: Annotated[int | None, typer.Option()] = None,
    root: Annotated[Path | None, typer.Option(help="dataset root (else env var / config file)")] = None,
    init: Annotated[str | None, typer.Option(help="scratch | <weights source>:<local file>")] = None,
    selection: Annotated[str | None, typer.Option(help="last | best_on_val | best_on_test")] = None,
    on_bad_clip: Annotated[str | None, typer.Option("--on-bad-clip", help="error | skip")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="section.key=value (repeatable)")] = None,
    results: Annotated[Path, typer.Option(help="results directory")] = Path("results"),
    gpus: Annotated[int, typer.Option(help="GPUs for one run (torchrun/DDP when > 1)")] = 1,
    progress: Annotated[bool, typer.Option(help="rich progress bars")] = True,
    latency: Annotated[bool, typer.Option(help="measure latency in the run's profile")] = True,
    print_spec: Annotated[bool, typer.Option("--print-spec", help="print the resolved spec and exit")] = False,
) -> None:
    """Train and evaluate METHOD on DATASET; writes results/runs/<dataset>/<fold>/<method>/<run id>/."""
    from bench.spec import parse_folds, resolve_spec
    from bench.train import run as run_spec

    flags = _flags(epochs, batch_size, lr, device, precision, workers, root, init, selection, on_bad_clip)
    summaries = []
    for f in parse_folds(dataset, fold):
        spec = resolve_spec(method, dataset, fold=f, seed=seed, protocol=protocol, flags=flags, sets=set_ or [])
        if print_spec:
            typer.echo(spec.to_yaml())
            continue
        if gpus > 1 and "WORLD_SIZE" not in os.environ:
            _relaunch_torchrun(gpus)
            return
        result = run_spec(spec, results, progress=progress, profile_latency=latency)
        if result:
            summaries.append(result)
    for r in summaries:
        _summary(r, results)


def _relaunch_torchrun(gpus: int) -> None:
    """One run on several GPUs: re-execute this same command under torchrun (rank 0 writes the files)."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
           "-m", "bench.cli", *sys.argv[1:]]
    raise SystemExit(subprocess.call(cmd))


def _summary(r: dict, results: Path) -> None:
    from bench.spec import RunSpec
    from bench.store import run_dir

    p = r.get("profile") or {}
    m = r["metrics"]
    rdir = run_dir(results, RunSpec.from_dict(r["spec"]))
    table = Table(title=f"{r['method']} on {r['dataset']} fold {r['fold']} (seed {r['seed']})", show_header=True)
    for col in ("UAR", "WAR", "GMACs/clip", "params (M)", "epoch (rule)", "results"):
        table.add_column(col)
    table.add_row(f"{100 * m['uar']:.2f}", f"{100 * m['war']:.2f}", f"{p.get('gmacs', float('nan')):.2f}",
                  f"{p.get('params_total', 0) / 1e6:.2f}", f"{m['epoch']} ({r['protocol']['selection']})", str(rdir))
    out.print(table)


@app.command()
def pretrain(
    method: Method,
    dataset: Dataset = "synthetic",
    fold: Annotated[int | None, typer.Option(help="the fold whose TRAINING clips are used (test clips never are)")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 | bf16 | fp16")] = None,
    workers: Annotated[int | None, typer.Option()] = None,
    root: Annotated[Path | None, typer.Option(help="dataset root (else env var / config file)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="section.key=value (repeatable)")] = None,
    results: Annotated[Path, typer.Option(help="results directory")] = Path("results"),
    progress: Annotated[bool, typer.Option(help="rich progress bars")] = True,
    print_spec: Annotated[bool, typer.Option("--print-spec")] = False,
) -> None:
    """In-domain self-supervised pre-training of METHOD on one fold's training clips; writes a checkpoint that
    `bench run --init` takes (the command is printed at the end)."""
    from bench.pretrain import pretrain as run_pretrain
    from bench.spec import resolve_spec

    flags = _flags(epochs, batch_size, lr, device, precision, workers, root, None, None, None)
    spec = resolve_spec(method, dataset, fold=fold, seed=seed, flags=flags, sets=set_ or [], pretrain=True)
    if print_spec:
        typer.echo(spec.to_yaml())
        return
    result = run_pretrain(spec, results, progress=progress)
    out.print(f"pre-trained on {result['clips']['seen']} training clips of {dataset} fold {result['fold']} "
              f"(its {result['clips']['test_never_seen']} test clips never seen) -> {result['weights']}")
    out.print(f"next: {result['next']}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------- eval
@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[Path | None, typer.Option(help="a run's checkpoint (…/checkpoints/last.pt) or a method checkpoint")] = None,
    method: Annotated[str | None, typer.Option("--method", "-m")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d")] = None,
    fold: Annotated[int | None, typer.Option()] = None,
    source: Annotated[str | None, typer.Option(help="weights source of the method to load it with (e.g. ifdd_official)")] = None,
    zero_shot: Annotated[bool, typer.Option("--zero-shot", help="evaluate a zero-shot method with no training (weights from --init)")] = False,
    init: Annotated[str | None, typer.Option(help="--zero-shot: <weights source>:<local file>")] = None,
    compound: Annotated[str | None, typer.Option(help="score mafw_compound with a run trained on MAFW's 11 classes: ppa_mean | ppa_product | ppa_sum | pfsa")] = None,
    run: Annotated[Path | None, typer.Option(help="a completed run directory: with --corrupt / --on, or --compound")] = None,
    corrupt: Annotated[str | None, typer.Option(help="--run: corruptions to evaluate: all, NAME[,NAME], NAME:SEVERITY")] = None,
    on: Annotated[str | None, typer.Option("--on", help="--run: another dataset's test split, classes mapped by name")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="--on: the target's data option key=value")] = None,
    mapping: Annotated[Path | None, typer.Option(help="--on: YAML `model class: target class` (own datasets)")] = None,
    protocol: Annotated[str | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option()] = None,
    workers: Annotated[int | None, typer.Option()] = None,
    root: Annotated[Path | None, typer.Option()] = None,
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
    results: Annotated[Path, typer.Option(help="--zero-shot: results directory")] = Path("results"),
    out_dir: Annotated[Path | None, typer.Option("--out", help="where eval.json and predictions.npz go")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate a saved model on a dataset's test split (the run's own spec when the checkpoint is in a run dir);
    or a zero-shot method with no training (--zero-shot); or a MAFW model on the compound classes (--compound)."""
    if corrupt or on:
        return _eval_robustness(run, corrupt, on, fold, option, mapping, device, workers, root, as_json)
    if zero_shot:
        from bench.fusion import zero_shot as run_zero_shot

        if not method or not dataset:
            raise BenchError("bench eval --zero-shot needs --method and --dataset")
        flags = _flags(None, None, None, device, None, workers, root, init, None, None)
        result = run_zero_shot(method, dataset, fold=fold, flags=flags, sets=set_ or [], results=results)
        label = result["protocol"]["init"]["label"]
    elif compound:
        from bench.fusion import compound as run_compound

        if run is None:
            raise BenchError("bench eval --compound needs --run DIR (a completed run trained on mafw)")
        result = run_compound(run, compound, dataset or "mafw_compound", out_dir)
        label = f"compound rule {compound}, no compound training"
    else:
        from bench.evaluation_cli import evaluate_checkpoint

        if checkpoint is None:
            raise BenchError("bench eval needs --checkpoint PATH (or --zero-shot, or --compound RULE --run DIR)")
        result = evaluate_checkpoint(checkpoint, method=method, dataset=dataset, fold=fold, source=source,
                                     protocol=protocol, device=device, workers=workers, root=root, sets=set_ or [],
                                     out_dir=out_dir)
        label = "checkpoint"
    if as_json:
        return _print_json(result)
    m = result["metrics"]
    out.print(f"{result['method']} on {result['dataset']} fold {result['fold']} ({label}): UAR {100 * m['uar']:.2f}  "
              f"WAR {100 * m['war']:.2f}  macro-F1 {100 * m['macro_f1']:.2f}  ({m['n_test']} test videos) -> "
              f"{result.get('out_dir') or result.get('dir')}", highlight=False, soft_wrap=True)


def _eval_robustness(run: Path | None, corrupt: str | None, on: str | None, fold: int | None, option, mapping,
                     device: str | None, workers: int | None, root: Path | None, as_json: bool) -> None:
    """`bench eval --run RUN --corrupt ...` / `--on DATASET`: results written beside the run."""
    from bench.robustness import evaluate_corruptions, evaluate_on

    if run is None:
        raise BenchError("--corrupt / --on evaluate a trained run: give --run <run directory>")
    if corrupt and on:
        raise BenchError("use --corrupt or --on, one at a time")
    if corrupt:
        from bench.data.corruptions import parse_corruptions

        items = parse_corruptions(corrupt)
        results = evaluate_corruptions(run, items, device=device, workers=workers,
                                       progress=None if as_json else (lambda s: err.print(f"[dim]{s}[/dim]")))
        if as_json:
            return _print_json(results)
        table = Table(title=f"{run.name}: UAR (%) under corruption", box=None, pad_edge=False)
        for col in ("corruption", "severity", "UAR", "WAR"):
            table.add_column(col)
        for r in results:
            table.add_row(r["corruption"], str(r["severity"] or "-"), f"{100 * r['metrics']['uar']:.2f}",
                          f"{100 * r['metrics']['war']:.2f}")
        out.print(table)
        out.print(f"written under {run / 'corruptions'}")
        return
    from bench.cli_data import parse_options

    r = evaluate_on(run, on, fold, parse_options(option), mapping, device=device, workers=workers,
                    root=str(root) if root else None)
    if as_json:
        return _print_json(r)
    c, m = r["cross"], r["metrics"]
    out.print(f"{c['source']} -> {c['target']} (fold {c['fold']}): UAR {100 * m['uar']:.2f}  WAR {100 * m['war']:.2f} "
              f"on {m['n_test']} clips of {len(m['classes'])} mapped classes ({c['excluded_clips']} clips of unmapped "
              f"classes left out)", highlight=False, soft_wrap=True)


@app.command()
def fuse(
    runs: Annotated[str | None, typer.Option(help="comma list of completed run directories")] = None,
    methods: Annotated[str | None, typer.Option(help="comma list of methods (their completed run on --dataset/--fold)")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d")] = None,
    fold: Annotated[int | None, typer.Option()] = None,
    rule: Annotated[str, typer.Option(help="mean (fixed) | mhpf (Multi-Head Probability Fusion, fitted on train)")] = "mean",
    results: Annotated[Path, typer.Option()] = Path("results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Late fusion of the per-video probabilities of completed runs on the same test split; the fused result is a
    row of the report with its sources."""
    from bench.fusion import find_run
    from bench.fusion import fuse as run_fuse

    if runs:
        sources = [Path(r) for r in runs.split(",")]
    elif methods and dataset:
        sources = [find_run(results, m, dataset, fold) for m in methods.split(",")]
    else:
        raise BenchError("bench fuse needs --runs DIR,DIR or --methods a,b --dataset D [--fold F]")
    for s in sources:
        if not (s / "result.json").is_file():
            raise BenchError(f"{s}: not a completed run directory (no result.json)")
    result = run_fuse(sources, rule, results)
    if as_json:
        return _print_json(result)
    m = result["metrics"]
    out.print(f"{result['method']} on {result['dataset']} fold {result['fold']}: UAR {100 * m['uar']:.2f}  "
              f"WAR {100 * m['war']:.2f}  macro-F1 {100 * m['macro_f1']:.2f} -> {result['dir']}",
              highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------- compare
@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="run directory, run id, or method name (its report row)")],
    b: Annotated[str, typer.Argument(help="the same for the other side")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="for method names with runs on several")] = None,
    results: Annotated[Path, typer.Option(help="results directory holding runs/")] = Path("results"),
    resamples: Annotated[int, typer.Option(help="bootstrap resamples")] = 2000,
    permutations: Annotated[int, typer.Option(help="randomisation-test permutations")] = 5000,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Paired comparison of A and B on the same test videos: ΔUAR / ΔWAR with a paired bootstrap interval, an
    approximate randomisation p-value and McNemar's exact test; per fold and over the folds."""
    from bench.compare import compare as run_compare
    from bench.compare import verdict

    res = run_compare(a, b, results, dataset, n_resamples=resamples, n_permutations=permutations, seed=seed)
    if as_json:
        return _print_json(res)

    def pts(x: float) -> str:
        return f"{100 * x:+.1f}"

    table = Table(title=f"A = {res['a']}\nB = {res['b']}\n({res['dataset']})", box=None, pad_edge=False)
    for col in ("fold", "n", "UAR A/B", "ΔUAR [95%]", "ΔWAR [95%]", "McNemar p"):
        table.add_column(col, no_wrap=True)
    for f in res["per_fold"]:
        u, w = f["uar"], f["war"]
        table.add_row(str(f["fold"]), str(f["n_videos"]), f"{100 * u['a']:.1f}/{100 * u['b']:.1f}",
                      f"{pts(u['delta'])} [{pts(u['lo'])}, {pts(u['hi'])}]",
                      f"{pts(w['delta'])} [{pts(w['lo'])}, {pts(w['hi'])}]", f"{f['mcnemar']['p']:.2g}")
    c = res["combined"]
    if len(res["per_fold"]) > 1:
        table.add_row("mean", "", "", f"{pts(c['uar']['delta'])} [{pts(c['uar']['lo'])}, {pts(c['uar']['hi'])}]",
                      f"{pts(c['war']['delta'])} [{pts(c['war']['lo'])}, {pts(c['war']['hi'])}]",
                      f"{c['mcnemar']['p']:.2g}")
    out.print(table)
    out.print(f"randomisation test (two-sided, {res['permutations']} permutations): p(ΔUAR) = "
              f"{c['uar']['p_randomisation']:.3g}, p(ΔWAR) = {c['war']['p_randomisation']:.3g}; McNemar on per-video "
              f"correctness: A only right {c['mcnemar']['a_only']}, B only right {c['mcnemar']['b_only']}, p = "
              f"{c['mcnemar']['p']:.3g}", highlight=False, soft_wrap=True)
    out.print(verdict(res), highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------- profile
@app.command()
def profile(
    method: Method,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="use this dataset's recipe input and classes")] = None,
    frames: Annotated[int | None, typer.Option()] = None,
    size: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str, typer.Option()] = "cpu",
    precision: Annotated[str, typer.Option()] = "fp32",
    latency: Annotated[bool, typer.Option(help="measure latency/throughput")] = True,
    train: Annotated[bool, typer.Option("--train", help="also time training steps at the recipe's batch (GPU-hour estimates)")] = False,
    results: Annotated[Path, typer.Option()] = Path("results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Params, GMACs (fvcore, cross-checked with FlopCounterMode/2), latency, throughput, memory; with --train the
    training throughput that `bench sweep --paper --dry-run` turns into GPU-hours."""
    from bench.profile import format_profile_table, profile_file, profile_method
    from bench.registry import METHODS
    from bench.store import atomic_write_json

    names = METHODS.names(method) if any(c in method for c in "*?[") else [METHODS.get(method).name]
    profiles = []
    for name in names:
        train_batch = None
        if train:
            from bench.spec import resolve_spec

            train_batch = resolve_spec(name, dataset or "dfew").train.batch_size
        p = profile_method(name, dataset=dataset, frames=frames, size=size, device=device, precision=precision,
                           latency=latency, train_batch=train_batch)
        atomic_write_json(profile_file(results, p), p)
        profiles.append(p)
    if as_json:
        return _print_json(profiles)
    out.print(format_profile_table(profiles))


# ---------------------------------------------------------------------------------------------- report
@app.command()
def report(
    results: Annotated[Path, typer.Option(help="results directory to read")] = Path("results"),
    out_dir: Annotated[Path, typer.Option("--out", help="where tables and plots go")] = Path("reports"),
    plots: Annotated[bool, typer.Option(help="write PNG plots")] = True,
    paper: Annotated[str | None, typer.Option(help="one paper's tables: svfap, ifdd, s2d, mae_dfer, zoo, or a paper file")] = None,
    reported: Annotated[list[Path] | None, typer.Option(help="extra published numbers (CSV with literature.csv's columns)")] = None,
    mce_baseline: Annotated[str | None, typer.Option(help="the method whose corruption errors normalise mCE (default static_r18)")] = None,
    site: Annotated[bool, typer.Option(help="also write the static results site (<out>/site/index.html)")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tables (md/csv/tex), plots and a manifest from every completed result.json (or one paper's tables)."""
    from bench.report import write_report

    summary = write_report(results, out_dir, plots=plots, paper=paper, reported=reported or (),
                           mce_baseline=mce_baseline, site=site)
    if as_json:
        return _print_json(summary)
    files = summary.get("files", [])
    if not summary.get("runs"):
        err.print(f"report: no completed result.json under {results}/runs; train one with `bench run -m r3d18 -d "
                  "synthetic`, or report the curated examples with `bench report --results results/examples`",
                  highlight=False, soft_wrap=True)
    out.print(f"report: {len(summary.get('runs', []))} runs -> {len(files)} files in {out_dir}/")
    for f in files:
        out.print(f"  {f}")


# ---------------------------------------------------------------------------------------------- sweep
@app.command()
def sweep(
    methods: Annotated[str | None, typer.Option(help="comma list of methods")] = None,
    paper: Annotated[str | None, typer.Option(help="plan exactly the runs of a paper's tables (bench report --paper)")] = None,
    datasets: Annotated[str, typer.Option(help="comma list of datasets")] = "synthetic",
    folds: Annotated[str, typer.Option(help="'all' or comma list")] = "all",
    seeds: Annotated[str, typer.Option(help="comma list")] = "0",
    backend: Annotated[str, typer.Option(help="debug (in-process) | local (subprocess per run, GPU slots) | slurm (submitit)")] = "local",
    max_parallel: Annotated[int, typer.Option(help="local: concurrent runs (default: visible GPUs, or 1)")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    results: Annotated[Path, typer.Option()] = Path("results"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan (and the resources per job) only")] = False,
    status: Annotated[bool, typer.Option("--status", help="show each planned run: queued, running, done or failed")] = False,
    gpus: Annotated[int | None, typer.Option(help="slurm: GPUs per node and run (default: 1 if the partition has GPUs, else 0)")] = None,
    nodes: Annotated[int, typer.Option(help="slurm: nodes per run (> 1: one DDP run over nodes x GPUs processes)")] = 1,
    tasks: Annotated[int | None, typer.Option(help="slurm: processes per node (default: GPUs, at least 1)")] = None,
    cpus: Annotated[int | None, typer.Option(help="slurm: CPUs per task (default 8, capped at the node's)")] = None,
    mem_gb: Annotated[int | None, typer.Option(help="slurm: memory per node in GB")] = None,
    timeout_min: Annotated[int, typer.Option(help="slurm: minutes per job")] = 720,
    slurm_partition: Annotated[str | None, typer.Option("--partition", "--slurm-partition")] = None,
    account: Annotated[str | None, typer.Option()] = None,
    qos: Annotated[str | None, typer.Option()] = None,
    constraint: Annotated[str | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="the runs' device (default: auto here; on slurm cuda when the "
                                                    "jobs get GPUs, else cpu)")] = None,
) -> None:
    """Many runs (methods x datasets x folds x seeds); completed runs (and, on SLURM, queued or running ones) are
    skipped."""
    from bench.sweep import Resources, execute_plan, make_paper_plan, make_plan, plan_table, status_table

    resources = Resources(gpus=gpus, cpus=cpus, mem_gb=mem_gb, time_min=timeout_min, partition=slurm_partition,
                          account=account, qos=qos, constraint=constraint, nodes=nodes, tasks=tasks)
    on_slurm = resources.resolved() if backend == "slurm" else None  # asks sinfo once
    if device is None and on_slurm:  # the plan is resolved here, the runs on the jobs' nodes: the same device
        device = "cuda" if on_slurm.gpus else "cpu"
    flags: dict = {"train": {"epochs": epochs}} if epochs is not None else {}
    if device is not None:
        flags.setdefault("train", {})["device"] = device
    seed_list = [int(s) for s in seeds.split(",")]
    if paper is not None:
        plan = make_paper_plan(paper, seed_list, flags, set_ or [], results)
    elif methods:
        plan = make_plan(methods.split(","), datasets.split(","), folds, seed_list, flags, set_ or [], results)
    else:
        raise BenchError("bench sweep needs --methods (with --datasets/--folds/--seeds) or --paper NAME")
    if status:
        table, _ = status_table(plan, results)
        out.print(table)
        return
    out.print(plan_table(plan, on_slurm))
    if dry_run:
        return
    execute_plan(plan, backend=backend, results=results, max_parallel=max_parallel, resources=resources, console=out)


def main() -> None:
    """Console entry point: BenchError -> one line on stderr, exit code 2 (3: the run is held by another process;
    no traceback). An OSError from a read-only, foreign or full directory that no command turned into a
    BenchError gets the same one line; any other exception keeps its traceback (a bug to report)."""
    try:
        app()
    except BenchError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise SystemExit(e.exit_code) from None
    except OSError as e:
        from bench.store import storage_error

        line = storage_error(e, Path(e.filename or "."))
        if line is None:
            raise
        err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        raise SystemExit(line.exit_code) from None


if __name__ == "__main__":
    main()
