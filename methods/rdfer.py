"""RDFER (Liu, Wang & Shen, "Robust Dynamic Facial Expression Recognition", arXiv 2502.16129, IEEE T-BIOM 7(4),
2025): a REIMPLEMENTATION FROM THE PAPER'S DESCRIPTION. No code was reachable (github.com/Cross-Innovation-Lab/RDFER
is stated in the abstract but has no snapshot); only the abstract and one citing paper could be read (facts in
/work/notes/papers/NOTES.md §1). Every number below is a choice made here, not the paper's; each one the paper
leaves open is a `model.kwargs` (network) or `model.loss` (criterion) switch. No sizes can be checked against the
paper (it states none reachable here); measured at 16x112², 7 classes with the defaults: 53,130,187 params,
43.26 GMACs (our fvcore, LSTMs counted; 43.19 G without them, as stock fvcore counts). Literature row: DFEW 56.93 / 69.73 (secondary
citation).

What the abstract states, and how it is built here:
(a) "Dual-stream hierarchical network, two sequence models disentangling short-term facial movements and long-term
    emotional changes." Built on M3DFEL's path (same lab and authors; modules imported from methods/m3dfel.py):
    the clip is cut into T/L 3D instances of L=4 consecutive sampled frames, each through torchvision r3d_18 to its
    global pool (512-d tokens, `features.*`, same keys as M3DFEL so the K400 converter is shared).
    - short-term stream: a 2-layer BiLSTM(512) run inside windows of `short_window` consecutive instances
      (default 2 = 8 sampled frames; 0 = the whole clip) -> s (B, N, 1024).
    - long-term stream (hierarchical: it reads the short-term outputs, `long_input="short"`; or the raw instance
      tokens, `"instances"`): a 1-layer BiLSTM(512) over the whole clip (`long_model="bilstm"`) or one
      Transformer block with learned temporal positions (`"transformer"`), followed by M3DFEL's MHSA (8 heads,
      qkv without bias) -> DMIN -> sigmoid gate (`gate=True`) -> g (B, N, 1024).
    - fusion (`fusion`): concat [s, g] per instance (default; 2048-d), `long` (g only) or `sum` (s + g).
(c) "Key-expression re-sampling to identify the principal expression." Two levels:
    - in the network (train and test): one shared linear classifier scores every instance; the bag logits are
      the key-weighted mean of the instance logits, with weights from the DETACHED instance confidence
      (`key_pool="soft"`: softmax over instances of max-prob / `key_tau`; `"topk"`: mean of the `key_topk`
      most confident instances (0 = half); `"mean"`: no selection; `"conv"`: M3DFEL's Conv1d bag pooling).
      The selection carries no gradient, like the hard re-sampling of the lab's HNrbs-DFER draft.
    - across the n training clips (data.train_clips = n; the model gets (B, n, C, T, H, W) and returns
      {"logits": mean over clips, "clip_logits": (B, n, K), ...}): the criterion trains on the clip that carries
      the principal expression, the clip with the lowest prediction entropy (`model.loss.ce_on="key_clip"`,
      default; `"mean_logits"`: CE of the mean logits; `"clips"`: mean CE over clips).
(b) "Hard vs noisy samples separated by the prediction agreement of the model on differently sampled clips; hard
    samples reinforced, noisy ones mitigated." `categorize` (model.loss switches in brackets), per sample, with
    p_i the clip posteriors, m = argmax of their mean, y = argmax of the (smoothed) target:
      agreement A = fraction of clips predicting m (`agreement="vote"`) or 1 - JSD(p_1..p_n)/ln n (`"js"`);
      agree = A >= `agree_threshold` (default 1.0 for vote = unanimous, 0.9 for js);
      easy  = agree and m == y                                   -> weight `w_easy`  (1.0)
      noisy = agree and m != y and mean p[m] >= `noisy_conf` (0.6) -> weight `w_noisy` (0.1, down-weighted)
      hard  = not agree and some clip predicts y                 -> weight `w_hard`  (2.0, reinforced)
      other = everything else                                    -> weight `w_other` (1.0)
    loss = mean_b(w_b CE_b) (`reduction="mean"`) or sum w CE / sum w (`"normalized"`); weights carry no gradient.
    Warm-up: plain CE for the first `warmup_steps` training steps. Criteria do not see the epoch, so the model
    counts its own training forwards in a buffer (`step_count`, saved in checkpoints, so a resumed run keeps its
    count) and returns it as outputs["step"]; the recipe sets warmup_steps to 20 epochs of the dataset at batch 256
    (DFEW 9356 // 256 = 36 it/epoch -> 720; FERV39k 121 -> 2420; MAFW 28 -> 560). With a 5-D training batch
    (train_clips=1) there is no agreement to measure and the loss is plain CE.
Category fractions are logged as loss parts (easy/hard/noisy/other) every epoch.

Recipe: M3DFEL's (AdamW 5e-4, wd 0.05 on all params, 300 epochs, batch 256, 20 warm-up epochs then timm cosine
per iteration to 5e-6, label smoothing 0.1, crop/flip/colour jitter 0.4, segment sampling, best-on-test WAR) with
data.train_clips = 2. Weights: `kinetics400` (torchvision r3d_18 K400 into the instance backbone, as M3DFEL);
from scratch is allowed and labelled scratch. Minimum input: frames = k x instance_length with k >= 2 and k a
multiple of short_window (when short_window > 0); size >= 16.
Sampling: RDFER's own rule is unknown (no code); "segment sampling" is the harness's segment sampler (16 x 1:
frame int(k*n/16) + U{0..n//16-1} in training, drawn independently for each of the 2 training clips; int(t/2 + k*t),
t = n/16, at test; clips of n < 16 frames stretched evenly, frame i*n//16), NOT M3DFEL's official rule
(floor(n*k/16) + floor(16*U) per frame, clamped to n-1, at train and test: see methods/m3dfel.py, whose code is not
reachable here).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from bench.api import InputSpec, Paper, Recipe, WeightsSource, logits_of, register_method, register_variant
from bench.errors import BenchError
from bench.losses import LOSS_TERMS, Criterion
from bench.methods.m3dfel import DEFAULTS as M3DFEL_DEFAULTS
from bench.methods.m3dfel import (
    DMIN,
    R3D_FEATURE_DIM,
    convert_kinetics400,
    instance_tokens,
    multi_head_self_attention,
    r3d18_features,
)

PAPER = Paper(authors="Liu, Wang & Shen", title="Robust Dynamic Facial Expression Recognition",
              venue="IEEE T-BIOM", year=2025, arxiv="2502.16129", code="github.com/Cross-Innovation-Lab/RDFER")

EASY, HARD, NOISY, OTHER = 0, 1, 2, 3
CATEGORY_NAMES = ("easy", "hard", "noisy", "other")


# ----------------------------------------------------------------------------------------------------------
# network


def _rnn(kind: str, in_dim: int, hidden: int, layers: int) -> nn.Module:
    if kind == "bilstm":
        return nn.LSTM(in_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
    if kind == "bigru":
        return nn.GRU(in_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
    raise ValueError(f"sequence model must be bilstm or bigru, not {kind!r}")


class RDFERNet(nn.Module):
    """r3d_18 instances -> short-term (windowed) and long-term (whole clip) sequence models -> key-instance pooling."""

    def __init__(self, num_classes: int = 7, frames: int = 16, instance_length: int = 4, hidden: int = 512,
                 short_model: str = "bilstm", short_layers: int = 2, short_window: int = 2,
                 long_model: str = "bilstm", long_layers: int = 1, long_input: str = "short", long_heads: int = 8,
                 gate: bool = True, heads: int = 8, fusion: str = "concat", key_pool: str = "soft",
                 key_tau: float = 0.1, key_topk: int = 0):
        super().__init__()
        n = frames // instance_length
        if frames % instance_length or n < 2:
            raise ValueError(f"RDFER needs frames ({frames}) = k x instance_length ({instance_length}) with k >= 2")
        if short_window and n % short_window:
            raise ValueError(f"{n} instances are not a multiple of short_window={short_window}")
        for name, value, allowed in (("long_input", long_input, ("short", "instances")),
                                     ("long_model", long_model, ("bilstm", "bigru", "transformer")),
                                     ("fusion", fusion, ("concat", "long", "sum")),
                                     ("key_pool", key_pool, ("soft", "topk", "mean", "conv"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        self.instance_length, self.bag_size, self.heads = instance_length, n, heads
        self.short_window, self.long_input, self.long_model, self.fusion = short_window, long_input, long_model, fusion
        self.key_pool, self.key_tau = key_pool, key_tau
        self.key_topk = key_topk or max(n // 2, 1)
        dim = 2 * hidden
        self.features = r3d18_features()
        self.short_rnn = _rnn(short_model, R3D_FEATURE_DIM, hidden, short_layers)
        long_in = dim if long_input == "short" else R3D_FEATURE_DIM
        if long_model == "transformer":
            self.long_pos = nn.Parameter(torch.zeros(1, n, long_in))
            nn.init.trunc_normal_(self.long_pos, std=0.02)
            self.long_proj = nn.Linear(long_in, dim) if long_in != dim else nn.Identity()
            self.long_block = Block(dim, num_heads=long_heads, mlp_ratio=4.0, qkv_bias=True)
        else:
            self.long_rnn = _rnn(long_model, long_in, hidden, long_layers)
        self.gate = gate
        if gate:
            self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
            self.norm = DMIN(dim)
        out_dim = 2 * dim if fusion == "concat" else dim
        if key_pool == "conv":
            self.pwconv = nn.Conv1d(n, 1, kernel_size=3, stride=1, padding=1)
        self.fc = nn.Linear(out_dim, num_classes)
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))

    # streams
    def short_term(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        w = self.short_window if self.short_window and self.short_window < n else n
        out, _ = self.short_rnn(tokens.reshape(b * n // w, w, c))
        return out.reshape(b, n, -1)

    def long_term(self, x: torch.Tensor) -> torch.Tensor:
        if self.long_model == "transformer":
            out = self.long_block(self.long_proj(x + self.long_pos))
        else:
            out, _ = self.long_rnn(x)
        if self.gate:
            out = out * torch.sigmoid(self.norm(multi_head_self_attention(out, self.to_qkv, self.heads)))
        return out

    def key_weights(self, instance_logits: torch.Tensor) -> torch.Tensor:
        """(B, N, K) -> (B, N) instance weights from the detached confidence (max softmax probability)."""
        conf = instance_logits.detach().float().softmax(-1).amax(-1)
        if self.key_pool == "soft":
            return (conf / self.key_tau).softmax(-1)
        if self.key_pool == "topk":
            top = conf.topk(self.key_topk, dim=-1).indices
            return torch.zeros_like(conf).scatter_(-1, top, 1.0 / self.key_topk)
        return torch.full_like(conf, 1.0 / conf.shape[-1])

    def clip_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, T, H, W) -> logits (B, K), instance logits (B, N, K), key weights (B, N)."""
        tokens = instance_tokens(self.features, x, self.instance_length)
        s = self.short_term(tokens)
        g = self.long_term(s if self.long_input == "short" else tokens)
        f = torch.cat([s, g], -1) if self.fusion == "concat" else (g if self.fusion == "long" else s + g)
        inst = self.fc(f)
        if self.key_pool == "conv":
            a = torch.full(inst.shape[:2], 1.0 / inst.shape[1], device=inst.device, dtype=inst.dtype)
            return self.fc(self.pwconv(f).flatten(1)), inst, a
        a = self.key_weights(inst).to(inst.dtype)
        return (a.unsqueeze(-1) * inst).sum(1), inst, a

    def forward(self, x: torch.Tensor):
        clips = x.dim() == 6
        b, n = x.shape[0], (x.shape[1] if clips else 1)
        logits, inst, a = self.clip_forward(x.flatten(0, 1) if clips else x)
        if not self.training:
            return logits.reshape(b, n, -1).mean(1) if clips else logits
        step = self.step_count.clone()
        with torch.no_grad():
            self.step_count += 1
        if not clips:
            return {"logits": logits, "instance_logits": inst, "key_weights": a, "step": step}
        clip_logits = logits.reshape(b, n, -1)
        return {"logits": clip_logits.mean(1), "clip_logits": clip_logits,
                "instance_logits": inst.reshape(b, n, *inst.shape[1:]), "key_weights": a.reshape(b, n, -1),
                "step": step}


