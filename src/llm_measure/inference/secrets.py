"""Keep secrets out of run folders and messages.

Three places a user may put one by mistake: the key itself where the *name* of its
environment variable belongs (``api_key_env``), ``user:password@`` in a ``base_url``, and a
key in the URL's query (``?api_key=...``). The first is refused; the other two are used for
the requests but redacted wherever the URL is written or printed, and ``scrub`` removes any
known secret from error text (an HTTP library may quote the URL it failed on).
"""

from __future__ import annotations

import re
from typing import TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
# query parameters that carry credentials in the APIs researchers use
SECRET_PARAMS = re.compile(
    r"key|token|secret|password|passwd|pwd|auth|signature|sig|"
    r"credential",
    re.IGNORECASE,
)
REDACTED = "REDACTED"


def looks_like_env_name(value: str) -> bool:
    """An environment variable name by convention: capitals, digits and underscores.
    Keys are mixed case or contain '-', so a pasted key fails this test."""
    return bool(ENV_NAME.fullmatch(value))


def redact_url(url: str) -> str:
    """The URL with any user:password@ and credential-like query values replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, REDACTED if SECRET_PARAMS.search(k) else v) for k, v in pairs], safe=REDACTED
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secret pieces of a URL (password, user, credential query values), to scrub."""
    out = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        out += [userinfo, *userinfo.split(":", 1)]
    out += [
        v
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if SECRET_PARAMS.search(k) and v
    ]
    return [s for s in out if len(s) >= 3]


T = TypeVar("T")


class Scrubber:
    """Removes known secrets (keys, URL credentials) from any text before it is stored."""

    def __init__(self, secrets: list[str] | None = None):
        self.secrets = sorted({s for s in secrets or [] if s}, key=len, reverse=True)

    def add(self, *secrets: str | None) -> None:
        self.secrets = sorted(set(self.secrets) | {s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: T) -> T:
        """``text`` without the secrets when it is a string; anything else unchanged."""
        if not isinstance(text, str):
            return text
        scrubbed: str = text
        for s in self.secrets:
            scrubbed = scrubbed.replace(s, REDACTED)
        return cast(T, scrubbed)
