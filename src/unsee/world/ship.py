"""Copy a trained world (from `unsee world train`) into the package, weights in fp16.

fp16 halves the files (the package ships them; 40 MB at most in all); unsee loads them
back in the dtype it runs in (fp32 on the CPU).
"""

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from unsee.errors import UnseeError
from unsee.world.paths import CLIP_DIR, JUDGE_DIR, JUDGE_DIRS, MINISD_DIR


def _copy_half(src: Path, dst: Path, keep_fp32: bool = False) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".safetensors" and not keep_fp32:
            tensors = load_file(path)
            half = {
                k: v.half().contiguous() if v.is_floating_point() else v for k, v in tensors.items()
            }
            save_file(half, target, metadata={"format": "pt"})
        elif path.name != "DONE":
            shutil.copy2(path, target)


def ship_world(trained: Path) -> None:
    """Replace the package's minisd/, clip/ and judge/ with those in `trained`."""
    for name in ("minisd", "clip", "judge"):
        if not (trained / name).is_dir():
            raise UnseeError(f"{trained} has no {name}/; run `unsee world train --out {trained}`")
    for src, dst in ((trained / "minisd", MINISD_DIR), (trained / "clip", CLIP_DIR)):
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _copy_half(src, tmp)
        shutil.rmtree(dst, ignore_errors=True)
        tmp.replace(dst)
    _install_judge(trained / "judge", JUDGE_DIR)
    total = sum(p.stat().st_size for d in (MINISD_DIR, CLIP_DIR, JUDGE_DIR) for p in d.rglob("*"))
    print(f"shipped the world into {MINISD_DIR.parent} ({total / 2**20:.1f} MiB)")


def _install_judge(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):  # only the weights and config ship
        shutil.copyfile(src / name, dst / name)  # (mode: the umask's, not the source's)


def ship_judge(trained: Path) -> None:
    """Install a judge from `unsee world judge --out trained` as the package's judge of its
    architecture (cnn -> judge/, vit -> judge_vit/)."""
    src = trained / "judge"
    if not (src / "model.safetensors").is_file() or not (src / "config.json").is_file():
        raise UnseeError(
            f"{trained} has no finished judge/; run `unsee world judge --out {trained}`"
        )
    architecture = json.loads((src / "config.json").read_text()).get("architecture")
    if architecture not in JUDGE_DIRS:
        raise UnseeError(f"{src} holds a judge of unknown architecture {architecture!r}")
    _install_judge(src, JUDGE_DIRS[architecture])
    print(f"shipped the {architecture} judge into {JUDGE_DIRS[architecture]}")
