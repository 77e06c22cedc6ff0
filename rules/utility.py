"""Utility-based behaviour selection: one score per behaviour, the best one wins.

Scores are small weighted sums of an NPC's needs, traits and surroundings; every weight is
a scenario key (``rules.npc.utility``) packed into a float64 vector (``UW_*`` indices) so
a numba kernel reads them without objects. The same function scores behaviours in the
population kernel and when a near-tie is escalated as a decision request, so the request's
context carries exactly the utilities the kernel compared.
"""

from __future__ import annotations

import numba
import numpy as np

# Behaviour states (the low 7 bits of npc.state; bit 7 asks the kernel to set it up).
IDLE, WANDER, TRAVEL, WORK, TRADE, REST, FLEE, TALK = range(8)
N_STATES = 8
STATE_NAMES = ("idle", "wander", "travel", "work", "trade", "rest", "flee", "talk")
SETUP = 0x80
STATE_MASK = 0x7F

# Needs (npc.needs columns) and traits (npc.traits columns).
HUNGER, FATIGUE, SOCIAL, COMFORT = range(4)
COURAGE, GREED, SOCIABILITY, DILIGENCE = range(4)

UTILITY_KEYS = (
    "idle",
    "wander",
    "wander_social",
    "travel_home",
    "travel_goods",
    "travel_explore",
    "work",
    "work_greed",
    "trade_need",
    "trade_fatigue",
    "trade_goods",
    "rest",
    "flee_danger",
    "flee_conflict",
    "talk",
    "inertia",
    "noise",
)
(
    UW_IDLE,
    UW_WANDER,
    UW_WANDER_SOCIAL,
    UW_TRAVEL_HOME,
    UW_TRAVEL_GOODS,
    UW_TRAVEL_EXPLORE,
    UW_WORK,
    UW_WORK_GREED,
    UW_TRADE_NEED,
    UW_TRADE_FATIGUE,
    UW_TRADE_GOODS,
    UW_REST,
    UW_FLEE_DANGER,
    UW_FLEE_CONFLICT,
    UW_TALK,
    UW_INERTIA,
    UW_NOISE,
) = range(len(UTILITY_KEYS))


def utility_vector(weights: object) -> np.ndarray:
    """The scenario's ``rules.npc.utility`` as the float64 vector the kernels read."""
    return np.array([float(getattr(weights, k)) for k in UTILITY_KEYS], dtype=np.float64)


@numba.njit(cache=True, nogil=True)
def noise8(w0, w1, w2, w3):
    """Eight values in [0, 1) from the four 32-bit words of one Philox block."""
    s = 1.0 / 65536.0
    return (
        (w0 & 0xFFFF) * s,
        (w0 >> 16) * s,
        (w1 & 0xFFFF) * s,
        (w1 >> 16) * s,
        (w2 & 0xFFFF) * s,
        (w2 >> 16) * s,
        (w3 & 0xFFFF) * s,
        (w3 >> 16) * s,
    )


@numba.njit(cache=True, nogil=True)
def utilities(
    UW,
    hunger,
    fatigue,
    social,
    comfort,
    courage,
    greed,
    sociability,
    diligence,
    hp_frac,
    wealth,
    carrying,
    on_town,
    at_home,
    home_danger,
    danger,
    conflict,
    player_near,
    current,
    noise,
):
    """Scores of the eight behaviours, as an 8-tuple of float64 (index = state id).

    ``wealth`` is in [0, 1] (wallet relative to its cap); booleans arrive as 0.0 / 1.0;
    ``noise`` is an 8-tuple in [0, 1) that breaks ties differently for each NPC and tick.
    """
    away = 1.0 - at_home
    buy_need = max(hunger, max(UW[UW_TRADE_FATIGUE] * fatigue, comfort))
    buy_need *= 1.0 if wealth > 0.0 else 0.0
    home_safe = 1.0 - min(home_danger, 1.0)
    u_idle = UW[UW_IDLE]
    u_wander = UW[UW_WANDER] + UW[UW_WANDER_SOCIAL] * social * sociability
    u_travel = (
        away * home_safe * (UW[UW_TRAVEL_HOME] * (0.5 + hunger) + UW[UW_TRAVEL_GOODS] * carrying)
        + at_home * UW[UW_TRAVEL_EXPLORE] * (1.0 - diligence) * comfort
    )
    u_work = (
        (1.0 - fatigue)
        * (1.0 - carrying)
        * (UW[UW_WORK] * diligence + UW[UW_WORK_GREED] * greed * (1.0 - wealth))
    )
    u_trade = on_town * (UW[UW_TRADE_NEED] * buy_need + UW[UW_TRADE_GOODS] * carrying * at_home)
    u_rest = UW[UW_REST] * max(fatigue, 1.0 - hp_frac)
    u_flee = (UW[UW_FLEE_DANGER] * danger + UW[UW_FLEE_CONFLICT] * conflict) * (1.0 - courage)
    u_talk = UW[UW_TALK] * player_near * (0.5 + social) * sociability
    nz = UW[UW_NOISE]
    u = (
        u_idle + nz * (noise[0] - 0.5),
        u_wander + nz * (noise[1] - 0.5),
        u_travel + nz * (noise[2] - 0.5),
        u_work + nz * (noise[3] - 0.5),
        u_trade + nz * (noise[4] - 0.5),
        u_rest + nz * (noise[5] - 0.5),
        u_flee + nz * (noise[6] - 0.5),
        u_talk + nz * (noise[7] - 0.5),
    )
    return u


@numba.njit(cache=True, nogil=True)
def best_two(u, current, inertia):
    """(best, second) state ids after adding ``inertia`` to the current state; ties -> lower id."""
    b = -1
    s = -1
    vb = -1e300
    vs = -1e300
    for k in range(8):
        v = u[k] + (inertia if k == current else 0.0)
        if v > vb:
            s, vs = b, vb
            b, vb = k, v
        elif v > vs:
            s, vs = k, v
    return b, s, vb, vs
