"""One clear line for a failed provider call, whichever client raised it."""

from __future__ import annotations

from caramba_agents.chat import ProviderError

__all__ = ["provider_error"]


def provider_error(provider: str, exc: BaseException) -> ProviderError:
    """A :class:`ProviderError` naming the provider, the HTTP status and the server's message."""
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in str(message):  # "Connection error." says too little
        message = f"{message} ({type(cause).__name__}: {cause})"
    message = " ".join(str(message).split())[:300]
    if status == 429:
        return ProviderError(f"{provider}: rate limited (HTTP 429) after the retries ran out: {message}",
                             hint="wait and retry, or raise max_retries")
    if status in (401, 403):
        return ProviderError(f"{provider}: the key was refused (HTTP {status}): {message}",
                             hint="check the key in the environment variable the manifest names")
    if isinstance(status, int):
        return ProviderError(f"{provider}: HTTP {status}: {message}")
    return ProviderError(f"{provider}: {type(exc).__name__}: {message}",
                         hint="check that the server is running and reachable")
