"""bench report on fixture run directories written here: numbers, flags, LaTeX, plots, manifest, literature."""

from __future__ import annotations

import csv
import json
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.metrics import compute_metrics
from bench.report import REPO_ROOT, pareto_front, write_report
from bench.spec import resolve_spec
from bench.store import run_dir, run_result, write_result
from tests.conftest import bench_cli

DFEW_CLASSES = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
FERV_CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
LITERATURE = REPO_ROOT / "results" / "reference" / "literature.csv"


def _write_run(root: Path, method: str, dataset: str, fold, seed: int, classes: list[str], *,
               selection: str = "last", acc: float = 0.5, params: int = 33_000_000, gmacs: float = 8.1,
               schema_version: int = 1, lr: float = 1e-3) -> dict:
    """A completed run written through the store's own schema (bench.store.run_result / write_result), with
    predictions drawn at accuracy `acc`."""
    rng = np.random.default_rng(zlib.crc32(f"{method}{dataset}{fold}{seed}{selection}".encode()))
    k = len(classes)
    y = rng.integers(0, k, 300)
    if dataset == "dfew" and method == "r18_lstm" and fold == 2:
        y[y == k - 1] = 0  # class "fear" absent from this fold's test set
    pred = np.where(rng.random(300) < acc, y, rng.integers(0, k, 300))
    m = compute_metrics(y, pred, classes)
    spec = resolve_spec(method, dataset, fold=fold, seed=seed, flags={
        "train": {"epochs": 3, "selection": selection, "device": "cpu"}, "optim": {"lr": lr},
        "data": {"root": f"/data/{seed}", "workers": 2}})
    profile = {"params_total": params, "params_trainable": params, "gmacs": gmacs, "gmacs_fvcore": gmacs,
               "gmacs_flopcounter": gmacs * 0.99, "views_per_video": 1.0, "gmacs_per_video": gmacs, "latency": None}
    result = run_result(spec=spec, family="3D CNN", variant_of=None, duration_s=12.5, selected_epoch=2,
                        views_per_video=1.0, init={"kind": "scratch", "label": "scratch", "path": None, "sha256": None},
                        metrics={**m, "epoch": 2, "split": "test"}, metrics_last=None, profile=profile,
                        env={"torch": "2.x", "device": "cpu", "manifest_sha256": "0" * 64},
                        data={"n_train": 1000, "n_val": 0, "n_test": 300, "skipped": []})
    rdir = run_dir(root, spec)
    if schema_version == 1:
        write_result(rdir, result)
    else:
        rdir.mkdir(parents=True)
        (rdir / "result.json").write_text(json.dumps({**result, "schema_version": schema_version}))
    with open(rdir / "metrics.jsonl", "w") as f:
        for ep in range(3):
            ev = {"split": "test", "uar": m["uar"] * (0.8 + 0.1 * ep), "war": m["war"]}
            f.write(json.dumps({"epoch": ep, "lr": 1e-3, "train_loss": 2.0 - 0.3 * ep, "eval": ev, "time_s": 1.0})
                    + "\n")
    return result


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    runs: list[dict] = []
    for f in range(1, 6):  # complete 5-fold set, selection "last"
        runs.append(_write_run(root, "r3d18", "dfew", f, 0, DFEW_CLASSES, acc=0.45 + 0.02 * f))
    for f in range(1, 6):  # same method, epoch chosen on test: its own row
        runs.append(_write_run(root, "r3d18", "dfew", f, 0, DFEW_CLASSES, selection="best_on_test", acc=0.5))
    for f in (1, 2, 4):  # incomplete fold set, two seeds on fold 1
        runs.append(_write_run(root, "r18_lstm", "dfew", f, 0, DFEW_CLASSES, acc=0.55, params=40_000_000,
                               gmacs=8.5))
    runs.append(_write_run(root, "r18_lstm", "dfew", 1, 1, DFEW_CLASSES, acc=0.6, params=40_000_000, gmacs=8.5))
    runs.append(_write_run(root, "static_r18", "dfew", 1, 0, DFEW_CLASSES, acc=0.3, params=11_000_000,
                           gmacs=29.0))
    runs.append(_write_run(root, "r3d18", "ferv39k", None, 0, FERV_CLASSES, acc=0.35))
    for s in (0, 1):
        runs.append(_write_run(root, "static_r18", "ferv39k", None, s, FERV_CLASSES, acc=0.3,
                               params=11_000_000, gmacs=29.0))
    # not used: an unknown schema version, and a failed run without result.json
    _write_run(root, "r3d18", "mafw", 1, 0, DFEW_CLASSES, schema_version=99)
    failed = root / "runs" / "dfew" / "r3d18" / "failed-run"
    failed.mkdir(parents=True)
    (failed / "error.txt").write_text("Traceback ...")
    out = root.parent / (root.name + "_reports")
    with pytest.warns(UserWarning, match="schema_version"):
        res = write_report(root, out, literature=LITERATURE)
    return {"root": root, "out": out, "res": res, "runs": runs}


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _row(rows, method, selection="last"):
    (r,) = [r for r in rows if r["method"] == method and r["selection"] == selection]
    return r


