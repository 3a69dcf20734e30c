"""Copy a trained world (from `unsee world train`) into the package, weights in fp16.

fp16 halves the files (the package ships them; 40 MB at most in all); unsee loads them
back in the dtype it runs in (fp32 on the CPU).
"""

import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from unsee.errors import UnseeError
from unsee.world.paths import CLIP_DIR, JUDGE_DIR, MINISD_DIR


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
    shutil.rmtree(JUDGE_DIR, ignore_errors=True)
    _copy_half(trained / "judge", JUDGE_DIR, keep_fp32=True)
    for path in JUDGE_DIR.iterdir():  # only the judge's weights and config ship
        if path.name not in ("config.json", "model.safetensors"):
            path.unlink()
    total = sum(p.stat().st_size for d in (MINISD_DIR, CLIP_DIR, JUDGE_DIR) for p in d.rglob("*"))
    print(f"shipped the world into {MINISD_DIR.parent} ({total / 2**20:.1f} MiB)")
