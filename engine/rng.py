"""Counter-based randomness: every draw is a pure function of (seed, tick, stream, entity, index).

Why counter-based: a shared generator consumed in call order makes a draw depend on how
many draws came before it, so iteration order, thread count, a skipped entity or a
restored snapshot would all change the world. Here a draw is recomputed from its
coordinates alone, so any kernel may draw for any entity in any order, in parallel, and a
restored world draws exactly what the original would have (the "RNG key" in a snapshot is
just the seed).

Algorithm: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as
1, 2, 3", SC11; the Random123 library). A 128-bit counter (four u32 words) and a 64-bit key
(two u32 words) go through ten rounds; each round multiplies counter words 0 and 2 by
0xD2511F53 and 0xCD9E8D57 (64-bit products split into hi/lo halves), mixes them with the
other two words and the key, and the key is bumped by the Weyl constants 0x9E3779B9 and
0xBB67AE85 between rounds. Output is four u32 words. It passes BigCrush and is checked
here against Random123's known-answer vectors (tests/test_rng.py).

Layout (fixed; changing it changes every recorded world):

- key = (seed & 0xffffffff, seed >> 32) for a u64 seed: the whole seed is key material.
- counter = (c0 = index, c1 = entity, c2 = stream, c3 = tick), each reduced mod 2**32.

One (seed, tick, stream, entity, index) names one 128-bit block. ``draw_u32`` uses word 0,
``draw_u64``/``uniform``/``uniform_int`` use words 0-1 and ``normal`` uses all four, so two
helpers called with the same coordinates share bits: give each purpose its own stream or
index. Coordinates are u32 counters: a tick wraps after 2**32 ticks (13.6 years at 100 ms)
and entity slot ids fit in 32 bits (``limits.table_capacity_max``); the Python wrappers
refuse values outside [0, 2**32) rather than wrap silently.

Compile once: the helpers every kernel calls (``philox4x32``, ``_block``, ``draw_u32``,
``draw_u64``, ``uniform``) have one explicit signature (seed u64, the coordinates i64),
so a caller's argument types are converted to it instead of compiling a specialisation
per combination (each stream constant was a literal type of its own: thirteen copies of
the block at the default world's first tick). The conversions are the ones the bodies
applied anyway (``np.uint64(x) & 0xffffffff``), so every draw keeps its bits.

Streams are named; ``stream_id(name)`` is the CRC-32 (zlib, IEEE polynomial) of the UTF-8
name, a documented, platform-independent, non-randomized hash (never Python's ``hash()``,
which ``PYTHONHASHSEED`` changes). ``STREAMS`` holds the names claimed so far and refuses a
second name with the same id.

Floating point: ``normal`` uses ``math.log``/``math.sqrt``/``math.cos``, which numba
lowers to libm calls that give the same bits for the same inputs; NumPy's SIMD-dispatched
transcendental ufuncs do not (DESIGN.md section 3) and are not used.
"""

from __future__ import annotations

import math
import zlib

import numba
import numpy as np
from numba import float64, int64, types, uint32, uint64

__all__ = [
    "STREAMS",
    "draw_u32",
    "draw_u64",
    "normal",
    "philox4x32",
    "register_stream",
    "stream_id",
    "uniform",
    "uniform_array",
    "uniform_f32",
    "uniform_index",
    "uniform_int",
    "uniform_int_array",
]

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_SHIFT11 = np.uint64(11)
_ROUNDS = 10
_TWO_POW_M53 = 1.0 / 9007199254740992.0     # 2**-53
_TWO_POW_M24 = np.float32(1.0 / 16777216.0)  # 2**-24
_TWO_PI = 2.0 * math.pi
_U32_END = 1 << 32
_U64_END = 1 << 64
_I64_END = 1 << 63

#: the one signature of each scalar helper (see "Compile once" above)
_WORDS = types.UniTuple(uint32, 4)
_COORDS = (uint64, int64, int64, int64, int64)  # seed, tick, stream, entity, index


