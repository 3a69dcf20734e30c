"""Generate image sets: prompts -> images/ + metadata.jsonl (an imagefolder dataset)."""
