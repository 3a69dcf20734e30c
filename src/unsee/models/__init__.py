"""Loading diffusion pipelines (load.py) and building tiny ones from config (tiny.py)."""
