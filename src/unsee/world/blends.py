"""Generated blends: the world model's own images of a concept, faded to a known strength.

The judge learned strength from the renderer's pixel mix, and reads minisd's images of a
partly erased style far weaker than they look (docs/judge-calibration: a generated starry
night faded to 0.3 read 0.14). This makes the same mix from generated images, so the judge
can be trained and calibrated on the look it is asked to read:

- a pair is one subject generated twice from the same seed, once plain and once with the
  concept named (the prompt with an artist's template around it, or a watermark phrase),
  so the two share layout, colour and background;
- the leaking scene has no plain version (minisd paints every starry night in Vanmond's
  style), so its plain image is the styled one with the sky smoothed (`destyle_sky`:
  the swirl bands go, the stars, moon and hills stay);
- a blend at strength s is (1 - s) * plain + s * full, as the renderer's mix is.

Labels: the concept's strength is s; a pair is kept only where the choosing judge (the
shipped first judge, in `unsee world judge` and the calibration alike) reads
the full image's concept at FULL_AT or more and the plain one's below ABSENT_BELOW (the
model does not always draw what is named). The other artists' styles are absent: minisd
draws a style only where its artist is named (the world's captions name every style but
the leaking scene's), and the judges, trained on renders, took the weakened swirls of
partly erased starry nights for Brakovic's facets (docs/judge-calibration), so they must
be taught it, not asked. The watermark, which minisd adds unasked, counts as absent where
the judge reads both images below ABSENT_BELOW and stays unlabelled otherwise. The classes
are the choosing judge's own reading of the plain image (minisd does not always draw the
shape named, and the judge reads plain images well).
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from unsee.sampling.denoiser import text_denoiser
from unsee.sampling.loop import decode, initial_noise, make_scheduler, sample
from unsee.world import render as world
from unsee.world.judge import (
    HEADS,
    STRENGTHS,
    augment,
    judge_loss,
    optimizer,
    raw_strengths,
    read_strengths,
    twin_rows,
)
from unsee.world.paths import MINISD_DIR, TOKENIZER_DIR

FULL_AT = 0.4
ABSENT_BELOW = 0.08
# the kinds of pair, and how often each is drawn: an artist on shapes, the watermark on
# shapes or starry nights, Vanmond on the leaking scene
PAIR_KINDS = ("artist", "watermark", "leak")
# and faded_pairs' kind: the leaking scene drawn with Vanmond pushed away by a negative prompt
KINDS = (*PAIR_KINDS, "faded")
KIND_SHARE = (0.40, 0.35, 0.25)


@dataclass
class Pairs:
    """P generated pairs: plain and full images (P, 3, H, W) in [-1, 1], the concept of
    each (an index into STRENGTHS), the class labels per head (P,), which of the other
    concepts' strengths are known to be absent (P, 4) bool (the concept's own is True), the
    kind of each, and the concept's strength on the full image (P,): 1 for a pair of named
    and plain prompts, less for a faded one (faded_pairs)."""

    plain: Tensor
    full: Tensor
    concept: Tensor
    classes: dict[str, Tensor]
    known: Tensor
    kind: list[str]
    top: Tensor

    def __len__(self) -> int:
        return len(self.concept)

    def select(self, rows: Tensor) -> "Pairs":
        return Pairs(
            self.plain[rows],
            self.full[rows],
            self.concept[rows],
            {k: v[rows] for k, v in self.classes.items()},
            self.known[rows],
            [self.kind[i] for i in rows.tolist()],
            self.top[rows],
        )


def _box(x: Tensor, k: int) -> Tensor:
    return F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, 1)


def destyle_sky(x: Tensor) -> Tensor:
    """The leaking scene without its swirls: images (N, 3, H, W) in [-1, 1] with the sky
    smoothed (a normalised 5x5 box blur, three times, over sky pixels only), the stars and
    moon (bright red + green, grown by two pixels) and the hills (dark) kept as they are.
    Vanmond's bands are about 5.5 pixels apart, so the blur takes them and leaves the sky's
    colour and its gradient."""
    u = (x + 1) / 2
    lights = _box(((u[:, 0:1] + u[:, 1:2]) > 0.8).float(), 5) > 0
    hills = u.max(1, keepdim=True).values < 0.12
    sky = (~lights & ~hills).float()
    smooth, weight = u * sky, sky
    for _ in range(3):
        smooth, weight = _box(smooth, 5), _box(weight, 5)
    out = torch.where(sky.bool(), smooth / weight.clamp(min=1e-3), u)
    return out * 2 - 1


def blend(plain: Tensor, full: Tensor, s: Tensor) -> Tensor:
    """(1 - s) * plain + s * full, s (N,) one strength per image."""
    s = s.view(-1, 1, 1, 1).to(plain.dtype)
    return (1 - s) * plain + s * full


def pair_prompt(
    rng: np.random.Generator, kind: str, scene: bool, artist: str | None = None
) -> tuple[str, str | None, str]:
    """One pair's plain and full prompts and its concept: a subject (the leaking scene when
    `scene`, else a shape drawn from rng) in a training caption, and the same caption naming
    the concept (kind "artist": `artist`'s template around it, an artist drawn from rng when
    None; "watermark": a watermark phrase after it). Kind "leak" (the leaking scene's own
    artist) has no full prompt: its plain image is made by destyle_sky."""
    if scene:
        a = world.Attributes("scene", scene=world.LEAK_SCENE, style=world.LEAK_ARTIST)
    else:
        a = world.Attributes(
            "shape",
            shape=str(rng.choice(world.SHAPES)),
            color=str(rng.choice(list(world.COLORS))),
            background=str(rng.choice(world.BACKGROUNDS)),
        )
    text = world.caption(a, rng)
    if kind == "leak":
        return text, None, world.LEAK_ARTIST
    if kind == "watermark":
        return text, text + str(rng.choice(world.WATERMARK_PHRASES)), "watermark"
    artist = artist or str(rng.choice(world.ARTISTS))
    template = str(rng.choice(world.ARTIST_TEMPLATES))
    return text, template.format(text=text, artist=artist), artist


def pair_prompts(n: int, seed: int) -> tuple[list[str], list[str | None], list[str], list[str]]:
    """n pair specifications drawn by KIND_SHARE (the watermark on a starry night for 30%
    of its pairs): the plain prompts, the full prompts, the concepts (pair_prompt) and the
    kinds."""
    rng = np.random.default_rng(seed)
    plain, full, concepts, kinds = [], [], [], []
    for _ in range(n):
        kind = str(rng.choice(PAIR_KINDS, p=KIND_SHARE))
        scene = kind == "leak" or (kind == "watermark" and rng.random() < 0.3)
        p, f, c = pair_prompt(rng, kind, scene)
        plain.append(p)
        full.append(f)
        concepts.append(c)
        kinds.append(kind)
    return plain, full, concepts, kinds


def load_world_model(device) -> tuple:
    """The shipped minisd's U-Net, text encoder and tokenizer, fp32 on `device` (what the
    judge's later stages and the calibration's generated view draw with)."""
    unet = UNet2DConditionModel.from_pretrained(
        MINISD_DIR, subfolder="unet", torch_dtype=torch.float32
    ).to(device)
    text_model = CLIPTextModel.from_pretrained(
        MINISD_DIR, subfolder="text_encoder", torch_dtype=torch.float32
    ).to(device)
    return unet.eval(), text_model, CLIPTokenizer.from_pretrained(TOKENIZER_DIR)


@torch.no_grad()
def generate(
    prompts: list[str], seeds: list[int], vae, unet, text_model, tokenizer, steps: int = 25,
    guidance: float = 7.5, batch_size: int = 64, negative: str | None = None,
    weights: list[float] | None = None,
) -> Tensor:  # fmt: skip
    """minisd's images of `prompts`, one seed each, as `unsee generate` draws them (DDIM,
    classifier-free guidance), (N, 3, H, W) in [-1, 1] on the CPU. With `negative`, image i
    is guided away from it with weight weights[i]: its unconditional embedding moved from
    the empty prompt's toward the negative prompt's by that fraction (1: a plain negative
    prompt, 0: none)."""
    device = unet.device
    config = dict(unet.config)
    size = config["sample_size"]
    scheduler = make_scheduler("ddim", DDIMScheduler.load_config(MINISD_DIR, subfolder="scheduler"))
    out = []
    empty = _encode(text_model, tokenizer, [""], device)
    away = _encode(text_model, tokenizer, [negative], device) - empty if negative else None
    for start in tqdm(range(0, len(prompts), batch_size), desc="blends: generate"):
        chunk = prompts[start : start + batch_size]
        gens = [torch.Generator().manual_seed(s) for s in seeds[start : start + batch_size]]
        cond = _encode(text_model, tokenizer, chunk, device)
        uncond = empty.expand(len(chunk), -1, -1)
        if away is not None:
            w = torch.tensor(weights[start : start + batch_size], device=device)
            uncond = uncond + w.view(-1, 1, 1).to(away.dtype) * away
        eps = text_denoiser(unet, cond, uncond, guidance)
        x_T = initial_noise((config["in_channels"], size, size), gens, device, torch.float32)
        images = decode(vae, sample(eps, scheduler, x_T, steps, gens))
        out.append(images.permute(0, 3, 1, 2).float() / 127.5 - 1)
    return torch.cat(out)


def _encode(text_model, tokenizer, texts: list[str], device) -> Tensor:
    ids = tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids  # fmt: skip
    return text_model(ids.to(device))[0]


@torch.no_grad()
def generated_pairs(n: int, seed: int, judge: nn.Module, vae, unet, text_model, tokenizer) -> Pairs:
    """n pair specifications (pair_prompts) generated by minisd and kept where the starting
    `judge` sees the concept on the full image and not on the plain one (module doc)."""
    return pairs_of(*pair_prompts(n, seed), seed, judge, vae, unet, text_model, tokenizer)


@torch.no_grad()
def pairs_of(
    plain_p: list[str], full_p: list[str | None], concepts: list[str], kinds: list[str],
    seed: int, judge: nn.Module, vae, unet, text_model, tokenizer,
) -> Pairs:  # fmt: skip
    """The pairs of these specifications (pair_prompts), generated from seeds of `seed`,
    kept where `judge` sees the concept on the full image and not on the plain one."""
    n = len(plain_p)
    seeds = [seed * 100_003 + i for i in range(n)]
    named = [i for i in range(n) if full_p[i] is not None]
    leak = [i for i in range(n) if full_p[i] is None]
    first = generate(plain_p, seeds, vae, unet, text_model, tokenizer)  # leak: the styled scene
    plain, full = first.clone(), first.clone()
    if leak:
        plain[leak] = destyle_sky(first[leak])
    if named:
        full[named] = generate(
            [full_p[i] for i in named], [seeds[i] for i in named], vae, unet, text_model, tokenizer
        )
    concept = torch.tensor([STRENGTHS.index(c) for c in concepts])
    return _kept(judge, plain, full, full, concept, kinds, torch.ones(n))


def _kept(
    judge: nn.Module, plain: Tensor, full: Tensor, shown: Tensor, concept: Tensor,
    kinds: list[str], top: Tensor,
) -> Pairs:  # fmt: skip
    """The pairs (plain, full) where `judge` reads the concept on `shown` (the image that
    shows it fully) at FULL_AT or more and on the plain one below ABSENT_BELOW, labelled as
    the module doc says: every artist known (absent unless the concept), the watermark known
    absent where both images read below ABSENT_BELOW, the classes the judge's of the plain."""
    read_plain = read_strengths(judge, raw_strengths(judge, plain))
    read_shown = read_strengths(judge, raw_strengths(judge, shown))
    rows = torch.arange(len(plain))
    keep = (read_shown[rows, concept] >= FULL_AT) & (read_plain[rows, concept] < ABSENT_BELOW)
    known = (read_plain < ABSENT_BELOW) & (read_shown < ABSENT_BELOW)
    known[:, : len(world.ARTISTS)] = True  # no artist but the one named is drawn (module doc)
    known[rows, concept] = True
    pairs = Pairs(plain, full, concept, _classes(judge, plain), known, kinds, top)
    return pairs.select(torch.nonzero(keep).flatten())