def test_means_and_stds_match_independent_computation(report):
    rows = _read_csv(report["out"] / "tables" / "dfew.csv")
    by = {}
    for r in report["runs"]:
        if r["dataset"] == "dfew":
            by.setdefault((r["method"], r["protocol"]["selection"]), []).append(r)
    # r3d18 / last: five folds, one seed each
    u = [100 * r["metrics"]["uar"] for r in by[("r3d18", "last")]]
    w = [100 * r["metrics"]["war"] for r in by[("r3d18", "last")]]
    row = _row(rows, "r3d18")
    assert float(row["uar_mean"]) == pytest.approx(np.mean(u))
    assert float(row["uar_std"]) == pytest.approx(np.std(u, ddof=1))
    assert float(row["war_mean"]) == pytest.approx(np.mean(w))
    assert float(row["war_std"]) == pytest.approx(np.std(w, ddof=1))
    assert row["complete"] == "True" and row["n_folds"] == "5"
    f1 = [100 * r["metrics"]["macro_f1"] for r in by[("r3d18", "last")]]
    assert float(row["macro_f1_mean"]) == pytest.approx(np.mean(f1))
    assert float(row["macro_f1_std"]) == pytest.approx(np.std(f1, ddof=1))
    assert float(row["params_m"]) == pytest.approx(33.0) and float(row["gmacs"]) == pytest.approx(8.1)
    # r18_lstm: fold 1 has two seeds -> averaged first, then the unweighted mean over 3 folds
    lstm = by[("r18_lstm", "last")]
    f1 = np.mean([100 * r["metrics"]["uar"] for r in lstm if r["fold"] == 1])
    per_fold = [f1] + [100 * r["metrics"]["uar"] for r in lstm if r["fold"] in (2, 4)]
    row = _row(rows, "r18_lstm")
    assert float(row["uar_mean"]) == pytest.approx(np.mean(per_fold))
    assert float(row["uar_std"]) == pytest.approx(np.std(per_fold, ddof=1))
    assert row["n_runs"] == "4" and row["seeds"] == "0;1"
    # markdown shows the same numbers with 2 decimals
    md = (report["out"] / "tables" / "dfew.md").read_text()
    assert f"{np.mean(per_fold):.2f} ± {np.std(per_fold, ddof=1):.2f}" in md


def test_incomplete_and_best_on_test_flagged(report):
    rows = _read_csv(report["out"] / "tables" / "dfew.csv")
    lstm = _row(rows, "r18_lstm")
    assert lstm["complete"] == "False" and lstm["n_folds"] == "3" and lstm["n_folds_expected"] == "5"
    md = (report["out"] / "tables" / "dfew.md").read_text()
    assert "3/5 folds (INCOMPLETE)" in md and "1/5 folds (INCOMPLETE)" in md
    assert "5/5 folds |" in md
    bot = _row(rows, "r3d18", "best_on_test")
    assert bot["variant"] != _row(rows, "r3d18")["variant"]
    assert "BEST ON TEST" in md
    tex = (report["out"] / "tables" / "dfew.tex").read_text()
    assert "BEST ON TEST" in tex and "3/5 folds (INCOMPLETE)" in tex


def test_single_split_dataset(report):
    rows = _read_csv(report["out"] / "tables" / "ferv39k.csv")
    one = _row(rows, "r3d18")
    r = [x for x in report["runs"] if x["dataset"] == "ferv39k" and x["method"] == "r3d18"][0]
    assert float(one["uar_mean"]) == pytest.approx(100 * r["metrics"]["uar"]) and one["uar_std"] == ""
    md = (report["out"] / "tables" / "ferv39k.md").read_text()
    assert f"| {100 * r['metrics']['uar']:.2f} |" in md and "single split" in md
    two = _row(rows, "static_r18")
    u = [100 * x["metrics"]["uar"] for x in report["runs"] if x["dataset"] == "ferv39k" and x["method"] == "static_r18"]
    assert float(two["uar_mean"]) == pytest.approx(np.mean(u))
    assert float(two["uar_std"]) == pytest.approx(np.std(u, ddof=1)) and two["std_over"] == "seeds"