@numba.njit(_WORDS(uint64, uint64, uint64, uint64, uint64, uint64), cache=True, nogil=True)
def philox4x32(c0, c1, c2, c3, k0, k1):  # type: ignore[no-untyped-def]
    """Philox4x32-10 of counter (c0..c3) under key (k0, k1); returns four np.uint32 words.

    Inputs are taken mod 2**32. Products are formed in u64 so the hi/lo split is exact.
    """
    x0 = np.uint64(c0) & _MASK32
    x1 = np.uint64(c1) & _MASK32
    x2 = np.uint64(c2) & _MASK32
    x3 = np.uint64(c3) & _MASK32
    key0 = np.uint64(k0) & _MASK32
    key1 = np.uint64(k1) & _MASK32
    for _ in range(_ROUNDS):
        p0 = _M0 * x0
        p1 = _M1 * x2
        x0, x1, x2, x3 = (
            (p1 >> _SHIFT32) ^ x1 ^ key0,
            p1 & _MASK32,
            (p0 >> _SHIFT32) ^ x3 ^ key1,
            p0 & _MASK32,
        )
        key0 = (key0 + _W0) & _MASK32
        key1 = (key1 + _W1) & _MASK32
    return np.uint32(x0), np.uint32(x1), np.uint32(x2), np.uint32(x3)


@numba.njit(_WORDS(*_COORDS), cache=True, nogil=True)
def _block(seed, tick, stream, entity, index):  # type: ignore[no-untyped-def]
    """The 128-bit block named by a draw's coordinates (layout in the module docstring)."""
    s = np.uint64(seed)
    return philox4x32(index, entity, stream, tick, s & _MASK32, s >> _SHIFT32)


@numba.njit(cache=True, nogil=True)
def _join64(lo, hi):  # type: ignore[no-untyped-def]
    return (np.uint64(hi) << _SHIFT32) | np.uint64(lo)


@numba.njit(uint32(*_COORDS), cache=True, nogil=True)
def draw_u32(seed, tick, stream, entity, index):  # type: ignore[no-untyped-def]
    """32 random bits (word 0 of the block) as np.uint32."""
    x0, _x1, _x2, _x3 = _block(seed, tick, stream, entity, index)
    return x0


@numba.njit(uint64(*_COORDS), cache=True, nogil=True)
def draw_u64(seed, tick, stream, entity, index):  # type: ignore[no-untyped-def]
    """64 random bits as np.uint64: word 1 in the high half, word 0 in the low half."""
    x0, x1, _x2, _x3 = _block(seed, tick, stream, entity, index)
    return _join64(x0, x1)


@numba.njit(float64(*_COORDS), cache=True, nogil=True)
def uniform(seed, tick, stream, entity, index):  # type: ignore[no-untyped-def]
    """float64 in [0, 1): the top 53 bits of ``draw_u64`` times 2**-53 (every value exact)."""
    return np.float64(draw_u64(seed, tick, stream, entity, index) >> _SHIFT11) * _TWO_POW_M53


@numba.njit(cache=True, nogil=True)
def uniform_f32(seed, tick, stream, entity, index):  # type: ignore[no-untyped-def]
    """float32 in [0, 1): the top 24 bits of ``draw_u32`` times 2**-24."""
    x = draw_u32(seed, tick, stream, entity, index) >> np.uint32(8)
    return np.float32(x) * _TWO_POW_M24


@numba.njit(cache=True, nogil=True)
def uniform_int(seed, tick, stream, entity, index, n):  # type: ignore[no-untyped-def]
    """int64 in [0, n) for 1 <= n < 2**63: ``draw_u64 % n``.

    Why modulo of 64 bits rather than rejection: it costs one block, never loops and never
    reaches into another index's counters. Each value's probability differs from 1/n by
    less than 2**-64, so the total bias (total-variation distance) is below n / 2**64:
    under 2**-32 for any n up to 2**32, far below anything a game can observe.
    """
    if n < 1:
        raise ValueError("uniform_int: n must be >= 1")
    return np.int64(draw_u64(seed, tick, stream, entity, index) % np.uint64(n))


