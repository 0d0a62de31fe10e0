"""`synthetic`: procedurally rendered face videos in the 7 DFEW classes, generated on first use in seconds.

Why it exists: a DFER testbed that needs no EULA, runs end to end on a laptop CPU, and where we *know* what
carries the label: the emotion lives in the dynamics of a few facial action parameters (see
`_synthetic_render`), diluted by emotion-irrelevant content (identity, resting-face bias, talking, blinking,
head motion, lighting, moving backgrounds). surprise/fear and angry/disgust are exact time reversals of each
other, so a model that ignores temporal order cannot beat chance within those pairs.

It goes through the same path as real data: generation writes DFEW-style frame folders
(`clips/<id>/1.jpg..N.jpg`) and split lists (`splits/set_<k>/{train,test}.txt`, lines `clips/00001 happy`);
`build_manifest` then parses those lists with `bench.data.lists` and counts frames on disk with
`bench.data.frames.list_frames`, never trusting the generator's memory.

Why "time matters" here, measured on the ground-truth parameter trajectories of the default knobs (24
identities, train on 16, test on 8 unseen; logistic regression, chance 0.14): one random frame 0.45, the
time-averaged frame 0.69, every order-less statistic of the frames (mean/std/min/max/percentiles) 0.73 (the
time-reversed pairs stay at chance), the ordered trajectory resampled to 16 steps 0.996.
`tests/test_synthetic.py` re-checks this. (intensity=1.0, distractor=1.0: 0.37 / 0.45 / 0.76 / 0.98.)

Why these defaults (intensity 1.5, distractor 0.6): a from-scratch network first learns what one frame shows
and only later the order of events, so the temporal advantage appears only once it has learnt the faces. At
intensity 1.0 / distractor 1.0 the CPU recipes stop before that: on fold 1, after 10 epochs, ResNet-18+LSTM
scored 23.8% UAR and the single-frame control 27.1%. At the defaults, same recipes: 3D ResNet-18 42.9%,
ResNet-18+LSTM 41.4%, the control 36.2% (2026-11-30, 2 CPU cores; results/examples/runs).

Each combination of knobs (`data.options`) gets its own folder `<root>/<variant key>`, a short hash of the
knobs and the generator version, written atomically (temp folder + os.replace) so a killed or racing
generation never leaves half a dataset.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.api import ClipRecord, DatasetInfo, Manifest, register_dataset
from bench.data.frames import decode_image, list_frames, verify_frame_file
from bench.data.lists import map_label, read_lines, safe_join
from bench.datasets import _synthetic_render as R
from bench.datasets._common import Row, apply_policy, check_disjoint, rel_sources
from bench.errors import DataError

NAME = "synthetic"
CLASSES: tuple[str, ...] = R.CLASSES
GENERATOR_VERSION = 3
JPEG_QUALITY = 90

# knob -> default. `identities=None` means "automatic": min(30, clips_per_class), rounded down to a multiple of folds.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    # difficulty: sized so that from-scratch CNNs learn the dynamics within the 10-minute CPU recipes (see the
    # module docstring); intensity=1.0, distractor=1.0 is the harder variant of earlier generator versions
    "intensity": 1.5,  # scale of the expression amplitude (each clip draws 0.5-1.0 of it)
    "distractor": 0.6,  # scale of all emotion-irrelevant content; 0 = clean faces on a plain background
    "apex_len": 6.0,  # mean apex hold, frames
    "resolution": 64,  # square frame side, pixels
    "frames": [20, 40],  # clip length range, frames (inclusive)
    "short_fraction": 0.05,  # share of clips made 8-15 frames long, to exercise padding
    "clips_per_class": 90,
    "folds": 3,  # identity-disjoint cross-validation folds
    "identities": None,
    "label_noise": 0.0,  # fraction of TRAIN labels flipped to another class (test labels stay clean)
}
# options keys that belong to the data core, not to the generator; allowed, ignored here
PASSTHROUGH_OPTIONS = frozenset({"on_bad_clip", "verify", "refresh", "_collect", "_readonly_root"})
DEFAULT_FOLDS = (1, 2, 3)
DEFAULT_COUNTS = {1: (420, 210), 2: (420, 210), 3: (420, 210)}


# ----------------------------------------------------------------------------------------------------------
# knobs


def _num(name: str, value: Any, kind: type, lo: float, hi: float) -> Any:
    try:
        if isinstance(value, bool):
            raise ValueError
        out = kind(value)
        if kind is int and out != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(f"synthetic: data.options.{name}={value!r} is not a{'n integer' if kind is int else ' number'}") from None
    if not lo <= out <= hi:
        raise DataError(f"synthetic: data.options.{name}={value!r} is out of range [{lo}, {hi}]")
    return out


def parse_knobs(options: dict | None) -> dict[str, Any]:
    """Validated, normalised knobs (every key present) from a run's data.options. Unknown keys are errors."""
    options = dict(options or {})
    unknown = sorted(k for k in options if k not in DEFAULTS and k not in PASSTHROUGH_OPTIONS)
    if unknown:
        raise DataError(f"synthetic: unknown data.options key '{unknown[0]}'; known: {', '.join(DEFAULTS)}"
                        f" (and {', '.join(sorted(PASSTHROUGH_OPTIONS))})")
    k = {**DEFAULTS, **{key: v for key, v in options.items() if key in DEFAULTS}}
    out: dict[str, Any] = {
        "seed": _num("seed", k["seed"], int, 0, 2**32 - 1),
        "intensity": _num("intensity", k["intensity"], float, 0.0, 5.0),
        "distractor": _num("distractor", k["distractor"], float, 0.0, 5.0),
        "apex_len": _num("apex_len", k["apex_len"], float, 0.0, 200.0),
        "resolution": _num("resolution", k["resolution"], int, 16, 512),
        "short_fraction": _num("short_fraction", k["short_fraction"], float, 0.0, 1.0),
        "clips_per_class": _num("clips_per_class", k["clips_per_class"], int, 1, 100000),
        "folds": _num("folds", k["folds"], int, 2, 20),
        "label_noise": _num("label_noise", k["label_noise"], float, 0.0, 1.0),
    }
    fr = k["frames"]
    if isinstance(fr, str) and "-" in fr:
        fr = fr.split("-", 1)
    if isinstance(fr, (int, float, str)) and not isinstance(fr, bool):
        fr = [fr, fr]
    if not isinstance(fr, (list, tuple)) or len(fr) != 2:
        raise DataError(f"synthetic: data.options.frames={k['frames']!r} must be [min, max] or 'min-max' frames")
    lo, hi = (_num("frames", f, int, 2, 10000) for f in fr)
    if lo > hi:
        raise DataError(f"synthetic: data.options.frames={k['frames']!r} has min > max")
    out["frames"] = [lo, hi]
    if out["clips_per_class"] < out["folds"]:
        raise DataError(f"synthetic: data.options.clips_per_class={out['clips_per_class']} is below folds={out['folds']}; "
                        "every fold needs test clips of every class")
    if k["identities"] is None:
        n = min(30, out["clips_per_class"])
        out["identities"] = n - n % out["folds"]
    else:
        # each identity needs a clip of every class, and each fold at least one identity
        out["identities"] = _num("identities", k["identities"], int, out["folds"], out["clips_per_class"])
    return out