def test_latex_booktabs(report):
    for name in ("dfew.tex", "ferv39k.tex", "dfew_per_class.tex"):
        tex = (report["out"] / "tables" / name).read_text()
        assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
        assert "\\begin{tabular}" in tex and "\\end{tabular}" in tex
    tex = (report["out"] / "tables" / "dfew.tex").read_text()
    assert "$\\pm$" in tex and "r18\\_lstm" in tex and "±" not in tex
    # the mean ± std cells are LaTeX as written, not escaped (a data row, not only the caption)
    row = next(line for line in tex.splitlines() if line.startswith("r18\\_lstm"))
    assert re.search(r" & \d+\.\d\d \$\\pm\$ \d+\.\d\d & ", row) and "textbackslash" not in row


def test_per_class_and_folds_tables(report):
    rows = _read_csv(report["out"] / "tables" / "dfew_per_class.csv")
    lstm = _row(rows, "r18_lstm")
    runs = [r for r in report["runs"] if r["dataset"] == "dfew" and r["method"] == "r18_lstm"]
    # "fear" is absent from fold 2's test set: mean over the folds where it exists (seeds averaged first)
    f1 = np.mean([r["metrics"]["per_class_recall"]["fear"] for r in runs if r["fold"] == 1])
    f4 = [r["metrics"]["per_class_recall"]["fear"] for r in runs if r["fold"] == 4][0]
    assert [r["metrics"]["per_class_recall"]["fear"] for r in runs if r["fold"] == 2] == [None]
    assert float(lstm["fear"]) == pytest.approx(100 * np.mean([f1, f4]))
    hap = [np.mean([r["metrics"]["per_class_recall"]["happy"] for r in runs if r["fold"] == f]) for f in (1, 2, 4)]
    assert float(lstm["happy"]) == pytest.approx(100 * np.mean(hap))
    assert list(rows[0].keys())[5:12] == DFEW_CLASSES
    folds = _read_csv(report["out"] / "tables" / "dfew_folds.csv")
    n_dfew = sum(r["dataset"] == "dfew" for r in report["runs"])
    assert len(folds) == n_dfew
    assert {"fold", "seed", "uar", "war", "epoch", "selection", "run_id"} <= set(folds[0])
    one = next(f for f in folds if f["run_id"] == report["runs"][0]["run_id"])
    assert float(one["uar"]) == pytest.approx(100 * report["runs"][0]["metrics"]["uar"])


def test_reported_columns_from_literature(report):
    with open(LITERATURE, newline="") as f:
        lit = [r for r in csv.DictReader(f) if r["method"] == "3D ResNet-18" and r["dataset"] == "DFEW"
               and r["source_kind"] == "paper"]
    assert lit, "the literature CSV should hold a paper row for 3D ResNet-18 on DFEW"
    row = _row(_read_csv(report["out"] / "tables" / "dfew.csv"), "r3d18")
    assert float(row["reported_uar"]) == pytest.approx(float(lit[0]["uar"]))
    assert float(row["reported_war"]) == pytest.approx(float(lit[0]["war"]))
    assert float(row["reported_gflops"]) == pytest.approx(float(lit[0]["gflops"]))
    assert row["reported_source"].startswith("paper: SVFAP")
    md = (report["out"] / "tables" / "dfew.md").read_text()
    assert f"| {float(lit[0]['uar']):.2f} | {float(lit[0]['war']):.2f} |" in md
    ferv = _row(_read_csv(report["out"] / "tables" / "ferv39k.csv"), "r3d18")
    assert float(ferv["reported_params_m"]) == pytest.approx(33.0)  # FERV39k row carries params


def test_plots_exist_and_are_real_pngs(report):
    from PIL import Image

    plots = report["out"] / "plots"
    expected = ["accuracy_vs_gmacs.png", "curves_dfew.png", "curves_ferv39k.png",
                "confusion_ferv39k_r3d18.png", "confusion_dfew_r18_lstm.png"]
    names = {p.name for p in plots.glob("*.png")}
    assert set(expected) <= names
    assert sum(n.startswith("confusion_dfew_r3d18_") for n in names) == 2  # two r3d18 rows on DFEW
    for p in plots.glob("*.png"):
        assert p.stat().st_size > 10_000, p
        with Image.open(p) as im:
            im.verify()
    with Image.open(plots / "accuracy_vs_gmacs.png") as im:
        assert im.size[0] > im.size[1]  # one column per dataset, two datasets


