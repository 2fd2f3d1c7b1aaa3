"""The demo: load a real model through the ModelManager, run it, write a stamped artifact,
verify the stamps. Offline, from MODELS_ROOT.example/ and the example catalog.

    python examples/demo.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from dp_models import ModelManager, save_npz, write_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CATALOG = HERE / "spec_catalog"
ROOT = REPO / "MODELS_ROOT.example"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo_out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    mm = ModelManager(models_root=ROOT, catalog=CATALOG)  # offline from here on
    handle = mm.get("tiny_color_classifier")  # resolved and sha256-verified
    session = handle.load()  # onnxruntime.InferenceSession, loaded inside the network guard
    labels = handle.paths["demo/tiny_color_classifier/labels.txt"].read_text().split()

    frames = np.load(HERE / "demo_frames.npy")
    (probs,) = session.run(None, {"image": frames})
    predicted = [labels[i] for i in probs.argmax(axis=1)]

    meta = mm.stamp({"video_id": "demo", "frames": len(frames)})
    npz = save_npz(args.out / "predictions.npz", {"probs": probs}, meta)
    js = write_json(args.out / "predictions.json", {**meta, "labels": predicted})

    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "dp_models",
            "verify-artifact",
            str(npz),
            "--catalog",
            str(CATALOG),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    verdict = json.loads(check.stdout) if check.stdout else {"ok": False}

    print(
        f"model      {handle.name} {handle.spec.version} ({handle.spec.engine}, "
        f"{handle.device}, {handle.precision})"
    )
    print(f"weights    {handle.weights_digest}")
    print(f"signature  {handle.model_signature}")
    for i, (label, row) in enumerate(zip(predicted, probs, strict=True)):
        print(f"frame {i}    {label:<6} p={row.max():.3f}")
    print(f"wrote      {npz}")
    print(f"wrote      {js}")
    print(f"verified   dp-models verify-artifact: {'ok' if verdict['ok'] else 'FAILED'}")
    if not verdict["ok"]:
        print(check.stdout + check.stderr, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
