#!/usr/bin/env python3
"""Write the Grafana dashboards of deploy/grafana/dashboards/ from the definitions here.

    .venv/bin/python scripts/grafana_dashboards.py          # rewrite the JSON files
    .venv/bin/python scripts/grafana_dashboards.py --check  # exit 1 if they are stale

Panels read the suite's PostgreSQL/TimescaleDB (datasource uid ``cfgclone-db``) and
Prometheus (uid ``cfgclone-prometheus``), both provisioned by
deploy/grafana/provisioning/. KPI names come from the data (the ``metrics`` table), never
from this file, so renamed metrics need no change here. Grafana's macros:
``$__timeFilter(column)``, ``$__interval_ms``; variables ``$system`` (one) and ``$kpi``
(several, quoted by Grafana).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
DB = {"type": "grafana-postgresql-datasource", "uid": "cfgclone-db"}
PROMETHEUS = {"type": "prometheus", "uid": "cfgclone-prometheus"}
SCHEMA_VERSION = 39

Panel = dict[str, Any]


def sql(raw: str, ref: str = "A", table: bool = False) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": DB,
        "editorMode": "code",
        "format": "table" if table else "time_series",
        "rawQuery": True,
        "rawSql": " ".join(raw.split()),
    }


def promql(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    *,
    unit: str = "",
    description: str = "",
) -> Panel:
    x, y, w, h = grid
    found: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": {},
    }
    return found


def dashboard(
    uid: str,
    title: str,
    panels: list[Panel],
    *,
    variables: list[dict[str, Any]] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    time_from: str = "now-6h",
) -> dict[str, Any]:
    for ident, item in enumerate(panels, start=1):
        item["id"] = ident
    return {
        "uid": uid,
        "title": title,
        "tags": ["cfgclone"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": time_from, "to": "now"},
        "refresh": "1m",
        "templating": {"list": variables or []},
        "annotations": {"list": annotations or []},
        "panels": panels,
    }


def query_variable(name: str, label: str, query: str, *, multi: bool = False) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DB,
        "query": " ".join(query.split()),
        "refresh": 2,
        "multi": multi,
        "includeAll": multi,
        "sort": 1,
    }


LAST_SAMPLE = """
SELECT s.system_id AS system, s.labels ->> 'role' AS role, s.cpu_cores AS cores,
       max(r.last_ts) AS last_sample, extract(epoch FROM now() - max(r.last_ts)) AS age_s,
       count(r.metric_id) AS metrics,
       (SELECT max(f.updated_at) FROM fingerprints f WHERE f.system_id = s.id) AS fingerprint