# ----------------------------------------------------------------------------------------------------------
# hard / noisy separation and the criterion


def agreement_score(probs: torch.Tensor, kind: str = "vote") -> tuple[torch.Tensor, torch.Tensor]:
    """probs (B, n, K) -> (A (B,), m (B,)): m = argmax of the mean posterior; A = fraction of clips whose argmax
    is m (vote) or 1 - JSD(p_1..p_n) / ln n (js)."""
    mean = probs.mean(1)
    m = mean.argmax(-1)
    if kind == "vote":
        return (probs.argmax(-1) == m[:, None]).float().mean(1), m
    if kind == "js":
        def entropy(p: torch.Tensor) -> torch.Tensor:
            return -(p * p.clamp_min(1e-12).log()).sum(-1)

        jsd = entropy(mean) - entropy(probs).mean(1)
        return 1.0 - jsd / math.log(probs.shape[1]), m
    raise ValueError(f"agreement must be vote or js, not {kind!r}")


def categorize(clip_logits: torch.Tensor, labels: torch.Tensor, agreement: str = "vote",
               agree_threshold: float | None = None, noisy_conf: float = 0.6) -> torch.Tensor:
    """(B, n, K) clip logits, (B,) labels -> (B,) categories EASY / HARD / NOISY / OTHER (see the docstring)."""
    probs = clip_logits.detach().float().softmax(-1)
    score, m = agreement_score(probs, agreement)
    threshold = agree_threshold if agree_threshold is not None else (1.0 if agreement == "vote" else 0.9)
    agree = score >= threshold - 1e-6
    correct = m == labels
    label_hit = (probs.argmax(-1) == labels[:, None]).any(1)
    conf = probs.mean(1).gather(1, m[:, None]).squeeze(1)
    cat = torch.full_like(labels, OTHER)
    cat[~agree & label_hit] = HARD
    cat[agree & ~correct & (conf >= noisy_conf)] = NOISY
    cat[agree & correct] = EASY
    return cat


