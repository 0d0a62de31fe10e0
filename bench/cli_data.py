"""`bench data ...`: check a dataset on disk, pack decoded clips, benchmark the loader.

Mounted by the main CLI with `app.add_typer(data_app, name="data")`. Errors are BenchError/DataError (one
line, exit 2 through the main CLI); `check` exits 1 when the dataset is not usable.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import typer
import yaml

from bench.errors import BenchError

data_app = typer.Typer(help="Check, verify, pack and benchmark datasets on disk.", no_args_is_help=True)


def parse_options(items: list[str] | None, **extra) -> dict:
    """`-o key=value` pairs (YAML-typed values) plus the named flags that were given."""
    out: dict = {}
    for it in items or []:
        if "=" not in it:
            raise BenchError(f"--option {it!r}: use key=value, e.g. -o variant=clip_224x224")
        k, v = it.split("=", 1)
        k = k.strip().removeprefix("data.options.")
        try:
            out[k] = yaml.safe_load(v) if v.strip() else ""
        except yaml.YAMLError:
            out[k] = v
        if isinstance(out[k], (dict,)) or out[k] is None:
            out[k] = v
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def _load_datasets() -> None:
    import bench.registry as reg

    reg.DATASETS._ensure_loaded()


@data_app.command()
def check(
    dataset: str = typer.Option(..., "--dataset", "-d", help="dataset name (dfew, ferv39k, mafw, ...)"),
    root: str | None = typer.Option(None, "--root", help="dataset root (else env var / config / data home)"),
    fold: list[int] | None = typer.Option(None, "--fold", help="fold(s) to check (default: all)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable report on stdout"),
    variant: str | None = typer.Option(None, "--variant", help="frame variant, e.g. clip_224x224_16f"),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="data option key=value (repeatable)"),
    on_bad_clip: str | None = typer.Option(None, "--on-bad-clip", help="error (default) | skip"),
    short: int = typer.Option(16, "--short", help="report clips with fewer frames than this"),
    deep: bool = typer.Option(False, "--deep", help="decode every frame (slow) instead of checking end markers"),
    refresh: bool = typer.Option(True, "--refresh", hidden=True, help="kept for scripts: a check always re-verifies"),
) -> None:
    """Walk the layout: clips found vs the official counts, missing/short/corrupt clips, bad labels. A check
    never trusts the manifest cache: it re-verifies every frame on disk and rewrites the cache."""
    from bench.data.check import check_dataset, render

    _load_datasets()
    opts = parse_options(option, variant=variant, on_bad_clip=on_bad_clip)
    report = check_dataset(dataset, root, list(fold) if fold else None, opts, short=short, deep=deep)
    if json_out:
        typer.echo(json.dumps(report, indent=1))
    else:
        render(report)
    raise typer.Exit(0 if report["usable"] else 1)


@data_app.command()
def verify(
    dataset: str = typer.Option(..., "--dataset", "-d", help="dataset name (dfew, ferv39k, mafw, synthetic, ...)"),
    root: str | None = typer.Option(None, "--root", help="the prepared copy (else env var / config / data home)"),
    fold: int | None = typer.Option(None, "--fold", help="one fold (default: all folds; the checkpoint: fold 1)"),
    with_: str | None = typer.Option(None, "--with", help="METHOD:SOURCE:FILE, a released checkpoint to evaluate"),
    expect: str | None = typer.Option(None, "--expect", help="uar=NN.N[,war=NN.N]: the number the checkpoint "
                                      "should reach (default: its published per-fold number)"),
    quick: bool = typer.Option(False, "--quick", help="a stratified few hundred test videos, and hashing a subset"),
    variant: str | None = typer.Option(None, "--variant", help="frame variant, e.g. clip_224x224_16f"),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="data option key=value (repeatable)"),
    device: str | None = typer.Option(None, "--device"),
    workers: int | None = typer.Option(None, "--workers"),
    out: Path | None = typer.Option(None, "--out", help="where verify.md / verify.json go (default: "
                                    "results/verify/<dataset>-<fold>-<time>)"),
    reported: list[Path] | None = typer.Option(None, "--reported", help="a CSV with literature.csv's columns: "
                                               "published per-fold numbers of your own (repeatable)"),
    json_out: bool = typer.Option(False, "--json", help="print the JSON report"),
) -> None:
    """Is this the data the papers used? A fingerprint against the release (counts, frames per clip, resolution,
    colour, duplicates, unreadable clips); with --with, a released checkpoint's score against its published
    per-fold number and a diagnosis of the preparation difference. Writes nothing into the dataset."""
    from datetime import datetime

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bench.report.literature import load_all_literature, load_reported
    from bench.verify import render_markdown, write_report
    from bench.verify import verify as run_verify

    _load_datasets()
    con = Console(stderr=True)
    opts = parse_options(option, variant=variant)
    literature = load_reported(reported or []) + load_all_literature()  # the user's rows first
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=con, transient=True, disable=not con.is_terminal)
    with bar:
        rep = run_verify(dataset, root, fold, opts, with_=with_, expect=expect, quick=quick, device=device,
                         workers=workers, literature=literature, bar=bar,
                         progress=None if json_out else (lambda s: con.print(f"[dim]{s}[/dim]", highlight=False)))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out or Path("results") / "verify" / f"{dataset}-f{fold if fold is not None else 'all'}-{stamp}"
    files = write_report(rep, out)
    if json_out:
        typer.echo(json.dumps(rep, indent=1, default=str))
    else:
        typer.echo(render_markdown(rep))
        typer.echo(f"written: {', '.join(map(str, files))}")
    bad = rep["mismatches"] or (rep.get("checkpoint") or {}).get("verdict", {}).get("verdict") in ("below", "above")
    raise typer.Exit(1 if bad else 0)


@data_app.command()
def pack(
    dataset: str = typer.Option(..., "--dataset", "-d"),
    size: int = typer.Option(..., "--size", help="short side of the packed frames (>= the model input size)"),
    root: str | None = typer.Option(None, "--root"),
    fold: list[int] | None = typer.Option(None, "--fold", help="fold(s) whose clips to pack (default: all)"),
    variant: str | None = typer.Option(None, "--variant"),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="data option key=value"),
    out: str | None = typer.Option(None, "--out", help="pack folder (default: $DFER_BENCH_CACHE/packs/...)"),
    workers: int | None = typer.Option(None, "--workers", help="decode threads (default: CPU count)"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Decode and resize every clip once into a .npy pack that runs then read instead of the JPEGs."""
    from bench.data.pack import pack_dataset

    _load_datasets()
    summary = pack_dataset(dataset, size, root, list(fold) if fold else None, parse_options(option, variant=variant),
                           out=out, workers=workers, log=(lambda s: None) if json_out else typer.echo)
    if json_out:
        typer.echo(json.dumps(summary, indent=1))


def _benchmark_module():
    """benchmarks/data_loading.py of the source checkout (dev tooling, not installed with the package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "data_loading.py"
    if not path.is_file():
        raise BenchError(f"{path}: benchmark script not found; run bench data bench from a source checkout")
    spec = importlib.util.spec_from_file_location("bench_data_loading", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@data_app.command("bench")
def bench_cmd(
    clips: int = typer.Option(40, "--clips", help="clips timed per reader"),
    frames: int = typer.Option(16, "--frames"),
    size: int = typer.Option(224, "--size"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Clips/s per worker: our reader vs the IFDD-style reader vs the raw JPEG decode limit."""
    mod = _benchmark_module()
    res = mod.run(clips=clips, frames=frames, size=size)
    typer.echo(json.dumps(res, indent=1) if json_out else mod.format_result(res))
