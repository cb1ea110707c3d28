"""Text to token ids by hashing: no vocabulary to fit, so every model and dataset agrees.

The zoo's text models start with `Embedding(TEXT_VOCAB_SIZE, ...)`; any dataset tokenised here
lands in that range on any machine, in any process, without a fitted vocabulary file to ship.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

TEXT_VOCAB_SIZE = 10000

# Runs of Unicode letters and digits; underscores count as separators.
_WORD = re.compile(r"[^\W_]+")


def word_id(word: str, vocab_size: int = TEXT_VOCAB_SIZE) -> int:
    """The token id of one (already lower-cased) word: `1 + crc32(utf-8) % (vocab_size - 1)`.

    CRC-32 rather than Python's `hash()`, which is salted per process.
    """
    return 1 + zlib.crc32(word.encode("utf-8")) % (vocab_size - 1)


def hash_tokenize(texts: Sequence[str], seq_len: int, vocab_size: int = TEXT_VOCAB_SIZE) -> np.ndarray:
    """Turn texts into fixed-length rows of token ids.

    Each text is lower-cased and split on anything that is not a letter or digit; each word
    becomes `word_id(word, vocab_size)`, in 1..vocab_size-1. Id 0 is padding. Rows keep the first
    `seq_len` words and are padded with zeros at the end.

    Args:
        texts: the texts (a missing value, None, counts as empty).
        seq_len: the length of every row.
        vocab_size: ids are below this (the model's Embedding input dimension).

    Returns:
        An int32 array of shape (len(texts), seq_len).

    Raises:
        ValueError: seq_len < 1 or vocab_size < 2.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2 (0 is padding), got {vocab_size}")
    out = np.zeros((len(texts), seq_len), dtype=np.int32)
    cache: dict[str, int] = {}
    for row, text in enumerate(texts):
        words = _WORD.findall(text.lower()) if isinstance(text, str) else []
        for col, word in enumerate(words[:seq_len]):
            token = cache.get(word)
            if token is None:
                token = cache[word] = word_id(word, vocab_size)
            out[row, col] = token
    return out
