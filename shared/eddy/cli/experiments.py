"""``eddy experiments ...``: the backtest runs the model registry has recorded, and :func:`record_experiment`.

An experiment is one run of a backtest: the models it evaluated, the data it
ran on (a dataset's range and offsets, see :func:`eddy.history.dataset.data_range`),
the metrics it measured and where its report is. ``compare`` puts several side
by side and says when their data differ, because then the comparison is not
like for like.

The registry is found as ``eddy models`` finds it (shared/eddy/cli/models.py):
``--url``, else ``EDDY_MODEL_REGISTRY_URL``, else the running stack. Requests
carry ``EDDY_API_KEY``: listing needs a viewer key, recording an operator key.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from eddy.cli import models as cli_models
from eddy.cli.common import CliError, UsageError
from eddy.cli.models import call, registry_options, registry_url
from eddy.cli.options import positive_int
from eddy.core.settings import Settings
from eddy.core.times import local_clock
from eddy.runtime.auth import client_headers

# Leaves of an experiment's ``data`` that say where or when, not which data: ignored when comparing ranges.
NOT_THE_DATA = frozenset({"path", "dir", "output", "created_at", "created_at_ms"})


# -- recording (the backtest command calls this) -------------------------------------------------------


def record_experiment(settings: Settings, doc: Mapping[str, Any], url: str | None = None) -> str | None:
    """Record ``doc`` as an experiment in the model registry; its id, or None when it could not be recorded.

    A backtest's results are in its report whether or not the registry hears of them, so a registry
    that is not running, cannot be reached or refuses the document costs one warning line on stderr,
    not the run.

    Parameters
    ----------
    settings
        Its ``state_dir`` locates the running stack when neither ``url`` nor ``EDDY_MODEL_REGISTRY_URL`` is set.
    doc
        ``stream`` (required), ``models`` (non-empty list of versions like ``default@2`` or spec objects),
        ``data`` (object: the range, e.g. :func:`eddy.history.dataset.data_range` of the dataset's manifest),
        ``metrics`` (object), ``report`` and ``output`` (paths or None), optionally ``id`` (default: a UUID
        the registry assigns), ``title`` and ``created_by`` (default: the user); other keys are kept.
    url
        The registry's URL, if known.

    Returns
    -------
    str | None
        The experiment's id.
    """
    try:
        base = registry_url(url, settings)
    except CliError as exc:
        _not_recorded(str(exc))
        return None
    body = {"created_by": _user(), **doc}
    try:
        with cli_models.make_client(base) as client:
            response = client.post(
                "/api/experiments",
                content=json.dumps(body, default=_jsonable),
                headers={"Content-Type": "application/json", **client_headers()},
            )
    except httpx.HTTPError as exc:
        _not_recorded(f"cannot reach the model registry at {base}: {exc}")
        return None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    if response.status_code >= 400 or "id" not in answer:
        answer.setdefault("error", "the model registry refused it")
        _not_recorded(cli_models.refusal(response.status_code, answer, "the model registry"))
        return None
    return str(answer["id"])


def _not_recorded(reason: str) -> None:
    print(f"eddy: warning: experiment not recorded: {reason}", file=sys.stderr)


def _jsonable(value: Any) -> Any:
    # numpy scalars and the like: their Python value; anything else (paths): its text.
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


# -- shaping documents for people --------------------------------------------------------------------------


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON as ``{"a.b.0.c": leaf}``, so documents compare path by path.

    >>> flatten({"bounds": {"from": 1, "until": None}, "partitions": [{"first_offset": 0}]})
    {'bounds.from': 1, 'bounds.until': None, 'partitions.0.first_offset': 0}
    """
    if isinstance(doc, dict) and doc:
        return {k: v for key, value in doc.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(doc, list) and doc:
        return {k: v for i, value in enumerate(doc) for k, v in flatten(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): doc}


def model_names(models: Sequence[Any]) -> list[str]:
    """How each model of an experiment is shown: a version as it is, an object by its model, key, version or name.

    >>> model_names(["default@2", {"model": "tree@1"}, {"name": "knn", "pipeline": []}, {"x": 1}])
    ['default@2', 'tree@1', 'knn', '{"x": 1}']
    """
    out = []
    for model in models:
        if isinstance(model, dict):
            keys = ("model", "key", "version", "name")
            named = next((model[k] for k in keys if isinstance(model.get(k), str)), None)
            out.append(named or json.dumps(model, sort_keys=True))
        else:
            out.append(str(model))
    return out


def data_differences(experiments: Sequence[Mapping[str, Any]]) -> list[str]:
    """The paths of ``data`` whose values are not the same in every experiment (where and when ignored).

    >>> a = {"data": {"bounds": {"from": 1}, "rows": 10, "path": "/a"}}
    >>> b = {"data": {"bounds": {"from": 2}, "rows": 10, "path": "/b"}}
    >>> data_differences([a, b]), data_differences([a, a])
    (['bounds.from'], [])
    """
    flat = [_range_leaves(e.get("data") or {}) for e in experiments]
    paths = sorted(set().union(*flat))
    return [p for p in paths if len({json.dumps(f.get(p), sort_keys=True) for f in flat}) > 1]


def _range_leaves(data: Mapping[str, Any]) -> dict[str, Any]:
    return {p: v for p, v in flatten(dict(data)).items() if p.rsplit(".", 1)[-1] not in NOT_THE_DATA}


def comparison(experiments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Experiments side by side: models, data and metrics per path, and whether the data are the same."""
    flat_data = [flatten(e.get("data") or {}) for e in experiments]
    flat_metrics = [flatten(e.get("metrics") or {}) for e in experiments]
    differ = data_differences(experiments)
    return {
        "experiments": [e["id"] for e in experiments],
        "titles": [e.get("title", "") for e in experiments],
        "models": [model_names(e.get("models") or []) for e in experiments],
        "same_data": not differ,
        "data_differences": differ,
        "data": {p: [f.get(p) for f in flat_data] for p in sorted(set().union(*flat_data))},
        "metrics": {p: [f.get(p) for f in flat_metrics] for p in sorted(set().union(*flat_metrics))},
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value)


def _metrics_line(metrics: Mapping[str, Any], limit: int = 3) -> str:
    numbers = [
        (p, v) for p, v in flatten(dict(metrics)).items() if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return "  ".join(f"{p} {_cell(v)}" for p, v in numbers[:limit])


# -- commands -------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"stream": args.stream, "limit": args.limit}
    doc = call(args, "GET", "/api/experiments", params=params)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    experiments = doc["experiments"]
    if not experiments:
        print(f"no experiments recorded for {doc['stream']}")
        return 0
    width = max(len("ID"), *(len(e["id"]) for e in experiments))
    print(f"{'ID':<{width}} {'CREATED':<19} {'BY':<12} {'TITLE':<24} {'ROWS':>7}  MODELS / METRICS")
    for e in experiments:
        rows = (e.get("data") or {}).get("rows")
        models = ", ".join(model_names(e.get("models") or []))
        print(
            f"{e['id']:<{width}} {local_clock(e['created_at_ms']):<19} {e['created_by'][:12]:<12} "
            f"{(e['title'] or '-')[:24]:<24} {_cell(rows):>7}  {models}  {_metrics_line(e.get('metrics') or {})}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    doc = call(args, "GET", "/api/experiments/show", params={"id": args.id})
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    shown = {"id", "stream", "title", "created_at_ms", "created_by", "models", "data", "metrics", "report", "output"}
    rows = [
        ("id", doc["id"]),
        ("stream", doc["stream"]),
        ("title", doc["title"] or "-"),
        ("created", f"{local_clock(doc['created_at_ms'])} by {doc['created_by']}"),
        ("models", ", ".join(model_names(doc.get("models") or []))),
        ("report", doc.get("report") or "-"),
        ("output", doc.get("output") or "-"),
    ]
    for name, value in rows:
        print(f"{name:<10} {value}")
    for section in ("data", "metrics"):
        print(section)
        for path, value in flatten(doc.get(section) or {}).items():
            print(f"  {path:<40} {_cell(value)}")
    others = {k: v for k, v in doc.items() if k not in shown}
    if others:
        print("other")
        for key, value in sorted(others.items()):
            print(f"  {key:<40} {_cell(value)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if len(args.ids) < 2:
        raise UsageError("eddy experiments compare ID ID ...: name at least two experiments")
    experiments = [call(args, "GET", "/api/experiments/show", params={"id": i}) for i in args.ids]
    doc = comparison(experiments)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    differ = set(doc["data_differences"])
    table: list[tuple[str, list[str]]] = [
        ("  title", [t or "-" for t in doc["titles"]]),
        ("  models", [", ".join(m) for m in doc["models"]]),
    ]
    table += [(f"{'*' if p in differ else ' '} data.{p}", [_cell(v) for v in vs]) for p, vs in doc["data"].items()]
    table += [(f"  metrics.{p}", [_cell(v) for v in vs]) for p, vs in doc["metrics"].items()]
    label = max(len("  experiment"), *(len(name) for name, _ in table))
    widths = [max(len(i), *(len(cells[n]) for _, cells in table)) for n, i in enumerate(doc["experiments"])]
    for name, cells in [("  experiment", doc["experiments"]), *table]:
        line = f"{name:<{label}}  " + "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))
        print(line.rstrip())
    if differ:
        print(
            f"warning: the data differ ({len(differ)} rows marked *): the experiments did not run on the same "
            "examples, so this is not a like-for-like comparison"
        )
    return 0


# -- parsers ----------------------------------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    """Add ``experiments`` (list, show, compare) to eddy's subcommands."""

    common = registry_options()
    experiments = sub.add_parser("experiments", help="backtest runs recorded in the model registry")
    actions = experiments.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("list", parents=[common], help="a stream's experiments, newest first")
    p.add_argument("stream")
    p.add_argument("--limit", type=positive_int, default=50, help="at most N experiments (default 50)")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser("show", parents=[common], help="one experiment: models, data range, metrics, report")
    p.add_argument("id")
    p.set_defaults(func=cmd_show)

    p = actions.add_parser("compare", parents=[common], help="experiments side by side; flags data ranges that differ")
    p.add_argument("ids", nargs="+", metavar="ID", help="two or more experiment ids")
    p.set_defaults(func=cmd_compare)
