"""Human feedback: the store (SQLite), the labelling page, import/export, a simulated labeller."""
