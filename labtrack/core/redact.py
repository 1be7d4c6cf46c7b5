"""Removing secrets from text before labtrack records it.

labtrack records command lines, a few environment variables, git remote URLs and uncommitted diffs;
any of them may carry a secret. Three rules, applied by :func:`redact_text` anywhere in a text:

1. **Known token formats** are replaced by ``[REDACTED]`` wherever they appear: AWS access key ids
   (``AKIA…``/``ASIA…``), GitHub (``ghp_…``, ``github_pat_…``), GitLab (``glpat-…``), OpenAI and
   Anthropic (``sk-…``), Stripe (``sk_live_…``), Hugging Face (``hf_…``), Slack (``xoxb-…``), Google API
   keys (``AIza…``), JSON Web Tokens (``eyJ….eyJ….…``), labtrack's own server tokens (``lt_<id>_<secret>``),
   the credential of an HTTP ``Bearer``/``Basic`` authorization (``Authorization: Bearer …``: the scheme
   is kept, the credential replaced — opaque tokens have no format of their own) and PEM private-key blocks.
2. **Credentials in URLs**: ``scheme://user:password@host`` keeps the scheme and host only.
3. **Secret-named assignments**: in ``name=value`` / ``name: value`` where the name *ends* with a secret
   word (``password``, ``secret``, ``token``, ``api_key``, ``access_key``, ``private_key``, ``auth``,
   ``passphrase``, ``credentials``…), the value is replaced. The name must end with the word so that the
   many harmless ML names stay readable: ``max_tokens=512``, ``tokenizer=bpe``, ``token_file=x``.
   Values that are plainly code (``password = getpass()``, ``key = cfg.api_key``) are left alone: they
   hold no secret, and a recorded diff should stay readable.

:func:`redact_argv` additionally treats a command line as what it is: the value after a secret-named
flag (``--api-key X``, ``--hf-token=X``, ``db.password=X``) is replaced whatever it looks like.

Redaction is deliberately eager — a false positive costs a ``[REDACTED]`` in a record, a false
negative leaks a credential into a shared store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "is_secret_name", "redact_argv", "redact_text", "strip_url_credentials"]

REDACTED = "[REDACTED]"

# The last word (or last two words) of a name that marks its value as a secret.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "secret", "token", "apikey", "auth", "credential", "credentials",
     "pat", "privatekey", "accesskey", "secretkey"}
)
_SECRET_PAIRS = frozenset(
    {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("signing", "key"),
     ("encryption", "key"), ("auth", "key"), ("master", "key")}
)

# PEM private keys; also an unterminated block (a diff cut at the size cap must keep no key material).
_PEM = re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY-----(?:.*?-----END[A-Z ]*PRIVATE KEY-----|.*\Z)", re.DOTALL)
_TOKEN_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",  # AWS access key ids
        r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{20,}",
        r"\bglpat-[A-Za-z0-9_\-]{20,}",  # GitLab
        r"\bsk-[A-Za-z0-9_\-]{20,}",  # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-)
        r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
        r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face
        r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
        r"\bAIza[0-9A-Za-z_\-]{35}",  # Google API keys
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
        r"\blt_[a-z0-9]{10}_[A-Za-z0-9_\-]{43}",  # labtrack server tokens (labtrack.core.tokens)
    )
)
# An HTTP authorization credential after its scheme; 8+ characters, so that prose ("bearer of news") stays.
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/\-]{8,}=*")

# scheme://userinfo@ — userinfo may not contain '/', '@' or whitespace.
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)([^/\s@]+)@")

_SECRET_WORD_RE = (
    r"(?:password|passwd|passphrase|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|"
    r"secret[_\-]?key|signing[_\-]?key|encryption[_\-]?key|auth|credentials?)"
)
# name (ending in a secret word) = or : value; the value is a quoted literal or a bare run.
_ASSIGNMENT = re.compile(
    r"(?i)(?P<name>\b[\w.\-]*?" + _SECRET_WORD_RE + r")(?P<q1>[\"']?)(?P<sep>\s*[:=]\s*)"
    r"(?:(?P<quote>[\"'])(?P<quoted>[^\"'\n]*)(?P=quote)|(?P<bare>[^\s\"',;&]+))"
)
_CODE_LIKE = re.compile(r"^[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)+$|[()\[\]{}]|^(?:None|True|False|null|\$\w+)$")


def _split_name(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def is_secret_name(name: str) -> bool:
    """Whether a flag, key or environment-variable name denotes a secret (``--hf-token``, ``DB_PASSWORD``).

    Only the end of the name counts: ``max_tokens`` and ``token_file`` are not secrets.
    """
    words = _split_name(name)
    if not words:
        return False
    if words[-1] in _SECRET_WORDS:
        return True
    return len(words) >= 2 and (words[-2], words[-1]) in _SECRET_PAIRS


def strip_url_credentials(url: str) -> str:
    """The URL without its ``user:password@`` part (``https://u:p@host/x`` → ``https://host/x``).

    A user name alone is kept for ssh-like schemes (``ssh://git@host/repo`` names no secret) but dropped
    for http(s), where a lone "user" is usually a token (``https://ghp_…@github.com/…``). scp-like
    ``git@host:repo`` has no scheme and is returned unchanged.
    """

    def repl(m: re.Match[str]) -> str:
        scheme, userinfo = m.group(1), m.group(2)
        if ":" not in userinfo and not scheme.lower().startswith("http"):
            return m.group(0)
        return scheme

    return _URL_USERINFO.sub(repl, url)


def _redact_url_userinfo(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        scheme, userinfo = m.group(1), m.group(2)
        if ":" not in userinfo and not scheme.lower().startswith("http"):
            return m.group(0)
        return f"{scheme}{REDACTED}@"

    return _URL_USERINFO.sub(repl, text)


def _redact_assignment(m: re.Match[str]) -> str:
    name = m.group("name")
    if not is_secret_name(name):
        return m.group(0)
    head = f"{name}{m.group('q1')}{m.group('sep')}"
    if m.group("quote"):
        quote = m.group("quote")
        if not m.group("quoted"):
            return m.group(0)
        return f"{head}{quote}{REDACTED}{quote}"
    bare = m.group("bare")
    if bare == REDACTED or _CODE_LIKE.search(bare):
        return m.group(0)
    return f"{head}{REDACTED}"


def redact_text(text: str) -> str:
    """``text`` with known token formats, URL credentials and secret-named assignments replaced."""
    if not text:
        return text
    if "PRIVATE KEY-----" in text:
        text = _PEM.sub("-----BEGIN PRIVATE KEY----- " + REDACTED, text)
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    if "://" in text:
        text = _redact_url_userinfo(text)
    return _ASSIGNMENT.sub(_redact_assignment, text)


def _flag_name(arg: str) -> str | None:
    """The name of a ``--flag`` / ``-flag`` argument (without its ``=value``), or None."""
    if not arg.startswith("-") or arg in ("-", "--") or len(arg) < 2 or arg[1].isdigit():
        return None
    return arg.lstrip("-").split("=", 1)[0]


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A copy of ``argv`` that is safe to record.

    ``--api-key X`` / ``--api-key=X`` / ``api_key=X`` (hydra-style overrides, ``+db.password=X`` and
    environment-style ``HF_TOKEN=X`` included) have their value replaced; every element then goes
    through :func:`redact_text` for token formats and URL credentials.
    """
    out: list[str] = []
    redact_next = False
    for arg in argv:
        arg = str(arg)
        name = _flag_name(arg)
        if redact_next:
            redact_next = False
            if name is None:  # `--token --verbose`: a flag follows, so the secret flag had no value
                out.append(REDACTED)
                continue
        if name is not None:
            if is_secret_name(name):
                if "=" in arg:
                    out.append(arg.split("=", 1)[0] + "=" + REDACTED)
                else:
                    out.append(arg)
                    redact_next = True
                continue
        elif "=" in arg:
            key = arg.split("=", 1)[0].lstrip("+~")
            if key and re.fullmatch(r"[\w.\-/]+", key) and is_secret_name(key):
                out.append(arg.split("=", 1)[0] + "=" + REDACTED)
                continue
        out.append(redact_text(arg))
    return out
