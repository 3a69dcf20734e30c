"""`unsee demo`: the whole flow on the embedded model, with a simulated labeller."""
