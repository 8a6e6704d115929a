"""The Kubernetes HTTP double answers the official client the way an API server does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.k8s_double import kubernetes_double


def _api(double) -> client.ApiClient:
    return config.new_client_from_config_dict(double.kubeconfig())


def _job(name: str) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "sailplane"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app": "sailplane"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                },
            },
        },
    }


def test_the_official_client_talks_to_the_double() -> None:
    with kubernetes_double() as double:
        double.add_node("n1")
        double.add_node("n2", ready=False)
        api = _api(double)
        assert client.VersionApi(api).get_code().git_version == "v1.31.0"
        nodes = client.CoreV1Api(api).list_node().items
        assert [n.metadata.name for n in nodes] == ["n1", "n2"]

        batch = client.BatchV1Api(api)
        created = batch.create_namespaced_job("work", _job("run-1-a1"))
        assert created.metadata.uid
        with pytest.raises(ApiException) as duplicate:
            batch.create_namespaced_job("work", _job("run-1-a1"))
        assert duplicate.value.status == 409
        pods = (
            client.CoreV1Api(api)
            .list_namespaced_pod("work", label_selector="job-name=run-1-a1")
            .items
        )
        assert len(pods) == 1
        double.set_status("jobs", "work", "run-1-a1", {"succeeded": 1})
        assert batch.read_namespaced_job("run-1-a1", "work").status.succeeded == 1
        double.set_log("work", pods[0].metadata.name, "line 1\nline 2\n")
        log = client.CoreV1Api(api).read_namespaced_pod_log(pods[0].metadata.name, "work")
        assert log == "line 1\nline 2\n"
        batch.delete_namespaced_job("run-1-a1", "work", propagation_policy="Background")
        with pytest.raises(ApiException) as gone:
            batch.read_namespaced_job("run-1-a1", "work")
        assert gone.value.status == 404
        assert len(double.calls("POST", r"/jobs$")) == 2


def test_invalid_manifests_are_refused_like_a_real_server() -> None:
    with kubernetes_double() as double:
        broken = _job("broken")
        broken["spec"]["template"]["spec"]["containers"][0]["colour"] = "blue"  # not in the schema
        request = urllib.request.Request(
            f"{double.url}/apis/batch/v1/namespaces/work/jobs",
            data=json.dumps(broken).encode(),
            headers={"Authorization": f"Bearer {double.token}", "Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as invalid:
            urllib.request.urlopen(request)
        assert invalid.value.code == 422
        assert double.get("jobs", "work", "broken") is None


def test_a_wrong_token_is_401() -> None:
    with kubernetes_double() as double:
        kubeconfig = double.kubeconfig()
        kubeconfig["users"][0]["user"]["token"] = "wrong"
        with pytest.raises(ApiException) as denied:
            client.VersionApi(config.new_client_from_config_dict(kubeconfig)).get_code()
        assert denied.value.status == 401
