"""A second look at Vanmond's swirls on starry nights, without any judge: how much texture
the sky holds, read against renders of known strength.

The swirls are arcs of lighter and darker blue in the sky. This measures the blue
channel's local standard deviation (3x3) over the top 60% of each image, with the stars and
the moon masked (bright red + green, grown by two pixels), and maps it to a strength by
interpolating the same measure on starry-night renders blended at known strengths and sent
through minisd's VAE (the judge calibration's "vae" view). It is crude: any sky texture
counts, and it knows nothing of shapes. It is a check on the judge where the judge and
the eye disagree, not a replacement for it.

    python scripts/leak_texture.py runs/table/eval/seed0/artist/*/leak/images

Prints the renders' curve, then per folder the mean texture, the mean apparent strength,
and the share of images at apparent strength >= 0.2 (the judge's presence threshold).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from PIL import Image

from unsee.evaluate.calibrate import subjects, vae_view, with_concept
from unsee.world import render as world
from unsee.world.paths import MINISD_DIR

STRENGTHS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def _box(a: np.ndarray, k: int) -> np.ndarray:
    """k x k mean of each image of a (N, H, W), edges replicated."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None]
    return F.avg_pool2d(F.pad(t, (k // 2,) * 4, mode="replicate"), k, stride=1)[:, 0].numpy()


def sky_texture(images: np.ndarray) -> np.ndarray:
    """(N,) the mean local standard deviation of the blue channel in each sky, uint8
    images (N, H, W, 3) in."""
    x = images.astype(np.float32) / 255
    blue, bright = x[..., 2], x[..., 0] + x[..., 1]
    sd = np.sqrt(np.clip(_box(blue * blue, 3) - _box(blue, 3) ** 2, 0, None))
    lights = _box((bright > 0.8).astype(np.float32), 5) > 0  # stars and moon, grown
    sky = slice(0, int(0.6 * x.shape[1]))
    return np.array([sd[i, sky][~lights[i, sky]].mean() for i in range(len(x))])


def render_curve(n: int, seed: int) -> dict[float, float]:
    vae = AutoencoderKL.from_pretrained(MINISD_DIR, subfolder="vae").eval()
    bare = subjects("starry night", n, seed)
    curve = {}
    for s in STRENGTHS:
        renders = np.stack([world.render(with_concept(a, "Vanmond", s)) for a in bare])
        curve[s] = float(sky_texture(vae_view(renders, vae)).mean())
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of PNG images")
    parser.add_argument("--n", type=int, default=64, help="renders per strength")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    curve = render_curve(args.n, args.seed)
    print("renders through the VAE:", {s: round(t, 4) for s, t in curve.items()})
    known, texture = np.array(list(curve)), np.array(list(curve.values()))
    for folder in args.folders:
        files = sorted(folder.rglob("*.png"))
        images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        t = sky_texture(images)
        apparent = np.interp(t, texture, known)
        print(f"{folder}: {len(files)} images, texture {t.mean():.4f}, apparent strength"
              f" {apparent.mean():.3f}, at >= 0.2: {(apparent >= 0.2).mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
