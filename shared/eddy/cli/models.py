"""``eddy models ...`` and ``eddy retrain``: the model registry's REST API from the command line.

The registry is found at ``--url``, else ``EDDY_MODEL_REGISTRY_URL``, else the
running ``eddy up`` stack's ``stack.json``. Tables for people by default,
``--json`` for scripts. Every request carries ``EDDY_API_KEY`` (as ``X-API-Key``)
when it is set: reads need a viewer key, changes an operator key (eddy.runtime.auth).
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

import httpx

from eddy.cli import production as cli_production
from eddy.cli.common import CliError, cli_settings
from eddy.cli.options import model_version
from eddy.core.settings import Settings
from eddy.core.times import local_clock
from eddy.runtime.auth import CLIENT_KEY_ENV, client_headers

URL_ENV = "EDDY_MODEL_REGISTRY_URL"
SERVICE = "model_registry"
TIMEOUT_S = 10.0


def make_client(url: str) -> httpx.Client:
    """The HTTP client the commands use (tests replace it with one on a mock transport)."""
    return httpx.Client(base_url=url, timeout=TIMEOUT_S)


def registry_url(explicit: str | None, settings: Settings | None = None) -> str:
    """``--url``, else the environment, else the registry of the stack running from ``settings.state_dir``."""
    if explicit:
        return explicit.rstrip("/")
    if configured := cli_settings().model_registry_url:
        return configured.rstrip("/")
    from eddy.stack.up import pid_alive, read_stack

    settings = settings or Settings.from_env()
    stack = read_stack(settings.state_dir)
    if stack and pid_alive(stack.get("supervisor_pid")):
        url = (stack.get("services", {}).get(SERVICE) or {}).get("url")
        if url:
            return str(url).rstrip("/")
    raise CliError(
        f"cannot find the model registry: no running stack in {settings.state_dir}; "
        f"start one with `eddy up`, or pass --url or set {URL_ENV}"
    )


def call(args: argparse.Namespace, method: str, path: str, **kw: Any) -> dict[str, Any]:
    """One request; an error answer becomes a one-line :class:`CliError` with the registry's message."""
    return request(registry_url(args.url), method, path, **kw)


def request(url: str, method: str, path: str, **kw: Any) -> dict[str, Any]:
    """One request to the registry at ``url``, with the API key; its JSON, or a one-line :class:`CliError`."""
    headers = {**client_headers(), **kw.pop("headers", {})}
    try:
        with make_client(url) as client:
            response = client.request(method, path, headers=headers, **kw)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the model registry at {url}: {exc}") from exc
    try:
        doc: dict[str, Any] = response.json()
    except ValueError as exc:
        raise CliError(f"the model registry answered {response.status_code} without JSON") from exc
    if response.status_code >= 400:
        raise CliError(refusal(response.status_code, doc, "the model registry"))
    return doc


def refusal(status: int, doc: Any, service: str) -> str:
    """The one line for an error answer of ``service``; for 401 and 403, what to do about the API key.

    >>> refusal(403, {"error": "the viewer role may not POST /api/retrain"}, "the model registry")
    'the viewer role may not POST /api/retrain (HTTP 403: EDDY_API_KEY needs another role)'
    """
    message = doc.get("error", "request failed") if isinstance(doc, dict) else "request failed"
    if status == 401:
        hint = f"{CLIENT_KEY_ENV} is not a key {service} knows" if client_headers() else f"set {CLIENT_KEY_ENV}"
        return f"{message} (HTTP 401: {hint})"
    if status == 403:
        return f"{message} (HTTP 403: {CLIENT_KEY_ENV} needs another role)"
    return f"{message} (HTTP {status})"


