"""The tracking server (``labtrack server``): the JSON API over a store, for a team. Needs the ``server``
extra (FastAPI, uvicorn)."""
