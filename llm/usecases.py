"""Use cases: what each decision kind means to a model, and how its requests are keyed.

A decision request (``engine.decisions.REQUEST``) is numbers: option values, a context
vector whose first ``n_options`` entries are the options' utilities (Norn's convention),
then facts. A ``UseCase`` names them for the prompt (labels, facts) and splits the context
for the cache (tier 2):

- **categorical** entries (a state id, "in town") and the options themselves must match
  exactly, and so must the **signs** of signed entries (mood, reputation) and the
  **polarity** of the utilities (their rank order): together with the use case, prompt
  version and, for free text, the normalised words said, the place and the item, they make
  the *bucket*. A near neighbour is looked for only inside the exact bucket, so an opposite
  (mood flipped, preference reversed, other map, other item) can never be merged.
- **numeric** entries are standardised (divided by ``scale``, their typical spread) into
  features; the exact key adds them binned at ``bin_width`` standard units, and the near
  neighbour compares them by Chebyshev distance against ``threshold``, calibrated per use
  case on the shipped labelled set (``norn.llm.cache.calibrate``).

Keys are computed for a whole batch with vectorised 64-bit mixing (no per-row Python
except for free-text words), so they are the same in every process (no ``hash()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xxhash

from norn.engine.decisions import OPTIONS
from norn.llm import limits

# Decision kinds filed by Norn's actor kinds (tests check them against the actors' own
# constants; the LLM tier does not import the actors).
KIND_TOY_REST = 1  # actors.toy.DECISION_REST
KIND_NPC_BEHAVIOUR = 10  # actors.npc.DECISION_BEHAVIOUR
KIND_NPC_TALK = 11  # actors.npc.DECISION_TALK
KIND_QUEST_OFFER = 20  # actors.quests.DECISION_OFFER
STATE_NAMES = ("idle", "wander", "travel", "work", "trade", "rest", "flee", "talk")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _finalize(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64 (wraps, as intended)."""
    h = h.copy()
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def mix(h: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fold integer columns ``values`` (n, k) or (n,) into hashes ``h`` (n,), in order."""
    v = np.asarray(values)
    if v.ndim == 1:
        v = v[:, None]
    out = h.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        for j in range(v.shape[1]):
            col = v[:, j].astype(np.int64).view(np.uint64)
            out = _finalize(out ^ (col + _GOLDEN + (out << np.uint64(6)) + (out >> np.uint64(2))))
    return out


def normalise(text: str) -> str:
    """What a player said, normalised: case, spacing, punctuation at the ends."""
    return " ".join(text.lower().split()).strip(" .,!?;:'\"")


def words_key(said: str, where: str, item: str) -> int:
    """The free-text part of a bucket: the normalised words, the place and the item."""
    return xxhash.xxh3_64_intdigest(f"{normalise(said)}\0{where}\0{item}".encode())


@dataclass(frozen=True)
class UseCase:
    name: str
    kind: int
    prompt_version: str
    instructions: str
    labels: tuple[str, ...] | None = None  # label of option *value* v is labels[v]
    facts: tuple[tuple[int, str], ...] = ()  # context entries shown to the model, by name
    categorical: tuple[int, ...] = ()
    signs: tuple[int, ...] = ()
    numeric: tuple[int, ...] = ()
    scale: tuple[float, ...] = ()
    bin_width: float = 0.02  # exact key: standard units per bin
    threshold: float = 0.0  # near neighbour radius (standard units); calibrated
    text: bool = False  # a free-text reply ("say") is asked for too
    text_bytes_max: int = limits.reply_text_bytes_max
    tokens_per_item: int = 80  # estimate of one item's prompt + answer tokens
    version_key: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not 1 <= len(self.name) <= limits.use_case_name_chars_max:
            raise ValueError(f"use case name {self.name!r}: 1..use_case_name_chars_max="
                             f"{limits.use_case_name_chars_max} characters")
        if len(self.numeric) != len(self.scale):
            raise ValueError(f"{self.name}: one scale per numeric entry")
        if len(self.numeric) > limits.cache_features_max:
            raise ValueError(f"{self.name}: more than cache_features_max numeric entries")
        if any(s <= 0 for s in self.scale):
            raise ValueError(f"{self.name}: scales must be positive")
        key = xxhash.xxh3_64_intdigest(f"{self.name}\0{self.prompt_version}".encode())
        object.__setattr__(self, "version_key", key)

    def label(self, value: int) -> str:
        if self.labels is not None and 0 <= value < len(self.labels):
            return self.labels[value]
        return f"option {value}"

    def labels_of(self, req: np.void) -> list[str]:
        return [self.label(int(v)) for v in req["options"][: int(req["n_options"])]]

    # -- cache keys --------------------------------------------------------------------------
    def features(self, requests: np.ndarray) -> np.ndarray:
        """Standardised numeric features, float32 (n, len(numeric))."""
        ctx = requests["context"].astype(np.float64)
        if not self.numeric:
            return np.zeros((len(requests), 0), np.float32)
        return (ctx[:, list(self.numeric)] / np.asarray(self.scale)).astype(np.float32)

    def keys(
        self, requests: np.ndarray, words: list[tuple[str, str, str]] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bucket, exact key, features) of each request; ``words`` = (said, map, item)."""
        n = len(requests)
        h = np.full(n, np.uint64(self.version_key), np.uint64)
        n_opt = requests["n_options"].astype(np.int64)
        opts = requests["options"].astype(np.int64)
        live = np.arange(OPTIONS)[None, :] < n_opt[:, None]
        h = mix(h, n_opt)
        h = mix(h, np.where(live, opts, -1))
        util = requests["context"][:, :OPTIONS].astype(np.float64)
        util = np.where(live, util, -np.inf)
        rank = np.argsort(-util, axis=1, kind="stable")  # polarity: who is preferred
        h = mix(h, np.where(live, rank, -1))
        ctx = requests["context"].astype(np.float64)
        if self.categorical:
            h = mix(h, np.rint(ctx[:, list(self.categorical)]).astype(np.int64))
        if self.signs:
            h = mix(h, np.sign(ctx[:, list(self.signs)]).astype(np.int64))
        if self.text:
            w = words or [("", "", "")] * n
            tk = np.array([words_key(*x) for x in w], dtype=np.uint64)
            h = mix(h, tk.view(np.int64))
        feats = self.features(requests)
        bins = np.floor(feats.astype(np.float64) / self.bin_width).astype(np.int64)
        exact = mix(h, bins) if bins.shape[1] else mix(h, np.zeros(n, np.int64))
        return h, exact, feats

    def with_threshold(self, threshold: float) -> UseCase:
        import dataclasses

        return dataclasses.replace(self, threshold=float(threshold))


_CHOOSE = (
    "You decide for characters of a Ragnarok Online world. For each request, pick exactly "
    "one of its option labels. Utilities are the rules' own scores (higher is better for "
    "the character); facts describe its situation. Answer only with the JSON object asked for."
)

NPC_BEHAVIOUR = UseCase(
    name="npc_behaviour",
    kind=KIND_NPC_BEHAVIOUR,
    prompt_version="behaviour-1",
    instructions=_CHOOSE + " These NPCs hesitate between their two best behaviours.",
    labels=STATE_NAMES,
    facts=((2, "hunger"), (3, "fatigue"), (4, "social"), (5, "comfort"), (6, "danger"),
           (7, "conflict"), (8, "mood"), (9, "hp"), (10, "wealth")),
    categorical=(11,),  # the current state
    signs=(8,),  # mood
    numeric=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
    scale=(0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.4, 0.25, 0.25),
    tokens_per_item=110,
)

NPC_TALK = UseCase(
    name="npc_talk",
    kind=KIND_NPC_TALK,
    prompt_version="talk-1",
    instructions=(
        "You voice NPCs of a Ragnarok Online town. A player spoke to an NPC: pick how the NPC "
        "answers (one of the option labels) and write what it says, one or two short "
        "sentences in character, at most 200 characters, no markup. Stay in the world: name "
        "only the places and items given. Answer only with the JSON object asked for."
    ),
    labels=("greet", "trade", "refuse", "quest"),
    facts=((4, "mood"), (5, "reputation"), (6, "danger"), (7, "in_town")),
    categorical=(7,),  # in town
    signs=(4, 5),  # mood, reputation with the player
    numeric=(0, 1, 2, 3, 4, 5, 6),
    scale=(0.25, 0.25, 0.25, 0.25, 0.4, 0.4, 0.25),
    text=True,
    tokens_per_item=160,
)

QUEST_OFFER = UseCase(
    name="quest_offer",
    kind=KIND_QUEST_OFFER,
    prompt_version="offer-1",
    instructions=(
        "You voice the quest givers of a Ragnarok Online world. The world found a problem and "
        "offers a quest for it; the offer as the rules wrote it is given as what was said. "
        "Pick how to pitch it (one of the option labels) and write the line announced on the "
        "map, one or two short sentences, at most 200 characters, no markup, keeping its "
        "faction, place, numbers and reward. Answer only with the JSON object asked for."
    ),
    labels=("plea", "bounty", "warning"),
    facts=((3, "severity"), (4, "reward_share"), (5, "kind"), (6, "in_town"), (7, "target")),
    categorical=(5, 6),  # hunt, relief, supply, defend; in a town
    numeric=(0, 1, 2, 3, 4),
    scale=(0.25, 0.25, 0.25, 0.25, 0.25),
    text=True,
    tokens_per_item=160,
)

TOY_REST = UseCase(
    name="toy_rest",
    kind=KIND_TOY_REST,
    prompt_version="toy-1",
    instructions=_CHOOSE + " Walkers hesitate between going on and resting.",
    labels=("go", "rest"),
    numeric=(0, 1),
    scale=(0.25, 0.25),
)

GENERIC = UseCase(
    name="generic",
    kind=-1,
    prompt_version="generic-1",
    instructions=_CHOOSE,
    numeric=tuple(range(OPTIONS)),
    scale=(0.25,) * OPTIONS,
)

BUILTIN: tuple[UseCase, ...] = (NPC_BEHAVIOUR, NPC_TALK, QUEST_OFFER, TOY_REST, GENERIC)


class UseCases:
    """The use cases of a run, by decision kind (unknown kinds are ``generic``)."""

    def __init__(self, cases: tuple[UseCase, ...] = BUILTIN) -> None:
        if len(cases) > limits.use_cases_max:
            raise ValueError(f"more than use_cases_max={limits.use_cases_max} use cases")
        self.by_name = {c.name: c for c in cases}
        self.by_kind = {c.kind: c for c in cases if c.kind >= 0}
        self.generic = self.by_name.get("generic", GENERIC)

    def of_kind(self, kind: int) -> UseCase:
        return self.by_kind.get(int(kind), self.generic)

    def names(self) -> list[str]:
        return sorted(self.by_name)
