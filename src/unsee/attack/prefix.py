"""UnlearnDiffAtk: adversarial prefix tokens against an (erased) diffusion model.

Zhang, Jia, Chen, Chen, Zhang, Sun, Liu, 2024, "To Generate or Not? Safety-Driven Unlearned
Diffusion Models Are Still Easy To Generate Unsafe Images ... For Now" (ECCV 2024).

K prefix slots, each a distribution p_k over the tokenizer's vocabulary (V tokens), are put
in front of the prompt c. With E the text encoder's token-embedding table (V, D):

    min_p  E_t || eps_theta(z_t | [onehot(p) E ; c], t) - eps ||^2,   p_k in the simplex

where z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps noises the latents z_0 of a target image
(the original model's image of the concept for this prompt and seed). Each step: Adam on p,
then p is projected back onto the simplex; the forward pass uses a straight-through one-hot
sample (the argmax token's row in value, p's gradient). Every few steps the argmax tokens
are decoded to a hard prompt, which is sampled and judged: the attack succeeds when the
detector sees the concept (never when the loss is low).

SDXL: one p per slot serves both text encoders; the slot's token is looked up in each
encoder's table (their tokenizers share CLIP's vocabulary, checked), and the U-Net reads
both encoders' states, the pooled embedding and the size conditioning (models/text.py).

The functions below are plain tensor maths; attack_batch runs them for a batch of prompts.
"""

