"""``labtrack.sklearn``: scikit-learn autologging (``autolog``, ``log_eval``, ``load_model``).

The implementation is ``labtrack.integrations.sklearn``; this module is the short name the docs use::

    import labtrack.sklearn
    labtrack.sklearn.autolog()
"""

from __future__ import annotations

from labtrack.integrations.sklearn import MODEL_FILES, autolog, load_model, log_eval

__all__ = ["MODEL_FILES", "autolog", "load_model", "log_eval"]
