"""How `unsee evaluate` makes a suite's images: `unsee generate` with the evaluated
model and every inference-time intervention of the settings (or none, for the original)."""

from pathlib import Path

from unsee.evaluate.config import EvaluateConfig


def generate_with(
    cfg: EvaluateConfig, prompts: Path, n: int, folder: Path, model: str, plain: bool
) -> Path:
    """n images per prompt of the file `prompts` in folder/images (made, or finished,
    here), seeds from cfg.seed; plain: no intervention. The image folder."""
    from unsee.generate.config import GenerateConfig
    from unsee.generate.run import generate

    common = dict(
        model=model, device=cfg.device, dtype=cfg.dtype, prompts=prompts, n=n, seed=cfg.seed,
        steps=cfg.steps, guidance=cfg.guidance, batch_size=cfg.batch_size,
        batch_invariant=cfg.batch_invariant, out=folder / "images",
    )  # fmt: skip
    if not plain:
        common |= dict(
            negative_prompt=cfg.negative_prompt, embedding=cfg.embedding, lora=cfg.lora,
            sld=cfg.sld, sld_concept=cfg.sld_concept, sega_remove=cfg.sega_remove,
        )  # fmt: skip
    censor = None
    if not plain and cfg.censor_reward is not None:
        from unsee.guidance.censor import make_censor
        from unsee.guidance.config import CensorConfig
        from unsee.models.load import pick_device

        censor_cfg = CensorConfig(
            **common, reward=cfg.censor_reward, scale=cfg.censor_scale,
            recurrence=cfg.censor_recurrence, window=cfg.censor_window,
        )  # fmt: skip
        censor = make_censor(censor_cfg, pick_device(cfg.device))
    return generate(GenerateConfig(**common), censor=censor)