import re
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from unsee.errors import UnseeError
from unsee.generate.run import Job, batches
from unsee.models.text import encode_ids, text_encoders
from unsee.sampling.conditioning import TextCond, with_time_ids
from unsee.world.prompts import caption_texts


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row of v (..., V) onto the probability simplex
    {w : w >= 0, sum(w) = 1}: the sort-based algorithm (Held et al. 1974; Duchi et al. 2008).
    """
    n = v.shape[-1]
    # 1. each row sorted in decreasing order: u (..., V)
    u, _ = v.sort(dim=-1, descending=True)
    # 2. running sums less the simplex's total: css_j = sum_{i <= j} u_i - 1
    css = u.cumsum(dim=-1) - 1
    j = torch.arange(1, n + 1, device=v.device, dtype=v.dtype)
    # 3. rho = the largest j with u_j - css_j / j > 0 (the condition holds for a prefix of j)
    rho = (u - css / j > 0).sum(dim=-1, keepdim=True).clamp(min=1)  # (..., 1)
    # 4. the threshold theta = css_rho / rho, and w = max(v - theta, 0)
    theta = css.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp(min=0)


def straight_through_one_hot(p: Tensor) -> Tensor:
    """(..., V) distributions -> the one-hot of each argmax in the forward pass, with the
    gradient of p itself in the backward pass (straight-through estimator)."""
    hard = torch.nn.functional.one_hot(p.argmax(dim=-1), p.shape[-1]).to(p.dtype)  # (..., V)
    return hard + (p - p.detach())  # value: exactly hard; gradient: d/dp


def ascending_timesteps(schedule: Tensor, iterations: int) -> Tensor:
    """The timestep of each optimisation step: the sampler's schedule (S,) in ascending
    order, swept once over the iterations (step i takes the (i * S // iterations)-th)."""
    ascending = schedule.sort().values
    i = torch.arange(iterations) * len(ascending) // iterations
    return ascending[i]


def denoising_loss(pred: Tensor, target: Tensor, active: Tensor) -> Tensor:
    """sum_b active_b * mean((pred_b - target_b)^2): each prompt's denoising MSE, summed, so
    a prompt's gradient never depends on the others of its batch. pred, target: (B, C, h, w);
    active: (B,) 1 for prompts still attacked, 0 for those already done."""
    per_prompt = ((pred.float() - target.float()) ** 2).mean(dim=(1, 2, 3))  # (B,)
    return (active * per_prompt).sum()


def prompt_ids(tokenizer, prompts: list[str], k: int) -> Tensor:
    """(B, L) token ids [BOS, k placeholder slots, the prompt's tokens, EOS, pad...] at the
    text encoder's length L; the prompt is cut to leave room for the slots."""
    length = tokenizer.model_max_length
    ids = tokenizer(
        prompts, padding="max_length", max_length=length - k, truncation=True,
        return_tensors="pt",
    ).input_ids  # (B, L - k)  # fmt: skip
    slots = torch.full((len(prompts), k), tokenizer.pad_token_id or 0, dtype=ids.dtype)
    return torch.cat([ids[:, :1], slots, ids[:, 1:]], dim=1)  # (B, L)


@contextmanager
def prefixed(text_encoder, prefix: Tensor):
    """Inside: the text encoder's token embeddings at positions 1..K are the prefix
    embeddings (B, K, D) in place of the table's rows."""
    k = prefix.shape[1]

    def hook(module, args, out):  # out: (B, L, D) token embeddings
        return torch.cat([out[:, :1], prefix.to(out.dtype), out[:, 1 + k :]], dim=1)

    handle = text_encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def encode_with_prefix(text_encoder, ids: Tensor, prefix: Tensor) -> Tensor:
    """The text encoder's hidden states (B, L, D') for ids (B, L) whose positions 1..K take
    the prefix embeddings (B, K, D) in place of the table's rows."""
    with prefixed(text_encoder, prefix):
        return text_encoder(ids.to(text_encoder.device))[0]


def encode_cond_with_prefix(pipe, ids: list[Tensor], prefixes: list[Tensor]) -> TextCond:
    """The U-Net's conditioning (models/text.py) of each encoder's ids (B, L) with its
    prefix embeddings (B, K, D_i) at positions 1..K: Stable Diffusion's one encoder, SDXL's
    two (the same prefix tokens, each in its own table)."""
    with ExitStack() as stack:
        for (_, encoder), prefix in zip(text_encoders(pipe), prefixes, strict=True):
            stack.enter_context(prefixed(encoder, prefix))
        return encode_ids(pipe, ids)


def shared_vocabulary(pipe) -> None:
    """SDXL's prefix slots pick one token for both tokenizers: they must agree on every id
    (SDXL base's two tokenizers share CLIP's vocabulary)."""
    pairs = text_encoders(pipe)
    first = pairs[0][0]
    for tokenizer, _ in pairs[1:]:
        n = first.vocab_size
        if tokenizer.vocab_size != n or tokenizer.convert_ids_to_tokens(
            list(range(n))
        ) != first.convert_ids_to_tokens(list(range(n))):
            raise UnseeError(
                "the prefix attack needs the text encoders' tokenizers to share one"
                " vocabulary (as SDXL base's do); this model's differ"
            )


def attack_vocabulary(tokenizer, allowed=None, banned=()) -> Tensor:
    """The ids a prefix slot may take: the tokenizer's own vocabulary (or only the ids in
    `allowed`) without its special tokens (nor tokens added later, e.g. a defence's learned
    negative token), nor the `banned` ones (concept_tokens: the attack must not name it)."""
    skip = set(tokenizer.all_special_ids) | {int(i) for i in banned}
    ids = range(tokenizer.vocab_size) if allowed is None else sorted({int(i) for i in allowed})
    return torch.tensor([i for i in ids if i < tokenizer.vocab_size and i not in skip])


def prefix_vocabulary(tokenizer, vocabulary: str, concept: str) -> Tensor:
    """The slots' ids for --vocabulary all|world, never the concept's (concept_tokens)."""
    allowed = None
    if vocabulary == "world":
        allowed = {i for text in caption_texts()
                   for i in tokenizer(text, add_special_tokens=False).input_ids}  # fmt: skip
    return attack_vocabulary(tokenizer, allowed, concept_tokens(tokenizer, concept))


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def concept_tokens(tokenizer, concept: str) -> set[int]:
    """The ids that would name the concept: the BPE pieces of its name (the tokenizer
    lowercases, so every casing gives these), and every vocabulary token whose text holds
    the whole name. A prefix slot never takes them."""
    name = _squash(concept)
    ids = set(tokenizer(concept, add_special_tokens=False).input_ids)
    ids |= set(tokenizer(f"a {concept}s", add_special_tokens=False).input_ids[1:])
    for token, i in tokenizer.get_vocab().items():
        if name and name in _squash(token.replace("</w>", "")):
            ids.add(i)
    return ids


def names_concept(tokenizer, text: str, concept: str) -> bool:
    """Does the text name the concept: its name in any casing once spaces and punctuation
    are dropped ("Van mond", "VAN-MOND"), or its BPE pieces in a row when tokenised?"""
    if _squash(concept) and _squash(concept) in _squash(text):
        return True
    pieces = tokenizer(concept, add_special_tokens=False).input_ids
    ids = tokenizer(text, add_special_tokens=False).input_ids
    n = len(pieces)
    return n > 0 and any(ids[s : s + n] == pieces for s in range(len(ids) - n + 1))


@dataclass
class Case:
    """One prompt to attack: its index in the run, text, seed, and target latents (C, h, w)."""

    index: int
    prompt: str
    seed: int
    guidance: float
    target: Tensor


@dataclass
class Outcome:
    """What the attack found for one prompt: success at `step` (None: never), the hard
    prompt judged last (the successful one when found) and its image."""

    index: int
    success: bool
    step: int | None
    hard_prompt: str
    image: np.ndarray
    losses: list[float] = field(default_factory=list)


def initial_distribution(k: int, v: int, g: torch.Generator, init: str) -> Tensor:
    """(K, V) starting distributions: uniform, 1/V plus noise of 1e-3/V to break ties
    (then projected), or "token": the one-hot of a random token per slot."""
    if init == "token":
        return torch.nn.functional.one_hot(torch.randint(v, (k,), generator=g), v).float()
    return project_simplex(torch.full((k, v), 1 / v) + torch.rand((k, v), generator=g) * 1e-3 / v)


def hard_prompt(tokenizer, ids: list[int], prompt: str) -> str:
    """The text of the argmax prefix tokens in front of the prompt (what a user would type;
    it is this text, tokenised anew, that is sampled and judged)."""
    return f"{tokenizer.decode(ids).strip()} {prompt}".strip()


def attack_batch(
    sampler,
    cases: list[Case],
    detector: Callable[[np.ndarray], np.ndarray],
    *,
    k: int,
    iterations: int,
    check_every: int,
    lr: float,
    weight_decay: float,
    steps: int,
    init: str = "uniform",
    vocab: Tensor | None = None,
    concept: str | None = None,
) -> list[Outcome]:
    """UnlearnDiffAtk on a batch of prompts at once (one forward for all), on the sampler's
    model; every check samples the hard prompts exactly as `unsee generate` would (sampler)
    and the detector decides success. A check samples only the prompts whose argmax tokens
    changed since they were last judged (the same text and seed give the same image).
    vocab: the ids a slot may take (default attack_vocabulary's); concept: a hard prompt
    that names it (names_concept) never counts as a success."""
    from diffusers import DDPMScheduler

    pipe = sampler.pipe
    device, dtype = pipe.device, pipe.unet.dtype
    tokenizer, unet = pipe.tokenizer, pipe.unet
    encoders = [encoder for _, encoder in text_encoders(pipe)]  # SDXL: two
    shared_vocabulary(pipe)
    for module in (unet, *encoders, pipe.vae):
        module.requires_grad_(False)
    b = len(cases)
    vocab = attack_vocabulary(tokenizer) if vocab is None else vocab.cpu()  # (V,)
    tables = [  # each encoder's rows of the vocabulary: (V, D_i)
        e.get_input_embeddings().weight.detach()[vocab.to(device)].float() for e in encoders
    ]
    noiser = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction = noiser.config.prediction_type
    sampler.scheduler.set_timesteps(steps)
    timesteps = ascending_timesteps(sampler.scheduler.timesteps.cpu(), iterations)  # (T,)

    # 1. per-prompt randomness (its own generator, so a prompt's run ignores its batch), the
    #    prompts' ids with K slots, the targets z_0 (B, C, h, w)
    generators = [torch.Generator().manual_seed(c.seed) for c in cases]
    ids = [prompt_ids(t, [c.prompt for c in cases], k) for t, _ in text_encoders(pipe)]  # (B, L)
    z0 = torch.stack([c.target for c in cases]).to(device, torch.float32)
    # 2. p (B, K, V): each slot starts uniform (ties broken by a little noise), or as the
    #    one-hot of a random token
    p = torch.stack([initial_distribution(k, len(vocab), g, init) for g in generators])
    p = p.to(device).requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr, weight_decay=weight_decay)
    active = torch.ones(b, device=device)
    outcomes: dict[int, Outcome] = {}
    losses: list[list[float]] = [[] for _ in cases]
    judged: dict[int, list[int]] = {}  # each prompt's prefix ids when last judged

    for i in range(iterations):
        t = timesteps[i].to(device)
        # 3. straight-through one-hot sample times the embedding table: the prefix (B, K, D)
        #    (SDXL: the same sample times each encoder's table)
        one_hot = straight_through_one_hot(p)
        prefixes = [one_hot @ table for table in tables]
        for x in ids:
            x[:, 1 : 1 + k] = vocab[p.detach().argmax(-1).cpu()]  # placeholders, replaced
        cond = with_time_ids(encode_cond_with_prefix(pipe, ids, prefixes), sampler.micro)
        # 4. the target's latents noised to t with each prompt's own noise
        eps = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in generators]).to(device)
        z_t = noiser.add_noise(z0, eps, t.expand(b))
        target = eps if prediction == "epsilon" else noiser.get_velocity(z0, eps, t.expand(b))
        pred = unet(z_t.to(dtype), t, **cond.to(dtype).unet_kwargs()).sample
        # 5. the denoising loss, Adam, and the projection back onto the simplex
        per_prompt = ((pred.float() - target) ** 2).mean(dim=(1, 2, 3)).detach().cpu()
        loss = denoising_loss(pred, target, active)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            p.copy_(project_simplex(p))
        for j in range(b):
            losses[j].append(round(float(per_prompt[j]), 6))
        # 6. every few steps: decode the argmax hard prompts, sample them, judge
        if (i + 1) % check_every and i + 1 < iterations:
            continue
        top = vocab[p.detach().argmax(-1).cpu()]  # (B, K)
        todo = [j for j in range(b) if active[j] > 0 and judged.get(j) != top[j].tolist()]
        texts = {j: hard_prompt(tokenizer, top[j].tolist(), cases[j].prompt) for j in todo}
        jobs = [Job(index=j, prompt=texts[j], seed=cases[j].seed, guidance=cases[j].guidance)
                for j in todo]  # fmt: skip
        for batch in batches(jobs, sampler.batch_size):
            images = sampler.images(batch)[0].numpy()
            shows = detector(images)
            for job, image, hit in zip(batch, images, shows, strict=True):
                j = job.index
                judged[j] = top[j].tolist()
                original = names_concept(tokenizer, cases[j].prompt, concept) if concept else True
                hit = hit and (original or not names_concept(tokenizer, job.prompt, concept))
                outcomes[j] = Outcome(cases[j].index, bool(hit), i + 1 if hit else None,
                                      job.prompt, image, losses[j])  # fmt: skip
                if hit:
                    active[j] = 0
        if not active.any():
            break
    return [outcomes[j] for j in range(b)]