@numba.njit(cache=True, nogil=True, inline="always")
def _draw_u64_inline(seed, tick, stream, entity, index):  # type: ignore[no-untyped-def]
    """``draw_u64``'s bits, inlined into the caller (numba IR inlining).

    Called through its compiled signature, a draw costs 35-45 ns in a loop that is not a
    prange (measured on AMD EPYC: the rounds stay scalar behind the call); inlined, the
    caller's loop vectorizes the ten rounds (1.4 ns a draw, 4 lanes of 32x32->64
    products). Same layout and arithmetic as ``philox4x32`` and ``_block``.
    """
    s = np.uint64(seed)
    x0 = np.uint64(index) & _MASK32
    x1 = np.uint64(entity) & _MASK32
    x2 = np.uint64(stream) & _MASK32
    x3 = np.uint64(tick) & _MASK32
    key0 = s & _MASK32
    key1 = s >> _SHIFT32
    for _ in range(_ROUNDS):
        p0 = _M0 * x0
        p1 = _M1 * x2
        x0, x1, x2, x3 = (
            (p1 >> _SHIFT32) ^ x1 ^ key0,
            p1 & _MASK32,
            (p0 >> _SHIFT32) ^ x3 ^ key1,
            p0 & _MASK32,
        )
        key0 = (key0 + _W0) & _MASK32
        key1 = (key1 + _W1) & _MASK32
    return (x1 << _SHIFT32) | x0


@numba.njit(cache=True, nogil=True, inline="always")
def uniform_index(seed, tick, stream, entity, index, n):  # type: ignore[no-untyped-def]
    """int64 in [0, n) for 1 <= n <= 2**32 by multiply-shift: the high 64 bits of the
    128-bit product ``draw_u64 * n`` (Lemire's reduction without its rejection step).

    The same bound as ``uniform_int``'s modulo (each value's probability differs from 1/n
    by less than 2**-64), but no division: a 64-bit division is most of ``uniform_int``'s
    cost and keeps a loop from vectorizing, while this is two 32x32->64 products and
    shifts, which vectorize with the Philox rounds (inlined into the caller, see
    ``_draw_u64_inline``). Measured on AMD EPYC without AVX-512, one thread, 585k draws:
    0.8 ms in a plain loop, against 2.0 ms for ``uniform_int`` in a prange loop and 20+
    ms in a plain one. The draws differ from ``uniform_int``'s, so a kernel picks one for
    good: switching changes its world's digests. With x = hi * 2**32 + lo,
    floor(x * n / 2**64) is floor((hi * n + floor(lo * n / 2**32)) / 2**32), which never
    overflows 64 bits for n <= 2**32. ``n`` is not checked here (a range check would stop
    the vectorizing); callers pass a table size or another bound they already know.
    """
    x = _draw_u64_inline(seed, tick, stream, entity, index)
    nn = np.uint64(n)
    return np.int64((((x >> _SHIFT32) * nn) + (((x & _MASK32) * nn) >> _SHIFT32)) >> _SHIFT32)


@numba.njit(cache=True, nogil=True)
def normal(seed, tick, stream, entity, index):  # type: ignore[no-untyped-def]
    """Standard normal float64 by Box–Muller over one whole block (words 0-1 and 2-3).

    u1 is in (0, 1] so log(u1) is finite; |result| <= sqrt(-2 ln 2**-53) ~ 8.57.
    """
    x0, x1, x2, x3 = _block(seed, tick, stream, entity, index)
    u1 = np.float64((_join64(x0, x1) >> _SHIFT11) + np.uint64(1)) * _TWO_POW_M53
    u2 = np.float64(_join64(x2, x3) >> _SHIFT11) * _TWO_POW_M53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


