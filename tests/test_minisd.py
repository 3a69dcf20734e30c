import subprocess
import sys

import numpy as np
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from unsee.world.paths import CLIP_DIR, JUDGE_DIRS, MINISD_DIR


def test_minisd_loads_with_plain_diffusers_and_makes_images():
    pipe = StableDiffusionPipeline.from_pretrained(MINISD_DIR)  # no unsee code involved
    assert isinstance(pipe.unet, UNet2DConditionModel)
    assert isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel)
    assert isinstance(pipe.tokenizer, CLIPTokenizer) and len(pipe.tokenizer) == 49408
    assert isinstance(pipe.scheduler, DDIMScheduler)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red circle on grass", num_inference_steps=4, output_type="np").images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all() and out.std() > 0.02


def test_shipped_weights_are_safetensors_and_small():
    folders = (MINISD_DIR, CLIP_DIR, *JUDGE_DIRS.values())
    files = [p for d in folders for p in d.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in weights) <= 40 * 2**20


def test_mini_clip_loads_with_transformers():
    clip = CLIPModel.from_pretrained(CLIP_DIR)
    assert clip.config.vision_config.image_size == 32


def test_world_path_prints_the_pipeline_folder():
    out = subprocess.run(
        [sys.executable, "-m", "unsee", "world", "path"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(MINISD_DIR)
