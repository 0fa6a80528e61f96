"""The Ray cluster's authentication token, for the Jobs API: where it comes from, how it is sent, and
how it is kept out of every message.

Ray (>= 2.52; on by default for new clusters from 2.59/2.61) checks a static bearer token when the
cluster runs with `RAY_AUTH_MODE=token`. Ray itself looks for the token in this order: the
`RAY_AUTH_TOKEN` environment variable, the file named by `RAY_AUTH_TOKEN_PATH`, then
`~/.ray/auth_token` (written by `ray get-auth-token --generate`). We follow the same order, with an
explicit `--token-file` first. The dashboard (Jobs API) takes it as `Authorization: Bearer <token>`
and answers 401 when it is missing and 403 when it is wrong
(docs.ray.io/en/latest/ray-security/token-auth.html).

The token lives in a pydantic `SecretStr`, so its repr and str are masked; `redact` removes it from
any text (error messages, job logs) before that text is shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")
MASK = "***"


class TokenError(ValueError):
    """A token source that was named but cannot be used (missing or empty file). Never holds the token."""


@dataclass(frozen=True)
class RayToken:
    """A cluster token and where it was found (`source` is safe to print; `secret` is masked)."""

    secret: SecretStr
    source: str

    def headers(self) -> dict[str, str]:
        """The HTTP header the Ray dashboard expects."""
        return {"Authorization": f"Bearer {self.secret.get_secret_value()}"}

    def redact(self, text: str) -> str:
        return redact(text, self)


def _read_token_file(path: Path, named_by: str) -> RayToken:
    path = path.expanduser()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenError(f"cannot read the Ray token file {path} ({named_by}): {exc.strerror}") from None
    if not value:
        raise TokenError(f"the Ray token file {path} ({named_by}) is empty")
    return RayToken(SecretStr(value), f"file {path} ({named_by})")


def resolve_token(
    token_file: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
) -> RayToken | None:
    """The token to send, or None when there is none (a cluster without token auth needs none).

    Order: `token_file` (the --token-file option), $RAY_AUTH_TOKEN, the file in $RAY_AUTH_TOKEN_PATH,
    ~/.ray/auth_token. A source that is named but unreadable or empty is an error, as in Ray.
    """
    env = os.environ if environ is None else environ
    if token_file is not None:
        return _read_token_file(Path(token_file), "--token-file")
    value = (env.get(TOKEN_ENV) or "").strip()
    if value:
        return RayToken(SecretStr(value), f"${TOKEN_ENV}")
    if env.get(TOKEN_PATH_ENV):
        return _read_token_file(Path(env[TOKEN_PATH_ENV]), f"${TOKEN_PATH_ENV}")
    default = DEFAULT_TOKEN_FILE.expanduser()
    if default.is_file():
        return _read_token_file(default, "Ray's default token file")
    return None


def redact(text: str, token: RayToken | None) -> str:
    """`text` with every occurrence of the token replaced by ***."""
    if token is None:
        return text
    value = token.secret.get_secret_value()
    return text.replace(value, MASK) if value else text
