"""cfgclone collector: where every sample arrives, is kept and is read back.

The collector service (``main``, ``servicer``) ingests columnar sample batches
(``sample_columns`` checks them, ``copy_format`` and ``ingest`` store them by
binary COPY, idempotently by batch id), serves raw and downsampled series
(``timeseries``), keeps daily partitions and retention (``retention``), and
scrapes Prometheus endpoints for machines without an agent (``scrape_targets``,
``scraper``).

The agent (``cfgclone agent``, the ``agent_*`` modules) samples a machine and
streams to the collector through an on-disk spool. Senders share ``batching``,
``host_metrics``, ``prometheus_text`` and ``http_fetch``, which stay free of
numpy and the database driver so the agent stays small.

Nothing is imported here: importing the package must not load numpy or psycopg
into the agent; import the module that holds what you need.
"""
