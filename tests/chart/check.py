#!/usr/bin/env python3
"""Render, lint and validate the Helm chart in charts/portcullis.

Uses Helm's own engine (helm-python-sdk: Helm v4's chart loader, values schema check, renderer
and linter, without a helm binary) and validates every rendered manifest against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors). Each case is a values
switch; cases that must not render check the failure message. Prints one line per case and a
closing `N passed, N failed` line; exits non-zero on any failure.

    python3 tests/chart/check.py [-v]   # -v prints each rendering
"""

import base64
import json
import os
import sys
import traceback

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "charts", "portcullis")
RELEASE, NAMESPACE = "portcullis", "portcullis-system"
# Kubernetes versions whose schemas every manifest is validated against: the chart's kubeVersion
# floor and the newest kubernetes-validate knows.
KUBE_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
VERBOSE = "-v" in sys.argv

CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBqDCCAU+gAwIBAgIUGYUv2DdwfbeLCj2bKaCn7lA7rQkwCgYIKoZIzj0EAwIw
-----END CERTIFICATE-----
"""
CA_BUNDLE = base64.b64encode(CA_PEM.encode()).decode()
DIGEST = "sha256:" + "ab" * 32
EXISTING = {"tls": {"certManager": False, "existingSecret": "portcullis-tls", "caBundle": CA_BUNDLE}}

# Custom resources kubernetes-validate has no schema for: checked for the fields the chart relies on.
CRD_REQUIRED = {
    ("cert-manager.io/v1", "Issuer"): [("spec",)],
    ("cert-manager.io/v1", "Certificate"): [("spec", "secretName"), ("spec", "issuerRef", "name")],
    ("monitoring.coreos.com/v1", "ServiceMonitor"): [("spec", "selector"), ("spec", "endpoints")],
}


def merge(*dicts):
    out = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(values):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return docs, rendered


def validate(docs):
    """kubernetes-validate, strict, for every manifest; CRDs by their required fields."""
    problems = []
    for path, doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        where = f"{path}: {key[1]} {doc.get('metadata', {}).get('name')}"
        if key in CRD_REQUIRED:
            for fields in CRD_REQUIRED[key]:
                node = doc
                for f in fields:
                    node = node.get(f) if isinstance(node, dict) else None
                if node in (None, "", [], {}) and fields != ("spec",):
                    problems.append(f"{where}: missing {'.'.join(fields)}")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{where} (Kubernetes {version}): {e.message} at {'.'.join(str(p) for p in e.path)}")
            except Exception as e:  # noqa: BLE001 - an unknown kind is a failure too
                problems.append(f"{where} (Kubernetes {version}): {type(e).__name__}: {e}")
    return problems


def lint(values):
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    # Severity 1 is INFO ("icon is recommended"); warnings and errors fail under strict.
    return [f"lint {m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2] + [
        f"lint: {e}" for e in report.get("errors", [])
    ]


def by_kind(docs, kind):
    return [d for _, d in docs if d.get("kind") == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(docs, name="portcullis"):
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == name)


def env(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def webhooks(docs):
    return [w for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration") for c in by_kind(docs, kind) for w in c["webhooks"]]


def check_safe_webhooks(docs, injected):
    hooks = webhooks(docs)
    assert hooks, "no webhooks rendered"
    for w in hooks:
        assert w["failurePolicy"] == "Fail" and w["timeoutSeconds"] == 10, w["name"]
        assert w["sideEffects"] == "None" and w["admissionReviewVersions"] == ["v1"], w["name"]
        assert w["matchPolicy"] == "Equivalent", w["name"]
        exprs = w["namespaceSelector"]["matchExpressions"]
        names = next(e for e in exprs if e["key"] == "kubernetes.io/metadata.name")
        assert names["operator"] == "NotIn" and {NAMESPACE, "kube-system", "kube-node-lease"} <= set(names["values"]), names
        ignore = next(e for e in exprs if e["key"] == "portcullis.dev/ignore")
        assert ignore == {"key": "portcullis.dev/ignore", "operator": "NotIn", "values": ["true"]}, ignore
        conditions = {m["name"]: m["expression"] for m in w["matchConditions"]}
        if w["name"] != "sops.portcullis.dev":
            # Deleting objects never waits for portcullis, but an update that changes the spec of
            # an object being deleted is still sent (it could swap an image in).
            skip = conditions["not-a-deletion-leaving-the-spec-unchanged"]
            assert "object.spec == oldObject.spec" in skip, skip
        else:
            assert "not-being-deleted" in conditions, w["name"]
        resources = {r for rule in w["rules"] for r in rule["resources"]}
        if w["name"] != "sops.portcullis.dev":
            assert not resources & {"secrets", "configmaps"}, f"{w['name']} sends {resources}"
        if injected:
            assert "caBundle" not in w["clientConfig"], w["name"]
        else:
            assert base64.b64decode(w["clientConfig"]["caBundle"]).startswith(b"-----BEGIN CERTIFICATE-----"), w["name"]
    for cfg in by_kind(docs, "ValidatingWebhookConfiguration") + by_kind(docs, "MutatingWebhookConfiguration"):
        annotation = cfg["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from")
        assert (annotation == f"{NAMESPACE}/{RELEASE}") == injected, annotation


def check_defaults(docs, rendered):
    kinds = sorted(d["kind"] for _, d in docs)
    for want in ["Certificate", "ConfigMap", "Deployment", "Issuer", "MutatingWebhookConfiguration", "PodDisruptionBudget",
                 "Service", "ServiceAccount", "ValidatingWebhookConfiguration"]:
        assert want in kinds, f"missing {want}: {kinds}"
    assert "NetworkPolicy" not in kinds and "ServiceMonitor" not in kinds, kinds
    for _, d in docs:
        labels = d["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "portcullis-0.1.0", d["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", d["kind"]
    check_safe_webhooks(docs, injected=True)
    # The CA chain: self-signed issuer -> CA certificate -> CA issuer -> serving certificate.
    issuers = {i["metadata"]["name"]: i["spec"] for i in by_kind(docs, "Issuer")}
    certs = {c["metadata"]["name"]: c["spec"] for c in by_kind(docs, "Certificate")}
    ca, leaf = certs[f"{RELEASE}-ca"], certs[RELEASE]
    assert ca["isCA"] is True and ca["issuerRef"]["name"] == f"{RELEASE}-selfsigned", ca
    assert "selfSigned" in issuers[f"{RELEASE}-selfsigned"]
    assert issuers[f"{RELEASE}-ca"]["ca"]["secretName"] == ca["secretName"]
    assert leaf["issuerRef"]["name"] == f"{RELEASE}-ca" and not leaf.get("isCA"), leaf
    assert leaf["dnsNames"] == [f"{RELEASE}.{NAMESPACE}.svc", f"{RELEASE}.{NAMESPACE}.svc.cluster.local"]
    assert "server auth" in leaf["usages"]
    # Availability and hardening.
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod, c = container(docs)
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
    assert env(c)["PORTCULLIS_DRAIN_TIMEOUT"] == "20s"
    assert env(c)["PORTCULLIS_SHUTDOWN_DELAY"] == "0s"
    assert pod["terminationGracePeriodSeconds"] >= 5 + 20
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["privileged"] is False
    assert c["image"] == "ghcr.io/portcullis-dev/portcullis:0.1.0", c["image"]
    assert pod["automountServiceAccountToken"] is True, "pull secrets need the API"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/scheme"] == "https"
    # Least privilege: pull secrets and service accounts are watched (list + watch, no get);
    # nothing else is read and nothing is written anywhere.
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in role["rules"]:
            assert rule == {"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["list", "watch"]}, rule
    assert "PORTCULLIS_PULL_SECRET_NAMESPACES" not in env(c), "every namespace by default"
    assert "Secrets and ConfigMaps" not in next(v for k, v in rendered.items() if k.endswith("NOTES.txt"))


def check_no_sops_by_default(docs, _):
    assert all(w["name"] != "sops.portcullis.dev" for w in webhooks(docs))


def check_sops(docs, _):
    hook = next(w for w in webhooks(docs) if w["name"] == "sops.portcullis.dev")
    assert {r for rule in hook["rules"] for r in rule["resources"]} == {"secrets", "configmaps"}
    conditions = {m["name"]: m["expression"] for m in hook["matchConditions"]}
    assert "helm.sh/release.v1" in conditions["not-a-helm-release"]
    assert "system:serviceaccount:cert-manager:" in conditions["not-a-skipped-user"]
    check_safe_webhooks(docs, injected=True)


def check_existing_secret(docs, secret):
    kinds = {d["kind"] for _, d in docs}
    assert "Certificate" not in kinds and "Issuer" not in kinds, kinds
    check_safe_webhooks(docs, injected=False)
    pod, _ = container(docs)
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == secret


def check_existing(docs, _):
    check_existing_secret(docs, "portcullis-tls")


def check_shutdown_delay(docs, _):
    pod, c = container(docs)
    assert "lifecycle" not in c and env(c)["PORTCULLIS_SHUTDOWN_DELAY"] == "5s"
    assert pod["terminationGracePeriodSeconds"] == 5 + 20 + 5


def check_no_pin(docs, _):
    assert not by_kind(docs, "MutatingWebhookConfiguration")
    check_safe_webhooks(docs, injected=True)


def check_networkpolicy(docs, _):
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 8443, "protocol": "TCP"}]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"][0]["ports"][0]["port"] == 53


def check_servicemonitor(docs, _):
    monitor = one(docs, "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https" and endpoint["port"] == "https"
    assert endpoint["tlsConfig"]["serverName"] == f"{RELEASE}.{NAMESPACE}.svc"


def check_pinned_and_extras(docs, _):
    pod, c = container(docs)
    assert c["image"] == f"registry.example.com/portcullis:0.1.0@{DIGEST}", c["image"]
    assert c["args"] == ["serve", "--verify-cache-ttl=10m", "--registry-ca=/etc/registry-ca/ca.crt"], c["args"]
    assert any(v["name"] == "registry-ca" for v in pod["volumes"])
    assert any(m["mountPath"] == "/etc/registry-ca" for m in c["volumeMounts"])
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["automountServiceAccountToken"] is False, "no API access needed without pull secrets"
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "Role")


def check_policies_and_keys(docs, _):
    maps = {m["metadata"]["name"]: m["data"] for m in by_kind(docs, "ConfigMap")}
    assert "signed.yaml" in maps[f"{RELEASE}-policies"] and "release.pub" in maps[f"{RELEASE}-policy-keys"]
    pod, _ = container(docs)
    sources = next(v for v in pod["volumes"] if v["name"] == "policies")["projected"]["sources"]
    items = sources[1]["configMap"]["items"]
    assert items == [{"key": "release.pub", "path": "keys/release.pub"}], items


def repo_policies():
    base = os.path.join(ROOT, "policies")
    files = {n: open(os.path.join(base, n)).read() for n in sorted(os.listdir(base)) if n.endswith(".yaml")}
    keys = {n: open(os.path.join(base, "keys", n)).read() for n in sorted(os.listdir(os.path.join(base, "keys")))}
    return files, keys


def check_repo_policies_mount(docs, _):
    """The projected volume, laid out as the kubelet would, is the repository's policies/ tree."""
    maps = {m["metadata"]["name"]: m["data"] for m in by_kind(docs, "ConfigMap")}
    pod, c = container(docs)
    volume = next(v for v in pod["volumes"] if v["name"] == "policies")
    mount = next(m for m in c["volumeMounts"] if m["name"] == "policies")
    assert mount["mountPath"] == env(c)["PORTCULLIS_POLICIES"] and mount["readOnly"] is True
    tree = {}
    for source in volume["projected"]["sources"]:
        data = maps[source["configMap"]["name"]]
        items = source["configMap"].get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            tree[item["path"]] = data[item["key"]]
    files, keys = repo_policies()
    want = dict(files, **{f"keys/{n}": t for n, t in keys.items()})
    assert tree == want, sorted(set(tree) ^ set(want))


