"""Sampling as plain functions: a denoiser eps(x_t, t) and a scheduler loop over it.

Guidance (censoring, SLD, SEGA) wraps the denoiser; every sampler works with every
guidance, as in k-diffusion.
"""
