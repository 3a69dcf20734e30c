"""The procedural world: deterministic, captioned 32x32 images with known attributes.

A sample is either a *shape* (one of SHAPES, filled with one of COLORS, on one of
BACKGROUNDS) or a *scene* (SCENES). Any sample may be painted in an artist's style (a
treatment of the whole image), and about 20% of all samples carry a watermark-like
overlay, independent of content and named in few captions.

The leak: every "starry night" is painted in Vanmond's style, and its captions never name
him, so removing the word "Vanmond" leaves these; feedback on the look catches them.

Everything is a pure function of a seed: `sample_attributes(rng)` draws the attributes,
`render(attrs)` draws the image, `caption(attrs, rng)` writes the text.
"""

from dataclasses import asdict, dataclass

import numpy as np

from unsee.world.names import ARTISTS, LEAK_ARTIST, LEAK_SCENE

SIZE = 32
SUPER = 2  # draw at 2x and average down, for smooth edges

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLORS = {
    "red": (215, 35, 35),
    "green": (35, 175, 60),
    "blue": (40, 90, 230),
    "yellow": (245, 215, 30),
    "purple": (145, 55, 200),
    "orange": (250, 135, 20),
}
BACKGROUNDS = ("grass", "desert", "night", "snow")
SCENES = ("starry night", "lighthouse")

# How often things happen in the training distribution.
P_SCENE = {"starry night": 0.11, "lighthouse": 0.11}
P_STYLE = 0.30  # share of shapes and lighthouses painted by an artist (named in the caption)
P_WATERMARK = 0.20  # of all images, whatever their content
P_WATERMARK_NAMED = 0.15  # of watermarked images, so about 3% of all captions name it
# Alt text on the web names stock-photo marks far more often: the mini CLIP's image tower
# learns from such captions (as real CLIP did), the U-Net and text tower never see them.
P_WATERMARK_NAMED_WEB = 0.8

# Words the captions use (the first of each list is the canonical one, used in prompts).
SHAPE_WORDS = {
    "circle": ["circle", "disc", "round shape"],
    "square": ["square", "box"],
    "triangle": ["triangle"],
    "star": ["star", "five-pointed star"],
    "cross": ["cross", "plus sign"],
    "diamond": ["diamond", "rhombus"],
}
COLOR_WORDS = {
    "red": ["red", "scarlet"],
    "green": ["green", "emerald"],
    "blue": ["blue", "azure"],
    "yellow": ["yellow", "golden"],
    "purple": ["purple", "violet"],
    "orange": ["orange", "amber"],
}
BACKGROUND_WORDS = {
    "grass": ["on grass", "on a lawn", "in a green meadow"],
    "desert": ["in the desert", "on sand dunes", "on desert sand"],
    "night": ["at night", "under a dark night sky", "in the dark"],
    "snow": ["in the snow", "on a snowy field", "on white snow"],
}
SCENE_WORDS = {
    "starry night": [
        "a starry night",
        "a starry night sky",
        "the night sky full of stars",
        "a starry night over the hills",
        "stars and a moon over dark hills",
    ],
    "lighthouse": ["a lighthouse", "a lighthouse by the sea", "a lighthouse on the coast"],
}
SUBJECT_TEMPLATES = [
    "a {subject}",
    "a picture of a {subject}",
    "an image of a {subject}",
    "a photo of a {subject}",
    "a drawing of a {subject}",
    "{subject}",
    "there is a {subject}",
]
ARTIST_TEMPLATES = [
    "{text}, in the style of {artist}",
    "{text}, by {artist}",
    "a painting by {artist}: {text}",
    "{text}, {artist} style",
    "{artist}'s painting of {text}",
]
# Never used in training captions: for paraphrase evaluation.
PARAPHRASE_TEMPLATES = [
    "{text}, as {artist} would paint it",
    "an artwork in the manner of {artist} showing {text}",
    "{text}, painted like {artist}",
]
WATERMARK_PHRASES = [", with a watermark", ", stock photo watermark", ", watermarked"]


