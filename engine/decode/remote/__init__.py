"""The decode protocol over HTTP: OpenAI-compatible serving engines (`--engine URL`).

`RemoteEngine` connects (`probe` finds out what the server offers: `Capabilities`)
and starts `RemoteReply`s. httpx only: nothing here imports torch.
"""

from engine.decode.remote.capabilities import Capabilities, probe
from engine.decode.remote.client import DEFAULT_TIMEOUT, HttpClient
from engine.decode.remote.engine import RemoteEngine
from engine.decode.remote.reply import RemoteReply

__all__ = [
    "DEFAULT_TIMEOUT",
    "Capabilities",
    "HttpClient",
    "RemoteEngine",
    "RemoteReply",
    "probe",
]
