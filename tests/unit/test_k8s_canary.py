"""The kubernetes target's canary up to the API server: manifests, pods, the script, the reads.

No API server runs here. The canary's manifests and the pods that would stage, shift, abort and
promote it are validated against the Kubernetes schemas; the deploy script runs with kubectl
recorded and its patch applied to the rendered canary to check the result; and the target's reads
(Deployments, pods by label selector, each pod's ``/metrics`` through the pod proxy) go through the
real Kubernetes client and the provider's hook to a stand-in API server, whose pods' metrics are
those of real model servers.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import requests
import yaml

from mlcicd import settings
from mlcicd.deploy import kubernetes as k8s_target
from mlcicd.errors import DeployError, NotSupported
from mlcicd.ports import free_port
from mlcicd.promotion.analysis import Figures, increase
from mlcicd.promotion.rollout import snapshot
from mlcicd.release import Release
from tests.helpers import make_model_dir, wait_for
from tests.unit import test_k8s
from tests.unit.test_k8s import RELEASE, SMOKE, pod_of, run_script, validate

served_model = test_k8s.served_model  # the real model server that stands in for a Service

CANDIDATE = Release(
    **{**RELEASE.to_dict(), "version": "4", "image": "registry.local:5000/churn_model:4-0123"}
)
NAME = "mlcicd-churn-model"


@pytest.fixture
def kube_settings(monkeypatch):
    monkeypatch.setenv("MLCICD_KUBE_NAMESPACE", "models")
    monkeypatch.setenv("MLCICD_KUBE_REPLICAS", "3")
    return settings.load()


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def merge_patch(doc: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch, as ``kubectl patch --type=merge`` applies it."""
    out = copy.deepcopy(doc)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_replica_split_keeps_the_stable_pods_and_reports_the_share():
    assert k8s_target.replica_split(10, 9) == (1, 10.0)
    assert k8s_target.replica_split(50, 3) == (3, 50.0)
    assert k8s_target.replica_split(10, 2) == (1, 33.3)  # at least one pod: more than asked, and said
    assert k8s_target.replica_split(25, 3) == (1, 25.0)
    for bad in (0, 100, -5):
        with pytest.raises(ValueError, match="between 0 and 100"):
            k8s_target.replica_split(bad, 3)


