"""An HTTP double of the few Kubernetes API paths Sailplane calls.

No API server can run on the test machines, so adapters that use the official
`kubernetes` client are tested against this real HTTP server instead. It keeps objects in
memory, answers like the API server does (201 on create, 409 AlreadyExists, 404 NotFound,
label-selector lists, Status objects), validates every created manifest offline with
`kubernetes-validate` (422 Invalid, as a real server would refuse it), and records every
request so a test can assert what an adapter did.

Served paths:
    GET  /version                              GET /api/v1/nodes
    POST|GET  /apis/batch/v1/namespaces/{ns}/jobs       GET|DELETE .../jobs/{name}
    POST|GET  /api/v1/namespaces/{ns}/{pods|secrets|configmaps|services}
    GET|DELETE /api/v1/namespaces/{ns}/{kind}/{name}
    GET  /api/v1/namespaces/{ns}/pods/{name}/log
    POST|GET /api/v1/namespaces                GET|DELETE /api/v1/namespaces/{name}
    GET  /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods   (`set_pod_usage`; labelSelector)
    GET  /apis/metrics.k8s.io/v1beta1/nodes    (404 until `set_node_usage`, as without
                                                metrics-server)

Creating a Job also creates its pod (label `job-name`), as the job controller would; tests
move them along with `set_status`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

KUBERNETES_VERSION = "1.31"
COLLECTION = re.compile(
    r"^/(?P<prefix>api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<kind>jobs|pods|secrets|configmaps|services)"
    r"(?:/(?P<name>[^/]+))?(?P<log>/log)?$"
)
NAMESPACES = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?$")
NODE_METRICS = "/apis/metrics.k8s.io/v1beta1/nodes"
LOG_TIME = "2026-12-01T12:00:00.123456789Z"  # when the double's pods wrote their log lines
POD_METRICS = re.compile(r"^/apis/metrics\.k8s\.io/v1beta1/namespaces/(?P<ns>[^/]+)/pods$")
KINDS = {
    "namespaces": "Namespace",
    "jobs": "Job",
    "pods": "Pod",
    "secrets": "Secret",
    "configmaps": "ConfigMap",
    "services": "Service",
}


@dataclass
class Request:
    method: str
    path: str
    body: Any = None


@dataclass
class KubernetesDouble:
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(
        default_factory=dict
    )  # (kind, ns, name)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, pod) -> text
    requests: list[Request] = field(default_factory=list)
    node_usage: dict[str, dict[str, str]] | None = None  # node -> {"cpu", "memory"}
    pod_usage: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (ns, pod)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kubeconfig(self, *, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig (as a dict) that points the official client at this double."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "double",
                    "cluster": {"server": self.url, "insecure-skip-tls-verify": True},
                }
            ],
            "users": [{"name": "double", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "double",
                    "context": {"cluster": "double", "user": "double", "namespace": namespace},
                }
            ],
            "current-context": "double",
        }

    def add_node(
        self, name: str, *, ready: bool = True, cpu: str = "4", memory: str = "16Gi"
    ) -> None:
        self.nodes.append(
            {
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    "capacity": {"cpu": cpu, "memory": memory},
                    "allocatable": {"cpu": cpu, "memory": memory},
                },
            }
        )

    def set_node_usage(self, name: str, *, cpu: str, memory: str) -> None:
        """Serve metrics.k8s.io node usage (as metrics-server would) for this node."""
        with self.lock:
            self.node_usage = {**(self.node_usage or {}), name: {"cpu": cpu, "memory": memory}}

    def set_pod_usage(self, namespace: str, pod: str, *, cpu: str, memory: str) -> None:
        """Serve metrics.k8s.io usage (as metrics-server would) for this pod's one container."""
        with self.lock:
            self.pod_usage[(namespace, pod)] = {"cpu": cpu, "memory": memory}

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        ready: bool = True,
        phase: str = "Running",
        restarts: int = 0,
    ) -> None:
        """A pod something other than Sailplane runs (such as a system pod in kube-system)."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {}},
            "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause"}]},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [
                    {
                        "name": "main",
                        "ready": ready,
                        "restartCount": restarts,
                        "image": "registry.k8s.io/pause",
                        "imageID": "",
                    }
                ],
            },
        }
        with self.lock:
            self.objects[("pods", namespace, name)] = pod

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def pods_of_job(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return [
            o
            for (kind, ns, _), o in self.objects.items()
            if kind == "pods"
            and ns == namespace
            and o["metadata"].get("labels", {}).get("job-name") == job
        ]

    def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        with self.lock:
            self.objects[(kind, namespace, name)]["status"] = status

    def set_log(self, namespace: str, pod: str, text: str) -> None:
        self.logs[(namespace, pod)] = text

    def calls(self, method: str, pattern: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _handler(double: KubernetesDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            """Quiet: tests read `double.requests` instead."""

        def _reply(self, code: int, body: Any, *, text: bool = False) -> None:
            data = body.encode() if text else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            parts = parts._replace(path=parts.path.rstrip("/") or "/")
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            with double.lock:
                double.requests.append(Request(method, parts.path, body))
            if self.headers.get("Authorization") != f"Bearer {double.token}":
                self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
                return
            if parts.path == "/version" and method == "GET":
                major, minor = KUBERNETES_VERSION.split(".")
                version = {
                    "major": major,
                    "minor": minor,
                    "gitVersion": f"v{KUBERNETES_VERSION}.0",
                    "gitCommit": "0" * 40,
                    "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.23",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                }
                self._reply(200, version)
                return
            if parts.path == "/api/v1/nodes" and method == "GET":
                self._reply(
                    200,
                    {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": double.nodes},
                )
                return
            if parts.path == NODE_METRICS and method == "GET":
                if double.node_usage is None:
                    self._reply(
                        404,
                        _status(
                            404, "NotFound", "the server could not find the requested resource"
                        ),
                    )
                    return
                items = [
                    {
                        "metadata": {"name": node},
                        "timestamp": "2026-01-01T00:00:00Z",
                        "window": "10s",
                        "usage": usage,
                    }
                    for node, usage in sorted(double.node_usage.items())
                ]
                self._reply(
                    200,
                    {
                        "kind": "NodeMetricsList",
                        "apiVersion": "metrics.k8s.io/v1beta1",
                        "items": items,
                    },
                )
                return
            pod_metrics = POD_METRICS.match(parts.path)
            if pod_metrics is not None and method == "GET":
                selector = dict(parse_qsl(parts.query)).get("labelSelector", "")
                ns = pod_metrics["ns"]
                items = [
                    {
                        "metadata": {"name": pod, "namespace": ns},
                        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "window": "10s",
                        "containers": [{"name": "run", "usage": usage}],
                    }
                    for (pod_ns, pod), usage in sorted(double.pod_usage.items())
                    if pod_ns == ns
                    and (found := double.objects.get(("pods", ns, pod))) is not None
                    and _matches(found["metadata"].get("labels", {}), selector)
                ]
                self._reply(
                    200,
                    {
                        "kind": "PodMetricsList",
                        "apiVersion": "metrics.k8s.io/v1beta1",
                        "items": items,
                    },
                )
                return
            namespaces = NAMESPACES.match(parts.path)
            match = COLLECTION.match(parts.path)
            if namespaces is not None:
                match = {"kind": "namespaces", "ns": "", "name": namespaces["name"], "log": None}
            if match is None:
                self._reply(
                    404, _status(404, "NotFound", f"the server could not find {parts.path}")
                )
                return
            kind, ns, name = match["kind"], match["ns"], match["name"]
            if match["log"]:
                if kind != "pods" or (kind, ns, name) not in double.objects:
                    self._reply(404, _status(404, "NotFound", f'pods "{name}" not found'))
                else:
                    text = double.logs.get((ns, name), "")
                    if dict(parse_qsl(parts.query)).get("timestamps") == "true":
                        # As the kubelet does: each line after the RFC 3339 time it was written.
                        text = "".join(f"{LOG_TIME} {line}\n" for line in text.splitlines())
                    self._reply(200, text, text=True)
                return
            query = parse_qs(parts.query)
            if method == "POST" and name is None:
                self._create(kind, ns, body)
            elif method == "GET" and name is None:
                selector = query.get("labelSelector", [""])[0]
                items = [
                    copy.deepcopy(o)
                    for (k, n, _), o in sorted(double.objects.items())
                    if k == kind and n == ns and _matches(o["metadata"].get("labels", {}), selector)
                ]
                self._reply(
                    200,
                    {
                        "kind": f"{KINDS[kind]}List",
                        "apiVersion": "v1",
                        "metadata": {},
                        "items": items,
                    },
                )
            elif method == "GET":
                found = double.objects.get((kind, ns, name))
                if found is None:
                    self._reply(404, _status(404, "NotFound", f'{kind} "{name}" not found'))
                else:
                    self._reply(200, found)
            elif method == "DELETE":
                with double.lock:
                    removed = double.objects.pop((kind, ns, name), None)
                    if removed is not None and kind == "jobs":
                        for pod in double.pods_of_job(ns, name):
                            double.objects.pop(("pods", ns, pod["metadata"]["name"]), None)
                if removed is None:
                    self._reply(404, _status(404, "NotFound", f'{kind} "{name}" not found'))
                else:
                    self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
            else:
                self._reply(405, _status(405, "MethodNotAllowed", method))

        def _create(self, kind: str, ns: str, body: dict[str, Any]) -> None:
            import kubernetes_validate

            try:
                kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                self._reply(422, _status(422, "Invalid", str(exc.message)))
                return
            name = body["metadata"]["name"]
            with double.lock:
                if (kind, ns, name) in double.objects:
                    self._reply(
                        409, _status(409, "AlreadyExists", f'{kind} "{name}" already exists')
                    )
                    return
                created = copy.deepcopy(body)
                created["metadata"].update(
                    **({"namespace": ns} if ns else {}),
                    uid=str(uuid.uuid4()),
                    creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
                created.setdefault("status", {})
                double.objects[(kind, ns, name)] = created
                if kind == "jobs":
                    template = body["spec"]["template"]
                    pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
                    double.objects[("pods", ns, pod_name)] = {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": pod_name,
                            "namespace": ns,
                            "labels": {
                                **template.get("metadata", {}).get("labels", {}),
                                "job-name": name,
                            },
                        },
                        "spec": copy.deepcopy(template["spec"]),
                        "status": {"phase": "Pending"},
                    }
            self._reply(201, created)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler


@contextlib.contextmanager
def kubernetes_double() -> Iterator[KubernetesDouble]:
    double = KubernetesDouble()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(double))
    double.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield double
    finally:
        server.shutdown()
        server.server_close()
