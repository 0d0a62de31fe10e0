"""`bench`: list, run, eval, profile, report, sweep, data. Commands are thin: they build a spec and call the
library functions the tests call directly. Errors caused by input print one line (exit code 2)."""

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
                 as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Registered methods, variants shown under their parent."""
    from bench.registry import METHODS

    infos = [METHODS.get(n) for n in METHODS.names(pattern)]
    rows = [{"name": i.name, "family": i.family, "parent": i.parent, "frames": i.input.frames, "size": i.input.size,
             "channels": i.input.channels, "test_views": i.test_views, "paper": i.paper,
             "weights": {k: w.description for k, w in i.weights.items()},
             "recipe_datasets": sorted(i.recipe.datasets), "protocols": sorted(i.recipe.protocols) or ["default"],
             "description": i.description} for i in infos]
    if as_json:
        return _print_json(rows)
    table = Table(title="methods")
    for col in ("name", "family", "input", "test views", "local weights", "recipes", "paper"):
        table.add_column(col, overflow="fold")
    by_parent = {r["name"]: r for r in rows}
    ordered = [r for r in rows if not r["parent"] or r["parent"] not in by_parent]
    for top in list(ordered):
        idx = ordered.index(top)
        ordered[idx + 1:idx + 1] = [r for r in rows if r["parent"] == top["name"]]
    for r in ordered:
        name = ("  └ " + r["name"]) if r["parent"] in by_parent else r["name"]
        table.add_row(name, r["family"], f"{r['frames']}x{r['size']}²", r["test_views"], ", ".join(r["weights"]) or "-",
                      ", ".join(r["recipe_datasets"]) or "-", r["paper"])
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
    table = Table(title="datasets")
    for col in ("name", "classes", "folds", "protocol", "present", "root"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], f"{len(r['classes'])}: {', '.join(r['classes'][:3])}{', ...' if len(r['classes']) > 3 else ''}",
                      ",".join(map(str, r["folds"])) or "single split", r["protocol"], r["present"],
                      f"{r['root']} ({r['root_from']})")
    out.print(table)


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


def _folds(dataset: str, fold: str | None) -> list[int | None]:
    from bench.registry import DATASETS

    info = DATASETS.get(dataset)
    if fold is None:
        return [None]
    if fold == "all":
        return list(info.folds)
    try:
        return [int(f) for f in fold.split(",")]
    except ValueError:
        raise BenchError(f"--fold expects a number, a comma list or 'all', got {fold!r}") from None


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
    from bench.spec import resolve_spec
    from bench.train import run as run_spec

    flags = _flags(epochs, batch_size, lr, device, precision, workers, root, init, selection, on_bad_clip)
    summaries = []
    for f in _folds(dataset, fold):
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


# ---------------------------------------------------------------------------------------------- eval
@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[Path, typer.Option(help="a run's checkpoint (…/checkpoints/last.pt) or a method checkpoint")],
    method: Annotated[str | None, typer.Option("--method", "-m")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d")] = None,
    fold: Annotated[int | None, typer.Option()] = None,
    source: Annotated[str | None, typer.Option(help="weights source of the method to load it with (e.g. ifdd_official)")] = None,
    protocol: Annotated[str | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option()] = None,
    workers: Annotated[int | None, typer.Option()] = None,
    root: Annotated[Path | None, typer.Option()] = None,
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="where eval.json and predictions.npz go")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate a saved model on a dataset's test split (the run's own spec when the checkpoint is in a run dir)."""
    from bench.evaluation_cli import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, method=method, dataset=dataset, fold=fold, source=source, protocol=protocol,
                                 device=device, workers=workers, root=root, sets=set_ or [], out_dir=out_dir)
    if as_json:
        return _print_json(result)
    m = result["metrics"]
    out.print(f"{result['method']} on {result['dataset']} fold {result['fold']}: UAR {100 * m['uar']:.2f}  "
              f"WAR {100 * m['war']:.2f}  ({m['n_test']} test videos) -> {result['out_dir']}")


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
    results: Annotated[Path, typer.Option()] = Path("results"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Params, GMACs (fvcore, cross-checked with FlopCounterMode/2), latency, throughput, memory."""
    from bench.profile import format_profile_table, profile_method
    from bench.registry import DATASETS, METHODS
    from bench.store import atomic_write_json

    names = METHODS.names(method) if any(c in method for c in "*?[") else [method]
    profiles = []
    for name in names:
        kw: dict = {}
        num_classes = 7
        if dataset:
            from bench.spec import resolve_spec

            spec = resolve_spec(name, dataset)
            kw = {"frames": spec.data.frames, "size": spec.data.size}
            num_classes = len(DATASETS.get(dataset).classes) or 7  # `folder`/`list` learn classes from the data
        kw.update({k: v for k, v in {"frames": frames, "size": size}.items() if v is not None})
        p = profile_method(name, num_classes=num_classes, device=device, precision=precision, latency=latency, **kw)
        p["method"] = name
        key = p.get("latency_key") or (p.get("latency") or {}).get("latency_key") or f"{device}-{precision}"
        shape = "x".join(str(s) for s in p.get("input_shape", []))
        atomic_write_json(results / "profiles" / name / f"{shape}__{key}.json", p)
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
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tables (md/csv/tex), plots and a manifest from every completed result.json."""
    from bench.report import write_report

    summary = write_report(results, out_dir, plots=plots)
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
    methods: Annotated[str, typer.Option(help="comma list of methods")],
    datasets: Annotated[str, typer.Option(help="comma list of datasets")] = "synthetic",
    folds: Annotated[str, typer.Option(help="'all' or comma list")] = "all",
    seeds: Annotated[str, typer.Option(help="comma list")] = "0",
    backend: Annotated[str, typer.Option(help="debug (in-process) | local (subprocess per run, GPU slots) | slurm (submitit)")] = "local",
    max_parallel: Annotated[int, typer.Option(help="local: concurrent runs (default: visible GPUs, or 1)")] = 0,
    set_: Annotated[list[str] | None, typer.Option("--set")] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    results: Annotated[Path, typer.Option()] = Path("results"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan only")] = False,
    slurm_partition: Annotated[str | None, typer.Option()] = None,
    timeout_min: Annotated[int, typer.Option(help="slurm: minutes per job")] = 720,
) -> None:
    """Many runs (methods x datasets x folds x seeds); completed run ids are skipped."""
    from bench.sweep import execute_plan, make_plan, plan_table

    flags = {"train": {"epochs": epochs}} if epochs is not None else {}
    plan = make_plan(methods.split(","), datasets.split(","), folds, [int(s) for s in seeds.split(",")], flags,
                     set_ or [], results)
    out.print(plan_table(plan))
    if dry_run:
        return
    execute_plan(plan, backend=backend, results=results, max_parallel=max_parallel, slurm_partition=slurm_partition,
                 timeout_min=timeout_min, console=out)


def main() -> None:
    """Console entry point: BenchError -> one line on stderr, exit code 2 (no traceback)."""
    try:
        app()
    except BenchError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise SystemExit(e.exit_code) from None


if __name__ == "__main__":
    main()
