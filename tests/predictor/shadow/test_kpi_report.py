"""Reading a shadow script's report: JSON or Prometheus text in the metric vocabulary."""

from __future__ import annotations

import pytest

from cfgclone.predictor.shadow import ShadowFailed, parse_kpi_report


def test_a_json_report_gives_the_samples_of_each_series_in_order() -> None:
    report = parse_kpi_report(
        '{"samples": {"db.client.operation.duration": [0.002, 0.003], '
        '"system.cpu.utilization": 0.4}}'
    )
    assert report == {
        "db.client.operation.duration": (0.002, 0.003),
        "system.cpu.utilization": (0.4,),
    }


def test_prometheus_text_keeps_dotted_names_and_sorts_labels_into_the_series() -> None:
    report = parse_kpi_report(
        "# TYPE postgresql_commits gauge\n"
        "postgresql_commits 118 1764690000000\n"
        "postgresql_commits 121 1764690001000\n"
        '{"db.client.operation.duration",quantile="0.95",side="x"} 0.004\n'
        '{"db.client.operation.duration",side="x",quantile="0.95"} 0.005\n'
    )
    assert report["postgresql_commits"] == (118.0, 121.0)
    assert report['db.client.operation.duration{quantile="0.95",side="x"}'] == (0.004, 0.005)


def test_non_finite_values_are_missing_samples_not_numbers() -> None:
    report = parse_kpi_report('{"samples": {"system.cpu.utilization": [0.5, NaN, Infinity]}}')
    assert report == {"system.cpu.utilization": (0.5,)}


@pytest.mark.parametrize(
    ("printed", "reason"),
    [
        ("", "printed no KPIs"),
        ("<html>500 Internal Server Error</html>", "neither JSON nor Prometheus text"),
        ('{"kpis": [1, 2]}', 'no "samples" object'),
        ('{"samples": {"system.cpu.utilization": ["high"]}}', "'high' for system.cpu.utilization"),
        ('{"samples": {}}', "no samples"),
    ],
)
def test_a_report_that_is_not_kpis_is_refused_with_the_reason(printed: str, reason: str) -> None:
    with pytest.raises(ShadowFailed) as refused:
        parse_kpi_report(printed)
    assert reason in str(refused.value)
