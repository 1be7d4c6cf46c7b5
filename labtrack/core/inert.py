"""Text that cannot act on a terminal: control and invisible formatting characters made visible.

Names, tags, params and notes come from whoever can write to a store. Printed as they are, an ESC or OSC
sequence restyles, relinks or rewrites the reader's terminal, a C1 control (``\\x9b``) does the same on
some terminals, and a bidi override (U+202E) or a zero-width character makes text read as something it is
not. ``visible`` writes each such character as an escape (``\\x1b``, ``\\u202e``); newlines and tabs stay.
``json_inert`` does the same inside JSON text with JSON escapes, so the output stays valid JSON and decodes
to the exact values.
"""

from __future__ import annotations

import re

__all__ = ["json_inert", "visible"]

# C0 controls but tab and newline, DEL, C1 controls; Unicode format characters (Cf: bidi embeddings,
# overrides and isolates, zero-width characters, the BOM, invisible operators, tags) and the line and
# paragraph separators.
_ACTIVE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
    "\ufff9-\ufffb\U000e0000-\U000e007f]"
)
_ACTIVE_IN_JSON = re.compile(  # JSON already escapes C0 controls inside strings
    "[\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes characters outside the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def visible(text: str) -> str:
    """``text`` with every control or invisible formatting character (but newline and tab) escaped."""
    return _ACTIVE.sub(_escape, text) if _ACTIVE.search(text) else text


def json_inert(text: str) -> str:
    """JSON ``text`` with those characters as JSON escapes (they can only occur inside its strings)."""
    return _ACTIVE_IN_JSON.sub(_json_escape, text) if _ACTIVE_IN_JSON.search(text) else text
