"""`unsee censor`: generation guided away from what a reward flags (censored sampling)."""
