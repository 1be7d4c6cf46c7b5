"""Test support shipped with labtrack: the Store contract suite (``store_contract``)."""