def test_the_canary_stays_out_of_the_stable_service_until_shifted(kube_settings, tmp_path, served_model):
    stable_deploy, stable_service = docs(k8s_target.render_manifests(kube_settings, RELEASE))
    canary_deploy, canary_service = docs(k8s_target.render_manifests(kube_settings, CANDIDATE, canary=True))
    for doc in (canary_deploy, canary_service):
        validate(doc)
    assert canary_deploy["metadata"]["name"] == canary_service["metadata"]["name"] == f"{NAME}-canary"
    assert canary_deploy["spec"]["replicas"] == 1
    pod_labels = canary_deploy["spec"]["template"]["metadata"]["labels"]
    assert selects(canary_deploy["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(canary_service["spec"]["selector"], pod_labels)
    assert not selects(stable_service["spec"]["selector"], pod_labels)  # staged: no traffic
    # The canary's pods never count as the stable Deployment's, and the stable pods not as the canary's.
    stable_pod = stable_deploy["spec"]["template"]["metadata"]["labels"]
    assert not selects(canary_deploy["spec"]["selector"]["matchLabels"], stable_pod)

    # The script's shift, applied as the API server would apply it.
    url, payload, expected = served_model
    out, calls = run_script(
        tmp_path,
        url,
        payload,
        expected,
        ACTION="shift",
        CANARY=f"{NAME}-canary",
        REPLICAS="2",
        DEPLOYMENT=NAME,
    )
    assert out.returncode == 0, out.stderr
    (patch_call,) = [
        c for c in calls if c.startswith(f"-n models patch deployment {NAME}-canary --type=merge -p ")
    ]
    patched = merge_patch(canary_deploy, json.loads(patch_call.split(" -p ", 1)[1]))
    validate(patched)
    labels = patched["spec"]["template"]["metadata"]["labels"]
    assert patched["spec"]["replicas"] == 2
    assert selects(stable_service["spec"]["selector"], labels)  # now in the stable Service
    assert selects(patched["spec"]["selector"]["matchLabels"], labels)  # and still the canary's own
    assert any(f"rollout status deployment/{NAME}-canary" in c for c in calls)


def test_the_script_stages_a_canary_through_its_own_service_and_removes_a_failed_one(tmp_path, served_model):
    url, payload, expected = served_model
    env = {"ACTION": "stage", "CANARY": "mlcicd-m-canary"}
    out, calls = run_script(tmp_path, url, payload, expected, **env)
    assert out.returncode == 0, out.stderr
    assert "v7 is staged as mlcicd-m-canary" in out.stdout
    assert calls[0] == "-n models delete deployment,service mlcicd-m-canary --ignore-not-found --wait=true"
    assert any(c.startswith("apply -f") for c in calls) and any(
        "rollout status deployment/mlcicd-m-canary" in c for c in calls
    )
    assert not any("rollout undo" in c or "mlcicd-m " in c for c in calls)  # the stable one is not touched

    (tmp_path / "kubectl.log").unlink()
    out, calls = run_script(tmp_path, url, payload, [1 - v for v in expected], **env)
    assert (
        out.returncode == 1 and "failed as a canary: the predictions through the Service differ" in out.stderr
    )
    assert calls[-1] == "-n models delete deployment,service mlcicd-m-canary --ignore-not-found --wait=true"
    assert not any("rollout undo" in c for c in calls)


def test_the_script_removes_a_canary_that_does_not_become_ready(tmp_path, served_model):
    url, payload, expected = served_model
    out, calls = run_script(
        tmp_path,
        url,
        payload,
        expected,
        ACTION="shift",
        CANARY="mlcicd-m-canary",
        REPLICAS="3",
        rollout_fails="1",
    )
    assert out.returncode == 1 and "its 3 pods did not become ready" in out.stderr
    assert calls[-1].startswith("-n models delete deployment,service mlcicd-m-canary")


def test_the_script_aborts_and_promotes_by_removing_the_canary(tmp_path, served_model):
    url, payload, expected = served_model
    out, calls = run_script(tmp_path, url, payload, expected, ACTION="abort", CANARY="mlcicd-m-canary")
    assert out.returncode == 0 and calls == [
        "-n models delete deployment,service mlcicd-m-canary --ignore-not-found --wait=true"
    ]
    (tmp_path / "kubectl.log").unlink()
    # Promotion: the stable Deployment rolls to the version, is smoke-tested, then the canary goes.
    out, calls = run_script(tmp_path, url, payload, expected, previous="6", CANARY="mlcicd-m-canary")
    assert out.returncode == 0, out.stderr
    rollout = next(i for i, c in enumerate(calls) if "rollout status deployment/mlcicd-m " in c + " ")
    assert (
        calls[-1].startswith("-n models delete deployment,service mlcicd-m-canary")
        and rollout < len(calls) - 1
    )
    (tmp_path / "kubectl.log").unlink()
    # A failed promotion rolls the stable one back and removes the canary too: the champion serves alone.
    out, calls = run_script(
        tmp_path, url, payload, [1 - v for v in expected], previous="6", CANARY="mlcicd-m-canary"
    )
    assert out.returncode == 1 and "rollout undo deployment/mlcicd-m --to-revision=4" in "\n".join(calls)
    assert calls[-1].startswith("-n models delete deployment,service mlcicd-m-canary")


def test_unknown_action_is_refused(tmp_path, served_model):
    url, payload, expected = served_model
    out, calls = run_script(tmp_path, url, payload, expected, ACTION="explode")
    assert out.returncode == 2 and "unknown ACTION=explode" in out.stderr and calls == []


@pytest.mark.parametrize(
    ("build", "action", "env"),
    [
        (
            lambda s: k8s_target.deploy_operator(s, CANDIDATE, SMOKE, action="stage"),
            "stage",
            {"CANARY": f"{NAME}-canary", "SERVICE_URL": f"http://{NAME}-canary.models.svc:8080"},
        ),
        (
            lambda s: k8s_target.deploy_operator(s, CANDIDATE, SMOKE, canary=True),
            "switch",
            {"CANARY": f"{NAME}-canary", "SERVICE_URL": f"http://{NAME}.models.svc:8080"},
        ),
        (
            lambda s: k8s_target.canary_operator(s, "Churn_Model", "shift", 2),
            "shift",
            {"CANARY": f"{NAME}-canary", "REPLICAS": "2"},
        ),
        (
            lambda s: k8s_target.canary_operator(s, "Churn_Model", "abort"),
            "abort",
            {"CANARY": f"{NAME}-canary"},
        ),
    ],
)
def test_canary_pods_built_by_the_provider_are_valid(kube_settings, build, action, env):
    pod = pod_of(build(kube_settings))
    validate(pod)
    got = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"] if "value" in e}
    assert got["ACTION"] == action and got["DEPLOYMENT"] == NAME and env.items() <= got.items()
    if action == "stage":
        assert got["MANIFESTS"] == k8s_target.render_manifests(kube_settings, CANDIDATE, canary=True)
    for doc in docs(k8s_target.render_manifests(kube_settings, RELEASE)) + docs(
        k8s_target.render_manifests(kube_settings, CANDIDATE, canary=True)
    ):
        selector = doc["spec"].get("selector", {})
        assert not selects(selector.get("matchLabels", selector), pod["metadata"]["labels"])


# -- reading the cluster: the real client and hook against a stand-in API server ----------------


class ApiServer:
    """Serves Deployments (rendered manifests), their pods (from the templates, all Ready), and
    each pod's ``/metrics`` through the pod-proxy path, from the real server of its version."""

    def __init__(self, deployments: dict[str, dict], backends: dict[str, str]) -> None:
        self.deployments, self.backends, self.seen = deployments, backends, []
        self.proxy_status = 200
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path = unquote(self.path)  # the client quotes the pod proxy's ':'
                api.seen.append(path)
                status, body, kind = api.answer(path)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", free_port("127.0.0.1")), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_port}"

    def pods(self) -> list[dict]:
        out = []
        for name, d in self.deployments.items():
            meta = d["spec"]["template"]["metadata"]
            for i in range(d["spec"]["replicas"]):
                out.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": f"{name}-5d9c-{i}",
                            "namespace": "models",
                            **copy.deepcopy(meta),
                        },
                        "spec": {"containers": [{"name": "model-server", "image": "x"}]},
                        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
                    }
                )
        return out

    def answer(self, path: str) -> tuple[int, object, str]:
        url = urlparse(path)
        parts = url.path.strip("/").split("/")
        if url.path.startswith("/apis/apps/v1/namespaces/models/deployments/"):
            d = self.deployments.get(parts[-1])
            return (
                (200, d, "application/json")
                if d
                else (404, {"kind": "Status", "code": 404}, "application/json")
            )
        if url.path == "/api/v1/namespaces/models/pods":
            wanted = parse_qs(url.query)["labelSelector"][0].split(",")
            items = [
                p for p in self.pods() if all(_matches(term, p["metadata"]["labels"]) for term in wanted)
            ]
            return 200, {"apiVersion": "v1", "kind": "PodList", "items": items}, "application/json"
        if url.path.startswith("/api/v1/namespaces/models/pods/") and url.path.endswith("/proxy/metrics"):
            pod = next(p for p in self.pods() if p["metadata"]["name"] == parts[5].split(":")[0])
            if self.proxy_status != 200:
                return self.proxy_status, {"kind": "Status", "reason": "Forbidden"}, "application/json"
            version = pod["metadata"]["annotations"][k8s_target.VERSION_ANNOTATION]
            return 200, requests.get(f"{self.backends[version]}/metrics", timeout=5).content, "text/plain"
        return 404, {"kind": "Status", "code": 404}, "application/json"


