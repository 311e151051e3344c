-- Prometheus endpoints the collector scrapes for systems without an agent.

-- name: system_key
SELECT id FROM systems WHERE system_id = %(system_id)s;

-- name: insert_target
INSERT INTO scrape_targets (system_id, url, interval_seconds, metric_prefixes)
VALUES (%(system)s, %(url)s, %(interval_seconds)s, %(prefixes)s)
ON CONFLICT (system_id, url) DO NOTHING
RETURNING id, %(system_id)s::text, url, interval_seconds, metric_prefixes, last_error,
          last_scrape_at;

-- name: list_targets
SELECT t.id, s.system_id, t.url, t.interval_seconds, t.metric_prefixes, t.last_error,
       t.last_scrape_at
FROM scrape_targets t
JOIN systems s ON s.id = t.system_id
WHERE %(system_id)s::text IS NULL OR s.system_id = %(system_id)s::text
ORDER BY s.system_id, t.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: delete_target
DELETE FROM scrape_targets t
USING systems s
WHERE t.id = %(id)s AND s.id = t.system_id AND s.system_id = %(system_id)s
RETURNING t.id;

-- name: all_targets
SELECT t.id, s.system_id, t.url, t.interval_seconds, t.metric_prefixes
FROM scrape_targets t
JOIN systems s ON s.id = t.system_id
ORDER BY t.id;

-- name: record_scrape
UPDATE scrape_targets
SET last_error = %(error)s, last_scrape_at = %(scraped_at)s
WHERE id = %(id)s;

-- name: scrape_batch_secret
SELECT secret FROM collector_secrets WHERE name = 'scrape_batch_ids';
