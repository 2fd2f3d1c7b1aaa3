"""The packaged catalog covers every model of the pipeline's inventory
(shared/MODEL_INVENTORY.md), with the spec names the inventory uses."""

from __future__ import annotations

import pytest

from dp_models import Catalog
from dp_models._spec import Spec

#: Spec names that MODEL_INVENTORY.md names explicitly.
NAMED_IN_INVENTORY = [
    "whisper_small_triton",
    "whisper_medium_triton",
    "whisper_large_triton",
    "shared_tokenizer_v1",
    "laion_clap",
    "speaker_diarization_small_triton",
    "speaker_diarization_large_triton",
    "emotion_diarization_small_triton",
    "emotion_diarization_large_triton",
    "source_separation_small_triton",
    "source_separation_medium_triton",
    "source_separation_large_triton",
    "places365_resnet50_224_triton",
    "places365_resnet50_336_triton",
    "places365_resnet50_448_triton",
]

#: Every inventory module that loads a model, and the families it must find in the catalog.
MODULE_FAMILIES = {
    "VisualProcessor/core_clip": {"clip"},
    "VisualProcessor/core_depth_midas": {"midas"},
    "VisualProcessor/core_optical_flow": {"raft"},
    "VisualProcessor/core_object_detections": {"yolo", "bytetrack"},
    "VisualProcessor/core_face_landmarks": {"mediapipe"},
    "VisualProcessor/cut_detection": {"clip", "resnet"},
    "VisualProcessor/scene_classification": {"places365"},
    "VisualProcessor/action_recognition": {"slowfast"},
    "VisualProcessor/high_level_semantic": {"clip"},
    "VisualProcessor/emotion_face": {"emonet"},
    "VisualProcessor/story_structure": {"sentence_transformers"},
    "AudioProcessor/asr_extractor": {"whisper"},
    "AudioProcessor/clap_extractor": {"laion_clap"},
    "AudioProcessor/speaker_diarization_extractor": {"speaker_diarization"},
    "AudioProcessor/emotion_diarization_extractor": {"emotion_diarization"},
    "AudioProcessor/source_separation_extractor": {"source_separation"},
    "TextProcessor/embeddings": {"sentence_transformers"},
    "TextProcessor/semantic_topic_extractor": {"sentence_transformers"},
    "TextProcessor/asr_text_proxy_extractor": {"spacy"},
    "TextProcessor/lexical_stats_extractor": {"spacy"},
}