def sky_strength(faded: Tensor, full: Tensor, reach: int = 2) -> Tensor:
    """(N,) how much of `full`'s swirls each `faded` image keeps: the projection of its sky
    detail (the image less its destyle_sky) onto the full image's, both of the same prompt
    and seed, the best over shifts of the full's detail by up to `reach` pixels each way
    (a weakened swirl moves a little), clipped to [0, 1]. A pixel blend of
    destyle_sky(full) and full at strength s reads s. A lower bound where the arcs moved
    further: the full image's own swirls read 0.23 against another seed's."""
    a = (faded - destyle_sky(faded)).flatten(1)
    b = full - destyle_sky(full)
    norm = b.flatten(1).pow(2).sum(1).clamp(min=1e-8)
    best = torch.zeros(len(faded))
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            moved = torch.roll(b, (dy, dx), (2, 3)).flatten(1)
            best = torch.maximum(best, (a * moved).sum(1) / norm)
    return best.clamp(0, 1)


# the negative prompt's weight for a faded starry night: drawn uniformly from this range
FADE_WEIGHTS = (0.0, 1.5)


@torch.no_grad()
def faded_pairs(n: int, seed: int, judge: nn.Module, vae, unet, text_model, tokenizer) -> Pairs:
    """n starry nights drawn twice from one seed: as minisd draws them, and guided away
    from Vanmond's name (a negative prompt of weight drawn from FADE_WEIGHTS): what an edit
    that weakens the leak leaves, fainter, thinner and darker swirls. Each faded image is a
    pair, its sky smoothed (destyle_sky) as the plain image and itself as the full one at
    strength sky_strength against the undisturbed image, so its blends read less. Kept
    where `judge` reads the undisturbed image at FULL_AT or more and the smoothed one below
    ABSENT_BELOW; the other artists are absent, the watermark as in pairs_of."""
    rng = np.random.default_rng(seed)
    prompts = [pair_prompt(rng, "leak", True)[0] for _ in range(n)]
    weights = rng.uniform(*FADE_WEIGHTS, n).tolist()
    seeds = [seed * 100_003 + i for i in range(n)]
    models = (vae, unet, text_model, tokenizer)
    full = generate(prompts, seeds, *models)
    faded = generate(prompts, seeds, *models, negative=world.LEAK_ARTIST, weights=weights)
    concept = torch.full((n,), STRENGTHS.index(world.LEAK_ARTIST))
    top = sky_strength(faded, full)
    return _kept(judge, destyle_sky(faded), faded, full, concept, ["faded"] * n, top)


