"""The views of a study's runs that sweep keeps on its MLflow experiment.

MLflow 3's UI opens a shared view from a link (``?viewStateShareKey=KEY``), reading the JSON
in the experiment tag ``mlflow.sharedViewState.KEY``: the search facets (filter, order) and
the UI state, which includes the chart cards and their sections (keys read from MLflow
3.17's bundle: ``selectedColumns``, ``compareRunCharts``, ``compareRunSections``, ...). With
``compareRunsMode=CHART`` in the link, the runs list sits beside the charts.

Three views: ``sweep``, every search trial; ``sweep-front``, the trials on the Pareto front;
``sweep-final``, the final stage's trainings (``sweep finalize``) grouped by the search trial
they train again, each architecture's row and point the mean over its seeds. Each opens on a
scatter of ``best_val_acc`` against ``params``, with MLflow's own per-metric charts folded
away below it.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

VIEW_PREFIX = "mlflow.sharedViewState."
# sweep ui's page that opens a route in Model training and has the browser remember it
# (sweep.track.ui_app).
OPEN_PATH = "/sweep/open"
STUDY_VIEW, FRONT_VIEW, FINAL_VIEW = "sweep", "sweep-front", "sweep-final"
_SECTION = "sweep-accuracy-vs-parameters"
# The study's own trials: not its parent run (whose headline repeats the best trial's
# numbers) nor the final stage's trainings.
SEARCH_TRIALS = "tags.`sweep.role` = 'trial' AND tags.`stage` = 'search'"
FINAL_TRAININGS = "tags.`sweep.role` = 'trial' AND tags.`stage` = 'final'"

_SCATTER = {
    "uuid": "sweep-scatter",
    "type": "SCATTER",
    "displayName": "best_val_acc vs params",
    "metricSectionId": _SECTION,
    "runsCountToCompare": 1000,
    "deleted": False,
    "isGenerated": False,
    "xaxis": {"key": "params", "type": "METRIC"},
    "yaxis": {"key": "best_val_acc", "type": "METRIC"},
}
_SECTIONS = [
    # One card a row, taller than MLflow's default (3 a row, 360 px).
    {
        "uuid": _SECTION,
        "name": "Accuracy vs parameters",
        "display": True,
        "isReordered": False,
        "deleted": False,
        "isGenerated": False,
        "columns": 1,
        "cardHeight": 480,
    },
    # MLflow adds a chart per metric into these (by name): folded.
    *(
        {
            "uuid": f"sweep-{name.split()[0].lower()}",
            "name": name,
            "display": False,
            "isReordered": False,
            "deleted": False,
            "isGenerated": True,
        }
        for name in ("Model metrics", "System metrics")
    ),
]
_COLUMNS = [
    "metrics.`best_val_acc`",
    "metrics.`params`",
    "metrics.`macs`",
    "params.`student.family`",
    "tags.`state`",
    "tags.`pareto`",
    "attributes.`Duration`",
]
_CHARTS = {"compareRunCharts": [_SCATTER], "compareRunSections": _SECTIONS}

VIEWS: dict[str, dict[str, Any]] = {
    # Trials by accuracy, with the columns that answer "what did the study find".
    STUDY_VIEW: {
        "searchFilter": SEARCH_TRIALS,
        "orderByKey": "metrics.`best_val_acc`",
        "orderByAsc": False,
        "selectedColumns": _COLUMNS,
        **_CHARTS,
    },
    # The front, smallest first: each member is the most accurate model up to its size.
    FRONT_VIEW: {
        "searchFilter": f"{SEARCH_TRIALS} AND tags.`pareto` = 'true'",
        "orderByKey": "metrics.`params`",
        "orderByAsc": True,
        "selectedColumns": _COLUMNS,
        **_CHARTS,
    },
    # Each finalized architecture: its finished trainings, grouped by the search trial,
    # averaged (MLflow's group-by; the spread is in the parent's final_front.csv).
    FINAL_VIEW: {
        "searchFilter": f"{FINAL_TRAININGS} AND attributes.status = 'FINISHED'",
        "orderByKey": "metrics.`best_val_acc`",
        "orderByAsc": False,
        "selectedColumns": [*_COLUMNS[:4], "tags.`source_trial`", "tags.`seed`"],
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": "source_trial"}],
        },
        **_CHARTS,
    },
}


def view_route(experiment_id: str, view: str = STUDY_VIEW) -> str:
    """The UI route of a study's view: model training pages (not MLflow 3's GenAI ones),
    the runs beside their charts."""
    return (
        f"/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={view}&compareRunsMode=CHART"
    )


def view_link(ui_url: str, route: str) -> str:
    """The UI's own address of ``route`` (a tracking server that serves MLflow alone)."""
    return f"{ui_url.rstrip('/')}/#{route}"


def open_link(ui_url: str, route: str) -> str:
    """The address on ``sweep ui``'s server that opens ``route`` in Model training,
    remembered for the browser's next clicks (:mod:`sweep.track.ui_app`)."""
    return f"{ui_url.rstrip('/')}{OPEN_PATH}?{urllib.parse.urlencode({'to': route})}"
