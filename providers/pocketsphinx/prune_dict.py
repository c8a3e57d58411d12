"""The bundled en-us dictionary cut to the language model's likeliest words.

A word outside the dictionary drops out of the search, so this prunes the decoder's vocabulary:
less to search (cheaper) and fewer rare look-alikes to confuse (on espeak-ng phrases, more
accurate); words beyond the cut can no longer be heard. See benchmarks/README.md ("STT settings").

    python -m providers.pocketsphinx.prune_dict 20000 providers/pocketsphinx/en-us-20k.dict
"""

from __future__ import annotations

import sys
from pathlib import Path

from pocketsphinx import Decoder, get_model_path


def prune(words: int, out: Path) -> None:
    """Write the entries (alternate pronunciations included) of the `words` words the bundled
    language model finds likeliest on their own (unigram probability)."""
    lm = Decoder(samprate=16000, loglevel="FATAL").get_lm()
    lines = [
        ln
        for ln in (Path(get_model_path("en-us")) / "cmudict-en-us.dict").read_text().splitlines()
        if ln.strip()
    ]
    base = sorted({ln.split()[0].split("(")[0] for ln in lines})  # sorted: ties cut the same way
    keep = set(sorted(base, key=lambda w: lm.prob([w]), reverse=True)[:words])
    out.write_text("\n".join(ln for ln in lines if ln.split()[0].split("(")[0] in keep) + "\n")


if __name__ == "__main__":
    prune(int(sys.argv[1]), Path(sys.argv[2]))
