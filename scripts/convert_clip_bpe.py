"""Convert CLIP's BPE file into the tokenizer.json + tokenizer_config.json of a
CLIPTokenizer folder, the files src/unsee/world/minisd/tokenizer/ holds.

The file `bpe_simple_vocab_16e6.txt.gz` ships inside open_clip's wheel (and OpenAI's
CLIP repository). It was converted once with this script and the result committed
under src/unsee/world/minisd/tokenizer/, so unsee never needs open_clip installed:

    pip download --no-deps open_clip_torch -d /tmp/oc
    unzip -o /tmp/oc/open_clip_torch-*.whl open_clip/bpe_simple_vocab_16e6.txt.gz -d /tmp/oc
    python scripts/convert_clip_bpe.py /tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz \
        src/unsee/world/minisd/tokenizer

The vocabulary order follows CLIP's `SimpleTokenizer`: the 256 byte symbols, the same
with an end-of-word marker, one entry per merge, then the two special tokens
(49408 entries in all). The script writes them as the vocab.json + merges.txt that
CLIPTokenizer reads, loads that, and saves it. (The committed tokenizer.json came through
minisd's pipeline when the world was shipped: the same vocabulary, merges and text
normalisation, and besides them the padding and truncation to 77 tokens it was last
called with.)
"""

import gzip
import json
import sys
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer

NUM_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48894 merges of the file


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode symbols."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            symbols.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, symbols), strict=True))


def main(bpe_path: str, out_dir: str) -> None:
    with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols]
    vocab += ["".join(pair) for pair in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        _write_bpe(Path(tmp), vocab, merges)
        CLIPTokenizer.from_pretrained(tmp).save_pretrained(out_dir)
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {out_dir}")


def _write_bpe(out: Path, vocab: list[str], merges: list[tuple[str, ...]]) -> None:
    """vocab.json, merges.txt and tokenizer_config.json: what CLIPTokenizer loads."""
    (out / "vocab.json").write_text(
        json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False)
    )
    (out / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merges) + "\n",
        encoding="utf-8",
    )
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
