"""S2D (Chen et al., IEEE TAFFC 2024, arXiv 2312.05447): "From Static to Dynamic: Adapting Landmark-Aware Image
Models for Facial Expression Recognition in Videos"; official code github.com/MSA-LMC/S2D @ e1b5e5d (Apache-2.0).

A port of `s2d_base_patch16_224` (`model_finetuning.py`), its frozen MobileFaceNet landmark network (`landmark/`),
the Emotion-Anchor self-distillation loss (`SDL.py`, `utils/loss.py`) and the fine-tuning recipes
(`scripts/ft_{dfew,ferv39k,mafw}.sh`, `run_class_finetuning.py`), on timm pieces. Network modules are in
`methods/_s2d_layers.py`. Checked once against the official model (built from the repo with timm 1.0.31, weights copied
over, 4 frames at 64²): logits equal to 4.5e-8 in eval and in training mode (same dropout draws), landmark maps and
landmark outputs at 224² identical; not a test (the official code is not vendored).

Network. Every frame goes through a *frozen* ViT-B/16 (768-d, 12 blocks, 12 heads, LayerNorm eps 1e-6; there are no
tubelets, `--tubelet_size` is inert). Before each block a trainable prompt block adds two residual branches to the
patch tokens (not the class token): a Multi-View Complementary Prompter (MCP: 1x1 convs 768->8 on the RGB map and
on the landmark map, a "fovea" softmax over positions with learnable sharpness, 8->768) and a Temporal-Modeling
Adapter (TMA: temporal adapter 768->192, timm Attention(192, 8 heads) over the T frames of each position, ->768;
LayerNorm (eps 1e-5); spatial adapter 768->192->768). Block 0's prompter acts on the patch embedding; after it the
"landmark" input of each prompter is the previous prompter's MCP output, always normalised by `prompt_norms[0]`
(`prompt_norms[11]` exists, is trainable and counted, and is never used). A temporal positional embedding (1,T,768)
is added to all tokens (class token included) after the spatial one; `ln_post` (the static model's `norm`); head:
class tokens averaged over time -> Dropout (0.5; 0 for FERV39k) -> Linear. Trainable exactly as in the official
code: patch_embed_prompt, prompt_blocks (MCP + TMA), prompt_norms, temporal embedding, ln_post, head.

Landmark network. MobileFaceNet([112,112], 136) (1,007,248 weights + 19,650 BN statistics), frozen and in eval
mode for the whole run (also in `model.train()`), run without gradients on the *same* model input: the (B*T) frames
are resized 224 -> 112 (bilinear, align_corners=True) and its conv_4 output (128x14x14) feeds `patch_embed_prompt`.
It is a separate model in the official code, not part of S2D's state_dict, parameters or optimiser; here it is the
sub-module `landmark` whose weights are **buffers** (same state_dict keys, `landmark.<official key>`), so
`model.parameters()` - the optimiser and the parameter count - is exactly the official S2D, while the weights move
and checkpoint with the model. Quirk kept by default (`model.kwargs.landmark_input=imagenet_rgb`): MobileFaceNet
receives the ImageNet-normalised RGB training tensor (after crop/flip/mixup), whereas upstream
(cunjian/pytorch_face_landmark) trained and runs it on BGR/255 face crops without mean/std; `landmark_input=bgr01`
feeds it that instead (un-normalises with the ImageNet mean/std, flips to BGR). The official forward also runs the
network's unused landmark head (conv_45 .. GDC, 0.43 G/clip) and discards its output: kept
(`landmark_head=true`) at the official 112² landmark input; at any other size its 7x7 GDC kernel does not apply
and it is skipped (outputs unaffected).

Sizes (7 classes, measured from the official code built under timm 1.0.31, notes/s2d §4, §9):
- parameters 95,055,571 total / 9,258,451 trainable (MAFW, 11 classes: 95,058,647 / 9,261,527); baselines.md and
  the paper's "9.26 M tunable" agree. The landmark net's 1,007,248 weights are not included (buffers here, a
  separate model there).
- MACs per 16x224² clip: S2D alone **310.72 G** (fvcore, attention counted: linear 295.46, matmul 11.68, conv 2.85,
  layer_norm 0.74); the landmark net alone **3.64 G** per clip (16 x 0.2274 G at 112², its discarded landmark head
  included; 3.21 G up to conv_4) + 0.0024 G for the 224->112 resize. baselines.md §16's "299 G" is fvcore on a
  model built with timm's fused attention on: fvcore cannot see `scaled_dot_product_attention` and drops the 24
  attention matmuls per frame (12 trunk + 12 adapter, 11.68 G); the official code (timm 0.6.12) computes attention
  explicitly, so 310.7 G is the convention figure (bench.profile switches fused attention off while counting).
- `bench profile` / the cost tables count the **whole forward, landmark net included**: fvcore gives **313.94 G**
  per view = 310.72 + 3.21 (landmark net up to conv_4) + 0.0024 (resize): its tracer drops the landmark head,
  whose output is discarded, although the head runs (and is timed); FlopCounterMode, which counts eagerly, sees
  it (313.52 G = 313.94 - layer_norm/batch_norm/resize it does not count + 0.42 G head convs). 310.72 + 3.64 =
  314.36 G is the figure with every landmark op counted. The official test runs 2 temporal views x 2 identical
  crops (4 forward passes, 2 distinct); the harness runs the 2 distinct ones.

Weights (local files only; `needs_pretrained="affectnet"`, without it a run is "random init (not the method)"):
- `affectnet`: the authors' static FER model `Pretrain-AffectNet-7.pth` (MAE ViT-B/16 + MCPs fine-tuned on
  AffectNet-7), weights under 'model_state_dict' or 'model' (the core unwraps; it tries 'model' first). As the
  official loader: every key containing 'landmark' dropped, `norm.*` -> `ln_post.*`, `patch_embed_prompt.proj.weight`
  required (dropped if its in-channels differ). The head is not loaded (`head.*` / `weak_head.*` dropped: the same
  file serves 7- and 11-class runs). TMA, temporal embedding and head start from init. The file's exact content is
  unverified (notes/s2d §11): its key list here is inferred from the loader.
- `mobilefacenet`: `landmark/mobilefacenet_model_best.pth.tar` ({'state_dict': ...}, MobileFaceNet keys) into the
  landmark net only.
- `finetuned`: S2D's own fine-tuned checkpoints as released ({'model': state_dict, 'optimizer' (None in
  checkpoint-best.pth), 'epoch', 'scaler', 'args'}, written by `save_model` in utils/__init__.py @ e1b5e5d; the
  downloaded files are not inspected here) or a harness checkpoint of this method. Nothing to re-save: the core
  reads the file with torch.load(weights_only=True) with argparse.Namespace allow-listed (bench/weights.py
  `_load_weights_only`), so the pickled `args` is rebuilt as a plain Namespace (its values: numbers, strings,
  booleans, None, lists, tuples) and no code of the training script runs; a class of any other module would be
  rebuilt as an inert record named in the load report's notes['opaque_objects']. 'epoch' lands in notes['epoch'].
- **A run needs two files.** `--init` takes one source, so the landmark file is a builder argument:
  `--init affectnet:Pretrain-AffectNet-7.pth --set model.kwargs.landmark_weights=mobilefacenet_model_best.pth.tar`.
  The builder loads it through `bench.weights.load_weights` (strict: anything but `num_batches_tracked` missing is
  an error) and records path + sha256 in `model.landmark_source`; the `affectnet` and `finetuned` converters then
  supply the landmark keys from it (so `bench eval --source finetuned` sees a complete model) and say so in the load
  report's notes (`notes['landmark']`), or warn that the landmark net is random. The path is part of the spec (and
  of its hash). At other than 224² (tests, `synthetic`) pos_embed is resized (bicubic) and the temporal embedding
  (linear) by the converters (`notes['resized']`); the official loader never needs to.

Loss (bench.losses soft-target CE in float32 + the Emotion-Anchor SDL term, `s2d_criterion`). DFEW/MAFW: mixup 0.8 /
cutmix 1.0 / smoothing 0.1 soft-target CE, SDL off (their scripts pass no `--sdl`). FERV39k: plain CE (no mixup,
smoothing 0) + SDL: per class a queue of 16 features (the head's pooled feature, after dropout) and 16 softmax
predictions, both initialised U[0,1); per sample, cosine similarity to every queued feature, the top-2 per class (2C
anchors), target = similarity-weighted mean of their stored predictions (no grad), loss = BCE-with-logits(logits,
target) x w(epoch), w = 0 before epoch 30, 0.01 (30-49), 0.1 (50-59), 0.5 (60-79), 1.0 (>= 80), computed only for
epoch > 20. The criterion has no epoch: it counts its own calls (one per training step) and derives the epoch as
steps // `model.loss.steps_per_epoch` ("auto": the dataset's registered train count // train.batch_size, e.g.
FERV39k 31,088 // 16 = 1,943; give it explicitly for val_fraction > 0 or a non-default synthetic set). If the
trainer calls `criterion.set_epoch(e)` that epoch is used instead. On resume the count restarts at 0 (the core
does not hand the criterion its epoch): an SDL run must not be resumed mid-way. The queues are criterion state, not
checkpointed, as in the official code. Queue-update bug (`model.loss.sdl_update`): the official code pushes into
the queues only during epochs with `epoch % sdl_update_freq == 0` (FERV39k: freq 100 with epochs 0..99), so the
queue is **never** updated and the BCE target comes from the random initial queues all run long. Default
`faithful` (what produced the released FERV39k numbers); `every_step` updates after every step from epoch 21 on
(what the paper describes). Updates use the current step's detached features/softmax and the argmax of its
targets; the official code runs a second no-grad forward on the un-mixed batch after the optimiser step (same
batch and labels without mixup, weights one step older here).

Recipe (all datasets, from the scripts): AdamW lr 1e-5 x total batch / 8 = 2e-5 (2 GPUs x 8), betas (0.9,0.999), wd
0.05 (not on 1-D params, biases, position/temporal embeddings, cls token), 100 epochs, 2 warm-up epochs from 0,
per-step cosine to min_lr 1e-8 x 16/256 = 6.25e-10, batch 16, drop_last, fp16 autocast + GradScaler, no grad
clipping, no EMA. 16 consecutive frames at stride 1 (short clips padded with the last frame), frames resized to
224² then RandomResizedCrop scale (0.08, 1) ratio (3/4, 4/3), flip, ImageNet mean/std. Data: DFEW's 16-frame clips
(clip_224x224_16f), FERV39k face crops, MAFW `frames_crop_align_224` (data.options.variant). Test: first and last 16-frame
windows (2 uniform temporal views) x 2 crops that are identical at 224 (so 2x1 here), softmax averaged. Model
selection: the epoch with the best top-1 accuracy (WAR) on the test split, as the official code does
(`best_on_test`, flagged in the tables). Oversampling row (`s2d.oversampling`, literature "S2D (w/ oversampling)"):
`--use_bds` = draws with weights 1/class count, with replacement, len(train) per epoch = train.sampler=class_balanced.

Differences from the official code (beyond the switches above):
- RandAugment (rand-m7-n4-mstd0.5-inc1, one draw per clip) and RandomErasing (p 0.25, cube) as released, off in
  the CPU-sized synthetic recipe; RandAugment resamples bilinearly (official: bicubic).
- The official per-epoch "val" that selects the epoch is 1 random 16-frame window of each test video; here the
  per-epoch evaluation uses the test protocol (2 uniform windows).
- One process with batch 16 instead of 2 x 8 under DDP (BN-free trainable parts: same maths); SDL queues per GPU
  there, one set here.
- Init: the same distributions as the official constructor (every Linear trunc-normal .02 / bias 0, LayerNorms 1/0,
  prompt convs xavier-uniform with PyTorch-default biases, fovea sharpness 10, embeddings trunc-normal .02); its
  quirk that the adapters' zero-initialised D_fc2 is overwritten (std .02, TMA not identity at step 0) is the default,
  `model.kwargs.adapter_init=zero` applies the zero init the Adapter code intends.
- The frozen trunk and landmark net at other sizes: token grid size/16, landmark input size/2 (size must be a
  multiple of 16); the official model asserts 224² and 16 frames.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import InputSpec, Paper, Recipe, WeightsSource, register_method, register_variant
from bench.errors import BenchError
from bench.losses import classification_criterion

from ._s2d_layers import IMAGENET_MEAN, IMAGENET_STD, S2D

PAPER = Paper(authors="Chen et al.",
              title="From Static to Dynamic: Adapting Landmark-Aware Image Models for Facial Expression Recognition "
                    "in Videos", venue="IEEE TAFFC", year=2024, arxiv="2312.05447", code="github.com/MSA-LMC/S2D")

# measured from the official code (notes/s2d §4, §9): the figures the tests check
PARAMS_TOTAL = 95_055_571  # 7 classes, landmark net excluded
PARAMS_TRAINABLE = 9_258_451
LANDMARK_WEIGHTS = 1_007_248
GMACS_S2D = 310.72  # per 16x224² clip, attention counted, landmark net excluded
GMACS_LANDMARK = 3.64  # per 16-frame clip at 112², landmark head included
GMACS_LANDMARK_TO_CONV4 = 3.21  # what runs for S2D's output (fvcore's tracer prunes the discarded head)

# ----------------------------------------------------------------------------------------------------------
# Emotion-Anchor self-distillation (SDL)

# (first epoch of the next stage, weight before it); 1.0 from epoch 80 (utils/loss.py BCEWithLogitsLoss.update_weight)
SDL_SCHEDULE = ((30, 0.0), (50, 0.01), (60, 0.1), (80, 0.5))
SDL_FROM_EPOCH = 20  # the term (and the queue update) only run for epoch > 20


def sdl_weight(epoch: int) -> float:
    """Weight of the SDL BCE term at (0-based) `epoch`."""
    for bound, weight in SDL_SCHEDULE:
        if epoch < bound:
            return weight
    return 1.0


@torch.no_grad()
def sdl_soft_target(features: torch.Tensor, queue: torch.Tensor, probe: torch.Tensor, k: int) -> torch.Tensor:
    """Emotion-anchor soft targets (B, C): cosine similarity of each feature (B, D) to every queued feature
    (C, Q, D); the top-k per class (C*k anchors); their stored predictions (C, Q, C) averaged with the
    similarities as weights (normalised by the sum of the C*k similarities, as SDL.forward)."""
    f = F.normalize(features.float(), dim=-1)
    q = F.normalize(queue.float(), dim=-1)
    sim = torch.einsum("bd,cqd->bcq", f, q)
    top, idx = sim.topk(k, dim=2)  # (B, C, k)
    classes = torch.arange(queue.shape[0], device=queue.device).view(1, -1, 1)
    anchors = probe.float()[classes, idx]  # (B, C, k, C)
    return (top.unsqueeze(-1) * anchors).sum(dim=(1, 2)) / top.sum(dim=(1, 2)).unsqueeze(-1)


class EmotionAnchorQueues:
    """Per-class FIFO queues of features and softmax predictions (official `SDL`: Queue, Probe ~ U[0,1))."""

    def __init__(self, num_classes: int, dim: int, size: int, device: torch.device, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.queue = torch.rand(num_classes, size, dim, generator=g).to(device)
        self.probe = torch.rand(num_classes, size, num_classes, generator=g).to(device)

    @torch.no_grad()
    def push(self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Sample by sample (duplicates of a class push in batch order): drop the oldest entry of its class."""
        probs = torch.softmax(logits.float(), dim=1)
        for f, p, c in zip(features.float(), probs, labels.tolist(), strict=True):
            self.queue[c] = torch.cat([self.queue[c, 1:], f[None]], dim=0)
            self.probe[c] = torch.cat([self.probe[c, 1:], p[None]], dim=0)