#: Digests upstream publishes (OpenAI URLs embed them; Hugging Face LFS addresses by them).
UPSTREAM_PINS = {
    "clip_vit_b32": "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    "clip_vit_l14_336": "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
    "laion_clap": "8053c9775516af2f4902e1e8281e356cc1bf7a85e8b761908170767b77c3f037",
    "all_minilm_l6_v2": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "multilingual_e5_large": "020afdebf2762b29fcaf286629a96c3b3b65af241f6a08226b1cfee60a21def6",
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.mark.parametrize("name", NAMED_IN_INVENTORY)
def test_inventory_names_are_specs(catalog: Catalog, name: str) -> None:
    assert name in catalog


@pytest.mark.parametrize(("module", "families"), sorted(MODULE_FAMILIES.items()))
def test_every_module_finds_its_models(catalog: Catalog, module: str, families: set[str]) -> None:
    found = {s.family for s in catalog.values() if module in s.users}
    assert families <= found, f"{module} uses {families - found} but no spec lists it as a user"


def test_every_user_is_an_inventory_module(catalog: Catalog) -> None:
    users = {u for s in catalog.values() for u in s.users}
    assert users <= set(MODULE_FAMILIES)


def test_clip_places365_runtimes(catalog: Catalog) -> None:
    def runtimes(family: str) -> set[str]:
        return {s.runtime for s in catalog.values() if s.family == family}

    assert runtimes("clip") == {"inprocess", "triton"}
    assert runtimes("places365") == {"inprocess", "triton"}
    presets = {s.preprocess for s in catalog.values() if s.family == "places365"}
    assert {"places365_224", "places365_336", "places365_448"} <= presets


def test_whisper_requires_the_shared_tokenizer(catalog: Catalog) -> None:
    for size in ("small", "medium", "large"):
        assert catalog[f"whisper_{size}_triton"].requires == ["shared_tokenizer_v1"]


def test_optical_flow_takes_two_frames(catalog: Catalog) -> None:
    flow = [s for s in catalog.values() if s.family == "raft"]
    assert len(flow) == 1 and flow[0].triton is not None
    assert len(flow[0].triton.inputs) == 2


def test_mediapipe_models_are_task_assets(catalog: Catalog) -> None:
    specs = [s for s in catalog.values() if s.family == "mediapipe"]
    tasks = {s.loader_args["task"] for s in specs}
    assert tasks == {"face_detector", "pose_landmarker", "hand_landmarker", "face_landmarker"}
    assert all(a.format in ("task", "tflite") for s in specs for a in s.artifacts)


def test_spacy_pipelines(catalog: Catalog) -> None:
    names = {s.name for s in catalog.values() if s.engine == "spacy"}
    assert names == {"spacy_en_core_web_sm", "spacy_ru_core_news_sm"}


@pytest.mark.parametrize(("name", "digest"), sorted(UPSTREAM_PINS.items()))
def test_upstream_digests_are_pinned_with_their_source(
    catalog: Catalog, name: str, digest: str
) -> None:
    arts = [a for a in catalog[name].artifacts if a.sha256 == digest]
    assert len(arts) == 1
    assert arts[0].source


def test_triton_specs_know_what_digest_to_check(catalog: Catalog) -> None:
    triton: list[Spec] = [s for s in catalog.values() if s.runtime == "triton"]
    assert len(triton) >= 17
    for spec in triton:
        assert spec.triton is not None
        # served digest: explicit, or the first artifact's pin (lock) once provisioned
        assert spec.triton.weights_digest is not None or spec.artifacts, spec.name
        assert spec.triton.inputs and spec.triton.outputs


def test_core_clip_on_triton_has_a_spec_for_each_of_its_presets(catalog: Catalog) -> None:
    """core_clip's Triton runtime takes openai_clip_224|336|448: a spec for each, whose input
    is what its preset makes (448: OpenAI's RN50x64, 1024-d embeddings)."""
    served = {s.preprocess: s for s in catalog.values() if s.family == "clip" and s.triton}
    assert set(served) == {"openai_clip_224", "openai_clip_336", "openai_clip_448"}
    for preset, spec in served.items():
        size = int(preset.rsplit("_", 1)[1])
        assert spec.triton is not None and spec.triton.inputs[0].shape == [3, size, size]
        assert "VisualProcessor/core_clip" in spec.users
    rn50x64 = catalog["clip_rn50x64_triton"]
    assert rn50x64.triton is not None
    assert [(t.name, t.shape) for t in rn50x64.triton.outputs] == [("embedding", [1024])]
    assert [a.source for a in rn50x64.artifacts] == ["in-house"]  # pinned by the lock


def test_classifiers_require_label_lists_of_their_class_count(catalog: Catalog) -> None:
    """Labels are specs of their own, required (never copied) by every spec whose outputs
    they name, with as many names as the model has classes."""
    requiring: dict[str, str] = {}
    for spec in catalog.values():
        labels = [catalog[r] for r in spec.requires if catalog[r].role == "labels"]
        if labels:
            requiring[spec.name] = labels[0].name
            count = labels[0].loader_args["count"]
            if spec.triton is not None:
                assert spec.triton.outputs[0].shape[-1] == count, spec.name
            else:
                assert spec.loader_args["num_classes"] == count, spec.name
    assert requiring == {
        "places365_resnet50": "places365_categories",
        "places365_resnet50_224_triton": "places365_categories",
        "places365_resnet50_336_triton": "places365_categories",
        "places365_resnet50_448_triton": "places365_categories",
        "slowfast_r50": "kinetics400_categories",
    }
    labels = [s for s in catalog.values() if s.role == "labels"]
    assert all(s.loader == "labels" and len(s.artifacts) == 1 for s in labels)


def test_slowfast_has_its_clip_preset(catalog: Catalog) -> None:
    assert catalog["slowfast_r50"].preprocess == "kinetics400_slowfast_256"
