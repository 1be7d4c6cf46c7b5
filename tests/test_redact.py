"""Secret redaction: what labtrack records from command lines, env values, remote URLs and diffs."""

from __future__ import annotations

import pytest

from labtrack.core.redact import REDACTED, is_secret_name, redact_argv, redact_text, strip_url_credentials

AWS = "AKIAIOSFODNN7EXAMPLE"
GHP = "ghp_" + "a" * 36
OPENAI = "sk-proj-" + "Ab3" * 10
HF = "hf_" + "x" * 34
SLACK = "xoxb-123456789012-abcdefghijkl"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
LABTRACK = "lt_a1b2c3d4e5_" + "Zx9-_" * 8 + "abc"  # labtrack's own server tokens (core.tokens)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train.py", "--api-key", "abc123"], ["train.py", "--api-key", REDACTED]),
        (["train.py", "--api-key=abc123"], ["train.py", "--api-key=" + REDACTED]),
        (["train.py", "--hf_token", "x"], ["train.py", "--hf_token", REDACTED]),
        (["train.py", "--password", "hunter2", "--lr", "0.1"], ["train.py", "--password", REDACTED, "--lr", "0.1"]),
        (["train.py", "--client-secret=s3"], ["train.py", "--client-secret=" + REDACTED]),
        (["train.py", "password=hunter2"], ["train.py", "password=" + REDACTED]),
        (["train.py", "db.password=hunter2"], ["train.py", "db.password=" + REDACTED]),
        (["train.py", "+wandb.api_key=abc"], ["train.py", "+wandb.api_key=" + REDACTED]),
        (["train.py", "HF_TOKEN=abc"], ["train.py", "HF_TOKEN=" + REDACTED]),
        (["train.py", "--token", "--verbose"], ["train.py", "--token", "--verbose"]),
        (["train.py", "--max-tokens", "512", "--tokenizer", "bpe"], ["train.py", "--max-tokens", "512", "--tokenizer", "bpe"]),
        (["train.py", "--token-file", "/run/secrets/t"], ["train.py", "--token-file", "/run/secrets/t"]),
        (["train.py", "max_new_tokens=20", "lr=0.1"], ["train.py", "max_new_tokens=20", "lr=0.1"]),
        (["train.py", "--db", "postgresql://bob:pw@db/x"], ["train.py", "--db", f"postgresql://{REDACTED}@db/x"]),
        (["train.py", "--header", f"Bearer {GHP}"], ["train.py", "--header", f"Bearer {REDACTED}"]),
        (["train.py", f"--aws={AWS}"], ["train.py", f"--aws={REDACTED}"]),
        (["train.py", "-n", "-1"], ["train.py", "-n", "-1"]),
    ],
    ids=["flag-space", "flag-equals", "underscore-flag", "password-then-more", "client-secret", "key-value",
         "dotted-key", "hydra-append", "env-style", "flag-without-value", "max-tokens-kept", "token-file-kept",
         "tokens-kv-kept", "url-credentials", "github-token-anywhere", "aws-key-in-flag", "negative-number"],
)
def test_redact_argv(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


@pytest.mark.parametrize(
    ("secret",), [(AWS,), (GHP,), ("github_pat_" + "B" * 30,), ("glpat-" + "c" * 20,), (OPENAI,),
                  ("sk-ant-api03-" + "d" * 30,), ("sk_live_" + "e" * 24,), (HF,), (SLACK,),
                  ("AIza" + "f" * 35,), (JWT,), (LABTRACK,)],
    ids=["aws", "github", "github-pat", "gitlab", "openai", "anthropic", "stripe", "huggingface", "slack",
         "google", "jwt", "labtrack"],
)
def test_known_token_formats_are_redacted_anywhere(secret: str) -> None:
    text = f"before {secret} after"
    assert redact_text(text) == f"before {REDACTED} after"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('db_password = "hunter2"', f'db_password = "{REDACTED}"'),
        ("password: hunter2", f"password: {REDACTED}"),
        ('{"api_key": "abc"}', f'{{"api_key": "{REDACTED}"}}'),
        ("export WANDB_API_KEY=0123456789abcdef", f"export WANDB_API_KEY={REDACTED}"),
        ("password = getpass()", "password = getpass()"),
        ("key = cfg.api_key", "key = cfg.api_key"),
        ("tokenizer.pad_token = tokenizer.eos_token", "tokenizer.pad_token = tokenizer.eos_token"),
        ("max_tokens=512", "max_tokens=512"),
        ("git clone https://user:pw@github.com/a/b", f"git clone https://{REDACTED}@github.com/a/b"),
        ("ssh://git@github.com/a/b", "ssh://git@github.com/a/b"),
        ("nothing to see here", "nothing to see here"),
        ("Authorization: Bearer abc123.def-456_ghi", f"Authorization: Bearer {REDACTED}"),
        ('curl -H "authorization: bearer opaque0token99"', f'curl -H "authorization: bearer {REDACTED}"'),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: Basic {REDACTED}"),
        ("bearer of bad news", "bearer of bad news"),
    ],
    ids=["quoted-assignment", "yaml", "json", "env-export", "code-call-kept", "attribute-kept", "pad-token-kept",
         "max-tokens-kept", "url", "ssh-user-kept", "plain", "bearer-header", "bearer-in-curl", "basic-header",
         "bearer-prose-kept"],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_private_key_blocks_are_removed_even_when_cut_off() -> None:
    block = "+-----BEGIN OPENSSH PRIVATE KEY-----\n+b3BlbnNzaC1rZXktdjEAAAA\n+-----END OPENSSH PRIVATE KEY-----\n"
    out = redact_text("context\n" + block + "after\n")
    assert "b3BlbnNzaC1rZXktdjEAAAA" not in out and "after" in out and "context" in out
    cut = redact_text("x\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n")
    assert "MIIEowIBAAKCAQEA" not in cut


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:s3cret@github.com/acme/repo.git", "https://github.com/acme/repo.git"),
        (f"https://{GHP}@github.com/acme/repo.git", "https://github.com/acme/repo.git"),
        ("https://github.com/acme/repo.git", "https://github.com/acme/repo.git"),
        ("ssh://git@github.com/acme/repo.git", "ssh://git@github.com/acme/repo.git"),
        ("ssh://git:pw@host/repo.git", "ssh://host/repo.git"),
        ("git@github.com:acme/repo.git", "git@github.com:acme/repo.git"),
    ],
    ids=["user-password", "token-as-user", "no-credentials", "ssh-user-kept", "ssh-password", "scp-like"],
)
def test_strip_url_credentials(url: str, expected: str) -> None:
    assert strip_url_credentials(url) == expected


@pytest.mark.parametrize(
    ("name", "secret"),
    [("--api-key", True), ("HF_TOKEN", True), ("db.password", True), ("aws_secret_access_key", True),
     ("AWS_SECRET_ACCESS_KEY", True), ("--private-key", True), ("passphrase", True), ("auth", True),
     ("max_tokens", False), ("tokenizer", False), ("token_file", False), ("key", False), ("lr", False),
     ("monkey", False), ("sort_key", False)],
)
def test_is_secret_name(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret
