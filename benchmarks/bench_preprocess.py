"""The preprocess presets against their references, as ratios measured in one run.

1. Each image preset on one 1080p uint8 frame against its reference transform on the same
   frame (open_clip's ``image_transform``, torchvision's Places365 and ImageNet transforms,
   transformers' DPT image processor), the frame handed over as an array either way (the
   reference wraps it with ``Image.fromarray``): target at least 1.0x the reference's
   speed, and the outputs equal (checked, bit for bit).
2. A batch of 8 frames on 2 threads against the same batch on 1 thread: target at least
   1.6x.
3. ``audio_16k_mono`` on 30 s of 44.1 kHz stereo against ``scipy.signal.resample_poly`` on
   the averaged channels (what it runs): a reference row, outputs equal.

    python benchmarks/bench_preprocess.py [--repeats 5] [--out FILE]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import best_of
from _report import Row, report

from dp_models.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    preprocess,
)


def _frame(seed: int, height: int = 1080, width: int = 1920) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), (xx + yy) % 256], -1)
    noisy = base + rng.integers(-30, 30, (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _references() -> dict[str, Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]]:
    import open_clip  # type: ignore[import-untyped]
    from PIL import Image
    from torchvision import transforms
    from transformers import DPTImageProcessorPil

    def torchvision(resize: Any, crop: int) -> Callable[[Any], Any]:
        chain = transforms.Compose(
            [
                transforms.Resize(resize),
                transforms.CenterCrop(crop),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        return lambda frame: chain(Image.fromarray(frame)).numpy()

    clip = open_clip.image_transform(
        224, is_train=False, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD
    )
    dpt = DPTImageProcessorPil(
        size={"height": 384, "width": 384},
        keep_aspect_ratio=False,
        resample=Image.Resampling.BICUBIC,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pad=False,
    )
    return {
        "openai_clip_224": lambda frame: clip(Image.fromarray(frame)).numpy(),
        "places365_224": torchvision((256, 256), 224),
        "imagenet_224": torchvision(256, 224),
        "midas_384": lambda frame: dpt(Image.fromarray(frame), return_tensors="np")["pixel_values"][
            0
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows: list[Row] = []
    frame = _frame(0)
    batch = [_frame(i) for i in range(8)]
    for name, reference in _references().items():
        equal = np.array_equal(preprocess(name, frame), reference(frame))
        t = best_of(
            {"ours": lambda n=name: preprocess(n, frame), "ref": lambda r=reference: r(frame)},
            args.repeats,
        )
        speed = t["ref"] / t["ours"]
        rows.append(
            (
                f"`{name}`, one 1080p frame, vs its reference"
                + ("" if equal else " (**outputs differ**)"),
                f"{t['ours'] * 1e3:.1f} ms vs {t['ref'] * 1e3:.1f} ms: **{speed:.2f}x**",
                "≥ 1.0x, equal",
                speed >= 1.0 and equal,
            )
        )
        t = best_of(
            {
                "two": lambda n=name: preprocess(n, batch, workers=2),
                "one": lambda n=name: preprocess(n, batch, workers=1),
            },
            args.repeats,
        )
        speedup = t["one"] / t["two"]
        rows.append(
            (
                f"`{name}`, a batch of 8 frames: 2 threads vs 1",
                f"{t['two'] * 1e3:.1f} ms vs {t['one'] * 1e3:.1f} ms: **{speedup:.2f}x**",
                "≥ 1.6x",
                speedup >= 1.6,
            )
        )
    from scipy.signal import resample_poly  # type: ignore[import-untyped]

    rng = np.random.default_rng(1)
    stereo = (0.1 * rng.standard_normal((2, 44_100 * 30))).astype(np.float32)
    expected = resample_poly(stereo.astype(np.float64).mean(axis=0), 160, 441).astype(np.float32)
    equal = np.array_equal(preprocess("audio_16k_mono", stereo, sample_rate=44_100), expected)
    t = best_of(
        {
            "ours": lambda: preprocess("audio_16k_mono", stereo, sample_rate=44_100),
            "ref": lambda: resample_poly(stereo.astype(np.float64).mean(axis=0), 160, 441),
        },
        args.repeats,
    )
    rows.append(
        (
            "`audio_16k_mono`, 30 s of 44.1 kHz stereo, vs `scipy.signal.resample_poly`"
            + ("" if equal else " (**outputs differ**)"),
            f"{t['ours'] * 1e3:.1f} ms vs {t['ref'] * 1e3:.1f} ms: **{t['ref'] / t['ours']:.2f}x**",
            "equal (reference row)",
            equal,
        )
    )
    how = f"best of {args.repeats} interleaved rounds, 1080p uint8 RGB frames."
    return report("bench_preprocess.py", "dp_models preprocess benchmark", how, rows, args.out)


if __name__ == "__main__":
    sys.exit(main())