LOSS_OPTIONS = {
    "sdl": "enable the Emotion-Anchor SDL term (official: FERV39k only)",
    "sdl_k": "anchors per class (2)",
    "sdl_queue": "queue length per class (16)",
    "sdl_update_freq": "official --sdl_update_freq (FERV39k 100, DFEW/MAFW scripts 40)",
    "sdl_update": "faithful (only in epochs with epoch % freq == 0) | every_step",
    "steps_per_epoch": "training steps per epoch for the criterion's epoch count: int or auto",
    "terms": "shared loss terms (bench.losses)",
}


def _auto_steps_per_epoch(spec: Any) -> int:
    from bench.registry import DATASETS

    info = DATASETS.get(spec.dataset)
    options = {k: v for k, v in (spec.data.options or {}).items() if k not in ("on_bad_clip", "root")}
    counts = info.counts_for(spec.data.options) if info.counts_for else info.official_counts
    if spec.train.val_fraction > 0 or (info.generated and options) or spec.fold not in counts:
        raise BenchError(f"s2d: model.loss.steps_per_epoch=auto cannot tell the train size of {spec.dataset} here "
                         "(val_fraction, changed options or unknown fold); give it: --set "
                         "model.loss.steps_per_epoch=<train clips // batch>")
    n = counts[spec.fold][0]
    b = spec.train.batch_size
    return max(n // b if spec.train.drop_last and n >= b else math.ceil(n / b), 1)


class S2DCriterion:
    """Soft-target CE (bench.losses) + the SDL term. Counts its calls (one per training step) to know the epoch;
    `set_epoch(e)` overrides the count when a trainer provides it."""

    def __init__(self, spec: Any):
        opts = dict(spec.model.loss) if spec is not None else {}
        unknown = sorted(set(opts) - set(LOSS_OPTIONS))
        if unknown:
            raise BenchError(f"s2d: unknown model.loss key {unknown[0]!r}; known: {', '.join(LOSS_OPTIONS)}")
        self.sdl = bool(opts.get("sdl", False))
        self.k = int(opts.get("sdl_k", 2))
        self.queue_size = int(opts.get("sdl_queue", 16))
        self.update_freq = int(opts.get("sdl_update_freq", 100))
        self.update = str(opts.get("sdl_update", "faithful"))
        if self.update not in ("faithful", "every_step"):
            raise BenchError(f"s2d: model.loss.sdl_update must be faithful or every_step, not {self.update!r}")
        self.seed = int(getattr(spec, "seed", 0) or 0)
        self.steps_per_epoch = None
        if self.sdl:
            spe = opts.get("steps_per_epoch", "auto")
            self.steps_per_epoch = _auto_steps_per_epoch(spec) if spe in (None, "auto") else int(spe)
            if self.steps_per_epoch < 1:
                raise BenchError("s2d: model.loss.steps_per_epoch must be >= 1")
        self.steps = 0
        self._epoch: int | None = None
        self.queues: EmotionAnchorQueues | None = None
        self.base = classification_criterion(spec, terms={"sdl": self._sdl_term} if self.sdl else None)

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    @property
    def epoch(self) -> int:
        if self._epoch is not None:
            return self._epoch
        return self.steps // self.steps_per_epoch if self.steps_per_epoch else 0

    def _sdl_term(self, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        features = outputs.get("features") if isinstance(outputs, dict) else (outputs[1] if len(outputs) > 1 else None)
        if features is None:
            raise BenchError("s2d: the SDL term needs the model's training outputs {'logits', 'features'}")
        epoch = self.epoch
        if epoch <= SDL_FROM_EPOCH:
            return logits.new_zeros((), dtype=torch.float32)
        if self.queues is None:
            self.queues = EmotionAnchorQueues(logits.shape[1], features.shape[1], self.queue_size, logits.device,
                                              self.seed)
        soft = sdl_soft_target(features.detach(), self.queues.queue, self.queues.probe, self.k)
        soft = soft.to(logits.dtype).float()  # official: the target tensor is made in the logits' dtype
        value = sdl_weight(epoch) * F.binary_cross_entropy_with_logits(logits.float(), soft)
        if self.update == "every_step" or epoch % self.update_freq == 0:
            self.queues.push(features.detach(), logits.detach(), targets.argmax(dim=-1))
        return value

    def __call__(self, outputs: Any, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, parts = self.base(outputs, targets)
        self.steps += 1
        return loss, parts


def s2d_criterion(spec: Any) -> S2DCriterion:
    """Soft-target CE + Emotion-Anchor SDL. model.loss: sdl (false), sdl_k (2), sdl_queue (16), sdl_update_freq
    (100), sdl_update (faithful | every_step), steps_per_epoch (auto)."""
    return S2DCriterion(spec)


# ----------------------------------------------------------------------------------------------------------
# weights

_RENAMES = {"norm.weight": "ln_post.weight", "norm.bias": "ln_post.bias", "temporal_embedding": "temporal_pos_embed"}


def _resize_embeddings(out: dict, model: nn.Module, notes: dict) -> None:
    """pos_embed (bicubic over the token grid) / temporal embedding (linear over time) of another input size."""
    from timm.layers import resample_abs_pos_embed

    own = model.state_dict()
    resized = []
    pe = out.get("pos_embed")
    if pe is not None and pe.ndim == 3 and pe.shape != own["pos_embed"].shape:
        g = int(round((own["pos_embed"].shape[1] - 1) ** 0.5))
        out["pos_embed"] = resample_abs_pos_embed(pe.float(), new_size=[g, g], num_prefix_tokens=1).to(pe.dtype)
        resized.append(f"pos_embed {tuple(pe.shape)} -> {tuple(out['pos_embed'].shape)}")
    te = out.get("temporal_pos_embed")
    if te is not None and te.ndim == 3 and te.shape != own["temporal_pos_embed"].shape:
        t = own["temporal_pos_embed"].shape[1]
        out["temporal_pos_embed"] = F.interpolate(te.float().transpose(1, 2), size=t, mode="linear",
                                                  align_corners=False).transpose(1, 2).to(te.dtype)
        resized.append(f"temporal_pos_embed {tuple(te.shape)} -> {tuple(out['temporal_pos_embed'].shape)}")
    if resized:
        notes["resized"] = resized


def _landmark_keys(out: dict, model: nn.Module, notes: dict) -> None:
    """Landmark-net keys the file lacks come from the net loaded at build time (model.kwargs.landmark_weights)."""
    own = model.state_dict()
    keys = [k for k in own if k.startswith("landmark.")]
    if keys and all(k in out for k in keys):
        notes["landmark"] = "landmark net from this file"
        return
    src = getattr(model, "landmark_source", None)
    if src:
        for k in keys:
            out.setdefault(k, own[k])
        notes["landmark"] = f"landmark net from model.kwargs.landmark_weights={src['path']} (sha256 {src['sha256']})"
    else:
        notes["landmark"] = ("NOT LOADED: the MobileFaceNet landmark net is random; give "
                             "--set model.kwargs.landmark_weights=<mobilefacenet_model_best.pth.tar>")
        warnings.warn(f"s2d: {notes['landmark']}", stacklevel=2)


def convert_affectnet(sd: dict, model: nn.Module, notes: dict) -> dict:
    """Pretrain-AffectNet-7.pth (official `_create_vision_transformer` loader) -> port names; head not loaded."""
    out: dict = {}
    dropped_landmark, dropped_head = [], []
    for key, value in sd.items():
        if "landmark" in key:
            dropped_landmark.append(key)
        elif key.startswith(("head.", "weak_head.")):
            dropped_head.append(key)
        else:
            out[_RENAMES.get(key, key)] = value
    if "patch_embed_prompt.proj.weight" not in out:
        raise KeyError("patch_embed_prompt.proj.weight (the official loader requires it)")
    own_in = model.state_dict()["patch_embed_prompt.proj.weight"].shape[1]
    if out["patch_embed_prompt.proj.weight"].shape[1] != own_in:
        del out["patch_embed_prompt.proj.weight"]
        notes["dropped_patch_embed_prompt"] = f"in-channels differ from {own_in} (official loader drops it too)"
    _resize_embeddings(out, model, notes)
    _landmark_keys(out, model, notes)
    notes["dropped_landmark_keys"] = len(dropped_landmark)
    notes["dropped_head"] = dropped_head
    return out


def convert_mobilefacenet(sd: dict, model: nn.Module, notes: dict) -> dict:
    """MobileFaceNet {'state_dict': ...} (upstream names) -> `landmark.*`; loads the landmark net only."""
    notes["landmark"] = "landmark net from this file (nothing else loaded)"
    return {k if k.startswith("landmark.") else f"landmark.{k}": v for k, v in sd.items()}


def convert_finetuned(sd: dict, model: nn.Module, notes: dict) -> dict:
    """An S2D fine-tuned checkpoint (official names, or this port's) -> port names (+ landmark net, see module doc)."""
    out = {("temporal_pos_embed" if k == "temporal_embedding" else k): v for k, v in sd.items()}
    _resize_embeddings(out, model, notes)
    _landmark_keys(out, model, notes)
    return out


WEIGHTS = {
    "affectnet": WeightsSource("the authors' static FER model (MAE ViT-B/16 + MCPs fine-tuned on AffectNet-7); the "
                               "landmark net comes from model.kwargs.landmark_weights", "Pretrain-AffectNet-7.pth",
                               convert_affectnet),
    "mobilefacenet": WeightsSource("MobileFaceNet 68-landmark network {'state_dict'} (S2D/landmark/), landmark net only",
                                   "mobilefacenet_model_best.pth.tar", convert_mobilefacenet),
    "finetuned": WeightsSource("S2D fine-tuned checkpoint {'model': ..., 'args': ...} as released, or this port's",
                               "s2d_<dataset>.pth", convert_finetuned),
}


def _load_landmark(model: S2D, path: str) -> None:
    from bench.weights import load_weights

    def strip(sd: dict, module: nn.Module, notes: dict) -> dict:
        return {k[len("landmark."):] if k.startswith("landmark.") else k: v for k, v in sd.items()}

    report = load_weights(model.landmark, Path(path), WeightsSource("MobileFaceNet", convert=strip), "mobilefacenet")
    bad = [k for k in report.missing if not k.endswith("num_batches_tracked")] + report.unexpected + report.mismatched
    if bad:
        raise BenchError(f"{path}: not a MobileFaceNet([112,112],136) state_dict ({len(bad)} keys do not fit, e.g. "
                         f"{bad[:3]})")
    model.landmark_source = {"path": str(path), "sha256": report.sha256}


# ----------------------------------------------------------------------------------------------------------
# recipe

_DEFAULTS: dict = {
    "data": {"frames": 16, "size": 224, "sampler": "dense", "stride": 1, "pad": "edge", "test_temporal": "uniform",
             "test_views": 2, "test_crops": 1, "aggregate": "mean_softmax", "flip": True, "rrc_scale": [0.08, 1.0],
             "rrc_ratio": [3 / 4, 4 / 3], "color_jitter": [0.0, 0.0, 0.0, 0.0], "interpolation": "bilinear",
             "randaugment": "rand-m7-n4-mstd0.5-inc1", "random_erasing": 0.25, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    # lr 1e-5 x (2 GPUs x 8) / 8; min_lr 1e-8 x 16 / 256; warm-up from 0
    "optim": {"name": "adamw", "lr": 2e-5, "weight_decay": 0.05, "betas": [0.9, 0.999], "eps": 1e-8,
              "decay_norm_bias": False, "schedule": "cosine", "per_iteration": True, "warmup_epochs": 2,
              "warmup_lr": 0.0, "min_lr": 6.25e-10, "layer_decay": 1.0},
    "reg": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mix_prob": 1.0, "switch_prob": 0.5, "label_smoothing": 0.1},
    "train": {"epochs": 100, "batch_size": 16, "grad_clip": 0.0, "precision": "fp16", "drop_last": True,
              "selection": "best_on_test", "selection_metric": "war", "eval_every": 1, "sampler": "shuffle"},
    "model": {"kwargs": {"head_dropout": 0.5}, "loss": {"sdl": False}},
}

_DATASETS: dict[str, dict] = {
    "dfew": {},  # ft_dfew.sh: the defaults (SDL args passed without --sdl: off)
    # ft_mafw.sh: the defaults, 11 classes, on the released aligned face crops data/frames/frames_crop_align_224
    # (--set data.options.variant=frames for the plain frames)
    "mafw": {"data": {"options": {"variant": "frames_crop_align_224"}}},
    # ft_ferv39k.sh: --ban_mixup --smoothing 0 --dropout_ratio 0 --sdl --K 2 --qs 16 --sdl_update_freq 100
    "ferv39k": {"reg": {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "label_smoothing": 0.0},
                "model": {"kwargs": {"head_dropout": 0.0},
                          "loss": {"sdl": True, "sdl_k": 2, "sdl_queue": 16, "sdl_update_freq": 100,
                                   "sdl_update": "faithful", "steps_per_epoch": "auto"}}},
    # CPU-sized deviation (<= 10 min on 2 cores): 8 segments over the whole clip (the synthetic expression event
    # sits anywhere in the clip; 8 consecutive frames could miss it) at 32² (token grid 2x2, landmark input 16², its
    # conv_4 2x2), 2 epochs of 420 clips at batch 16 (3.76 GMACs/clip; one epoch + its test pass took 1166 s on the
    # 2-core box shared at load ~13, i.e. ~3 min alone), fp32, lr 5e-4 with half an epoch of warm-up (2e-5 moves
    # nothing in 52 steps), no mixup, 1 test view, last epoch. The frozen ViT is random here (no AffectNet file):
    # the run exercises the pipeline, it is not the method.
    "synthetic": {"data": {"frames": 8, "size": 32, "sampler": "segment", "rrc_scale": [0.85, 1.0],
                           "test_views": 1, "randaugment": None, "random_erasing": 0.0},
                  "optim": {"lr": 5e-4, "warmup_epochs": 0.5, "warmup_lr": 1e-6, "min_lr": 1e-6},
                  "reg": {"mixup_alpha": 0.0, "cutmix_alpha": 0.0},
                  "train": {"epochs": 2, "batch_size": 16, "precision": "fp32", "selection": "last"}},
}

S2D_RECIPE = Recipe(defaults=_DEFAULTS, datasets=_DATASETS)


def _with_sampler(recipe: Recipe, sampler: str) -> Recipe:
    defaults = copy.deepcopy(recipe.defaults)
    defaults["train"]["sampler"] = sampler
    return Recipe(defaults=defaults, datasets=copy.deepcopy(recipe.datasets), protocols=copy.deepcopy(recipe.protocols),
                  default_protocol=recipe.default_protocol)


# ----------------------------------------------------------------------------------------------------------
# registration


@register_method("s2d", family="Transformer", input=InputSpec(16, 224), paper=PAPER, recipe=S2D_RECIPE,
                 weights=WEIGHTS, criterion=s2d_criterion, literature=("S2D",), needs_pretrained="affectnet",
                 uses_attention=True,
                 test_views_note="official: first + last 16-frame windows x 2 identical crops (= 2 views), epoch "
                                 "chosen on the test split")
def s2d(num_classes: int, frames: int, size: int, head_dropout: float = 0.5, adapter_ratio: float = 0.25,
        prompt_hidden: int = 8, adapter_init: str = "faithful", landmark_weights: str = "",
        landmark_input: str = "imagenet_rgb", landmark_head: bool = True) -> nn.Module:
    """S2D: frozen static-FER ViT-B/16 + landmark prompters (MobileFaceNet) + temporal adapters."""
    model = S2D(num_classes, frames, size, prompt_hidden=prompt_hidden, adapter_ratio=adapter_ratio,
                head_dropout=head_dropout, adapter_init=adapter_init, landmark_input=landmark_input,
                landmark_head=landmark_head)
    if landmark_weights:
        _load_landmark(model, landmark_weights)
    return model


register_variant("s2d.oversampling", variant_of="s2d",
                 description="S2D with class-balanced oversampling (official --use_bds)",
                 literature=("S2D (w/ oversampling)",),
                 recipe=_with_sampler(S2D_RECIPE, "class_balanced"))