def variant_key(knobs: dict[str, Any]) -> str:
    """Short hash of the knobs and generator version: the folder name, so different knobs never collide."""
    blob = json.dumps({"version": GENERATOR_VERSION, **knobs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------------------
# plan: which clip is which (pure function of the knobs)


def clip_plan(knobs: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per clip (id, class index, identity, length, per-clip seed) in clip-id order.

    Every class gets `clips_per_class` clips spread round-robin over the identities, so any identity split is
    class-balanced. Ids are shuffled so the id order leaks nothing about the class."""
    seed, n_ids = knobs["seed"], knobs["identities"]
    lo, hi = knobs["frames"]
    rows = []
    for ci in range(len(CLASSES)):
        for j in range(knobs["clips_per_class"]):
            rng = np.random.default_rng([seed, 7, ci, j])
            if hi >= 16 and rng.uniform() < knobs["short_fraction"]:
                length = int(rng.integers(8, 16))
            else:
                length = int(rng.integers(lo, hi + 1))
            rows.append({"label": ci, "identity": j % n_ids, "frames": length, "rng": [seed, 7, ci, j, 1]})
    order = np.random.default_rng([seed, 3]).permutation(len(rows))
    plan = [rows[i] for i in order]
    for n, row in enumerate(plan, 1):
        row["id"] = f"{n:05d}"
    return plan


def identity_folds(knobs: dict[str, Any]) -> dict[int, int]:
    """identity -> fold (1-based) of which it is a TEST identity; folds get equal numbers of identities."""
    perm = np.random.default_rng([knobs["seed"], 13]).permutation(knobs["identities"])
    return {int(i): pos % knobs["folds"] + 1 for pos, i in enumerate(perm)}


def official_counts_for(options: dict) -> dict[int | None, tuple[int, int]]:
    """fold -> (train, test) clips that these knobs produce (the `bench data check` counts)."""
    knobs = parse_knobs(options)
    fold_of = identity_folds(knobs)
    plan = clip_plan(knobs)
    tests = [sum(fold_of[r["identity"]] == k for r in plan) for k in range(1, knobs["folds"] + 1)]
    return {k: (len(plan) - n, n) for k, n in enumerate(tests, 1)}


def make_identity(knobs: dict[str, Any], identity: int) -> R.Identity:
    return R.make_identity(np.random.default_rng([knobs["seed"], 11, identity]), knobs["distractor"])


def clip_params(knobs: dict[str, Any], row: dict[str, Any]) -> tuple[R.ClipParams, np.random.Generator]:
    """The trajectories of one planned clip (and the generator state the renderer continues from)."""
    rng = np.random.default_rng(row["rng"])
    p = R.clip_params(CLASSES[row["label"]], row["frames"], make_identity(knobs, row["identity"]), rng,
                      intensity=knobs["intensity"], distractor=knobs["distractor"], apex_len=knobs["apex_len"])
    return p, rng


def probe_features(au: np.ndarray, kind: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Features of one clip's action-parameter trajectory (T, n_AU) for the "does time matter" probes.

    frame: one random frame; mean: time average; bag: order-less statistics (mean, std, min, max, 10th/90th
    percentile: the best any frame-set model can see); sequence: the trajectory resampled to 16 steps, in order.
    """
    if kind == "frame":
        return au[(rng or np.random.default_rng(0)).integers(len(au))]
    if kind == "mean":
        return au.mean(0)
    if kind == "bag":
        return np.concatenate([au.mean(0), au.std(0), au.min(0), au.max(0), *np.percentile(au, [10, 90], axis=0)])
    if kind == "sequence":
        return au[np.linspace(0, len(au) - 1, 16).round().astype(int)].ravel()
    raise ValueError(f"unknown probe feature kind {kind!r}")


# ----------------------------------------------------------------------------------------------------------
# generation


def _encoder():
    try:
        import simplejpeg

        return lambda a: simplejpeg.encode_jpeg(a, quality=JPEG_QUALITY, colorspace="RGB")
    except ImportError:  # pragma: no cover - PIL fallback
        from io import BytesIO

        from PIL import Image

        def enc(a: np.ndarray) -> bytes:
            buf = BytesIO()
            Image.fromarray(a).save(buf, format="JPEG", quality=JPEG_QUALITY)
            return buf.getvalue()

        return enc


def _render_rows(dest: Path, knobs: dict[str, Any], rows: list[dict[str, Any]]) -> list[tuple]:
    """Render and write the frame folders of `rows`; returns (id, amplitude, event, au) per row.

    Each clip has its own seeded generator, so the output does not depend on how rows are split over workers."""
    encode = _encoder()
    idents: dict[int, R.Identity] = {}
    out = []
    for row in rows:
        ident = idents.setdefault(row["identity"], make_identity(knobs, row["identity"]))
        rng = np.random.default_rng(row["rng"])
        p = R.clip_params(CLASSES[row["label"]], row["frames"], ident, rng, intensity=knobs["intensity"],
                          distractor=knobs["distractor"], apex_len=knobs["apex_len"])
        frames = R.render_clip(p, ident, knobs["resolution"], rng, knobs["distractor"])
        cdir = dest / "clips" / row["id"]
        cdir.mkdir()
        for t, fr in enumerate(frames, 1):
            (cdir / f"{t}.jpg").write_bytes(encode(fr))
        out.append((row["id"], p.amplitude, p.event, p.au))
    return out


def _workers() -> int:
    """Render processes: $DFER_SYNTHETIC_WORKERS, else up to 2 (the default config then renders in ~10-20 s)."""
    env = os.environ.get("DFER_SYNTHETIC_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


def _write(dest: Path, knobs: dict[str, Any]) -> dict[str, Any]:
    """Render every clip and write clips/, splits/, clips.tsv, params.npz and meta.json into `dest`."""
    plan = clip_plan(knobs)
    (dest / "clips").mkdir(parents=True)
    n_workers = min(_workers(), max(1, len(plan) // 20))
    if n_workers > 1 and "fork" in mp.get_all_start_methods():
        ctx = mp.get_context("fork")  # numpy-only children; fork avoids re-importing the harness
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as ex:
            parts = list(ex.map(_render_rows, [dest] * n_workers, [knobs] * n_workers,
                                [plan[i::n_workers] for i in range(n_workers)]))
        done = {r[0]: r for part in parts for r in part}
    else:
        done = {r[0]: r for r in _render_rows(dest, knobs, plan)}
    table = ["clip\tidentity\tclass\tframes\tamplitude\tevent_start\tevent_end"]
    au, offsets = [], [0]
    for row in plan:
        _, amp, event, a = done[row["id"]]
        table.append(f"{row['id']}\t{row['identity']}\t{CLASSES[row['label']]}\t{row['frames']}\t"
                     f"{amp:.4f}\t{event[0]}\t{event[1]}")
        au.append(a)
        offsets.append(offsets[-1] + len(a))
    (dest / "clips.tsv").write_text("\n".join(table) + "\n")
    np.savez_compressed(dest / "params.npz", au=np.concatenate(au), offsets=np.array(offsets),
                        ids=np.array([r["id"] for r in plan]), names=np.array(R.AU_NAMES))
    # splits: identity-disjoint folds; label noise on train lists only, exactly round(rate * n) flips per fold
    fold_of = identity_folds(knobs)
    folds_meta = {}
    for k in range(1, knobs["folds"] + 1):
        test = [r for r in plan if fold_of[r["identity"]] == k]
        train = [r for r in plan if fold_of[r["identity"]] != k]
        noise_rng = np.random.default_rng([knobs["seed"], 17, k])
        n_flip = int(round(knobs["label_noise"] * len(train)))
        flip = set(noise_rng.choice(len(train), n_flip, replace=False).tolist()) if n_flip else set()
        train_labels, flipped = [], {}
        for i, r in enumerate(train):
            lab = r["label"]
            if i in flip:
                lab = int((lab + noise_rng.integers(1, len(CLASSES))) % len(CLASSES))
                flipped[r["id"]] = {"clean": CLASSES[r["label"]], "noisy": CLASSES[lab]}
            train_labels.append(lab)
        sdir = dest / "splits" / f"set_{k}"
        sdir.mkdir(parents=True)
        (sdir / "train.txt").write_text("".join(f"clips/{r['id']} {CLASSES[lab]}\n" for r, lab in zip(train, train_labels, strict=True)))
        (sdir / "test.txt").write_text("".join(f"clips/{r['id']} {CLASSES[r['label']]}\n" for r in test))
        folds_meta[str(k)] = {
            "train": len(train), "test": len(test),
            "test_identities": sorted(i for i, f in fold_of.items() if f == k),
            "flipped_train_labels": flipped,
        }
    meta = {
        "generator": "dfer-bench synthetic", "version": GENERATOR_VERSION, "variant": variant_key(knobs),
        "knobs": knobs, "classes": list(CLASSES), "action_parameters": list(R.AU_NAMES),
        "time_reversed_pairs": R.REVERSED_OF, "clips": len(plan), "frames": offsets[-1], "folds": folds_meta,
    }
    (dest / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_generated(root: Path, options: dict | None = None, *, quiet: bool = False) -> Path:
    """The variant folder for these knobs under `root`, generating it first if needed (atomic, race-safe)."""
    knobs = parse_knobs(options)
    key = variant_key(knobs)
    root = Path(root)
    final = root / key
    if final.is_dir():
        if not (final / "meta.json").is_file():
            raise DataError(f"{final}: synthetic variant folder has no meta.json (incomplete or edited); delete it to regenerate")
        return final
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".tmp-{key}-*"):  # left by a killed generation on this host
        try:
            pid = int(stale.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    n = knobs["clips_per_class"] * len(CLASSES)
    if not quiet:
        print(f"synthetic: generating variant {key} ({n} clips, {knobs['resolution']}px, seed {knobs['seed']}) "
              f"into {final} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        tmp.mkdir()
        meta = _write(tmp, knobs)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            # another process won the race: use its (identical) folder
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if not quiet:
        print(f"synthetic: variant {key} ready: {meta['clips']} clips, {meta['frames']} frames in "
              f"{time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return final


# ----------------------------------------------------------------------------------------------------------
# manifest


def build_manifest(root: Path, fold: int | None, options: dict) -> Manifest:
    """Generate the variant if needed, then read its split lists exactly like a released dataset's.

    Lines are parsed with `bench.data.lists`, frames counted on disk with `list_frames`, train/test leaks and
    the bad-clip policy (`on_bad_clip`, `_collect`) handled by the same helpers as the real datasets."""
    options = dict(options or {})
    knobs = parse_knobs(options)
    fold = 1 if fold is None else int(fold)
    if not 1 <= fold <= knobs["folds"]:
        raise DataError(f"synthetic: fold {fold} does not exist; this variant has folds 1..{knobs['folds']}")
    if options.get("_readonly_root") and not (Path(root) / variant_key(knobs)).is_dir():
        raise DataError(f"{root}: no synthetic variant {variant_key(knobs)} here (a prepared copy holds "
                        "<root>/<variant>/clips and splits); pass the --root that holds it")
    vroot = ensure_generated(Path(root), options)
    rows: list[Row] = []
    files: list[Path] = []
    for split in ("train", "test"):
        list_file = vroot / "splits" / f"set_{fold}" / f"{split}.txt"
        files.append(list_file)
        for lineno, line in enumerate(read_lines(list_file), 1):
            parts = line.split()
            if len(parts) != 2:
                raise DataError(f"{list_file}: line {lineno} is {line!r}; expected 'clips/<id> <class>'")
            rel, name = parts
            label = map_label(name, CLASSES, list_file)
            safe_join(vroot, rel, list_file)
            rows.append(Row(Path(rel).name, rel, label, split, str(list_file), lineno))
    check_disjoint(rows, NAME, fold)
    level = options.get("verify", "count")
    if level not in ("count", "tail", "deep"):
        raise DataError(f"data.options.verify={level!r}: use count, tail or deep")
    records: list[ClipRecord] = []
    skipped: list[dict] = []
    for r in rows:
        path = safe_join(vroot, r.rel_path, Path(r.source))
        n, problem = _inspect(path, level)
        if problem is not None:
            skipped.append({"kind": problem[0], "split": r.split, "clip_id": r.clip_id, "path": str(path),
                            "reason": problem[1]})
            continue
        records.append(ClipRecord(r.clip_id, r.rel_path, n, r.label, r.split, fold))
    m = Manifest(dataset=NAME, root=vroot, classes=CLASSES, records=records, fold=fold, media="frames",
                 sources=rel_sources(vroot, files), skipped=skipped, variant=vroot.name)
    return apply_policy(m, options)


def _inspect(path: Path, level: str) -> tuple[int, tuple[str, str] | None]:
    """(frames on disk, (kind, reason) of a problem or None). Counted afresh every time (no memo), so an edit
    on disk always shows; `tail` checks each JPEG's end marker, `deep` decodes every frame."""
    try:
        frames = list_frames(path)
    except DataError as e:
        return 0, ("empty" if path.is_dir() else "missing", str(e).split(": ", 1)[-1])
    if level != "count":
        for f in frames:
            why = verify_frame_file(f)
            if why is None and level == "deep":
                try:
                    decode_image(f)
                except DataError as e:
                    why = str(e).split(": ", 1)[-1]
            if why:
                return len(frames), ("corrupt", f"{f.name}: {why}")
    return len(frames), None


def _present(root: Path) -> bool:
    """Always available: a missing variant is generated on first use."""
    return True


INFO = register_dataset(DatasetInfo(
    name=NAME,
    title="Synthetic DFER (procedural face videos)",
    classes=CLASSES,
    folds=DEFAULT_FOLDS,
    protocol="mean_over_folds",
    build_manifest=build_manifest,
    env_var="DFER_SYNTHETIC_ROOT",
    default_root="synthetic",
    access="Nothing to download: generated on first use (seconds) into a cache folder, one sub-folder per knob set.",
    layout=(
        "<root>/<variant key>/clips/<5-digit id>/1.jpg..N.jpg\n"
        "<root>/<variant key>/splits/set_<k>/{train,test}.txt   lines: 'clips/00001 happy'\n"
        "<root>/<variant key>/meta.json, clips.tsv, params.npz\n"
    ),
    official_counts=dict(DEFAULT_COUNTS),
    counts_for=official_counts_for,
    is_present=_present,
    generated=True,
    description=(
        "7 DFEW classes rendered procedurally; the emotion is carried by the dynamics of facial action "
        "parameters (surprise/fear and angry/disgust are time reversals of each other) and diluted by identity, "
        "resting-face bias, talking, blinking, head motion, lighting and moving backgrounds. Knobs via "
        "data.options: " + ", ".join(DEFAULTS) + "."
    ),
))
