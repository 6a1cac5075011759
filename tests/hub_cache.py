"""Tiny random-weight hub models saved in the Hugging Face cache's own layout, for the offline hub tests.

The layout is huggingface_hub's: ``models--ORG--NAME/blobs/<sha256>``, ``snapshots/<commit>/<file>`` (a
relative link to the blob) and ``refs/main`` (the commit). Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

# Small enough for every method in seconds: hidden size 32, two blocks, 32×32 or 56×56 images.
TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def commit_of(repo: str) -> str:
    """A fixed 40-hex commit per repository (what ``refs/main`` points at)."""
    return hashlib.sha1(repo.encode()).hexdigest()


def put_in_cache(cache: Path, repo: str, folder: Path) -> Path:
    """Every file of ``folder`` as ``repo``'s snapshot in the hub cache ``cache``; returns the snapshot."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = commit_of(repo)
    snapshot = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    for file in sorted(folder.iterdir()):
        blob = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, root / "blobs" / blob)
        link = snapshot / file.name
        link.unlink(missing_ok=True)
        os.symlink(os.path.join("..", "..", "blobs", blob), link)
    return snapshot


def save_repo(cache: Path, repo: str, model, processor=None) -> Path:
    """``model`` (and its image ``processor``) saved by transformers, then laid into the cache as ``repo``."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        if processor is not None:
            processor.save_pretrained(tmp)
        return put_in_cache(cache, repo, Path(tmp))


def tiny_models(clip_projection: int = 16) -> dict[str, tuple]:
    """repo name → (reference model in eval mode, image processor): the families the tests load."""
    import transformers as t

    torch.manual_seed(0)
    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    dino = {**TINY_VIT, "image_size": 56, "patch_size": 14}
    clip_text = {**TINY_VIT, "num_hidden_layers": 1, "vocab_size": 99, "max_position_embeddings": 16}
    clip_text.update(bos_token_id=0, eos_token_id=1, pad_token_id=1)  # inside the tiny vocabulary
    models = {
        "simexplain-tests/dinov2-reg": (
            t.Dinov2WithRegistersModel(t.Dinov2WithRegistersConfig(**dino, num_register_tokens=4)),
            t.BitImageProcessor(
                size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56}, **imagenet
            ),
        ),
        "simexplain-tests/dinov2": (
            t.Dinov2Model(t.Dinov2Config(**dino)),
            t.BitImageProcessor(
                size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56}, **imagenet
            ),
        ),
        "simexplain-tests/clip": (
            t.CLIPModel(
                t.CLIPConfig(
                    text_config=clip_text,
                    vision_config={**TINY_VIT, "image_size": 32, "patch_size": 8},
                    projection_dim=clip_projection,
                )
            ),
            t.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        ),
        "simexplain-tests/siglip": (
            t.SiglipVisionModel(t.SiglipVisionConfig(**TINY_VIT, image_size=32, patch_size=8)),
            t.SiglipImageProcessor(size={"height": 32, "width": 32}),
        ),
        "simexplain-tests/dinov3": (
            t.DINOv3ViTModel(
                t.DINOv3ViTConfig(**TINY_VIT, image_size=32, patch_size=8, num_register_tokens=4)
            ),
            t.DINOv3ViTImageProcessor(size={"height": 32, "width": 32}),
        ),
        "simexplain-tests/siglip-full": (
            t.SiglipModel(
                t.SiglipConfig(
                    text_config={**clip_text, "max_position_embeddings": 16},
                    vision_config={**TINY_VIT, "image_size": 32, "patch_size": 8},
                )
            ),
            t.SiglipImageProcessor(size={"height": 32, "width": 32}),
        ),
        "simexplain-tests/convnext": (
            t.ConvNextModel(t.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)),
            t.ConvNextImageProcessor(size={"shortest_edge": 32}),
        ),
    }
    return {repo: (model.eval(), processor) for repo, (model, processor) in models.items()}
