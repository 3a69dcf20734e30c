import os
import tempfile

# Tests never touch the network: the hub is offline and the cache is empty (a fresh
# folder, so the datasets cache that some tests fill never lands in the source tree).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="unsee-hf-home-"))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unsee.models.tiny import tiny_sd_pipeline, tiny_sdxl_pipeline, tiny_unconditional_pipeline


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion pipeline folder, built from config in code."""
    path = tmp_path_factory.mktemp("models") / "tiny-sd"
    tiny_sd_pipeline(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    """A tiny SDXL pipeline folder (two text encoders, size conditioning), built in code."""
    path = tmp_path_factory.mktemp("models") / "tiny-sdxl"
    tiny_sdxl_pipeline(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_uncond(tmp_path_factory) -> Path:
    """A tiny unconditional UNet2DModel + DDIM pipeline folder."""
    path = tmp_path_factory.mktemp("models") / "tiny-ddim"
    tiny_unconditional_pipeline(seed=0).save_pretrained(path)
    return path


def read_metadata(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def pixels(out: Path) -> dict[str, np.ndarray]:
    """file_name -> pixels of every image listed in out/metadata.jsonl."""
    return {
        r["file_name"]: np.asarray(Image.open(out / r["file_name"])) for r in read_metadata(out)
    }


@pytest.fixture
def fresh_accelerator():
    """accelerate keeps one mixed-precision setting per process: a test that asks for bf16
    after others ran without starts (and leaves) it afresh."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()