def _matches(term: str, labels: dict) -> bool:
    if term.startswith("!"):
        return term[1:] not in labels
    key, value = term.split("=", 1)
    return labels.get(key) == value


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    """Real model servers: the stable v3 and the canary v4, each asked a few times."""
    procs, urls = [], {}
    for version, asked in (("3", 5), ("4", 2)):
        root = tmp_path_factory.mktemp(f"v{version}")
        _, x = make_model_dir(root, rows=300, seed=int(version), version=version)
        port = free_port("127.0.0.1")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "mlcicd.serving", "--model-dir", str(root), "--port", str(port)]
            )
        )
        urls[version] = f"http://127.0.0.1:{port}"
        wait_for(f"{urls[version]}/health")
        body = {"dataframe_split": json.loads(x.head(4).to_json(orient="split", index=False))}
        for _ in range(asked):
            assert requests.post(f"{urls[version]}/invocations", json=body, timeout=10).ok
    yield urls
    for proc in procs:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def cluster(kube_settings, two_servers, tmp_path, monkeypatch):
    stable, _ = docs(k8s_target.render_manifests(kube_settings, RELEASE))
    canary, _ = docs(k8s_target.render_manifests(kube_settings, CANDIDATE, canary=True))
    api = ApiServer({NAME: stable, f"{NAME}-canary": canary}, two_servers)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "stand-in",
                "clusters": [{"name": "stand-in", "cluster": {"server": api.url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "u"}}],
            }
        )
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}}),
    )
    yield api, k8s_target.KubernetesTarget(kube_settings, "Churn_Model")
    api.http.shutdown()