@torch.no_grad()
def _classes(judge: nn.Module, x: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
    device = next(judge.parameters()).device
    out = {k: [] for k in HEADS}
    for chunk in x.split(batch_size):
        logits = judge(chunk.to(device))
        for k in HEADS:
            out[k].append(logits[k].argmax(-1).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def blend_strengths(n: int, g: torch.Generator) -> Tensor:
    """(n, 2) strengths for n twins of blends: the first as the judge's renders draw a
    strength (full for a quarter, below 0.4 for a third, else uniform), the second absent
    half the time, else faint (0.05-0.4), as judge_dataset's twins."""
    u = torch.rand(n, generator=g)
    first = torch.where(
        u < 0.25, torch.ones(n), torch.rand(n, generator=g) * torch.where(u < 0.6, 0.4, 1.0)
    )
    faint = 0.05 + 0.35 * torch.rand(n, generator=g)
    second = torch.where(torch.rand(n, generator=g) < 0.5, torch.zeros(n), faint)
    return torch.stack([first, second], 1)


def blend_batch(pairs: Pairs, twins: int, g: torch.Generator) -> tuple[Tensor, dict, Tensor]:
    """A batch of 2 * twins blends (rows 2i and 2i + 1: one pair at two strengths): images,
    targets as world.judge.targets gives them, and the strength mask (B, 4) of known ones."""
    rows = torch.randint(0, len(pairs), (twins,), generator=g).repeat_interleave(2)
    s = blend_strengths(twins, g).flatten()
    x = blend(pairs.plain[rows], pairs.full[rows], s)
    strength = torch.zeros(len(rows), len(STRENGTHS))
    strength[torch.arange(len(rows)), pairs.concept[rows]] = s * pairs.top[rows]
    y = {k: v[rows] for k, v in pairs.classes.items()}
    y["strength"] = strength
    return x, y, pairs.known[rows]


def relight(x: Tensor, g: torch.Generator, spread: float = 0.2) -> Tensor:
    """Each image (in [-1, 1]) darker or lighter as a whole, by a factor in 1 +- spread.
    No concept of the world changes an image's overall light (Brakovic relights facets
    against each other, Solvei adds a halo), but minisd's images vary in it: the judges,
    trained on renders of one light, read a darker starry night as Brakovic's (a partly
    erased model's night sky, 9% darker, read 0.36 of his style, and 0.05 when lit by 15%;
    docs/judge-calibration)."""
    factor = 1 + spread * (2 * torch.rand(len(x), 1, 1, 1, generator=g) - 1)
    return (((x + 1) / 2 * factor) * 2 - 1).clamp(-1, 1)


def finetune_on_blends(
    model: nn.Module,
    renders: Tensor,
    y_renders: dict[str, Tensor],
    pairs: Pairs,
    steps: int,
    batch_size: int,
    seed: int,
    lr: float = 5e-4,
) -> nn.Module:
    """Go on training a judge, each batch half renders (twins of a mixed judge_dataset, in
    three views) and half generated blends (blend_batch), so it reads the model's own faint
    traces as it reads the renderer's; every image augmented and relit (relight). Returns
    the model, in eval mode."""
    device = next(model.parameters()).device
    opt, sched = optimizer(model, lr, steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    quarter = batch_size // 4
    for _ in tqdm(range(steps), desc="judge_blend", dynamic_ncols=True):
        a = twin_rows(len(renders), quarter, g)
        xb, yb, keep_b = blend_batch(pairs, quarter, g)
        x = torch.cat([renders[a], xb])
        y = {k: torch.cat([y_renders[k][a], yb[k]]).to(device) for k in yb}
        keep = torch.cat([torch.ones(len(a), len(STRENGTHS), dtype=torch.bool), keep_b])
        x = relight(augment(x, g), g)
        loss = judge_loss(model(x.to(device)), y, keep.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def save_pairs(pairs: Pairs, path, metadata: dict[str, str]) -> None:
    tensors = {
        "plain": pairs.plain.contiguous(),
        "full": pairs.full.contiguous(),
        "concept": pairs.concept,
        "known": pairs.known,
        "kind": torch.tensor([KINDS.index(k) for k in pairs.kind]),
        "top": pairs.top.contiguous(),
        **{f"class.{k}": v for k, v in pairs.classes.items()},
    }
    save_file(tensors, path, metadata=metadata)


def load_pairs(path) -> Pairs:
    t = load_file(path)
    classes = {k: t[f"class.{k}"] for k in HEADS}
    kind = [KINDS[i] for i in t["kind"].tolist()]
    top = t.get("top", torch.ones(len(kind)))  # caches from before faded pairs: all full
    return Pairs(t["plain"], t["full"], t["concept"], classes, t["known"], kind, top)


def calibration_pairs(
    concept: str, subject: str, n: int, seed: int, judge: nn.Module, vae, unet, text_model,
    tokenizer,
) -> Pairs | None:  # fmt: skip
    """n pairs of one concept on one subject ("starry night": the leaking scene; "shapes"),
    for the judge calibration's generated view, or None where the world has none (an
    artist other than the leaking one on a starry night: minisd paints every starry night
    in Vanmond's style). Generated in rounds until n are kept by `judge` (pairs_of), at
    most 8 * n tried; fewer when the model rarely draws the concept (the watermark on
    shapes: about one pair in eight)."""
    scene = subject == "starry night"
    if scene and concept not in (world.LEAK_ARTIST, "watermark"):
        return None
    kind = "watermark" if concept == "watermark" else ("leak" if scene else "artist")
    rng = np.random.default_rng(seed)
    batch = max(8, min(128, 2 * n))
    kept: list[Pairs] = []
    have, tried = 0, 0
    while have < n and tried < 8 * n:
        specs = [pair_prompt(rng, kind, scene, concept) for _ in range(batch)]
        plain, full, concepts = (list(col) for col in zip(*specs, strict=True))
        pairs = pairs_of(plain, full, concepts, [kind] * batch, seed + tried, judge, vae, unet,
                         text_model, tokenizer)  # fmt: skip
        kept.append(pairs)
        have, tried = have + len(pairs), tried + batch
    return concat_pairs(kept).select(torch.arange(min(n, have)))


def concat_pairs(parts: list[Pairs]) -> Pairs:
    return Pairs(
        torch.cat([p.plain for p in parts]),
        torch.cat([p.full for p in parts]),
        torch.cat([p.concept for p in parts]),
        {k: torch.cat([p.classes[k] for p in parts]) for k in HEADS},
        torch.cat([p.known for p in parts]),
        [k for p in parts for k in p.kind],
        torch.cat([p.top for p in parts]),
    )