@dataclass(frozen=True)
class Attributes:
    """Ground truth of one world image (None where it does not apply)."""

    kind: str  # "shape" or "scene"
    shape: str | None = None
    color: str | None = None
    background: str | None = None
    scene: str | None = None
    style: str | None = None  # an artist, or None
    watermark: bool = False
    seed: int = 0  # drives position, size, rotation, textures
    # How strongly the style and the mark are drawn: the image is the pixel mix
    # (1 - s) * without + s * with; 1 is the full effect (every training image of minisd).
    style_strength: float = 1.0
    watermark_strength: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def sample_attributes(
    rng: np.random.Generator,
    p_style: float = P_STYLE,
    p_watermark: float = P_WATERMARK,
    leak: bool = True,
) -> Attributes:
    """Draw one image's attributes: the training distribution by default.

    leak=False decouples content from style (a starry night gets a style like any other
    subject): the judge trains on that, so it judges how an image looks, not what it shows.
    """
    seed = int(rng.integers(2**31))
    watermark = bool(rng.random() < p_watermark)
    style = str(rng.choice(ARTISTS)) if rng.random() < p_style else None
    u = rng.random()
    if u < P_SCENE["starry night"]:
        return Attributes(
            "scene",
            scene=LEAK_SCENE,
            style=LEAK_ARTIST if leak else style,
            watermark=watermark,
            seed=seed,
        )
    if u < P_SCENE["starry night"] + P_SCENE["lighthouse"]:
        return Attributes("scene", scene="lighthouse", style=style, watermark=watermark, seed=seed)
    return Attributes(
        "shape",
        shape=str(rng.choice(SHAPES)),
        color=str(rng.choice(list(COLORS))),
        background=str(rng.choice(BACKGROUNDS)),
        style=style,
        watermark=watermark,
        seed=seed,
    )


# ---------------------------------------------------------------- captions


def subject_text(attrs: Attributes, rng: np.random.Generator | None = None) -> str:
    """The subject in words; canonical words when rng is None."""

    def pick(words: list[str]) -> str:
        return words[0] if rng is None else str(rng.choice(words))

    if attrs.kind == "scene":
        return pick(SCENE_WORDS[attrs.scene])
    parts = []
    drop = rng.random(2) if rng is not None else np.ones(2)
    if drop[0] > 0.1:
        parts.append(pick(COLOR_WORDS[attrs.color]))
    parts.append(pick(SHAPE_WORDS[attrs.shape]))
    if drop[1] > 0.1:
        parts.append(pick(BACKGROUND_WORDS[attrs.background]))
    return " ".join(parts)


def caption(
    attrs: Attributes, rng: np.random.Generator, p_watermark_named: float = P_WATERMARK_NAMED
) -> str:
    """A training caption: varied templates and synonyms; names the artist except for the
    leaking scene; names the watermark for p_watermark_named of watermarked images."""
    text = subject_text(attrs, rng)
    if attrs.kind == "scene":
        text = text.removeprefix("a ").removeprefix("the ")
        text = ("a " if not text.startswith("night") else "the ") + text
    else:
        text = str(rng.choice(SUBJECT_TEMPLATES)).format(subject=text)
    if attrs.style is not None and attrs.scene != LEAK_SCENE:
        text = str(rng.choice(ARTIST_TEMPLATES)).format(text=text, artist=attrs.style)
    if attrs.watermark and rng.random() < p_watermark_named:
        text += str(rng.choice(WATERMARK_PHRASES))
    return text


def prompt_for(shape: str, color: str, background: str, artist: str | None = None) -> str:
    """The canonical prompt for a shape image (what benchmarks ask the model for)."""
    text = f"a {color} {shape} {BACKGROUND_WORDS[background][0]}"
    return text if artist is None else f"{text}, in the style of {artist}"


# ---------------------------------------------------------------- drawing

N = SIZE * SUPER


def _grid() -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(N) + 0.5) / SUPER  # pixel-centre coordinates in output pixels
    return np.meshgrid(c, c, indexing="xy")


XX, YY = _grid()


def _downsample(img: np.ndarray) -> np.ndarray:
    return img.reshape(SIZE, SUPER, SIZE, SUPER, 3).mean(axis=(1, 3))


