"""CloudWatch dashboard bodies: widgets as data, laid out in rows, rendered through Fn::Sub."""

from __future__ import annotations

import json

from troposphere import Sub

GRID_WIDTH = 24


def metric_widget(
    title: str,
    metrics: list,
    *,
    stat: str = "Sum",
    period: int,
    width: int = 12,
    height: int = 6,
    label: str | None = None,
    view: str = "timeSeries",
) -> dict:
    """A metric widget; `label` names the left Y axis unit so nobody misreads microseconds."""
    props = {
        "title": title,
        "metrics": metrics,
        "stat": stat,
        "period": period,
        "view": view,
        "region": "${AWS::Region}",
        "stacked": False,
    }
    if label:
        props["yAxis"] = {"left": {"label": label, "showUnits": False}}
    return {"type": "metric", "width": width, "height": height, "properties": props}


def alarm_widget(
    title: str, alarm_arns: list[str], width: int = GRID_WIDTH, height: int = 4
) -> dict:
    return {
        "type": "alarm",
        "width": width,
        "height": height,
        "properties": {"title": title, "alarms": alarm_arns},
    }


def text_widget(markdown: str, width: int = GRID_WIDTH, height: int = 2) -> dict:
    return {"type": "text", "width": width, "height": height, "properties": {"markdown": markdown}}


def layout(widgets: list[dict]) -> list[dict]:
    """Flow widgets left to right into rows of GRID_WIDTH, assigning x/y."""
    x = y = row_height = 0
    placed = []
    for widget in widgets:
        if x + widget["width"] > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append({**widget, "x": x, "y": y})
        x += widget["width"]
        row_height = max(row_height, widget["height"])
    return placed


def body(widgets: list[dict], variables: dict) -> Sub:
    """DashboardBody: deterministic JSON with ${...} references resolved by Fn::Sub."""
    text = json.dumps({"widgets": layout(widgets)}, sort_keys=True, separators=(",", ":"))
    return Sub(text, **variables) if variables else Sub(text)
