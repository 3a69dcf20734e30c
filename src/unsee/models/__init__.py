"""Loading diffusion pipelines (load.py), what a model folder was made from (base.py) and
building tiny ones from config (tiny.py)."""
