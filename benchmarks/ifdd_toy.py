"""A toy with a known answer, to find which part of IFDD keeps it at chance: does a model learn at all, and where
does a random-init model lose the input?

    .venv/bin/python benchmarks/ifdd_toy.py train --model ifdd --steps 300 [--lr 1e-4] [--wd 0.05]
    .venv/bin/python benchmarks/ifdd_toy.py probe --model ifdd [--size 32]

The "size toy": class k (of 7) is a bright square of side 3+k pixels (+0.4) at a random place in grey noise
(0.5 + 0.15 N(0,1)), in all 16 frames of a 32² clip. Every training step draws a fresh batch of 8, so the training
cross-entropy measures generalisation (ln 7 = 1.946 is the class prior); the test accuracy is on 140 held-out
clips. A 3D CNN solves it in ~100 steps. Models (`--model`):

- `ifdd`, `mvit_v2_s`, `r3d18`: the registered methods, built by `bench.api.build_model`, trained with their own
  criterion and `bench.optim.build_optimizer` (AdamW, weight decay as in their specs unless `--wd`).
- `cube_vit`: IFDD's own cube embedding (3x7x7, stride 2x4x4, `methods/_ifdd_layers.PatchEmbed`) followed by six
  plain timm ViT blocks (dim 96, one head, no pooling), mean-pooled: a transformer from scratch on IFDD's input
  path without the multiscale trunk.
- `cube_mvit`: the same, with six of torchvision's MViTv2 blocks as IFDD configures them (3x3x3 conv pooling of q,
  k and v with LayerNorm, residual pooling, decomposed relative positions, class token) at one width and grid
  (no stage transitions). `--kv-stride 8` is block 0's kv pooling at 32², `--depth 10` IFDD's depth,
  `--transitions 1,3,8` IFDD's stage transitions, `--readout tokens` IFDD's readout (no class token),
  `--ifdd-heads` its heads per block.
- `ifdd_mean`: IFDD's embedding, trunk and pyramid, with LADM bypassed (the mean of its input tokens goes to
  IFDD's head; cross-entropy only): the trunk with IFDD's readout of the last stage, without the lifting scheme.
- `frame_vit`: timm's ViT-Tiny shape (patch 4, dim 192, depth 6, 3 heads) on every frame, logits averaged.

`--kv-stride S` on `ifdd` / `ifdd_mean` caps every block's spatial kv pooling stride at S (released: 8-4-4-2-...-1),
the one trunk change that keeps IFDD's shapes; `--init` re-draws every Linear. Diagnostics, not the released model.

`train` prints the mean training CE per 100 steps, the last 40 steps' CE and the test accuracy; `probe` fits a
logistic regression (sklearn) on the random-init features after every block (mean and max over tokens) and prints
its test accuracy: where the square's size stops being linearly readable before any training. Rows are appended to
results/diagnostics/ifdd_toy/findings.json; the findings are in methods/IFDD.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLASSES = 7
FRAMES = 16
# The protocol each spec source is resolved under, by name, so that a change of a method's default protocol cannot
# change the toy's conditions (r3d18's default became `former_dfer`, SGD, on 2026-12-05).
TOY_PROTOCOL = {"r3d18": "bench3d"}
MODELS = ("ifdd", "ifdd_mean", "mvit_v2_s", "r3d18", "cube_vit", "cube_mvit", "frame_vit")


def size_toy(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` clips (n, 3, 16, size, size) in [0, 1] and their labels: the square's side, scaled with `size`."""
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    x = 0.5 + 0.15 * torch.randn(n, 3, FRAMES, size, size, generator=gen)
    for i, k in enumerate(y.tolist()):
        side = round((3 + k) * size / 32)
        r, c = (int(v) for v in torch.randint(0, size - side, (2,), generator=gen))
        x[i, :, :, r:r + side, c:c + side] += 0.4
    return x.clamp(0, 1), y