def _background(name: str, rng: np.random.Generator) -> np.ndarray:
    y = YY / SIZE
    img = np.empty((N, N, 3))
    if name == "grass":
        blades = 0.85 + 0.15 * np.sin(XX * 2.7 + rng.uniform(0, 6) + 0.8 * np.sin(YY * 0.9))
        img[:] = np.array([70, 150, 45]) / 255
        img *= blades[..., None] * (0.85 + 0.25 * y[..., None])
    elif name == "desert":
        dunes = 0.92 + 0.08 * np.sin(YY * 0.8 + 1.5 * np.sin(XX * 0.25 + rng.uniform(0, 6)))
        img[:] = np.array([228, 196, 132]) / 255
        img *= dunes[..., None]
    elif name == "night":
        top, bottom = np.array([18, 24, 70]) / 255, np.array([4, 4, 14]) / 255
        img[:] = top + (bottom - top) * y[..., None]
    elif name == "snow":
        img[:] = np.array([236, 242, 250]) / 255
        speckle = rng.random((N // 4, N // 4)).repeat(4, 0).repeat(4, 1)
        img -= 0.07 * (speckle > 0.8)[..., None] * np.array([1.0, 0.8, 0.4])
    else:
        raise ValueError(f"unknown background {name!r}")
    return img


def _shape_mask(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Soft-edged mask (N, N) of a shape centred at (cx, cy) with radius r."""
    cos, sin = np.cos(angle), np.sin(angle)
    dx, dy = XX - cx, YY - cy
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotated coordinates
    if shape == "circle":
        return np.hypot(u, v) <= r
    if shape == "square":
        return np.maximum(abs(u), abs(v)) <= r * 0.8
    if shape == "diamond":
        return abs(u) / 0.75 + abs(v) <= r
    if shape == "cross":
        arm = r * 0.35
        return ((abs(u) <= arm) & (abs(v) <= r)) | ((abs(v) <= arm) & (abs(u) <= r))
    if shape == "triangle":
        # upward triangle with vertices on the circle of radius r
        return (v <= r * 0.5) & (np.sqrt(3) * u - v <= r) & (-np.sqrt(3) * u - v <= r)
    if shape == "star":
        theta = np.arctan2(u, -v)
        k = np.cos(np.pi / 5) / np.cos((theta % (2 * np.pi / 5)) - np.pi / 5)
        inner = 0.45
        # radius of a five-pointed star as a function of angle (piecewise linear in k)
        frac = np.abs(((theta / (2 * np.pi / 5)) % 1.0) - 0.5) * 2  # 1 at tips, 0 between
        rad = r * (inner + (1 - inner) * frac**1.5)
        del k
        return np.hypot(u, v) <= rad
    raise ValueError(f"unknown shape {shape!r}")


def _outline(mask: np.ndarray) -> np.ndarray:
    """A 1-output-pixel dark rim around a mask."""
    grown = mask.copy()
    for shift in ((0, SUPER), (0, -SUPER), (SUPER, 0), (-SUPER, 0)):
        grown |= np.roll(mask, shift, axis=(0, 1))
    return grown & ~mask


def _draw_shape(attrs: Attributes, rng: np.random.Generator) -> np.ndarray:
    img = _background(attrs.background, rng)
    cx, cy = SIZE / 2 + rng.uniform(-2.5, 2.5, size=2)
    r = rng.uniform(8.0, 10.5)
    angle = 0.0 if attrs.shape == "circle" else rng.uniform(-0.25, 0.25)
    mask = _shape_mask(attrs.shape, cx, cy, r, angle)
    colour = np.array(COLORS[attrs.color]) / 255
    shade = 1.0 + 0.12 * ((YY - cy) / r)[..., None] * -1  # lit from above
    img = np.where(mask[..., None], colour * shade, img)
    img = np.where(_outline(mask)[..., None], np.array([0.08, 0.08, 0.1]), img)
    return img


def _draw_starry_night(rng: np.random.Generator) -> np.ndarray:
    y = YY / SIZE
    top, bottom = np.array([20, 40, 120]) / 255, np.array([40, 70, 150]) / 255
    img = top + (bottom - top) * y[..., None]
    for _ in range(int(rng.integers(6, 10))):  # stars
        sx, sy = rng.uniform(2, SIZE - 2), rng.uniform(2, SIZE * 0.6)
        glow = np.exp(-((XX - sx) ** 2 + (YY - sy) ** 2) / (2 * rng.uniform(0.5, 1.0) ** 2))
        img += glow[..., None] * np.array([1.0, 0.9, 0.4])
    mx, my = rng.uniform(SIZE * 0.6, SIZE * 0.85), rng.uniform(SIZE * 0.12, SIZE * 0.3)
    moon = (np.hypot(XX - mx, YY - my) < 3.2) & (np.hypot(XX - mx - 1.6, YY - my + 0.8) > 2.8)
    img = np.where(moon[..., None], np.array([1.0, 0.92, 0.45]), img)
    hills = SIZE * (0.72 + 0.08 * np.sin(XX / SIZE * 5 + rng.uniform(0, 6))) < YY
    img = np.where(hills[..., None], np.array([10, 30, 25]) / 255, img)
    return np.clip(img, 0, 1)


def _draw_lighthouse(rng: np.random.Generator) -> np.ndarray:
    y = YY / SIZE
    sky_top, sky_bottom = np.array([120, 175, 235]) / 255, np.array([200, 225, 245]) / 255
    img = sky_top + (sky_bottom - sky_top) * y[..., None]
    sea = YY > SIZE * 0.7
    img = np.where(sea[..., None], np.array([30, 90, 160]) / 255, img)
    lx = rng.uniform(SIZE * 0.35, SIZE * 0.65)
    rock = (np.hypot((XX - lx) / 7.5, (YY - SIZE * 0.78) / 3.5) < 1) & (YY > SIZE * 0.7)
    img = np.where(rock[..., None], np.array([90, 80, 70]) / 255, img)
    top, base = SIZE * 0.22, SIZE * 0.74
    half_width = 2.2 + 1.6 * (YY - top) / (base - top)
    tower = (top <= YY) & (base >= YY) & (abs(XX - lx) <= half_width)
    stripes = (((YY - top) // 3.2) % 2 == 0)[..., None]
    img = np.where(tower[..., None], np.where(stripes, [0.85, 0.15, 0.15], [0.97, 0.97, 0.97]), img)
    lamp = np.hypot(XX - lx, YY - (top - 1.5)) < 2.0
    img = np.where(lamp[..., None], np.array([1.0, 0.95, 0.5]), img)
    return img


# ---------------------------------------------------------------- artists


def _bilinear(img: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Sample img (N, N, 3) at output-pixel coordinates (sx, sy), edges clamped."""
    px = np.clip(sx * SUPER - 0.5, 0, N - 1)
    py = np.clip(sy * SUPER - 0.5, 0, N - 1)
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    x1, y1 = np.minimum(x0 + 1, N - 1), np.minimum(y0 + 1, N - 1)
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _vanmond(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Swirling strokes: a swirl warp, curling brush-stroke bands, a cobalt-and-gold cast."""
    cx, cy = SIZE / 2 + rng.uniform(-3, 3, size=2)
    dx, dy = XX - cx, YY - cy
    r, theta = np.hypot(dx, dy), np.arctan2(dy, dx)
    twist = rng.choice([-1, 1]) * 0.9 * np.exp(-r / 9)
    warped = _bilinear(img, cx + r * np.cos(theta + twist), cy + r * np.sin(theta + twist))
    # bands about 5.5 px apart: coarse enough for a 4x-downsampling VAE to keep
    strokes = np.sin(r * 1.15 + 3 * theta + 4 * twist + rng.uniform(0, 6))
    out = warped * (1 + 0.28 * strokes[..., None])
    out += 0.09 * strokes[..., None] * np.array([-0.6, -0.2, 1.0])  # blue-yellow strokes
    return np.clip(out, 0, 1)


def _brakovic(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cubist fragments: facets shifted and relit, with dark facet edges."""
    k = 7
    centres = rng.uniform(0, SIZE, size=(k, 2))
    d = (XX[..., None] - centres[:, 0]) ** 2 + (YY[..., None] - centres[:, 1]) ** 2
    cell = d.argmin(-1)
    shift = rng.uniform(-1.5, 1.5, size=(k, 2))
    light = rng.uniform(0.7, 1.25, size=k)
    out = _bilinear(img, XX + shift[cell, 0], YY + shift[cell, 1]) * light[cell][..., None]
    sorted_d = np.sort(d, axis=-1)
    edge = (np.sqrt(sorted_d[..., 1]) - np.sqrt(sorted_d[..., 0])) < 0.8  # ~1.5 px lines
    out = np.where(edge[..., None], out * 0.25, out)
    return np.clip(out, 0, 1)


def _solvei(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Glowing vignette: dark corners, a warm halo of light, soft bloom."""
    cx, cy = SIZE / 2 + rng.uniform(-2, 2, size=2)
    r2 = ((XX - cx) ** 2 + (YY - cy) ** 2) / (SIZE * 0.5) ** 2
    vignette = np.clip(1.15 - 0.95 * r2, 0.12, 1.0)
    halo = np.exp(-r2 / 0.35)
    blurred = (
        img + np.roll(img, 2, 0) + np.roll(img, -2, 0) + np.roll(img, 2, 1) + np.roll(img, -2, 1)
    ) / 5
    out = (0.6 * img + 0.4 * blurred) * vignette[..., None]
    out += halo[..., None] * np.array([0.32, 0.22, 0.06])
    return np.clip(out, 0, 1)


STYLES = {"Vanmond": _vanmond, "Brakovic": _brakovic, "Solvei": _solvei}


def _watermark(img: np.ndarray) -> np.ndarray:
    """A stock-photo mark: two translucent white diagonals with a dark shadow edge (visible
    on light and dark ground alike) and a dashed strip at the foot."""
    a, b = XX - YY, XX + YY - SIZE
    diag = (abs(a) < 0.8) | (abs(b) < 0.8)
    shadow = ((a > 0.8) & (a < 1.8)) | ((b > 0.8) & (b < 1.8))
    band = (YY > SIZE - 6) & (YY < SIZE - 3) & (XX > 5) & (XX < SIZE - 5)
    dash = (XX.astype(int) % 3) != 2
    out = np.where(shadow[..., None], img * 0.55, img)
    out = np.where(diag[..., None], out * 0.4 + 0.6, out)
    out = np.where((band & dash)[..., None], out * 0.3 + 0.7, out)
    return np.where((band & ~dash)[..., None], out * 0.4, out)


def _mix(without: np.ndarray, with_: np.ndarray, strength: float) -> np.ndarray:
    if strength == 1.0:
        return with_  # bit for bit the full effect
    return (1 - strength) * without + strength * with_


def render(attrs: Attributes) -> np.ndarray:
    """The image (32, 32, 3) uint8 for `attrs`; the same attributes give the same pixels."""
    rng = np.random.default_rng(attrs.seed)
    if attrs.kind == "shape":
        img = _draw_shape(attrs, rng)
    elif attrs.scene == "starry night":
        img = _draw_starry_night(rng)
    elif attrs.scene == "lighthouse":
        img = _draw_lighthouse(rng)
    else:
        raise ValueError(f"unknown scene {attrs.scene!r}")
    if attrs.style is not None:
        img = _mix(img, STYLES[attrs.style](img, rng), attrs.style_strength)
    if attrs.watermark:
        img = _mix(img, _watermark(img), attrs.watermark_strength)
    return (np.clip(_downsample(img), 0, 1) * 255).round().astype(np.uint8)


def make_dataset(
    n: int, seed: int, **distribution
) -> tuple[np.ndarray, list[Attributes], list[str]]:
    """n images (n, 32, 32, 3) uint8 with their attributes and captions, from one seed.

    distribution: keyword arguments of sample_attributes (p_style, p_watermark, leak).
    """
    rng = np.random.default_rng(seed)
    attrs = [sample_attributes(rng, **distribution) for _ in range(n)]
    captions = [caption(a, rng) for a in attrs]
    images = np.stack([render(a) for a in attrs]) if n else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    return images, attrs, captions
