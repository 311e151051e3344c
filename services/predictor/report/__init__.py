"""The report of a change: what was changed, predicted, observed and decided, as one HTML page.

:mod:`.model` holds the report as plain values, :mod:`.gather` fills it through the
services' APIs, and :mod:`.render` draws it with Plotly, its script inlined, so the page
opens without a network. ``cfgclone report`` writes the page to a file; the predictor
serves the same page next to ``/metrics``.
"""