def test_manifest_lists_exactly_the_used_runs(report):
    man = json.loads((report["out"] / "manifest.json").read_text())
    expected = sorted(r["run_id"] for r in report["runs"])
    assert sorted(man["run_ids"]) == expected
    assert sorted(report["res"]["runs"]) == expected
    assert all(Path(r["result_json"]).is_file() and r["config_hash"] for r in man["runs"])
    assert len(man["skipped"]) == 1 and "schema_version" in man["skipped"][0]["reason"]
    assert man["dfer_bench_version"] and man["generated_at"]
    assert man["literature"]["sha256"]
    for f in report["res"]["files"]:
        assert Path(f).is_file()
    assert {"tables/dfew.md", "tables/dfew.csv", "tables/dfew.tex", "tables/ferv39k_per_class.md",
            "tables/dfew_folds.csv", "plots/accuracy_vs_gmacs.png"} <= set(man["files"])
    json.dumps(report["res"])


@pytest.mark.slow
def test_formats_and_no_plots(tmp_path, report):
    out = tmp_path / "r"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the schema_version warning, already tested
        res = write_report(report["root"], out, formats=("csv",), plots=False, literature=LITERATURE)
    assert not (out / "plots").exists() and not list(out.glob("tables/*.md"))
    assert (out / "tables" / "dfew.csv").is_file() and res["n_runs"] == len(report["runs"])
    with pytest.raises(BenchError, match="xlsx"):
        write_report(report["root"], out, formats=("xlsx",))


def test_empty_results(tmp_path):
    (tmp_path / "nothing").mkdir()
    res = write_report(tmp_path / "nothing", tmp_path / "out", literature=LITERATURE)
    assert res["runs"] == [] and Path(res["manifest"]).is_file()
    with pytest.raises(BenchError, match="results directory not found"):
        write_report(tmp_path / "absent", tmp_path / "out", literature=LITERATURE)


@pytest.mark.slow
def test_folds_differing_only_in_non_semantic_keys_form_one_row(tmp_path):
    """augment_on / workers / device / root do not change results (spec.NON_SEMANTIC, the run-id rule): folds run
    with different values of them are one complete row, not several INCOMPLETE ones."""
    for fold, where in zip(range(1, 6), ["worker", "device", "auto", "worker", "device"], strict=True):
        spec = resolve_spec("r3d18", "dfew", fold=fold, sets=[f"data.augment_on={where}", f"data.workers={fold}",
                                                              f"train.device={'cpu' if fold % 2 else 'cuda'}"])
        m = compute_metrics([0, 1, 2], [0, 1, 1], DFEW_CLASSES)
        write_result(run_dir(tmp_path, spec), run_result(
            spec=spec, family="3D CNN", variant_of=None, duration_s=1, selected_epoch=1, views_per_video=1.0,
            init={"kind": "scratch", "label": "scratch"}, metrics={**m, "epoch": 1}, metrics_last=None, profile={},
            env={}, data={}))
    bench_cli(["report", "--results", str(tmp_path), "--out", str(tmp_path / "out"), "--no-plots"], tmp_path,
              check=True)
    rows = _read_csv(tmp_path / "out" / "tables" / "dfew.csv")
    assert len(rows) == 1 and rows[0]["complete"] == "True" and rows[0]["n_folds"] == "5"


def test_reference_literature_is_the_shared_copy():
    """results/reference/literature.csv is kept in sync with the project's reference file (../shared/reference);
    under CI the reference must be there."""
    import os

    shared = next((p for p in (REPO_ROOT.parent / "shared" / "reference" / "literature.csv",
                               Path("/work/shared/reference/literature.csv")) if p.is_file()), None)
    if shared is None:
        assert not os.environ.get("CI"), "CI needs ../shared/reference/literature.csv"
        pytest.skip("no shared reference copy on this machine")
    assert LITERATURE.read_bytes() == shared.read_bytes()


def test_pareto_front():
    pts = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (0.5, 40.0), (2.0, 58.0), (4.0, 61.0)]
    assert pareto_front(pts) == [3, 0, 1, 5]


