"""Split-list quirks and frame decoding: every bad input is a one-line DataError naming the file."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from fixtures_data import jpeg, png

from bench.data import frames as fr
from bench.data import transforms as T
from bench.data.lists import map_label, numbered_lines, read_lines, safe_join
from bench.errors import DataError


def one_line(e: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_read_lines_bom_crlf_gbk_blank(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffvideo_name,label\r\n1,2\r\n\r\n2,3\r\n\r\n\r\n".encode())
    assert read_lines(p) == ["video_name,label", "1,2", "2,3"]
    assert numbered_lines(p)[-1] == (4, "2,3")
    g = tmp_path / "gbk.txt"
    g.write_bytes("00025.mp4\tanger\t一个人很生气\tangry\r\n".encode("gbk"))
    assert read_lines(g)[0].split("\t")[:3] == ["00025.mp4", "anger", "一个人很生气"]
    cr = tmp_path / "cr.txt"
    cr.write_bytes(b"a 1\rb 2\r")  # old Mac line endings
    assert read_lines(cr) == ["a 1", "b 2"]


def test_missing_list_and_escape_and_label(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        read_lines(tmp_path / "nope.txt")
    one_line(e, "nope.txt", "not found")
    for bad in ("../outside/00001", "a/../../b", "/abs/00001", "..\\win\\x"):
        with pytest.raises(DataError) as e:
            safe_join(tmp_path, bad, tmp_path / "list.txt", 3)
        one_line(e, "list.txt:3", "relative")
    assert safe_join(tmp_path, "Action/Sad/0010", tmp_path / "l") == tmp_path / "Action/Sad/0010"
    with pytest.raises(DataError) as e:
        map_label("joy", ("happy", "sad"), tmp_path / "l.txt", line=7)
    one_line(e, "l.txt:7", "'joy'", "not a class")
    assert map_label("Happy", ("happy", "sad"), tmp_path / "l.txt") == 0


def test_numeric_frame_order(tmp_path: Path) -> None:
    for t in range(1, 17):
        (tmp_path / f"{t}.jpg").write_bytes(jpeg(t))
    names = [p.name for p in fr.list_frames(tmp_path)]
    assert names == [f"{t}.jpg" for t in range(1, 17)]  # not 1, 10, 11, ...
    assert sorted(["00001_00012.jpg", "00001_00002.jpg"], key=fr.frame_sort_key)[0] == "00001_00002.jpg"


def test_read_frames_matches_decode(tmp_path: Path) -> None:
    for t in range(6):
        (tmp_path / f"{t}.jpg").write_bytes(jpeg(t))
    idx = [0, 0, 3, 5, 5, 1]
    clip = fr.read_frames(tmp_path, idx)
    ref = np.stack([fr.decode_image(tmp_path / f"{i}.jpg") for i in idx])
    assert clip.dtype == np.uint8 and clip.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(clip, ref)
    with pytest.raises(DataError) as e:
        fr.read_frames(tmp_path, [0, 9])
    one_line(e, "out of range", "bench data check")


def test_png_frames(tmp_path: Path) -> None:
    for t in range(3):
        (tmp_path / f"{t}.png").write_bytes(png(t, h=24, w=40))
    assert fr.read_clip(tmp_path, [2, 0]).shape == (2, 24, 40, 3)


@pytest.mark.parametrize("case", ["zero", "truncated", "garbage"])
def test_bad_frame_one_line(tmp_path: Path, case: str) -> None:
    d = tmp_path / "00001"
    d.mkdir()
    for t in range(1, 5):
        (d / f"{t}.jpg").write_bytes(jpeg(t))
    bad = d / "3.jpg"
    data = bad.read_bytes()
    bad.write_bytes({"zero": b"", "truncated": data[: len(data) // 2], "garbage": b"\xff\xd8garbage"}[case])
    with pytest.raises(DataError) as e:
        fr.read_clip(d, [0, 1, 2, 3])
    one_line(e, "3.jpg", "on_bad_clip=skip")
    assert fr.verify_frame_file(bad) is not None
    assert fr.verify_frame_file(d / "1.jpg") is None


def test_empty_and_missing_clip_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        fr.read_clip(tmp_path / "empty", [0])
    one_line(e, "empty", "no .jpg/.png frames")
    with pytest.raises(DataError) as e:
        fr.count_frames(tmp_path / "gone")
    one_line(e, "gone", "missing")


def test_video_through_decord(tmp_path: Path) -> None:
    from fixtures_data import write_mp4

    p = write_mp4(tmp_path / "00001.mp4", n_frames=14)
    assert fr.count_frames(p) == 14
    clip = fr.read_clip(p, [0, 5, 13])
    assert clip.shape == (3, 32, 32, 3) and clip.dtype == np.uint8
    (tmp_path / "00002.mp4").write_bytes(b"")
    with pytest.raises(DataError) as e:
        fr.read_clip(tmp_path / "00002.mp4", [0])
    one_line(e, "00002.mp4", "empty")


def _reference_train_transform(clip, cfg, rng: random.Random) -> torch.Tensor:
    """The same augmentation written with torchvision's own uint8 ops: the independent reference."""
    x = torch.from_numpy(clip).permute(0, 3, 1, 2)  # T,C,H,W uint8
    if cfg.flip and rng.random() < 0.5:
        x = TF.horizontal_flip(x)
    h, w = x.shape[-2:]
    top, left, ch, cw = T._rrc_params(h, w, cfg.rrc_scale, cfg.rrc_ratio, rng)
    x = TF.resized_crop(x, top, left, ch, cw, [cfg.size, cfg.size], interpolation=T._INTERP[cfg.interpolation], antialias=True)
    b, c, s, hue = cfg.color_jitter
    if any((b, c, s, hue)):
        ops = [0, 1, 2, 3]
        rng.shuffle(ops)
        for op in ops:
            if op == 0 and b > 0:
                x = TF.adjust_brightness(x, rng.uniform(max(0.0, 1 - b), 1 + b))
            elif op == 1 and c > 0:
                x = TF.adjust_contrast(x, rng.uniform(max(0.0, 1 - c), 1 + c))
            elif op == 2 and s > 0:
                x = TF.adjust_saturation(x, rng.uniform(max(0.0, 1 - s), 1 + s))
            elif op == 3 and hue > 0:
                x = TF.adjust_hue(x, rng.uniform(-hue, hue))
    return T._finish(x, cfg)


