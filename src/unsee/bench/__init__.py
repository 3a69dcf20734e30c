"""`unsee bench ...`: the project's own measurements, written as results.json."""
