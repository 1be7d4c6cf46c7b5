"""The verbs: the Client and everything that works over one store (tracking, sweeps, comparison,
reproduction)."""
