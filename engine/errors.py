"""One exception hierarchy, one exit code per kind of failure (STYLE habit 5).

Every error Norn raises on purpose is a ``NornError``; its class decides the exit code of
``norn`` (``exit_code_for``), so a failure means the same thing wherever it is raised:

====  ================  ===========================================================
code  meaning           classes
====  ================  ===========================================================
0     ok
1     divergence        ``Diverged`` (and ``norn replay verify`` finding a mismatch)
2     bad input         ``UserError``: ``ConfigError``, ``JournalError`` (corrupt,
                        version), ``SnapshotError``, ``BoundError``; a named file
                        that does not exist (``FileNotFoundError``)
3     environment       ``EnvironmentFailure``; any other ``OSError``
4     bug               ``NornBug``: ``StaleEntityError``, ``ScheduleError``,
                        ``DefinitionError``; any exception Norn did not raise on purpose
====  ================  ===========================================================

An error names what it can: ``seed``, ``tick``, ``system``, ``table``, ``key``. The raiser
fills in what it knows; outer layers add the rest with ``within`` (the tick loop adds the
system, the run command the seed and tick) and never overwrite what an inner one said.
"""

from __future__ import annotations

from typing import Any, Self

EXIT_OK = 0
EXIT_DIVERGED = 1
EXIT_USER_ERROR = 2
EXIT_ENVIRONMENT = 3
EXIT_BUG = 4

#: What an error can name, in the order its message shows them.
CONTEXT_KEYS = ("seed", "tick", "system", "table", "key")


class NornError(Exception):
    """Base of every error Norn raises on purpose; ``exit_code`` says which kind it is."""

    exit_code = EXIT_BUG

    def __init__(self, message: str = "", **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = {}
        self.within(**context)

    def within(self, **context: Any) -> Self:
        """Add what an outer layer knows (seed, tick, ...); what is already named stays."""
        unknown = set(context) - set(CONTEXT_KEYS)
        if unknown:
            raise TypeError(f"unknown error context {sorted(unknown)}; use {CONTEXT_KEYS}")
        for k, v in context.items():
            if v is not None:
                self.context.setdefault(k, v)
        return self

    # what it names, None when nobody did
    seed = property(lambda self: self.context.get("seed"))
    tick = property(lambda self: self.context.get("tick"))
    system = property(lambda self: self.context.get("system"))
    table = property(lambda self: self.context.get("table"))
    key = property(lambda self: self.context.get("key"))

    def __str__(self) -> str:
        where = " ".join(f"{k}={self.context[k]}" for k in CONTEXT_KEYS if k in self.context)
        return f"{self.message} [{where}]" if where else self.message

    def __reduce__(self):  # picklable whatever a subclass's __init__ takes
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[NornError], args: tuple, state: dict) -> NornError:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


# -- 1: divergence --------------------------------------------------------------------------
class Diverged(NornError):
    """Replaying the journal gave another digest than the one recorded."""

    exit_code = EXIT_DIVERGED


# -- 2: bad input ---------------------------------------------------------------------------
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


class BoundError(UserError):
    """A named ``*_max`` limit would be exceeded. Carries the limit's name and value.

    Bad input: the limits are sized by config and scenario, so the user can raise them (or
    send less); the message names the limit to change.
    """

    def __init__(self, name: str, limit: int, requested: int, what: str = "",
                 **context: Any) -> None:
        detail = f" ({what})" if what else ""
        super().__init__(f"{name}={limit} exceeded: {requested} requested{detail}", **context)
        self.name = name
        self.limit = limit
        self.requested = requested


# -- 3: environment -------------------------------------------------------------------------
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


# -- 4: bug ---------------------------------------------------------------------------------
class NornBug(NornError):
    """An invariant failed: Norn's or a plugin's code is wrong, not the input."""

    exit_code = EXIT_BUG


class StaleEntityError(NornBug):
    """An entity handle refers to a despawned slot or an older generation."""


class ScheduleError(NornBug):
    """The schedule is malformed: unknown phase, or conflicting writes without an order."""


class DefinitionError(NornBug):
    """Plugins defined the world inconsistently: a table or channel twice, an unknown table."""


def exit_code_for(exc: BaseException) -> int:
    """The ``norn`` exit code of an exception that ended a command (table above)."""
    if isinstance(exc, NornError):
        return exc.exit_code
    if isinstance(exc, FileNotFoundError):
        return EXIT_USER_ERROR
    if isinstance(exc, OSError):
        return EXIT_ENVIRONMENT
    return EXIT_BUG


def require(condition: bool, message: str) -> None:
    """An assertion that ``python -O`` cannot strip; for invariants that guard state."""
    if not condition:
        raise AssertionError(message)
