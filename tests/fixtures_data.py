"""Fixture writers for the data tests: tiny copies of the OFFICIAL layouts (datasets.md §1-§3), quirks included.

Everything is written into pytest tmp dirs, never into the repository. Frames are small (32x32) so that the
end-to-end runs stay fast; the layouts, file names, encodings and line endings are the released ones.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

DFEW_NAMES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
FERV_EMOTIONS = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
MAFW_NAMES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
              "helplessness", "disappointment")


def frame(seed: int, h: int = 32, w: int = 32, label: int = 0) -> np.ndarray:
    """A frame whose mean colour depends on the label (so a model can learn something) plus noise."""
    rng = np.random.default_rng(seed)
    base = np.array([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256], dtype=np.float32)
    img = base + rng.normal(0, 20, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg(seed: int, label: int = 0, size: int = 32) -> bytes:
    import simplejpeg

    return simplejpeg.encode_jpeg(frame(seed, size, size, label), quality=90)


def png(seed: int, label: int = 0, h: int = 32, w: int = 32) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame(seed, h, w, label)).save(buf, format="PNG")
    return buf.getvalue()


def write_mp4(path: Path, n_frames: int = 20, size: int = 32, label: int = 0) -> Path:
    """A small H.264 (or MPEG-4) clip written with PyAV, readable by decord."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        st = out.add_stream(codec, rate=25)
        st.width = st.height = size
        st.pix_fmt = "yuv420p"
        for t in range(n_frames):
            for pkt in st.encode(av.VideoFrame.from_ndarray(frame(t, size, size, label), format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


# ----------------------------------------------------------------------------------------------------------
# DFEW


def write_dfew(base: Path, n_clips: int = 21, variants: tuple[str, ...] = ("clip_224x224_16f",),
               label0: bool = True, nested: bool = False) -> Path:
    """DFEW/ root: EmoLabel_DataSplit/{train,test}(single-labeled)/set_1..5.csv (header, 1-based labels, one
    label-0 row in set_1 train, a UTF-8 BOM in set_2, CRLF + trailing blank lines in set_3), Clip/clip_224x224_16f/<id>/1.jpg..16.jpg (unpadded names), optionally
    clip_224x224 (<id>_<n>.jpg, variable length, inside a part folder) and original/<id>.mp4."""
    root = base / "DFEW"
    top = root / "DFEW" if nested else root
    ids = [f"{i:05d}" for i in range(1, n_clips + 1)]
    labels = {cid: (i % 7) + 1 for i, cid in enumerate(ids)}
    split = top / "EmoLabel_DataSplit"
    for fold in range(1, 6):
        test = [c for i, c in enumerate(ids) if i % 5 == fold - 1]
        train = [c for c in ids if c not in test]
        for name, rows in (("train(single-labeled)", train), ("test(single-labeled)", test)):
            d = split / name
            d.mkdir(parents=True, exist_ok=True)
            lines = ["video_name,label"] + [f"{int(c)},{labels[c]}" for c in rows]
            if label0 and fold == 1 and name.startswith("train"):
                lines.insert(3, "16001,0")
            if fold == 2:  # quirk: a UTF-8 BOM (files re-saved on Windows)
                (d / f"set_{fold}.csv").write_bytes(("\n".join(lines) + "\n").encode("utf-8-sig"))
            elif fold == 3:  # quirk: CRLF line endings and trailing blank lines
                (d / f"set_{fold}.csv").write_bytes(("\r\n".join(lines) + "\r\n\r\n\r\n").encode())
            else:
                (d / f"set_{fold}.csv").write_text("\n".join(lines) + "\n")
    for v in variants:
        for k, cid in enumerate(ids):
            lab = labels[cid] - 1
            if v == "clip_224x224_16f":
                d = top / "Clip" / v / cid
                d.mkdir(parents=True, exist_ok=True)
                for t in range(1, 17):
                    (d / f"{t}.jpg").write_bytes(jpeg(k * 100 + t, lab))
            elif v == "clip_224x224":
                d = top / "Clip" / v / "clip_224x224_part_1" / cid
                d.mkdir(parents=True, exist_ok=True)
                for t in range(1, 11 + (k % 9)):
                    (d / f"{cid}_{t:05d}.jpg").write_bytes(jpeg(k * 100 + t, lab))
            elif v == "original":
                write_mp4(top / "Clip" / "original" / f"{cid}.mp4", 12 + k % 5, 32, lab)
    return root


# ----------------------------------------------------------------------------------------------------------
# FERV39k


def write_ferv39k(base: Path, per_class: int = 2) -> Path:
    """FERV39K/ root with an extra nesting level (FERV39K/FERV39k/4_setups, 2_ClipsforFaceCrop-002/
    2_ClipsforFaceCrop/<Scene>/<Emotion>/<NNNN>/<2-digit>.jpg), clips of 8..20 frames, space-separated
    lists without header."""
    root = base / "FERV39K"
    crops = root / "2_ClipsforFaceCrop-002" / "2_ClipsforFaceCrop"
    setups = root / "FERV39k" / "4_setups" / "All_scenes"
    setups.mkdir(parents=True, exist_ok=True)
    scenes = ("Action", "Interview", "Crime")
    train, test = [], []
    k = 0
    for ei, emo in enumerate(FERV_EMOTIONS):
        for j in range(per_class + 1):
            scene = scenes[(ei + j) % len(scenes)]
            rel = f"{scene}/{emo}/{j + 1:04d}"
            d = crops / rel
            d.mkdir(parents=True, exist_ok=True)
            n = 8 + (k * 5) % 13  # 8..20: several clips under 16 frames
            for t in range(n):
                (d / f"{t:02d}.jpg").write_bytes(jpeg(k * 100 + t, DFEW_NAMES.index(emo.lower())))
            (test if j == per_class else train).append(f"{rel} {emo}")
            k += 1
    (setups / "train_All.csv").write_text("\n".join(train) + "\n")
    (setups / "test_All.csv").write_text("\n".join(test) + "\n")
    return root


# ----------------------------------------------------------------------------------------------------------
# MAFW


def write_mafw(base: Path, per_class: int = 2, clips: bool = False) -> Path:
    """MAFW/ root: data/frames/frames/<id>/<n>.png (extra nesting), 'Train & Test Set/{single,compound}/
    {no_caption,with_caption}/set_1..5/{train,test}.txt' with CRLF; with_caption TAB-separated GBK with a
    Chinese caption (neutral omitted, as released); optionally data/clips/<id>.mp4."""
    root = base / "MAFW"
    frames_root = root / "data" / "frames" / "frames"
    rows = []  # (id, label name)
    k = 0
    for ci, name in enumerate(MAFW_NAMES):
        for _ in range(per_class + 1):
            cid = f"{k + 1:05d}"
            d = frames_root / cid
            d.mkdir(parents=True, exist_ok=True)
            for t in range(12 + k % 6):
                (d / f"{t}.png").write_bytes(png(k * 100 + t, ci))
            if clips:
                write_mp4(root / "data" / "clips" / f"{cid}.mp4", 12, 32, ci)
            rows.append((cid, name))
            k += 1
    compound = [(cid, "anger_disgust" if i % 3 == 0 else "sadness_anxiety_helplessness" if i % 7 == 0 else name)
                for i, (cid, name) in enumerate(rows)]
    tts = root / "Train & Test Set"
    for kind, items in (("single", rows), ("compound", compound)):
        for fold in range(1, 6):
            test = [r for i, r in enumerate(items) if i % 5 == fold - 1]
            train = [r for r in items if r not in test]
            for cap in ("no_caption", "with_caption"):
                d = tts / kind / cap / f"set_{fold}"
                d.mkdir(parents=True, exist_ok=True)
                for split, rs in (("train", train), ("test", test)):
                    if cap == "no_caption":
                        text = "\r\n".join(f"{cid}.mp4 {lab}" for cid, lab in rs) + "\r\n"
                        (d / f"{split}.txt").write_bytes(text.encode("ascii"))
                    else:
                        text = "\r\n".join(f"{cid}.mp4\t{lab}\t一个人皱着眉头，看起来很{lab}。\tA person frowns."
                                           for cid, lab in rs if lab != "neutral") + "\r\n"
                        (d / f"{split}.txt").write_bytes(text.encode("gbk"))
    return root
