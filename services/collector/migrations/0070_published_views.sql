-- The collector's read interface in SQL: read-only views that other services' queries
-- may join (the system registry every row of theirs refers to, and how far each
-- series reaches). The tables behind them stay the collector's to write and to change;
-- a view keeps its columns when they change. Samples are read through
-- cfgclone.collector.reads (binary COPY), not through a view.

CREATE VIEW published_systems AS
SELECT id, system_id, hostname, cpu_model, cpu_cores, memory_bytes, disks, os, kernel,
       architecture, labels, created_at, updated_at
FROM systems;

CREATE VIEW published_series AS
SELECT system_id, metric_id, first_ts, last_ts
FROM series;
