"""Draw the probe frames ``dp-models doctor --compare`` runs through both runtimes of a model
(src/dp_models/probe/*.png): four small synthetic scenes (sky and ground, a room, a
portrait, colour blobs), drawn from a fixed seed, so that the bundled files can be made
again and checked. Their sha256 digests are listed in dp_models._compare (PROBE_FRAMES).

    python scripts/make_probe.py [OUT_DIR]
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

W, H = 256, 144


def _grid() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    return y / (H - 1), x / (W - 1)


def outdoor(rng: np.random.Generator) -> np.ndarray:
    y, x = _grid()
    img = np.zeros((H, W, 3))
    sky = y < 0.55 + 0.05 * np.sin(x * 9)
    img[..., 0] = np.where(sky, 90 + 120 * y, 70 + 40 * y)
    img[..., 1] = np.where(sky, 140 + 90 * y, 110 + 50 * y)
    img[..., 2] = np.where(sky, 230 - 40 * y, 50 + 20 * y)
    sun = (x - 0.78) ** 2 * (W / H) ** 2 + (y - 0.18) ** 2 < 0.012
    img[sun] = (255, 230, 120)
    for left, width, top in ((0.08, 0.1, 0.3), (0.2, 0.07, 0.4), (0.45, 0.12, 0.25)):
        block = (x > left) & (x < left + width) & (y > top) & (y < 0.62)
        img[block] = (60, 60, 75)
    img += gaussian_filter(rng.normal(0, 10, (H, W, 3)), (1, 1, 0))
    return img


def room(rng: np.random.Generator) -> np.ndarray:
    y, x = _grid()
    img = np.zeros((H, W, 3))
    img[...] = (200, 180, 150)
    floor = y > 0.62 + 0.25 * np.abs(x - 0.5)
    img[floor] = (120, 80, 50)
    window = (x > 0.6) & (x < 0.85) & (y > 0.15) & (y < 0.45)
    img[window] = (170, 210, 245)
    table = (x > 0.2) & (x < 0.5) & (y > 0.55) & (y < 0.62)
    img[table] = (90, 50, 30)
    img *= (0.7 + 0.3 * (1 - np.abs(x - 0.7)))[..., None]
    img += gaussian_filter(rng.normal(0, 8, (H, W, 3)), (1.5, 1.5, 0))
    return img


def portrait(rng: np.random.Generator) -> np.ndarray:
    y, x = _grid()
    img = np.zeros((H, W, 3))
    img[...] = (40 + 40 * x[..., None]) * np.array([0.6, 0.7, 1.0])
    ax, ay = (x - 0.5) * W / H, y - 0.48
    face = ax**2 / 0.06 + ay**2 / 0.12 < 1
    img[face] = (225, 180, 150)
    for ex in (-0.12, 0.12):
        eye = (ax - ex) ** 2 + (ay + 0.08) ** 2 < 0.0015
        img[eye] = (50, 35, 30)
    mouth = (np.abs(ax) < 0.1) & (np.abs(ay - 0.17) < 0.015)
    img[mouth] = (150, 60, 60)
    img += gaussian_filter(rng.normal(0, 6, (H, W, 3)), (1, 1, 0))
    return img


def blobs(rng: np.random.Generator) -> np.ndarray:
    img = rng.uniform(0, 255, (H // 8, W // 8, 3))
    img = np.kron(img, np.ones((8, 8, 1)))
    return gaussian_filter(img, (5, 5, 0)) + rng.normal(0, 4, (H, W, 3))


def main(out: Path) -> None:
    rng = np.random.default_rng(20261130)
    out.mkdir(parents=True, exist_ok=True)
    for i, draw in enumerate((outdoor, room, portrait, blobs)):
        frame = np.clip(np.rint(draw(rng)), 0, 255).astype(np.uint8)
        path = out / f"frame_{i}_{draw.__name__}.png"
        Image.fromarray(frame, "RGB").save(path, optimize=True)
        print(f'    "{path.name}": "{hashlib.sha256(path.read_bytes()).hexdigest()}",')


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("src/dp_models/probe"))
