"""Declared inputs of a run (``inputs={"train": "data/train.csv"}``), hashed by content for the run key.

A file is hashed with sha256; a directory by the sorted (relative path, file hash) pairs of every file
below it. Hashes are cached by each file's stat (device, inode, size, mtime), so checking an unchanged
input again costs a ``stat``, not a read — within a process; a new process reads each input once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from labtrack.core.errors import InvalidInput
from labtrack.core.validation import check_key
from labtrack.env.files import sha256_file

__all__ = ["hash_inputs"]


def _hash_path(name: str, location: str | os.PathLike[str]) -> str:
    path = Path(location)
    if path.is_file():
        digest = sha256_file(str(path.resolve()))
        if digest is None:
            raise InvalidInput(f"input {name!r}: cannot read {path}", field=f"inputs[{name!r}]")
        return digest
    if path.is_dir():
        listing = hashlib.sha256()
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for filename in sorted(filenames):
                file = Path(dirpath, filename)
                digest = sha256_file(str(file.resolve())) or "unreadable"
                listing.update(f"{file.relative_to(path).as_posix()}\0{digest}\n".encode())
        return "dir:" + listing.hexdigest()
    raise InvalidInput(
        f"input {name!r}: {os.fspath(location)!r} is not an existing file or directory", field=f"inputs[{name!r}]"
    )


def hash_inputs(inputs: Mapping[str, str | os.PathLike[str]]) -> dict[str, str]:
    """name -> content hash for every declared input."""
    if not isinstance(inputs, Mapping):
        raise InvalidInput(f"inputs must be a dict of name -> path, got {type(inputs).__name__}", field="inputs")
    return {check_key(name, "input name"): _hash_path(name, location) for name, location in inputs.items()}