class CubeViT(nn.Module):
    """IFDD's cube embedding + plain timm ViT blocks: the input path without the multiscale trunk."""

    def __init__(self, dim: int = 96, depth: int = 6, heads: int = 1):
        super().__init__()
        from timm.models.vision_transformer import Block

        from bench.methods._ifdd_layers import PatchEmbed

        self.embed = PatchEmbed(FRAMES, dim)
        self.blocks = nn.Sequential(*[Block(dim, heads, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, CLASSES)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.blocks(self.embed(x).flatten(2).transpose(1, 2))
        return self.fc(self.norm(tokens).mean(1))


class CubeMViT(nn.Module):
    """IFDD's cube embedding + torchvision MViTv2 blocks configured as IFDD's, at one width and grid."""

    def __init__(self, size: int, kv_stride: int, dim: int = 96, depth: int = 6, transitions: tuple[int, ...] = (),
                 readout: str = "all", heads_per_block: tuple[int, ...] | None = None):
        super().__init__()
        self.readout = readout
        from torchvision.models.video.mvit import MSBlockConfig, MultiscaleBlock

        from bench.methods._ifdd_layers import PatchEmbed, embed_grid

        self.embed = PatchEmbed(FRAMES, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        grid = list(embed_grid(FRAMES, size))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList()
        heads = 1
        for i in range(depth):
            # An MViTv2 stage transition: q pooled 2x in space (and the skip with it), width and heads doubled.
            step = i in transitions
            cnf = MSBlockConfig(num_heads=heads_per_block[i] if heads_per_block else heads, input_channels=dim,
                                output_channels=dim * 2 if step else dim,
                                kernel_q=[3, 3, 3], kernel_kv=[3, 3, 3], stride_q=[1, 2, 2] if step else [1, 1, 1],
                                stride_kv=[1, kv_stride, kv_stride])
            self.blocks.append(MultiscaleBlock(list(grid), cnf, residual_pool=True, residual_with_cls_embed=False,
                                               rel_pos_embed=True, proj_after_attn=True, norm_layer=norm))
            if step:
                dim, heads, grid = dim * 2, heads * 2, [grid[0], -(-grid[1] // 2), -(-grid[2] // 2)]
        self.norm = norm(dim)
        self.fc = nn.Linear(dim, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        thw = tuple(x.shape[2:])
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], 1)
        for block in self.blocks:
            x, thw = block(x, thw)
        x = self.norm(x)
        return self.fc((x[:, 1:] if self.readout == "tokens" else x).mean(1))


class MeanReadout(nn.Module):
    """IFDD without LADM: the head reads the mean of the (pyramid-fused, CLS-free) tokens LADM would get."""

    def __init__(self, ifdd: nn.Module):
        super().__init__()
        self.ifdd = ifdd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ifdd.head(self.ifdd.features(x).mean(1))[0]


class FrameViT(nn.Module):
    """timm ViT on every frame (no temporal model: the toy is static), logits averaged over frames."""

    def __init__(self, size: int):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.vit = VisionTransformer(img_size=size, patch_size=4, embed_dim=192, depth=6, num_heads=3,
                                     num_classes=CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return self.vit(x.transpose(1, 2).reshape(b * t, c, h, w)).view(b, t, -1).mean(1)


def build(name: str, size: int, sets: list[str], opts: argparse.Namespace):
    """(model, criterion, spec): registered methods through the real builders; the two ViT controls take the
    default classification criterion and r3d18's optimiser settings (overridden by `sets`). `opts` carries the
    command's model switches (kv stride, depth, transitions, readout, heads).

    r3d18 and the controls use r3d18's `bench3d` protocol by name (AdamW, no decay on norms and biases, label
    smoothing 0.1, mean/std input): the settings of every toy row since 2026-12-04. r3d18's *default* protocol is
    now `former_dfer` (SGD, no smoothing), under which the controls stay at chance at these learning rates; the
    rows run 2026-12-06 before this was pinned were made that way and are marked `optimizer: sgd`."""
    import bench.methods._ifdd_layers as layers
    from bench.api import build_model
    from bench.losses import classification_criterion, criterion_for
    from bench.registry import METHODS
    from bench.spec import resolve_spec

    kv_stride, depth = opts.kv_stride, opts.depth
    registered = name in ("ifdd", "mvit_v2_s", "r3d18")
    source = name if registered else "ifdd" if name == "ifdd_mean" else "r3d18"
    spec = resolve_spec(source, "synthetic", fold=1, protocol=TOY_PROTOCOL.get(source),
                        sets=[f"data.size={size}", f"data.frames={FRAMES}", *sets])
    # IFDD's trunk is built from these module constants: the two diagnostics re-set them before the build.
    if name in ("ifdd", "ifdd_mean") and opts.late_heads:  # heads double one block after each transition
        layers.XS_HEADS = tuple(layers.XS_HEADS[max(i - 1, 0)] if i in (1, 3, 8) else h
                                for i, h in enumerate(layers.XS_HEADS))
    if name in ("ifdd", "ifdd_mean") and kv_stride:
        layers.XS_STRIDE_KV = tuple((t, min(h, kv_stride), min(w, kv_stride)) for t, h, w in layers.XS_STRIDE_KV)
    if registered:
        info = METHODS.get(name)
        return build_model(info, CLASSES, FRAMES, size, **spec.model.kwargs), criterion_for(info, spec), spec
    controls = {"cube_vit": lambda: CubeViT(depth=depth), "frame_vit": lambda: FrameViT(size),
                "cube_mvit": lambda: CubeMViT(size, kv_stride or 1, depth=depth, transitions=opts.transitions,
                                              readout=opts.readout,
                                              heads_per_block=layers.XS_HEADS if opts.ifdd_heads else None),
                "ifdd_mean": lambda: MeanReadout(build_model("ifdd", CLASSES, FRAMES, size, **spec.model.kwargs))}
    model = controls[name]()
    return model, classification_criterion(spec), spec


def reinit_linears(model: nn.Module, kind: str) -> None:
    """`--init`: re-draw every Linear of the model. `torch`: PyTorch's default (kaiming-uniform, a=sqrt(5));
    `trunc02`: trunc-normal std 0.02 and zero bias (MViTv2's, timm's and IFDD's released init)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if kind == "torch":
                m.reset_parameters()
            else:
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def normaliser(spec):
    if not spec.data.mean:
        return lambda x: x
    mean = torch.tensor(spec.data.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(spec.data.std).view(1, 3, 1, 1, 1)
    return lambda x: (x - mean) / std


def test_accuracy(model: nn.Module, norm, x_test: torch.Tensor, y_test: torch.Tensor) -> float:
    """Accuracy (%) on the held-out clips, in eval mode (no random draws, so training continues unchanged)."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(norm(x_test[i:i + 35])).argmax(1) for i in range(0, len(x_test), 35)])
    return round(100 * float((pred == y_test).float().mean()), 1)


def init_seed(args) -> int:
    """The model-initialisation seed: `--init-seed`, or the data seed when not given (the rows before the switch)."""
    return args.seed if args.init_seed is None else args.init_seed


def train(args) -> dict:
    from bench.optim import build_optimizer, set_lr

    torch.manual_seed(init_seed(args))  # the model's initialisation (and dropout / drop-path draws)
    gen = torch.Generator().manual_seed(args.seed)  # the data stream: the same for every init seed
    sets = [f"optim.lr={args.lr}", *([f"optim.weight_decay={args.wd}"] if args.wd is not None else []), *args.sets]
    model, criterion, spec = build(args.model, args.size, sets, args)
    if args.init:
        reinit_linears(model, args.init)
    norm = normaliser(spec)
    optimizer = build_optimizer(model, spec.optim)
    x_test, y_test = size_toy(140, args.size, gen)
    smooth = spec.reg.label_smoothing
    ces: list[float] = []
    per_100: list[float] = []
    acc_at: dict[int, float] = {}
    t0, cpu0 = time.time(), time.process_time()
    model.train()
    for step in range(args.steps):
        set_lr(optimizer, args.lr * min(1.0, (step + 1) / args.warmup))
        x, y = size_toy(8, args.size, gen)
        target = nn.functional.one_hot(y, CLASSES).float() * (1 - smooth) + smooth / CLASSES
        loss, parts = criterion(model(norm(x)), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ces.append(parts["ce"])
        if (step + 1) % 100 == 0:
            per_100.append(round(float(np.mean(ces[-100:])), 3))
            print(f"{args.model} step {step + 1}: train CE {per_100[-1]:.3f}", flush=True)
        if step + 1 in args.eval_at and step + 1 < args.steps:
            acc_at[step + 1] = test_accuracy(model, norm, x_test, y_test)
            model.train()
    acc_at[args.steps] = test_accuracy(model, norm, x_test, y_test)
    return {"experiment": "train", "model": args.model, "size": args.size, "steps": args.steps, "lr": args.lr,
            "wd": spec.optim.weight_decay, "optimizer": spec.optim.name, "warmup": args.warmup,
            "kv_stride": args.kv_stride, "depth": args.depth,
            "transitions": list(args.transitions), "init": args.init, "readout": args.readout,
            "ifdd_heads": args.ifdd_heads, "late_heads": args.late_heads, "label_smoothing": smooth,
            "sets": args.sets, "seed": args.seed, "init_seed": init_seed(args), "ce_per_100": per_100,
            "ce_first40": round(float(np.mean(ces[:40])), 3), "ce_last40": round(float(np.mean(ces[-40:])), 3),
            "test_acc": acc_at[args.steps], "test_acc_at": acc_at,
            "wall_min": round((time.time() - t0) / 60, 1), "cpu_min": round((time.process_time() - cpu0) / 60, 1),
            "threads": torch.get_num_threads()}


def probe_points(model: nn.Module, name: str) -> dict[str, nn.Module]:
    """Modules whose output (tokens, or the embedding map) is probed, in depth order."""
    if name in ("ifdd", "ifdd_mean"):
        model = getattr(model, "ifdd", model)
        points = {"embed": model.embed}
        points.update({f"block{i}": b for i, b in enumerate(model.backbone.blocks)})
        if name == "ifdd":
            points["x_d (LADM out)"] = model.ladm.token_compress
        return points
    if name == "mvit_v2_s":
        return {f"block{i}": b for i, b in enumerate(model.blocks)}
    if name in ("cube_vit", "cube_mvit"):
        return {"embed": model.embed, **{f"block{i}": b for i, b in enumerate(model.blocks)}}
    if name == "frame_vit":
        return {f"block{i}": b for i, b in enumerate(model.vit.blocks)}
    raise SystemExit(f"probe: no probe points for --model {name}; use one of ifdd, ifdd_mean, mvit_v2_s, cube_vit, "
                     "cube_mvit, frame_vit")


def probe(args) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    torch.manual_seed(init_seed(args))
    gen = torch.Generator().manual_seed(args.seed + 1)
    model, _, spec = build(args.model, args.size, [], args)
    model.eval()
    norm = normaliser(spec)
    points = probe_points(model, args.model)
    feats: dict[str, list[torch.Tensor]] = {}

    def hook(key: str):
        def grab(_module, _inputs, out):
            out = (out[0] if isinstance(out, tuple) else out).detach()
            if out.dim() == 5:  # an embedding map (b, c, t, h, w) -> tokens
                out = out.flatten(2).transpose(1, 2)
            elif out.dim() == 3 and args.model == "frame_vit":  # (b*t, n, c) -> (b, t*n, c)
                out = out.reshape(-1, FRAMES * out.shape[1], out.shape[2])
            if out.dim() == 3:
                out = torch.cat([out.mean(1), out.amax(1)], 1)
            feats.setdefault(key, []).append(out.flatten(1))
        return grab

    for key, module in points.items():
        module.register_forward_hook(hook(key))

    def features(x: torch.Tensor) -> dict[str, np.ndarray]:
        feats.clear()
        with torch.no_grad():
            for i in range(0, len(x), 50):
                model(norm(x[i:i + 50]))
        return {k: torch.cat(v).numpy() for k, v in feats.items()}

    (xa, ya), (xb, yb) = size_toy(args.train_clips, args.size, gen), size_toy(args.test_clips, args.size, gen)
    fa, fb = features(xa), features(xb)
    accs = {}
    for key in points:
        scaler = StandardScaler().fit(fa[key])
        clf = LogisticRegression(max_iter=3000).fit(scaler.transform(fa[key]), ya.numpy())
        accs[key] = round(100 * clf.score(scaler.transform(fb[key]), yb.numpy()), 1)
        print(f"{args.model} {key:16s} linear probe {accs[key]:.1f}%", flush=True)
    return {"experiment": "probe", "model": args.model, "size": args.size, "seed": args.seed,
            "init_seed": init_seed(args),
            "train_clips": args.train_clips, "test_clips": args.test_clips, "probe_acc": accs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="experiment", required=True)
    for name in ("train", "probe"):
        p = sub.add_parser(name)
        p.add_argument("--model", choices=MODELS, default="ifdd")
        p.add_argument("--size", type=int, default=32)
        p.add_argument("--seed", type=int, default=0, help="the data stream's seed (training batches, test clips)")
        p.add_argument("--init-seed", type=int, default=None,
                       help="the model's initialisation seed (default: --seed); vary it to separate init from data")
        p.add_argument("--kv-stride", type=int, default=None,
                       help="cube_mvit: spatial kv pooling stride (default 1); ifdd: cap on every block's")
        p.add_argument("--depth", type=int, default=6, help="cube_mvit/cube_vit: number of blocks")
        p.add_argument("--transitions", type=lambda v: tuple(int(i) for i in v.split(",") if i), default=(),
                       help="cube_mvit: blocks that pool q 2x and double the width (MViTv2-S/IFDD: 1,3 then 8)")
        p.add_argument("--readout", choices=("all", "tokens"), default="all",
                       help="cube_mvit: mean over all tokens, or over the patch tokens only (IFDD's: no class token)")
        p.add_argument("--ifdd-heads", action="store_true", help="cube_mvit --depth 10: IFDD's heads per block")
        p.add_argument("--late-heads", action="store_true",
                       help="ifdd: heads double one block after each stage transition, as in the learning control")
        p.add_argument("--out", type=Path, default=Path("results/diagnostics/ifdd_toy"))
    t = sub.choices["train"]
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--wd", type=float, default=None, help="weight decay (default: the spec's)")
    t.add_argument("--init", choices=("torch", "trunc02"), default=None,
                   help="re-draw every Linear: PyTorch's default or trunc-normal 0.02 (default: as the model builds)")
    t.add_argument("--set", dest="sets", action="append", default=[], help="a spec override, e.g. "
                   "model.kwargs.drop_path=0.0 (registered methods)")
    t.add_argument("--warmup", type=int, default=20, help="linear warm-up steps, then constant lr")
    t.add_argument("--eval-at", type=lambda v: tuple(int(i) for i in v.split(",") if i), default=(),
                   help="also measure the test accuracy after these steps (e.g. 300,600; the end is always measured)")
    p = sub.choices["probe"]
    p.add_argument("--train-clips", type=int, default=700)
    p.add_argument("--test-clips", type=int, default=350)
    args = ap.parse_args()
    from bench.store import atomic_write_json

    row = train(args) if args.experiment == "train" else probe(args)
    row["command"] = "benchmarks/ifdd_toy.py " + " ".join(sys.argv[1:])
    print(json.dumps(row))
    findings = args.out / "findings.json"
    rows = json.loads(findings.read_text()) if findings.is_file() else []
    atomic_write_json(findings, [*rows, row])


if __name__ == "__main__":
    main()
