"""The README's demo runs, offline, and its artifacts verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dp_models._provenance import load_npz, read_stamps

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_and_its_artifacts_verify(tmp_path: Path) -> None:
    env = {**os.environ, "DP_MODELS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[2] for line in lines if line.startswith("frame")] == [
        "red",
        "green",
        "blue",
    ]
    assert "verified   dp-models verify-artifact: ok" in proc.stdout
    arrays, stamps = load_npz(tmp_path / "out" / "predictions.npz")
    assert arrays["probs"].shape == (3, 3)
    (entry,) = stamps["models_used"]
    assert entry["name"] == "tiny_color_classifier" and entry["framework"]["name"] == "onnxruntime"
    as_json = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert as_json["labels"] == ["red", "green", "blue"]
    assert stamps["video_id"] == "demo"
    assert read_stamps(tmp_path / "out" / "predictions.json") == {
        k: stamps[k] for k in ("models_used", "model_signature", "weights_digest", "catalog_used")
    }
