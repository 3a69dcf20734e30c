"""`unsee attack`: how well an erased (or guided) model hides its concept from an attacker.

prefix     UnlearnDiffAtk's adversarial prefix tokens (prefix.py)
inversion  a token learned on the attacked model from the original's images (inversion.py)
replay     prompts found elsewhere, as they are (replay.py)
run.py runs the command; detect.py holds the detectors that decide success.
"""
