"""Typed errors. Three kinds of failure (STYLE habit 5):

- ``NornBug``: an internal invariant broke; the run stops naming seed, tick and system.
- ``EnvironmentFailure``: the machine failed us (fsync, disk full); exit with a distinct code.
- ``UserError``: bad config, scenario, journal or CLI input; exit 2 with one clear message.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_DIVERGED = 1
EXIT_USER_ERROR = 2
EXIT_ENVIRONMENT = 3
EXIT_BUG = 4


class NornError(Exception):
    """Base of every error Norn raises on purpose."""

    exit_code = EXIT_BUG


class UserError(NornError):
    """Input from a person or a file was wrong; the message says what and where."""

    exit_code = EXIT_USER_ERROR


class ConfigError(UserError):
    """A config or scenario key is missing, unknown, of the wrong type or out of range."""


class JournalError(UserError):
    """A journal cannot be used as it is."""


class JournalCorruptError(JournalError):
    """Bytes in the middle of a journal fail their checksum; never misread, never skipped."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt journal frame at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class JournalVersionError(JournalError):
    """The journal was written in a format version this code does not read."""


class SnapshotError(UserError):
    """A snapshot file is missing, corrupt or from another format version."""


class BoundError(NornError):
    """A named ``*_max`` limit would be exceeded. Carries the limit's name and value."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, name: str, limit: int, requested: int, what: str = "") -> None:
        detail = f" ({what})" if what else ""
        super().__init__(f"{name}={limit} exceeded: {requested} requested{detail}")
        self.name = name
        self.limit = limit
        self.requested = requested


class StaleEntityError(NornError):
    """An entity handle refers to a despawned slot or an older generation."""

    exit_code = EXIT_BUG


class ScheduleError(NornError):
    """The schedule is malformed: unknown phase, or conflicting writes without an order."""

    exit_code = EXIT_BUG


class NornBug(NornError):
    """An invariant failed inside a tick."""

    exit_code = EXIT_BUG

    def __init__(self, message: str, *, seed: int, tick: int, system: str) -> None:
        super().__init__(f"{message} [seed={seed} tick={tick} system={system}]")
        self.seed = seed
        self.tick = tick
        self.system = system


class EnvironmentFailure(NornError):
    """The environment failed (fsync error, disk full, an unwritable path); fatal, never retried."""

    exit_code = EXIT_ENVIRONMENT

    @classmethod
    def from_os(cls, path: object, action: str, exc: OSError) -> EnvironmentFailure:
        """One line naming ``path``, what could not be done, and the OS's reason.

        ``path: cannot create the run directory: Permission denied`` (and the path the OS
        refused, when it is another one, e.g. a parent directory).
        """
        reason = exc.strerror or str(exc)
        refused = exc.filename
        where = f" ({refused})" if refused is not None and str(refused) != str(path) else ""
        return cls(f"{path}: {action}: {reason}{where}")


def require(condition: bool, message: str) -> None:
    """An assertion that ``python -O`` cannot strip; for invariants that guard state."""
    if not condition:
        raise AssertionError(message)
