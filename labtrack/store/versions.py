"""Order-preserving text keys for versions, so SQL can compare ``env.packages.torch >= '2.1'``.

``version_key`` turns a PEP 440 version into a string whose plain (bytewise) order is the version
order that ``packaging.version`` defines for public versions: the release padded to fixed width, then
pre-, post- and dev-release markers. The local label (``+cu121``) is left out, as pip's specifiers do:
``>= '2.1'`` and ``= '2.1.0'`` both match ``2.1.0+cu121``; compare the text to tell local builds apart.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

__all__ = ["version_key"]

_PRE = {"a": "1", "b": "2", "rc": "3"}


def version_key(text: str) -> str | None:
    """The sortable key of a version string, or None if it is not a version."""
    try:
        v = Version(text)
    except (InvalidVersion, TypeError):
        return None
    release = list(v.release[:6]) + [0] * (6 - min(len(v.release), 6))
    parts = [f"{v.epoch:04d}", *(f"{n:08d}" for n in release)]
    # dev < pre (a < b < rc) < final < post; a dev release of a pre-release sorts before that pre-release.
    if v.pre is not None:
        parts.append(_PRE[v.pre[0]] + f"{v.pre[1]:08d}")
    elif v.dev is not None and v.post is None:
        parts.append("0")
    else:
        parts.append("5")
    parts.append(f"6{v.post:08d}" if v.post is not None else "5")
    parts.append(f"0{v.dev:08d}" if v.dev is not None else "5")
    return ".".join(parts)
