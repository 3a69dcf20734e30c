"""Where the embedded world's files live inside the installed package."""

from pathlib import Path

WORLD_DIR = Path(__file__).resolve().parent
MINISD_DIR = WORLD_DIR / "minisd"  # a diffusers StableDiffusionPipeline folder
TOKENIZER_DIR = MINISD_DIR / "tokenizer"  # the real CLIP BPE vocabulary
CLIP_DIR = WORLD_DIR / "clip"  # the mini CLIP (transformers CLIPModel): text + image towers
JUDGE_DIR = WORLD_DIR / "judge"  # the attribute classifier (safetensors + config.json)
# The shipped judges by name: the first (a CNN) and a second of another architecture
# (a small vision transformer), trained with another seed, to check the first.
JUDGE_DIRS = {"cnn": JUDGE_DIR, "vit": WORLD_DIR / "judge_vit"}
