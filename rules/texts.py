"""Designer-written line templates filled for a batch at once.

A template is UTF-8 text with ``{name}`` placeholders (``"{boss} appears on {map}!"``);
``fill`` replaces each placeholder with a column of values (bytes, or integers written in
decimal), vectorised over the batch, and cuts the result to rAthena's chat size at a
character boundary, so a long map or faction name can never produce an invalid action.
"""

from __future__ import annotations

import numpy as np

from norn.engine.kinds import TEXT_DTYPE


def as_text(values: np.ndarray) -> np.ndarray:
    """Integers as decimal bytes; bytes as they are."""
    v = np.asarray(values)
    return v.astype(np.int64).astype("S20") if v.dtype.kind in "iu" else v


def fill(template: bytes | np.ndarray, n: int, /, **values: np.ndarray) -> np.ndarray:
    """``n`` lines of ``template`` (one per row, or one template per row), placeholders
    replaced by ``values[name][i]``; at most ``text_bytes_max`` bytes, never half a
    character."""
    out = np.broadcast_to(np.asarray(template, dtype=TEXT_DTYPE), (n,))
    out = np.array(out)
    for name, v in values.items():
        out = np.strings.replace(out, b"{" + name.encode() + b"}", as_text(v))
    width = TEXT_DTYPE.itemsize
    if out.dtype.itemsize > width and len(out):
        b = np.frombuffer(out.tobytes(), np.uint8).reshape(len(out), out.dtype.itemsize).copy()
        split = (b[:, width] & 0xC0) == 0x80  # the limit falls inside a character
        cut = np.full(len(out), width, np.int64)
        for k in (1, 2, 3):  # back to that character's first byte (UTF-8: <= 3 before it)
            start = split & (cut == width) & ((b[:, width - k] & 0xC0) != 0x80)
            cut[start] = width - k
        b[np.arange(b.shape[1])[None, :] >= cut[:, None]] = 0
        out = b.view(f"S{b.shape[1]}").ravel()
    return out.astype(TEXT_DTYPE)
