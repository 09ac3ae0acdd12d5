"""Retries with exponential backoff for calls to the Hub, and which errors are worth retrying."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# HTTP statuses that mean "try again later": rate limit, and server-side failures.
TRANSIENT_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Transport-level failures by class name: huggingface_hub has used requests, httpx and httpx2
# across the versions we support, so matching names is what works for all of them.
TRANSIENT_CLASS_NAMES = frozenset({"TransportError", "TimeoutException", "ConnectionError",
                                   "Timeout", "ChunkedEncodingError", "RemoteProtocolError"})


@dataclass(frozen=True)
class RetryPolicy:
    """Try `attempts` times; wait `backoff_s`, 2x, 4x, ... (capped at `max_backoff_s`) between."""

    attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0

    def delay_s(self, failures: int) -> float:
        return min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)


def http_status(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def is_offline_mode(exc: BaseException) -> bool:
    return type(exc).__name__ == "OfflineModeIsEnabled"


def is_transient(exc: BaseException) -> bool:
    """True for network failures and HTTP 429/5xx; False for everything that a retry cannot fix
    (bad token, missing permission, offline mode, our own errors)."""
    if is_offline_mode(exc):
        return False
    status = http_status(exc)
    if status is not None:
        return status in TRANSIENT_HTTP_STATUS
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in TRANSIENT_CLASS_NAMES for cls in type(exc).__mro__)


def describe(exc: BaseException) -> str:
    """A short, token-free description of a Hub failure: the class, HTTP status and the
    server's own message (never the request, whose headers hold the token)."""
    status = http_status(exc)
    server_message = getattr(exc, "server_message", None)
    text = type(exc).__name__ + (f" HTTP {status}" if status is not None else "")
    if server_message:
        text += f": {str(server_message).splitlines()[0][:200]}"
    return text


def with_retries(fn, policy: RetryPolicy, *, what: str, error_type: type[Exception],
                 sleep=time.sleep):
    """Call `fn()` until it returns, retrying transient errors with backoff.

    Our own errors (`error_type`) pass through. A non-transient Hub error, or a transient one
    that outlived every attempt, becomes one `error_type` line naming `what` and the failure.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except error_type:
            raise
        except Exception as exc:
            if is_offline_mode(exc):
                raise error_type(f"cannot {what}: the Hugging Face Hub is in offline mode "
                                 f"(unset HF_HUB_OFFLINE to upload)") from None
            if not is_transient(exc):
                status = http_status(exc)
                if status is None and not isinstance(exc, OSError):
                    raise  # not a Hub failure: a bug, keep the traceback
                raise error_type(f"cannot {what}: the Hub refused ({describe(exc)})") from None
            if attempt == policy.attempts:
                raise error_type(f"cannot {what}: still failing after {attempt} attempts "
                                 f"({describe(exc)}); re-run to resume") from None
            delay = policy.delay_s(attempt)
            logger.warning("%s failed (%s); retry %d/%d in %.0fs", what, describe(exc),
                           attempt, policy.attempts - 1, delay)
            sleep(delay)
