"""Readable run names (``brave-otter-7``): what a person can say and remember, given to every run that
was not named, and accepted wherever a run id is.

The name follows from the run id (a uuid4), so it costs nothing to store twice and is the same wherever
it is computed; 64 adjectives × 64 animals × 1000 numbers make a repeat within one experiment rare, and a
name that does match several runs is refused as ambiguous, naming their ids.
"""

from __future__ import annotations

__all__ = ["ADJECTIVES", "NOUNS", "id_prefix", "run_name"]

_HEX = frozenset("0123456789abcdef")

ADJECTIVES = (
    "able", "amber", "ample", "azure", "bold", "brave", "brisk", "calm", "civic", "clever", "cosmic", "crisp",
    "dapper", "deft", "eager", "early", "fair", "fancy", "fleet", "fond", "frank", "gentle", "glad", "golden",
    "grand", "happy", "hardy", "honest", "jolly", "keen", "kind", "lively", "lucid", "lucky", "merry", "mellow",
    "mighty", "nimble", "noble", "patient", "plucky", "polite", "proud", "quick", "quiet", "rapid", "ready",
    "rosy", "royal", "sage", "shiny", "silent", "sleek", "smart", "snowy", "solid", "spry", "steady", "sunny",
    "swift", "tidy", "vivid", "warm", "witty",
)
NOUNS = (
    "otter", "heron", "lynx", "panda", "falcon", "badger", "beaver", "bison", "camel", "cobra", "condor",
    "crane", "dingo", "dolphin", "eagle", "egret", "ferret", "finch", "gazelle", "gecko", "gibbon", "goose",
    "hare", "hawk", "hedgehog", "ibis", "iguana", "jackal", "jaguar", "kestrel", "koala", "lemur", "llama",
    "magpie", "marmot", "marten", "mink", "moose", "narwhal", "newt", "ocelot", "oriole", "osprey", "owl",
    "parrot", "pelican", "penguin", "puffin", "quail", "raven", "robin", "salmon", "seal", "shrike", "sparrow",
    "stork", "swan", "tapir", "tern", "toucan", "turtle", "walrus", "wombat", "zebra",
)


def run_name(run_id: str) -> str:
    """The readable name of a run without one given: ``<adjective>-<animal>-<number>``, from its id."""
    value = int(run_id[:12], 16)
    return f"{ADJECTIVES[value % 64]}-{NOUNS[(value >> 6) % 64]}-{(value >> 12) % 1000}"


def id_prefix(text: str) -> str | None:
    """``text`` as the start of a run id (32 lowercase hex characters), or None when it cannot be one."""
    prefix = text.strip().lower()
    return prefix if 0 < len(prefix) <= 32 and _HEX.issuperset(prefix) else None