def record_audit(stream: str, action: str, details: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """Record an operator action done outside the registry (``eddy dlq replay``) in its audit log.

    Raises
    ------
    CliError
        If the registry cannot be found or reached, or refuses the entry (an API key that is not an operator's).
    """
    body = {"stream": stream, "action": action, "actor": _actor(), "details": details}
    content = json.dumps(body, default=str).encode()
    return request(
        registry_url(url), "POST", "/api/audit", content=content, headers={"Content-Type": "application/json"}
    )


def live_roles(url: str, streams: list[str]) -> dict[str, dict[str, Any]]:
    """Each stream's champion, challenger and canary share as the registry at ``url`` has them now.

    A stream the registry cannot answer for gets ``{"error": ...}`` instead; once the registry cannot be
    reached, the remaining streams get the same error without another wait. Every entry says its ``source``.
    """
    out: dict[str, dict[str, Any]] = {}
    unreachable: str | None = None
    for stream in streams:
        source = {"source": f"the model registry at {url}"}
        if unreachable is not None:
            out[stream] = {**source, "error": unreachable}
            continue
        try:
            doc = request(url, "GET", "/api/models", params={"stream": stream})
        except CliError as exc:
            out[stream] = {**source, "error": str(exc)}
            if isinstance(exc.__cause__, httpx.HTTPError):
                unreachable = str(exc)
            continue
        roles = {"champion": doc.get("champion"), "challenger": doc.get("challenger"), "canary": doc.get("canary")}
        out[stream] = {**roles, **source}
    return out


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- commands ---------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    doc = call(args, "GET", "/api/models", params={"stream": args.stream})
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"stream {doc['stream']}: champion {doc['champion']}, canary {doc['canary']:g}")
    print(f"{'VERSION':<18} {'ALIAS':<11} {'PARENT':<18} {'CREATED':<19} {'BY':<16} {'LEARNED':>8}  METRICS")
    for v in doc["versions"]:
        learned = v["online_learned_count"] if v["online_learned_count"] is not None else v["learned_count"]
        shown = "  ".join(f"{k} {_number(x)}" for k, x in v["metrics"].items())
        print(
            f"{v['version']:<18} {v['alias'] or '-':<11} {v['parent'] or '-':<18} "
            f"{local_clock(v['created_at_ms']):<19} {v['created_by']:<16} {learned:>8}  {shown}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    doc = call(args, "GET", "/api/models/show", params={"stream": args.stream, "version": args.version})
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    rows = [
        ("version", doc["key"]),
        ("alias", doc["alias"]),
        ("parent", doc["parent"] or "-"),
        ("created", f"{local_clock(doc['created_at_ms'])} by {doc['created_by']}"),
        ("reason", doc["reason"] or "-"),
        ("code version", doc["code_version"]),
        ("artifact", f"{doc['sha256']} ({doc['size']} bytes)"),
        ("candidate", doc["candidate_id"] or "-"),
        ("trained on", f"{doc['learned_count']} labeled examples"),
        ("learned online", doc["online_learned_count"] if doc["online_learned_count"] is not None else "-"),
        ("schema ids", ", ".join(f"{t}={i}" for t, i in doc["schema_ids"].items()) or "-"),
        ("spec", doc["spec"]),
        ("metrics", json.dumps(doc["metrics"]) if doc["metrics"] else "-"),
    ]
    for name, value in rows:
        print(f"{name:<15} {value}")
    print("training ranges")
    for r in doc["training_offsets"] or []:
        print(f"  {r['topic']}:{r['partition']}  {r['first_offset']}..{r['last_offset']}")
    print("online ranges")
    for tp, r in sorted(doc["online_ranges"].items()):
        print(f"  {tp}  {r['from']}..{r['through']}")
    print("lineage")
    for a in doc["lineage"]:
        print(f"  {a['version']:<18} {a['alias'] or '-':<11} {local_clock(a['created_at_ms'])}  {a['reason']}")
    print("audit")
    for e in doc["audit"]:
        reason = e["details"].get("reason") or ""
        print(f"  {local_clock(e['at_ms'])}  {e['event_type']:<16} {e['model']:<18} {e['actor']:<16} {reason}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    doc = call(args, "GET", "/api/models/diff", params={"stream": args.stream, "a": args.a, "b": args.b})
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    a, b = doc["a"], doc["b"]
    print(f"{'':<40} {a:<24} {b}")
    print("spec: same" if doc["spec"]["same"] else "spec:")
    for change in doc["spec"]["changes"]:
        print(f"  {change['path']:<38} {json.dumps(change['a']):<24} {json.dumps(change['b'])}")
    print("metrics:")
    for path, pair in doc["metrics"].items():
        print(f"  {path:<38} {_number(pair['a']):<24} {_number(pair['b'])}")
    print("lineage:")
    la, lb = doc["lineage"]["a"], doc["lineage"]["b"]
    for name in ("chain", "code_version", "learned_count", "online_learned_count", "training_offsets", "online_ranges"):
        print(f"  {name:<38} {json.dumps(la[name]):<24} {json.dumps(lb[name])}")
    print(f"  {'common ancestor':<38} {doc['lineage']['common_ancestor'] or '-'}")
    return 0


def _change(args: argparse.Namespace, path: str, body: dict[str, Any]) -> dict[str, Any]:
    body = {"stream": args.stream, "actor": _actor(), **body}
    if getattr(args, "reason", None):
        body["reason"] = args.reason
    return call(args, "POST", path, json=body)


def _report(args: argparse.Namespace, doc: dict[str, Any], line: str) -> int:
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(line)
    if not doc.get("published", True):
        print("  (decided; the event is not yet acknowledged by Kafka and will be sent when it is reachable)")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    doc = _change(args, "/api/models/promote", {"version": args.version})
    previous = doc["event"]["details"].get("previous")
    return _report(args, doc, f"{args.version} is the champion of {args.stream} (was {previous})")


def cmd_rollback(args: argparse.Namespace) -> int:
    doc = _change(args, "/api/models/rollback", {"to": args.to} if args.to else {})
    event = doc["event"]
    restored = f"{event['model_name']}@{event['model_version']}"
    line = f"{restored} is the champion of {args.stream} again ({event['details'].get('from')} archived)"
    return _report(args, doc, line)


def cmd_archive(args: argparse.Namespace) -> int:
    doc = _change(args, "/api/models/archive", {"version": args.version})
    return _report(args, doc, f"{args.version} of {args.stream} is archived")


def cmd_retrain(args: argparse.Namespace) -> int:
    doc = _change(args, "/api/retrain", {})
    return _report(args, doc, f"retraining of {args.stream} requested (event {doc['event']['event_id']})")


# -- parsers ----------------------------------------------------------------------------------------


def registry_options() -> argparse.ArgumentParser:
    """The options every command that talks to the model registry takes: ``--url`` and ``--json``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the model registry's URL (default: ${URL_ENV}, else the running stack's)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    return common


def add_parsers(sub: Any) -> None:
    """Add ``models`` (list, show, diff, promote, rollback, archive, history) and ``retrain`` to eddy's subcommands."""

    common = registry_options()
    models = sub.add_parser("models", help="model versions, aliases and lineage in the model registry")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("list", parents=[common], help="a stream's versions with alias, metrics, creator")
    p.add_argument("stream")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser("show", parents=[common], help="everything about a version, its lineage and audit")
    p.add_argument("stream")
    p.add_argument("version", type=model_version, help="name@version, e.g. default@2")
    p.set_defaults(func=cmd_show)

    p = actions.add_parser("diff", parents=[common], help="spec, metrics and lineage of two versions side by side")
    p.add_argument("stream")
    p.add_argument("a", type=model_version, help="name@version")
    p.add_argument("b", type=model_version, help="name@version")
    p.set_defaults(func=cmd_diff)

    p = actions.add_parser("promote", parents=[common], help="make a version the champion (probation applies)")
    p.add_argument("stream")
    p.add_argument("version", type=model_version, help="name@version")
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_promote)

    p = actions.add_parser("rollback", parents=[common], help="archive the champion, restore an earlier one")
    p.add_argument("stream")
    p.add_argument("--to", type=model_version, help="the version to restore (default: the previous champion)")
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_rollback)

    p = actions.add_parser("archive", parents=[common], help="archive a version that is not the champion")
    p.add_argument("stream")
    p.add_argument("version", type=model_version, help="name@version")
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_archive)

    p = actions.add_parser("history", help="which version answered when, since when and why (eddy.model-events)")
    p.add_argument("stream")
    p.add_argument("--at", help="only the period holding this time (ISO 8601 or epoch ms)")
    p.add_argument("--json", action="store_true", help="one JSON array of periods")
    p.set_defaults(func=cli_production.cmd_history)

    p = sub.add_parser("retrain", parents=[common], help="ask the retraining service to retrain a stream's model")
    p.add_argument("stream")
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_retrain)