@pytest.mark.slow
def test_robustness_plot_over_label_noise(tmp_path):
    """Synthetic runs of one method at several label_noise levels: one line of UAR vs noise, and the level in the
    table's input column."""
    from PIL import Image

    classes = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
    for noise, acc in ((0.0, 0.6), (0.2, 0.5), (0.4, 0.35)):
        spec = resolve_spec("r3d18", "synthetic", fold=1, sets=[f"data.options.label_noise={noise}"])
        rng = np.random.default_rng(int(noise * 10))
        y = rng.integers(0, 7, 200)
        pred = np.where(rng.random(200) < acc, y, rng.integers(0, 7, 200))
        write_result(run_dir(tmp_path, spec), run_result(
            spec=spec, family="3D CNN", variant_of=None, duration_s=1, selected_epoch=1, views_per_video=1.0,
            init={"kind": "scratch", "label": "scratch"}, metrics={**compute_metrics(y, pred, classes), "epoch": 1},
            metrics_last=None, profile={"gmacs": 1.0, "params_total": 1}, env={}, data={}))
    res = write_report(tmp_path, tmp_path / "out", literature=LITERATURE)
    plot = tmp_path / "out" / "plots" / "robustness_synthetic.png"
    assert str(plot) in res["files"]
    with Image.open(plot) as im:
        im.verify()
    rows = _read_csv(tmp_path / "out" / "tables" / "synthetic.csv")
    assert sorted(r["input"] for r in rows) == [f"8x48 (label_noise={n})" for n in (0.0, 0.2, 0.4)]


@pytest.mark.slow
def test_a_run_that_predicts_one_class_is_labelled_did_not_learn(tmp_path):
    """A model that predicts one class for every test clip has learnt only the class prior: its row says so,
    while a run with the same UAR from varied predictions does not get the label."""
    labels = [0, 1, 2, 0, 1, 2]
    for method, preds in [("r3d18", [1] * 6), ("static_r18", [0, 2, 1, 1, 0, 2])]:
        spec = resolve_spec(method, "synthetic", fold=1)
        m = compute_metrics(labels, preds, DFEW_CLASSES)
        write_result(run_dir(tmp_path, spec), run_result(
            spec=spec, family="test", variant_of=None, duration_s=1, selected_epoch=1, views_per_video=1.0,
            init={"kind": "scratch", "label": "scratch"}, metrics={**m, "epoch": 1}, metrics_last=None, profile={},
            env={}, data={}))
    bench_cli(["report", "--results", str(tmp_path), "--out", str(tmp_path / "out"), "--no-plots"], tmp_path,
              check=True)
    rows = {r["method"]: r for r in _read_csv(tmp_path / "out" / "tables" / "synthetic.csv")}
    assert rows["r3d18"]["did_not_learn"] == "True" and rows["static_r18"]["did_not_learn"] == "False"
    md = (tmp_path / "out" / "tables" / "synthetic.md").read_text().splitlines()
    (r3d,) = [line for line in md if line.startswith("| r3d18 ")]
    (static,) = [line for line in md if line.startswith("| static_r18 ")]
    assert "did not learn" in r3d and "did not learn" not in static


def test_a_stored_spec_that_predates_a_key_joins_the_row_of_todays_spec():
    """result.json files written before a key existed (data.mix, optim.layer_decay, data.randaugment, ...) group
    with today's runs of the same configuration: a missing key means its default. A set key still splits."""
    from bench.report.aggregate import variant_hash
    from bench.spec import resolve_spec

    today = json.loads(json.dumps(resolve_spec("r3d18", "synthetic", fold=1).to_dict(), default=str))
    older = json.loads(json.dumps(today))
    for section, key in (("data", "mix"), ("data", "train_clips"), ("optim", "layer_decay"), ("train", "sampler"),
                         ("data", "randaugment"), ("data", "random_erasing")):
        del older[section][key]
    assert variant_hash({"spec": older}) == variant_hash({"spec": today})
    older["optim"]["lr"] = today["optim"]["lr"] * 2
    assert variant_hash({"spec": older}) != variant_hash({"spec": today})


def test_added_literature_rows_follow_the_survey_conventions():
    """results/reference/literature_added.csv: the survey's header, a source and a kind on every row, numbers in
    percent, and every literature name a registered method lists is found in one of the two files."""
    from bench.registry import METHODS
    from bench.report.literature import ADDED_LITERATURE, load_all_literature

    with open(LITERATURE, newline="") as f:
        header = next(csv.reader(f))
    with open(ADDED_LITERATURE, newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == header
        rows = list(reader)
    assert rows
    for r in rows:
        row = dict(zip(header, r, strict=True))
        assert row["source"].strip() and row["source_kind"] in ("paper", "repo", "third-party"), row
        for k in ("uar", "war"):
            assert row[k] == "" or 0 < float(row[k]) <= 100, row
    names = {r["method"] for r in load_all_literature()}
    for m in METHODS.names():
        missing = [n for n in METHODS.get(m).literature if n not in names]
        assert not missing, (m, missing)