def _soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample soft-target CE in float32: (..., K) -> (...)."""
    return -(targets.float() * F.log_softmax(logits.float(), dim=-1)).sum(-1)


_LOSS_DEFAULTS = {"warmup_steps": 0, "agreement": "vote", "agree_threshold": None, "noisy_conf": 0.6,
                  "w_easy": 1.0, "w_hard": 2.0, "w_noisy": 0.1, "w_other": 1.0, "reduction": "mean",
                  "ce_on": "key_clip", "terms": {}}


def rdfer_criterion(spec: Any) -> Criterion:
    """Agreement-weighted soft-target CE (+ shared loss terms from model.loss.terms). model.loss keys: see
    `_LOSS_DEFAULTS` and the module docstring."""
    opts = {**_LOSS_DEFAULTS, **dict((spec.model.loss if spec is not None else {}) or {})}
    unknown = set(opts) - set(_LOSS_DEFAULTS)
    if unknown:
        raise BenchError(f"model.loss key(s) {sorted(unknown)} unknown to rdfer; known: {sorted(_LOSS_DEFAULTS)}")
    if opts["ce_on"] not in ("key_clip", "mean_logits", "clips") or opts["reduction"] not in ("mean", "normalized"):
        raise BenchError("rdfer: model.loss.ce_on must be key_clip|mean_logits|clips, reduction mean|normalized")
    if opts["agreement"] not in ("vote", "js"):
        raise BenchError("rdfer: model.loss.agreement must be vote or js")
    weights = torch.tensor([float(opts["w_easy"]), float(opts["w_hard"]), float(opts["w_noisy"]),
                            float(opts["w_other"])])
    shared = {}
    for name, term_opts in dict(opts["terms"] or {}).items():
        term_opts = dict(term_opts or {})
        if "weight" not in term_opts:
            raise BenchError(f"model.loss.terms.{name} needs a weight")
        shared[name] = (LOSS_TERMS.get(name), term_opts)
    fallback_step = [0]

    def criterion(outputs: Any, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = logits_of(outputs)
        out = outputs if isinstance(outputs, dict) else {}
        clip_logits = out.get("clip_logits")
        step = out.get("step")
        step = int(step) if step is not None else fallback_step[0]
        fallback_step[0] += 1
        labels = targets.argmax(-1)
        parts: dict[str, float] = {}
        if clip_logits is None or clip_logits.shape[1] < 2:
            ce = _soft_ce(logits, targets)
            w = torch.ones_like(ce)
            active = False
        else:
            if opts["ce_on"] == "mean_logits":
                ce = _soft_ce(logits, targets)
            elif opts["ce_on"] == "clips":
                ce = _soft_ce(clip_logits, targets[:, None]).mean(1)
            else:  # key_clip: the clip with the lowest prediction entropy
                p = clip_logits.detach().float().softmax(-1)
                key = (-(p * p.clamp_min(1e-12).log()).sum(-1)).argmin(1)
                ce = _soft_ce(clip_logits[torch.arange(len(key)), key], targets)
            cat = categorize(clip_logits, labels, opts["agreement"], opts["agree_threshold"], float(opts["noisy_conf"]))
            for i, name in enumerate(CATEGORY_NAMES):
                parts[name] = float((cat == i).float().mean())
            active = step >= int(opts["warmup_steps"])
            w = weights.to(ce.device)[cat] if active else torch.ones_like(ce)
        loss = (w * ce).sum() / w.sum().clamp_min(1e-12) if opts["reduction"] == "normalized" else (w * ce).mean()
        parts = {"ce": float(loss.detach()), "ce_unweighted": float(ce.detach().mean()),
                 "weighting": float(active), **parts}
        for name, (fn, term_opts) in shared.items():
            value = float(term_opts["weight"]) * fn(outputs, targets, **{k: v for k, v in term_opts.items()
                                                                         if k != "weight"}).float()
            loss = loss + value
            parts[name] = float(value.detach())
        return loss, parts

    return criterion


# ----------------------------------------------------------------------------------------------------------
# registration

WEIGHTS = {
    "kinetics400": WeightsSource(
        "torchvision R3D_18 Kinetics-400 state_dict into the instance backbone (M3DFEL's init); fc dropped",
        "r3d_18-b3b3357e.pth", convert_kinetics400),
}

_DEFAULTS = copy.deepcopy(M3DFEL_DEFAULTS)
_DEFAULTS["data"]["train_clips"] = 2
_DEFAULTS["model"] = {"loss": {"warmup_steps": 720}}  # 20 epochs of a DFEW fold at batch 256 (36 it/epoch)

RDFER_RECIPE = Recipe(
    defaults=_DEFAULTS,
    datasets={
        "ferv39k": {"model": {"loss": {"warmup_steps": 2420}}},  # 31088 // 256 = 121 it/epoch x 20
        "mafw": {"model": {"loss": {"warmup_steps": 560}}},  # 7333 // 256 = 28 it/epoch x 20
        # CPU-sized deviation (<= 10 min on 2 cores): M3DFEL's synthetic entry with 2 clips per video, batch 8
        # (the same clips per step), 3 epochs; weighting starts after 1 epoch (420 // 8 = 52 steps).
        "synthetic": {"data": {"frames": 8, "size": 32, "rrc_scale": [0.5, 1.0], "color_jitter": [0.2, 0.2, 0.2, 0.0]},
                      "optim": {"lr": 1e-3, "warmup_epochs": 1, "min_lr": 1e-5},
                      "train": {"epochs": 3, "batch_size": 8, "selection": "last"},
                      "model": {"loss": {"warmup_steps": 52}}},
    },
)


@register_method("rdfer", family="robust", input=InputSpec(16, 112), paper=PAPER, recipe=RDFER_RECIPE, weights=WEIGHTS,
                 criterion=rdfer_criterion, literature=("RDFER",), uses_attention=True,
                 test_views_note="reimplementation from the abstract (no code); 1 view, best WAR on test as M3DFEL")
def rdfer(num_classes: int, frames: int, size: int, instance_length: int = 4, short_model: str = "bilstm",
          short_layers: int = 2, short_window: int = 2, long_model: str = "bilstm", long_layers: int = 1,
          long_input: str = "short", long_heads: int = 8, gate: bool = True, fusion: str = "concat",
          key_pool: str = "soft", key_tau: float = 0.1, key_topk: int = 0) -> nn.Module:
    """RDFER (reimplementation from the paper's description): dual-stream r3d_18 instances, clip agreement weighting."""
    return RDFERNet(num_classes, frames, instance_length, 512, short_model, short_layers, short_window, long_model,
                    long_layers, long_input, long_heads, gate, 8, fusion, key_pool, key_tau, key_topk)


ABLATIONS: dict[str, tuple[str, dict, dict]] = {
    "rdfer.no_weighting": ("RDFER without hard/noisy re-weighting (all weights 1)", {},
                           {"w_hard": 1.0, "w_noisy": 1.0}),
    "rdfer.no_key": ("RDFER without key-expression selection (mean over instances, CE on mean logits)",
                     {"key_pool": "mean"}, {"ce_on": "mean_logits"}),
    "rdfer.single_stream": ("RDFER with only the long-term stream feeding the classifier", {"fusion": "long"}, {}),
}

for _name, (_desc, _kw, _loss) in ABLATIONS.items():
    register_variant(_name, variant_of="rdfer", description=_desc, kwargs=_kw, loss=_loss)