@numba.njit(cache=True, nogil=True)
def _uniform_kernel(seed, tick, stream, entities, index, out):  # type: ignore[no-untyped-def]
    for i in range(entities.shape[0]):
        out[i] = uniform(seed, tick, stream, entities[i], index)


@numba.njit(cache=True, nogil=True)
def _uniform_int_kernel(seed, tick, stream, entities, index, n, out):  # type: ignore[no-untyped-def]
    for i in range(entities.shape[0]):
        out[i] = uniform_int(seed, tick, stream, entities[i], index, n)


def _check_range(name: str, value: int, end: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= int(value) < end:
        raise ValueError(f"{name} must be in [0, {end}), got {value}")


def _check_call(seed: int, tick: int, stream: int, entities: np.ndarray, index: int) -> np.ndarray:
    """Validate a wrapper call at the edge so the kernel never wraps a coordinate silently."""
    _check_range("seed", seed, _U64_END)
    _check_range("tick", tick, _U32_END)
    _check_range("stream", stream, _U32_END)
    _check_range("index", index, _U32_END)
    if not isinstance(entities, np.ndarray) or entities.ndim != 1:
        raise TypeError("entities must be a 1-D numpy array")
    if entities.dtype.kind not in "iu":
        raise TypeError(f"entities must have an integer dtype, got {entities.dtype}")
    ent = entities.astype(np.int64, copy=False)
    if ent.size and (int(ent.min()) < 0 or int(entities.max()) >= _U32_END):
        raise ValueError(f"entities must be in [0, {_U32_END})")
    return ent


def uniform_array(
    seed: int, tick: int, stream: int, entities: np.ndarray, index: int = 0
) -> np.ndarray:
    """``uniform`` for each entity id, as a float64 array (one numba kernel, no Python loop)."""
    ent = _check_call(seed, tick, stream, entities, index)
    out = np.empty(ent.shape[0], dtype=np.float64)
    _uniform_kernel(np.uint64(seed), np.int64(tick), np.int64(stream), ent, np.int64(index), out)
    return out


def uniform_int_array(
    seed: int, tick: int, stream: int, entities: np.ndarray, n: int, index: int = 0
) -> np.ndarray:
    """``uniform_int`` in [0, n) for each entity id, as an int64 array."""
    ent = _check_call(seed, tick, stream, entities, index)
    _check_range("n - 1", n - 1, _I64_END - 1)
    out = np.empty(ent.shape[0], dtype=np.int64)
    _uniform_int_kernel(
        np.uint64(seed), np.int64(tick), np.int64(stream), ent, np.int64(index), np.int64(n), out
    )
    return out


def stream_id(name: str) -> int:
    """Stable id of a named stream: CRC-32 (zlib) of its UTF-8 bytes, in [0, 2**32).

    Refuses a name whose id is already claimed in ``STREAMS`` by a different name.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"stream name must be a non-empty string, got {name!r}")
    sid = zlib.crc32(name.encode("utf-8"))
    owner = _STREAM_OWNERS.get(sid)
    if owner is not None and owner != name:
        raise ValueError(f"stream {name!r} collides with {owner!r} (id {sid})")
    return sid


def register_stream(name: str) -> int:
    """Claim a stream name in ``STREAMS`` (idempotent) and return its id.

    Plugins call this at import so that two names with the same id fail at start-up.
    """
    sid = stream_id(name)
    STREAMS[name] = sid
    _STREAM_OWNERS[sid] = name
    return sid


STREAMS: dict[str, int] = {}
_STREAM_OWNERS: dict[int, str] = {}

# Engine-wide streams; actor plugins register their own.
for _name in ("spawn", "movement", "needs", "decision", "combat", "drop", "trade", "chat", "test"):
    register_stream(_name)
del _name
