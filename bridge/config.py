"""Bridge configuration: every bound of the edge, named ``*_max`` and validated at load.

The ``[bridge]`` table of a run's TOML file becomes a ``BridgeConfig``. Keys may lower the
engine's hard ceilings (``engine/limits.py``) but never raise them; a bad key raises
``ConfigError`` naming the key and the allowed range. Each bound is tested at exactly the
bound and one past it (``tests/test_bridge_limits.py``).

Why these bounds: a map server is untrusted input. Every size and count it can make the
engine hold (frame bytes, events per batch, text bytes, unacked batches, connected servers,
events per second, dead letters, held batches) has a ceiling, so a buggy or hostile peer
costs bounded memory and CPU and never stalls the tick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from norn.engine import limits
from norn.engine.config import format_validation_error
from norn.engine.errors import ConfigError

#: Hard ceiling for one wire frame; a frame is decoded whole in memory.
FRAME_BYTES_CEILING = 64 << 20


class BridgeConfig(BaseModel):
    """Limits and timings of the engine side of the bridge (see ``bridge/PROTOCOL.md``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- bounds on what a peer may send --------------------------------------------------
    frame_bytes_max: int = Field(8 << 20, ge=256, le=FRAME_BYTES_CEILING)
    events_per_batch_max: int = Field(
        limits.batch_events_max, ge=1, le=limits.batch_events_max
    )
    text_bytes_max: int = Field(limits.text_bytes_max, ge=1, le=limits.text_bytes_max)
    unacked_batches_max: int = Field(64, ge=1, le=4096)
    servers_max: int = Field(16, ge=1, le=1024)
    # Peer records (connected or not) kept for sequence numbers; a peer that went down keeps
    # its record so a reconnect resumes exactly; new server ids beyond this are refused.
    server_records_max: int = Field(64, ge=1, le=65536)
    events_per_s_max: int = Field(20_000_000, ge=1, le=10**9)
    map_dict_max: int = Field(2048, ge=1, le=32767)
    hello_maps_max: int = Field(4096, ge=0, le=32767)
    # Ids whose journaled seq is remembered after their record was freed (so a server that
    # comes back resumes its seqs exactly); a new id past this is refused.
    durable_ids_max: int = Field(65536, ge=1, le=1 << 24)
    # A batch may be stamped at most this many ticks beyond the engine's tick.
    stamp_ahead_ticks_max: int = Field(6000, ge=1, le=1 << 30)
    # -- memory the bridge may hold on the engine side -----------------------------------
    # Decoded batches not yet journaled (held by the bridge or waiting in the input queue),
    # all servers together; each server may hold its fair share of it (at least a frame).
    held_bytes_max: int = Field(256 << 20, ge=1 << 16, le=16 << 30)
    # Frames read from the socket but not yet processed, per connection: past either bound
    # a frame is dropped unread and answered ``overloaded`` (its seq is not consumed).
    peer_inbound_bytes_max: int = Field(64 << 20, ge=1 << 10, le=16 << 30)
    peer_inbound_frames_max: int = Field(4096, ge=1, le=1 << 20)
    # All connections together: past either bound the engine stops reading the socket
    # until it has processed what it holds (TCP back-pressure).
    inbound_bytes_max: int = Field(512 << 20, ge=1 << 10, le=64 << 30)
    inbound_frames_max: int = Field(65536, ge=1, le=1 << 24)
    # Bytes of frames one connection may have processed per scheduling round (fairness:
    # a server sending large batches cannot delay the others by more than this per round).
    turn_bytes_max: int = Field(1 << 20, ge=1 << 10, le=1 << 30)
    action_queue_ticks_max: int = Field(256, ge=1, le=65536)
    actions_pending_frames_max: int = Field(1024, ge=1, le=1 << 20)
    actions_per_frame_max: int = Field(16384, ge=1, le=limits.actions_per_tick_max)
    action_ttl_ticks: int = Field(50, ge=1, le=1 << 20)
    error_details_max: int = Field(32, ge=1, le=4096)
    dead_letter_records_max: int = Field(1_000_000, ge=1, le=10**9)
    dead_letter_raw_bytes_max: int = Field(64 << 10, ge=16, le=FRAME_BYTES_CEILING)
    dead_letter_memory_max: int = Field(1024, ge=1, le=1 << 20)
    # -- timings (wall clock; never reach world state) -----------------------------------
    heartbeat_ms: int = Field(1000, ge=10, le=60_000)
    peer_timeout_ms: int = Field(5000, ge=20, le=600_000)
    # -- ZeroMQ safety nets (reliability is the protocol's job, not these) ---------------
    sndhwm: int = Field(1000, ge=1, le=1_000_000)
    rcvhwm: int = Field(1000, ge=1, le=1_000_000)
    recv_per_wake_max: int = Field(256, ge=1, le=65536)
    # -- CurveZMQ: enabled when a secret key file is given -------------------------------
    curve_secret_key_file: Path | None = None
    curve_allowed_keys_dir: Path | None = None
    curve_allowed_keys: tuple[str, ...] = ()

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, "[bridge]", BridgeConfig)) from None

    @model_validator(mode="after")
    def _consistent(self) -> BridgeConfig:
        if self.events_per_s_max < self.events_per_batch_max:
            raise ValueError(
                f"events_per_s_max ({self.events_per_s_max}) must be >= events_per_batch_max "
                f"({self.events_per_batch_max}): a full batch must fit in one second of budget"
            )
        if self.peer_timeout_ms < 2 * self.heartbeat_ms:
            raise ValueError(
                f"peer_timeout_ms ({self.peer_timeout_ms}) must be >= 2 * heartbeat_ms "
                f"({self.heartbeat_ms})"
            )
        if self.server_records_max < self.servers_max:
            raise ValueError("server_records_max must be >= servers_max")
        if self.peer_inbound_bytes_max < self.frame_bytes_max:
            raise ValueError(
                f"peer_inbound_bytes_max ({self.peer_inbound_bytes_max}) must be >= "
                f"frame_bytes_max ({self.frame_bytes_max}): one whole frame must fit"
            )
        if self.inbound_bytes_max < self.peer_inbound_bytes_max:
            raise ValueError("inbound_bytes_max must be >= peer_inbound_bytes_max")
        if self.inbound_frames_max < self.peer_inbound_frames_max:
            raise ValueError("inbound_frames_max must be >= peer_inbound_frames_max")
        if self.curve_secret_key_file is None and (
            self.curve_allowed_keys_dir is not None or self.curve_allowed_keys
        ):
            raise ValueError("curve_allowed_keys* need curve_secret_key_file")
        if self.curve_secret_key_file is not None and not (
            self.curve_allowed_keys_dir is not None or self.curve_allowed_keys
        ):
            raise ValueError(
                "curve_secret_key_file needs curve_allowed_keys_dir or curve_allowed_keys "
                "(an empty allowlist would refuse every server)"
            )
        for key in self.curve_allowed_keys:
            if len(key) != 40:
                raise ValueError(f"curve_allowed_keys: {key!r} is not a 40-character Z85 key")
        return self

    @property
    def curve_enabled(self) -> bool:
        return self.curve_secret_key_file is not None

    def wire_limits(self) -> dict[str, int]:
        """The limits a client must respect, sent in ``welcome`` (documented order)."""
        return {
            "frame_bytes_max": self.frame_bytes_max,
            "events_per_batch_max": self.events_per_batch_max,
            "text_bytes_max": self.text_bytes_max,
            "unacked_batches_max": self.unacked_batches_max,
            "events_per_s_max": self.events_per_s_max,
            "map_dict_max": self.map_dict_max,
        }