def test_the_target_reads_versions_share_and_each_pods_metrics(cluster):
    api, target = cluster
    assert target.current().version == "3" and target.candidate().version == "4"
    assert target.servers() == {"stable": {"version": "3"}, "candidate": {"version": "4"}}
    assert target.traffic()["weight"] == 0.0  # staged, outside the Service

    shifted = api.deployments[f"{NAME}-canary"]
    shifted["spec"]["replicas"] = 1
    shifted["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = NAME
    assert target.traffic()["weight"] == 25.0  # 1 canary pod beside 3 stable ones

    scraped = snapshot(target, "canary")
    # Each stable pod (not the canary's, though it now carries the stable instance label) and the canary's pod.
    assert set(scraped["stable"]) == {f"{NAME}-5d9c-{i}" for i in range(3)}
    assert set(scraped["candidate"]) == {f"{NAME}-canary-5d9c-0"}
    per_pod = Figures.from_dict(scraped["stable"][f"{NAME}-5d9c-0"])
    assert per_pod.requests == 5 and sum(per_pod.classes.values()) == 20
    assert increase({k: Figures.from_dict(f) for k, f in scraped["stable"].items()}, {}).requests == 15
    assert Figures.from_dict(scraped["candidate"][f"{NAME}-canary-5d9c-0"]).requests == 2
    selectors = sorted(
        parse_qs(urlparse(p).query)["labelSelector"][0] for p in api.seen if "labelSelector" in p
    )
    assert selectors == [
        f"app.kubernetes.io/instance={NAME},!mlcicd.io/canary-of",
        f"mlcicd.io/canary-of={NAME}",
    ]
    assert f"/api/v1/namespaces/models/pods/{NAME}-canary-5d9c-0:8080/proxy/metrics" in api.seen


def test_a_refused_pod_proxy_says_which_right_is_missing(cluster):
    api, target = cluster
    api.proxy_status = 403
    with pytest.raises(DeployError, match="needs pods/proxy: get in 'models'"):
        target.scrape()


def test_no_canary_and_no_shadow(cluster):
    api, target = cluster
    del api.deployments[f"{NAME}-canary"]
    assert target.candidate() is None and target.traffic() == {"weight": 0.0, "mirror": False, "mode": None}
    assert set(snapshot(target, "canary")) == {"stable"}
    with pytest.raises(DeployError, match="no canary is staged"):
        target.shift(10)
    with pytest.raises(NotSupported, match="the kubernetes target cannot mirror traffic"):
        target.mirror(True)