def test_train_transform_matches_torchvision_reference() -> None:
    """The planar-float training transform draws the same random numbers as torchvision's uint8 ops and
    differs from them only by uint8 rounding between the jitter ops."""
    from bench.data.transforms import train_transform
    from bench.spec import DataCfg

    rng = np.random.default_rng(0)
    clip = np.clip(np.cumsum(rng.normal(0, 6, (4, 48, 40, 3)), axis=2) + 128, 0, 255).astype(np.uint8)
    for cfg in (DataCfg(size=32, color_jitter=[0.4] * 4, rrc_scale=[0.5, 1.0]),
                DataCfg(size=24, color_jitter=[0.0, 0.3, 0.0, 0.1], mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])):
        for seed in range(4):
            r1, r2 = random.Random(seed), random.Random(seed)
            a = _reference_train_transform(clip, cfg, r1)
            b = train_transform(clip, cfg, r2)
            assert a.shape == b.shape and r1.random() == r2.random()  # same draws consumed
            scale = 255 * (min(cfg.std) if cfg.std else 1.0)
            diff = (a - b).abs() * scale
            assert float(diff.mean()) < 2.0 and float(diff.max()) < 12.0, (seed, float(diff.max()))


@pytest.mark.slow
def test_data_bench_times_every_reader(tmp_path) -> None:
    """`bench data bench` (benchmarks/data_loading.py) runs every reader it compares, on a small fixture."""
    import json

    from conftest import bench_cli

    proc = bench_cli(["data", "bench", "--clips", "2", "--frames", "4", "--size", "64", "--json"], tmp_path, check=True)
    res = json.loads(proc.stdout)
    rates = res["clips_per_s"]
    assert {"ifdd", "raw", "ours", "ours+pack", "ours[augment_on=device]"} <= set(rates)
    assert all(v > 0 for v in rates.values()) and res["device_stage_clips_per_s"]["cpu"] > 0
    assert res["ratios"]["ours/raw"] == pytest.approx(rates["ours"] / rates["raw"])
