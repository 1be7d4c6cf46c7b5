"""The web UI: pages rendered on the server (Jinja2), htmx for partial updates, uPlot for charts.

Served by the tracking server (``labtrack server``, with sign-in) and by ``labtrack ui`` (this machine only,
no sign-in). ``labtrack.ui.app.PAGES`` lists every route with its role; the scripts and styles under
``static/`` are vendored in the wheel, so the UI works without the internet.
"""