FROM systems s LEFT JOIN series r ON r.system_id = s.id
GROUP BY s.id ORDER BY age_s DESC NULLS FIRST
"""


def fleet() -> dict[str, Any]:
    return dashboard(
        "cfgclone-fleet",
        "cfgclone: the fleet",
        [
            panel(
                "stat",
                "Systems",
                [sql("SELECT count(*) AS systems FROM systems", table=True)],
                (0, 0, 4, 4),
            ),
            panel(
                "stat",
                "Systems without samples in the last 5 minutes",
                [
                    sql(
                        """SELECT count(*) AS stale FROM systems s WHERE NOT EXISTS (
                        SELECT 1 FROM series r WHERE r.system_id = s.id
                        AND r.last_ts > now() - interval '5 minutes')""",
                        table=True,
                    )
                ],
                (4, 0, 5, 4),
            ),
            panel(
                "stat",
                "Systems with a fingerprint",
                [
                    sql(
                        "SELECT count(DISTINCT system_id) AS fingerprinted FROM fingerprints",
                        table=True,
                    )
                ],
                (9, 0, 5, 4),
            ),
            panel(
                "piechart",
                "Systems by role",
                [
                    sql(
                        """SELECT coalesce(labels ->> 'role', '(none)') AS role, count(*) AS systems
                        FROM systems GROUP BY 1 ORDER BY 1""",
                        table=True,
                    )
                ],
                (14, 0, 10, 8),
                description="Systems by their role label; cfgclone cohorts and report fleet "
                "group them by behaviour.",
            ),
            panel(
                "table",
                "Freshness of each system's data",
                [sql(LAST_SAMPLE, table=True)],
                (0, 4, 14, 12),
                description="Newest sample of any metric, its age in seconds, and when the "
                "fingerprint was last built or refined.",
            ),
            panel(
                "timeseries",
                "Samples stored",
                [
                    sql(
                        """SELECT date_bin($__interval_ms * interval '1 millisecond', received_at,
                        timestamptz '2000-01-01') AS time, sum(samples) AS samples
                        FROM ingested_batches WHERE $__timeFilter(received_at)
                        GROUP BY 1 ORDER BY 1"""
                    )
                ],
                (14, 8, 10, 8),
            ),
        ],
    )


def system() -> dict[str, Any]:
    change_annotation = {
        "name": "Configuration changes",
        "enable": True,
        "iconColor": "orange",
        "datasource": DB,
        "target": sql(
            """SELECT c.created_at AS time, c.updated_at AS timeend,
            'change ' || c.id || ' (' || st.name || '): ' || c.state_reason AS text,
            st.name AS tags
            FROM changes c JOIN systems s ON s.id = c.system_id
            JOIN change_states st ON st.state = c.state
            WHERE s.system_id = '$system' AND $__timeFilter(c.created_at)""",
            table=True,
        ),
    }
    return dashboard(
        "cfgclone-system",
        "cfgclone: one system",
        [
            panel(
                "timeseries",
                "KPIs over time",
                [
                    sql(
                        """SELECT date_bin($__interval_ms * interval '1 millisecond', x.ts,
                        timestamptz '2000-01-01') AS time, m.name AS metric, avg(x.value) AS value
                        FROM samples x JOIN metrics m ON m.id = x.metric_id
                        JOIN systems s ON s.id = x.system_id
                        WHERE s.system_id = '$system' AND m.name IN ($kpi)
                        AND $__timeFilter(x.ts) GROUP BY 1, 2 ORDER BY 1"""
                    )
                ],
                (0, 0, 24, 10),
                description="Changes of the configuration are the annotations.",
            ),
            panel(
                "table",
                "Configuration versions",
                [
                    sql(
                        """SELECT c.version, c.kind, c.author, c.created_at, c.applied_at,
                        c.content::text AS content FROM configurations c
                        JOIN systems s ON s.id = c.system_id WHERE s.system_id = '$system'
                        ORDER BY c.version DESC""",
                        table=True,
                    )
                ],
                (0, 10, 12, 9),
            ),
            panel(
                "table",
                "Fingerprints (regimes of the load)",
                [
                    sql(
                        """SELECT f.id, f.configuration_version AS configuration, f.load_metric,
                        f.window_start, f.window_end, f.model_version,
                        cardinality(f.embedding) AS embedding_size, f.updated_at
                        FROM fingerprints f JOIN systems s ON s.id = f.system_id
                        WHERE s.system_id = '$system' ORDER BY f.updated_at DESC""",
                        table=True,
                    )
                ],
                (12, 10, 12, 9),
                description="`cfgclone fingerprint show` prints the regimes of the newest.",
            ),
        ],
        variables=[
            query_variable("system", "System", "SELECT system_id FROM systems ORDER BY 1"),
            query_variable(
                "kpi",
                "KPI",
                """SELECT m.name FROM series r JOIN metrics m ON m.id = r.metric_id
                JOIN systems s ON s.id = r.system_id WHERE s.system_id = '$system'
                ORDER BY 1""",
                multi=True,
            ),
        ],
        annotations=[change_annotation],
    )


def changes() -> dict[str, Any]:
    return dashboard(
        "cfgclone-changes",
        "cfgclone: changes and rollbacks",
        [
            panel(
                "piechart",
                "Changes by outcome",
                [
                    sql(
                        """SELECT st.name AS outcome, count(*) AS changes FROM changes c
                        JOIN change_states st ON st.state = c.state
                        WHERE $__timeFilter(c.created_at) GROUP BY 1 ORDER BY 1""",
                        table=True,
                    )
                ],
                (0, 0, 8, 8),
            ),
            panel(
                "piechart",
                "Refusals and rollbacks by reason",
                [
                    sql(
                        """SELECT rr.name AS reason, count(*) AS rollbacks FROM rollbacks r
                        JOIN rollback_reasons rr ON rr.reason = r.reason
                        WHERE $__timeFilter(r.created_at) GROUP BY 1 ORDER BY 1""",
                        table=True,
                    )
                ],
                (8, 0, 8, 8),
                description="predicted_negative: incidents prevented before they landed.",
            ),
            panel(
                "timeseries",
                "Changes over time, by outcome",
                [
                    sql(
                        """SELECT date_bin($__interval_ms * interval '1 millisecond', c.created_at,
                        timestamptz '2000-01-01') AS time, st.name AS metric, count(*) AS value
                        FROM changes c JOIN change_states st ON st.state = c.state
                        WHERE $__timeFilter(c.created_at) GROUP BY 1, 2 ORDER BY 1"""
                    )
                ],
                (16, 0, 8, 8),
            ),
            panel(
                "table",
                "Changes",
                [
                    sql(
                        """SELECT c.created_at AS proposed, s.system_id AS system, c.id AS change,
                        st.name AS state, c.requested_by, c.override ->> 'actor' AS decided_by,
                        c.dry_run, c.state_reason AS why
                        FROM changes c JOIN systems s ON s.id = c.system_id
                        JOIN change_states st ON st.state = c.state
                        WHERE $__timeFilter(c.created_at) ORDER BY c.created_at DESC""",
                        table=True,
                    )
                ],
                (0, 8, 24, 9),
                description="`cfgclone report systems/<system>/changes/<change>` shows one "
                "with its evidence.",
            ),
            panel(
                "table",
                "Refusals and rollbacks with their evidence",
                [
                    sql(
                        """SELECT r.created_at AS time, s.system_id AS system,
                        r.change_id AS change, rr.name AS reason, r.requested_by,
                        r.explanation AS evidence
                        FROM rollbacks r JOIN systems s ON s.id = r.system_id
                        JOIN rollback_reasons rr ON rr.reason = r.reason
                        WHERE $__timeFilter(r.created_at) ORDER BY r.created_at DESC""",
                        table=True,
                    )
                ],
                (0, 17, 24, 9),
            ),
        ],
        time_from="now-7d",
    )


def health() -> dict[str, Any]:
    by_service = "sum by (grpc_service)"
    return dashboard(
        "cfgclone-health",
        "cfgclone: the suite's own health",
        [
            panel(
                "timeseries",
                "Calls per second, by service",
                [
                    promql(
                        f"{by_service} (rate(grpc_server_handled_total[$__rate_interval]))",
                        "{{grpc_service}}",
                    )
                ],
                (0, 0, 12, 8),
                unit="reqps",
            ),
            panel(
                "timeseries",
                "Errors per second, by service and code",
                [
                    promql(
                        "sum by (grpc_service, grpc_code) "
                        '(rate(grpc_server_handled_total{grpc_code!="OK"}[$__rate_interval]))',
                        "{{grpc_service}} {{grpc_code}}",
                    )
                ],
                (12, 0, 12, 8),
                unit="reqps",
            ),
            panel(
                "timeseries",
                "p95 latency, by method",
                [
                    promql(
                        "histogram_quantile(0.95, sum by (grpc_method, le) "
                        "(rate(grpc_server_handling_seconds_bucket[$__rate_interval])))",
                        "{{grpc_method}}",
                    )
                ],
                (0, 8, 12, 8),
                unit="s",
            ),
            panel(
                "timeseries",
                "Samples stored and refused per second",
                [
                    promql(
                        "sum(rate(cfgclone_samples_ingested_total[$__rate_interval]))", "stored"
                    ),
                    promql(
                        "sum(rate(cfgclone_samples_refused_total[$__rate_interval]))",
                        "refused",
                        "B",
                    ),
                ],
                (12, 8, 12, 8),
            ),
            panel(
                "timeseries",
                "Predictions, changes and rollbacks",
                [
                    promql(
                        "sum by (verdict) (increase(cfgclone_predictions_total[$__range]))",
                        "predicted {{verdict}}",
                    ),
                    promql(
                        "sum by (outcome) (increase(cfgclone_changes_total[$__range]))",
                        "{{outcome}}",
                        "B",
                    ),
                    promql(
                        "sum by (reason) (increase(cfgclone_rollbacks_total[$__range]))",
                        "rollback: {{reason}}",
                        "C",
                    ),
                ],
                (0, 16, 12, 8),
            ),
            panel(
                "timeseries",
                "Fingerprints built, and agents' spool depth",
                [
                    promql(
                        "sum by (how) (rate(cfgclone_fingerprints_built_total[$__rate_interval]))",
                        "fingerprints {{how}}",
                    ),
                    promql("sum by (instance) (cfgclone_agent_spool_batches)", "{{instance}}", "B"),
                ],
                (12, 16, 12, 8),
            ),
        ],
        time_from="now-1h",
    )


DASHBOARDS = {"fleet": fleet, "system": system, "changes": changes, "health": health}


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{name}.json": json.dumps(build(), indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    stale = []
    for name, text in rendered().items():
        path = OUT / name
        if "--check" in argv:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}; run scripts/grafana_dashboards.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