def check_namespaced_rbac(docs, _):
    assert not by_kind(docs, "ClusterRole")
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ops", "prod", "team-a"], roles
    keyed = next(r for r in roles if r["metadata"]["namespace"] == "ops")
    assert keyed["rules"][0]["resourceNames"] == ["cosign-key"], keyed
    # The key Secret is watched with a metadata.name field selector: list/watch by resourceNames.
    assert keyed["rules"][0]["verbs"] == ["get", "list", "watch"], keyed
    for role in roles:
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
            assert rule.get("resourceNames") or "get" not in rule["verbs"], rule
    # The server watches exactly the namespaces RBAC grants.
    _, c = container(docs)
    assert env(c)["PORTCULLIS_PULL_SECRET_NAMESPACES"] == "prod,team-a", env(c)


def check_gitsync(docs, _):
    pod, c = container(docs)
    assert env(c)["PORTCULLIS_POLICIES"] == "/etc/portcullis/policies/current/policies"
    sidecar = next(x for x in pod["containers"] if x["name"] == "git-sync")
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert not [m for m in by_kind(docs, "ConfigMap") if m["metadata"]["name"].endswith("-policies")]


# (name, values, check) for renderings that must succeed.
CASES = [
    ("defaults", {}, check_defaults),
    ("defaults: no SOPS check", {}, check_no_sops_by_default),
    ("sopsCheck on", {"webhook": {"sopsCheck": True}}, check_sops),
    ("certManager off + existingSecret + caBundle", EXISTING, check_existing),
    ("existingSecret + caBundle (certManager left on)", {"tls": {"existingSecret": "portcullis-tls", "caBundle": CA_BUNDLE}}, check_existing),
    ("no preStop sleep: server-side shutdown delay", {"lifecycle": {"preStopSleepSeconds": 0, "shutdownDelaySeconds": 5}}, check_shutdown_delay),
    ("pinDigests off", {"webhook": {"pinDigests": False}}, check_no_pin),
    ("networkPolicy on", {"networkPolicy": {"enabled": True, "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}]}}, check_networkpolicy),
    ("serviceMonitor on", {"metrics": {"serviceMonitor": {"enabled": True}}}, check_servicemonitor),
    ("digest pin, extraArgs, extraVolumes, scheduling", {
        "image": {"repository": "registry.example.com/portcullis", "digest": DIGEST},
        "extraArgs": ["--verify-cache-ttl=10m", "--registry-ca=/etc/registry-ca/ca.crt"],
        "extraVolumes": [{"name": "registry-ca", "configMap": {"name": "registry-ca"}}],
        "extraVolumeMounts": [{"name": "registry-ca", "mountPath": "/etc/registry-ca", "readOnly": True}],
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
        "imagePullSecrets": False,
    }, check_pinned_and_extras),
    ("policies.files + keys", {"policies": {
        "files": {"signed.yaml": "apiVersion: portcullis.dev/v1alpha1\nkind: ImagePolicy\n"},
        "keys": {"release.pub": "-----BEGIN PUBLIC KEY-----\n"},
    }}, check_policies_and_keys),
    ("the repository's policies/ and keys/ as values", {"policies": dict(zip(("files", "keys"), repo_policies()))}, check_repo_policies_mount),
    ("namespaced RBAC", {"rbac": {"pullSecretNamespaces": ["prod", "team-a"], "secretRefs": [{"name": "cosign-key", "namespace": "ops"}]}}, check_namespaced_rbac),
    ("git-sync policies", {"policies": {"gitSync": {"enabled": True, "repo": "https://git.example.com/acme/policies.git"}}}, check_gitsync),
]

# (name, values, text the error must contain) for values that must not render.
REFUSED = [
    ("certManager off, no caBundle source", {"tls": {"certManager": False}}, "no caBundle source for the webhooks"),
    ("existingSecret without caBundle", {"tls": {"certManager": False, "existingSecret": "portcullis-tls"}}, "no caBundle source for the webhooks"),
    ("caBundle without existingSecret", {"tls": {"certManager": False, "caBundle": CA_BUNDLE}}, "no caBundle source for the webhooks"),
    ("caBundle that is not a PEM certificate", merge(EXISTING, {"tls": {"caBundle": base64.b64encode(b"hello").decode()}}), "not base64 of a PEM certificate"),
    ("caBundle and cert-manager both", {"tls": {"caBundle": CA_BUNDLE}}, "cert-manager injects the CA"),
    ("typo failurePolicy: Fial", {"webhook": {"failurePolicy": "Fial"}}, "failurePolicy"),
    ("typo replica: 3", {"replica": 3}, "replica"),
    ("timeoutSeconds: 60", {"webhook": {"timeoutSeconds": 60}}, "timeoutSeconds"),
    ("sopsCheck: \"yes\"", {"webhook": {"sopsCheck": "yes"}}, "sopsCheck"),
    ("image.digest not a digest", {"image": {"digest": "latest"}}, "digest"),
    ("extraArgs not a flag", {"extraArgs": ["serve"]}, "extraArgs"),
    ("gitSync without repo", {"policies": {"gitSync": {"enabled": True}}}, "policies.gitSync.repo"),
]


def generated_values():
    """Values for a cluster without cert-manager, from `portcullis certs generate` itself."""
    binary = os.environ.get("PORTCULLIS_BIN")
    if not binary:
        return None
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([binary, "certs", "generate", "--service", RELEASE, "--namespace", NAMESPACE,
                               "--out", os.path.join(tmp, "certs")], capture_output=True, text=True, check=True)
    return {"tls": {"certManager": False, "existingSecret": f"{RELEASE}-tls", "caBundle": done.stdout.strip()}}


def check_generated(docs, rendered):
    check_existing_secret(docs, f"{RELEASE}-tls")


def main():
    passed, failed, skipped = 0, 0, 0
    matrix = []
    generated = generated_values()
    if generated is None:
        matrix.append("skip  caBundle from `portcullis certs generate`: PORTCULLIS_BIN is not set (tests/run-all.sh sets it)")
        skipped += 1
    else:
        CASES.append(("caBundle from `portcullis certs generate`", generated, check_generated))
    for name, values, check in CASES:
        try:
            docs, rendered = render(values)
            problems = validate(docs) + lint(values)
            if problems:
                raise AssertionError("; ".join(problems))
            check(docs, rendered)
            kinds = ", ".join(sorted({d["kind"] for _, d in docs}))
            matrix.append(f"ok    {name}: {len(docs)} manifests valid ({kinds})")
            passed += 1
            if VERBOSE:
                print("\n---\n".join(yaml.safe_dump(d, sort_keys=False) for _, d in docs))
        except Exception as e:  # noqa: BLE001
            matrix.append(f"FAIL  {name}: {type(e).__name__}: {e}")
            if VERBOSE:
                traceback.print_exc()
            failed += 1
    for name, values, expected in REFUSED:
        try:
            render(values)
            matrix.append(f"FAIL  {name}: rendered, but must be refused")
            failed += 1
        except helm.HelmError as e:
            text = str(e)
            if expected in text:
                first = text.strip().splitlines()[-1][:160]
                matrix.append(f"ok    refused: {name}: {first}")
                passed += 1
            else:
                matrix.append(f"FAIL  {name}: refused, but without {expected!r}: {text}")
                failed += 1
    versions = (f"Helm {helm.helm_sdk_version()} (helm-python-sdk), kubernetes-validate {kubernetes_validate.__version__}"
                f" strict, schemas of Kubernetes {' and '.join(KUBE_VERSIONS)}")
    print(f"chart {os.path.relpath(CHART, ROOT)} ({versions})")
    print("\n".join(matrix))
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
