"""The Kubernetes manifests in deploy/ run: every overlay renders with
`kubectl kustomize`, every object is valid against the Kubernetes schemas of a
pinned version, the NetworkPolicies let each internal gRPC port be reached by
exactly the Herald pods that call it, and each service binary, started with
exactly the command, args, env and files its rendered pod gets, becomes ready
and answers its probes.

How a pod is played on this machine: every volume mount becomes a directory
under a temporary root (ConfigMap keys and the operator's Secret files written
into it, emptyDirs and volume claims empty), and every mount path in the args,
the env and the mounted files is rewritten to that directory. Ports are
substituted with free loopback ports, bind addresses (0.0.0.0) with 127.0.0.1,
and the Services' DNS names with 127.0.0.1. Nothing else is changed.

`kubectl` and the Python packages `kubernetes-validate`, `grpcio` and
`grpcio-health-checking` are installed by .ci/run, which sets
HERALD_E2E_REQUIRE_DEPLOY_TOOLS=1 so that a missing tool fails; elsewhere the
tests that need one are skipped, saying which.
"""

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO_ROOT, Service, binary, service_env
from support import make_client

pytestmark = pytest.mark.standalone

DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
# The Kubernetes version whose schemas the objects must satisfy (kubernetes-validate ships them).
KUBERNETES_VERSION = "1.32.0"
REQUIRE_TOOLS = os.environ.get("HERALD_E2E_REQUIRE_DEPLOY_TOOLS") == "1"
PROBE_DEADLINE_SECS = 30

# The credentials file of the Secret the operator creates (deploy/README.md), with
# a key of this test's own.
ACCESS_KEY_ID = "AKIAHERALDMANIFESTS"
SECRET_ACCESS_KEY = secrets.token_urlsafe(30)
CREDENTIALS_TOML = f"""
[[access_keys]]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key = "{SECRET_ACCESS_KEY}"
account_id = "123456789012"
"""

# The Secrets the operator creates, by name, as deploy/README.md tells how: the
# files each holds (key -> content). A manifest that mounts a Secret missing
# here fails the test. The internal TLS Secrets are filled by `internal_pki`.
INTERNAL_TLS_SERVICES = ("registry", "config", "gateway")
SECRETS = {
    "herald-gateway-credentials": {"credentials.toml": CREDENTIALS_TOML},
    **{f"{name}-internal-tls": None for name in INTERNAL_TLS_SERVICES},
    # The cluster overlay's: where PostgreSQL and NATS are, and the Herald CA
    # every config replica signs with (filled by `cluster_backends`).
    "herald-backends": {"postgres-url": None, "nats-url": None},
    "herald-ca": {"ca.pem": None, "ca.key": None},
}
# Secret files that are not settings: written as they are, never rewritten.
OPAQUE_SUFFIXES = (".crt", ".key", ".pem")

# The service binaries, as the image installs them (deploy/Dockerfile).
IMAGE_BIN_DIR = "/usr/local/bin/"
BINARIES = {"registry", "config", "gateway"}


@pytest.fixture(scope="module")
def internal_pki(tmp_path_factory):
    """The Secrets, with each service's internal TLS Secret made as
    deploy/README.md says: `config internal-pki`, then ca.crt, tls.crt and
    tls.key from its files."""
    out = tmp_path_factory.mktemp("pki") / "herald-pki"
    subprocess.run(
        [str(binary("config")), "internal-pki", "--out", str(out), "--namespace", "herald"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    filled = dict(SECRETS)
    for name in INTERNAL_TLS_SERVICES:
        filled[f"{name}-internal-tls"] = {
            "ca.crt": (out / "ca.pem").read_text(),
            "tls.crt": (out / f"{name}.pem").read_text(),
            "tls.key": (out / f"{name}.key").read_text(),
        }
    return filled


def need(tool_ok, what):
    if not tool_ok:
        message = f"{what} is not installed (.ci/run installs it)"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)


def render(overlay):
    """The overlay's objects, as `kubectl kustomize` renders them."""
    import yaml

    need(shutil.which("kubectl") is not None, "kubectl")
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def workloads(objects):
    """The StatefulSets and Deployments: one pod each is played here."""
    return of_kind(objects, "StatefulSet") + of_kind(objects, "Deployment")


def secret_value(secrets, ref):
    """An env entry's `valueFrom.secretKeyRef`, from the operator's Secrets."""
    secret = secrets.get(ref["name"])
    assert secret is not None and ref["key"] in secret, f"{ref} is not a Secret key deploy/README.md documents"
    return secret[ref["key"]]


def by_name(objects, kind):
    return {o["metadata"]["name"]: o for o in of_kind(objects, kind)}


def app_name(labels):
    return (labels or {}).get("app.kubernetes.io/name")


# ------------------------------------------------------------------ schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(overlay):
    try:
        import kubernetes_validate.utils as kv
    except ImportError:
        kv = None
    need(kv is not None, "kubernetes-validate")
    objects = render(overlay)
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            # strict: a field Kubernetes does not have (`gatewayMap:`) is an error.
            kv.validate(obj, KUBERNETES_VERSION, strict=True)
        except kv.ValidationError as e:
            pytest.fail(f"deploy/overlays/{overlay}: {name} is invalid: {e.message} at {list(e.path)}")
    kinds = {o["kind"] for o in objects}
    assert {"Service", "ConfigMap", "NetworkPolicy"} <= kinds, kinds
    assert kinds & {"StatefulSet", "Deployment"}, kinds


@pytest.fixture
def cluster_backends(tmp_path):
    """The cluster overlay's Secrets: a database of its own on the tests'
    PostgreSQL, a NATS server of its own, and a Herald CA."""
    from test_cluster import NatsServer, postgres_database

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime

    store = postgres_database()
    nats = NatsServer(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Herald CA (manifests test)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    try:
        yield {
            "herald-backends": {"postgres-url": store, "nats-url": nats.url},
            "herald-ca": {
                "ca.pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
                "ca.key": key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ).decode(),
            },
        }
    finally:
        nats.kill()


# ------------------------------------------------------------------ references


def pod_spec(sts):
    return sts["spec"]["template"]["spec"]


def container_port(container, port):
    """A probe's or a Service's port (a number or a port name) as a number
    the container declares."""
    declared = {p["containerPort"]: p for p in container.get("ports", [])}
    if isinstance(port, str):
        named = [p["containerPort"] for p in declared.values() if p.get("name") == port]
        assert named, f"{container['name']}: no container port named {port!r}"
        return named[0]
    assert port in declared, f"{container['name']}: port {port} is not one of its ports {sorted(declared)}"
    return port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_resolves(overlay):
    objects = render(overlay)
    config_maps = by_name(objects, "ConfigMap")
    statefulsets = workloads(objects)
    assert statefulsets
    for sts in statefulsets:
        spec = pod_spec(sts)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, volume
            if "secret" in volume:
                assert volume["secret"]["secretName"] in SECRETS, (
                    f"{volume['secret']['secretName']} is not a Secret deploy/README.md documents"
                )
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in claims, mount
            for item in container.get("env", []):
                if "valueFrom" in item:
                    secret_value(SECRETS, item["valueFrom"]["secretKeyRef"])
            command = container["command"][0]
            assert command.startswith(IMAGE_BIN_DIR) and command[len(IMAGE_BIN_DIR):] in BINARIES, command
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe in container:
                    check = container[probe]
                    kind = next(k for k in ("grpc", "tcpSocket", "httpGet", "exec") if k in check)
                    assert kind != "exec", "the image has no shell tools for exec probes"
                    container_port(container, check[kind]["port"])
    pods = {app_name(s["spec"]["template"]["metadata"]["labels"]): s for s in statefulsets}
    for svc in of_kind(objects, "Service"):
        target = pods[svc["spec"]["selector"]["app.kubernetes.io/name"]]
        container = pod_spec(target)["containers"][0]
        for port in svc["spec"]["ports"]:
            container_port(container, port.get("targetPort", port["port"]))


# ------------------------------------------------------------------ playing a pod


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The rendered overlay, played on this machine under `root`."""

    def __init__(self, objects, root, secrets=None):
        self.objects = objects
        self.root = root
        self.secrets = secrets or SECRETS
        self.config_maps = by_name(objects, "ConfigMap")
        self.service_names = set(by_name(objects, "Service"))
        self.ports = {}

    def port(self, original):
        """The loopback port that stands for `original` (the same for every pod:
        the manifests' ports do not collide)."""
        if original not in self.ports:
            self.ports[original] = free_port()
        return self.ports[original]

    def host_known(self, host):
        """A Service's DNS name (`registry`, `registry-0.registry`, `registry.ns.svc...`)."""
        parts = host.split(".")
        return parts[0] in self.service_names or (len(parts) > 1 and parts[1] in self.service_names)

    def substitute_addresses(self, text):
        def replace(match):
            host, port = match.group(1), int(match.group(2))
            if host in ("0.0.0.0", "[::]", "127.0.0.1", "localhost") or self.host_known(host):
                return f"127.0.0.1:{self.port(port)}"
            pytest.fail(f"{match.group(0)} names a host the manifests do not define")

        return re.sub(r"(\[::\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{2,5})\b", replace, text)

    def callees(self, sts):
        """The Services a pod's settings call (`http://HOST:PORT`), by app name."""
        found = set()
        for text in self.settings_texts(sts):
            for host in re.findall(r"https?://([A-Za-z0-9.-]+):\d+", text):
                assert self.host_known(host), host
                parts = host.split(".")
                found.add(parts[0] if parts[0] in self.service_names else parts[1])
        return found

    def settings_texts(self, sts):
        spec = pod_spec(sts)
        texts = []
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                texts.extend(self.config_maps[volume["configMap"]["name"]].get("data", {}).values())
        for container in spec["containers"]:
            texts.extend(e.get("value", "") for e in container.get("env", []))
        return texts

    def env(self, container, rewrite):
        """A container's environment: plain values rewritten, Secret values as they are."""
        env = {}
        for item in container.get("env", []):
            if "valueFrom" in item:
                value = secret_value(self.secrets, item["valueFrom"]["secretKeyRef"])
                assert value is not None, f"{item['name']}: no value for {item['valueFrom']} in this test"
                env[item["name"]] = value
            else:
                env[item["name"]] = rewrite(item["value"])
        return env


class Pod:
    """One StatefulSet's pod: its filesystem laid under a directory, its
    container's command line, env and files rewritten to it."""

    def __init__(self, cluster, sts):
        self.cluster = cluster
        self.sts = sts
        self.name = sts["metadata"]["name"]
        spec = pod_spec(sts)
        assert len(spec["containers"]) == 1, "one container per pod"
        self.container = spec["containers"][0]
        self.fs = cluster.root / self.name / "fs"
        self.volumes = {v["name"]: v for v in spec.get("volumes", [])}
        self.claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
        self.mounts = self.container.get("volumeMounts", [])
        # Longest first: /etc/herald-credentials before /etc/herald.
        self.mount_paths = sorted((m["mountPath"] for m in self.mounts), key=len, reverse=True)

    def host_path(self, mount_path):
        return self.fs / mount_path.lstrip("/")

    def rewrite(self, text):
        """Mount paths to their directories, addresses to loopback ports."""
        # One pass, so that a directory put in never matches another mount (/tmp).
        paths = "|".join(re.escape(p) for p in self.mount_paths)
        pattern = rf"(?<![\w./-])({paths})(?=[/\"'\s,]|$)"
        text = re.sub(pattern, lambda m: str(self.host_path(m.group(1))), text)
        return self.cluster.substitute_addresses(text)

    def lay_out(self):
        for mount in self.mounts:
            target = self.host_path(mount["mountPath"])
            target.mkdir(parents=True, exist_ok=True)
            if mount["name"] in self.claims:
                continue
            volume = self.volumes[mount["name"]]
            if "configMap" in volume:
                files = self.cluster.config_maps[volume["configMap"]["name"]].get("data", {})
            elif "secret" in volume:
                files = self.cluster.secrets[volume["secret"]["secretName"]]
            elif "emptyDir" in volume:
                files = {}
            else:
                pytest.fail(f"{self.name}: volume {mount['name']} of a kind this test cannot play: {volume}")
            for key, content in files.items():
                (target / key).write_text(content if key.endswith(OPAQUE_SUFFIXES) else self.rewrite(content))
            self.check_settings_paths(files, mount)

    def check_settings_paths(self, files, mount):
        """Every path a TOML file names lies under a mount of this pod, and a
        data_dir under a writable one (the root filesystem is read-only)."""
        for key, content in files.items():
            if not key.endswith(".toml"):
                continue
            for setting, value in walk(tomllib.loads(content)):
                if not (isinstance(value, str) and value.startswith("/")):
                    continue
                under = [m for m in self.mounts if value == m["mountPath"] or value.startswith(m["mountPath"] + "/")]
                assert under, f"{self.name}: {key} sets {setting} = {value!r}, which no volume is mounted at"
                if setting.endswith("data_dir"):
                    assert not under[0].get("readOnly"), f"{self.name}: {setting} is on a read-only mount"

    def start(self):
        self.lay_out()
        command = self.container["command"]
        binary_name = command[0][len(IMAGE_BIN_DIR):]
        args = [self.rewrite(a) for a in command[1:] + self.container.get("args", [])]
        env = self.cluster.env(self.container, self.rewrite)
        log_dir = self.cluster.root / self.name
        self.service = Service(binary_name, log_dir, service_env(env), args=args)
        self.service.wait_ready()
        return self

    def port(self, port):
        return self.cluster.port(container_port(self.container, port))

    def probe(self, which):
        """Runs the container's probe as the kubelet would, polling until it
        passes or the deadline is over."""
        check = self.container.get(which)
        assert check, f"{self.name} has no {which}"
        deadline = time.monotonic() + PROBE_DEADLINE_SECS
        last = None
        while time.monotonic() < deadline:
            assert self.service.proc.poll() is None, (
                f"{self.name} exited with {self.service.proc.returncode}\n" + self.service.tail_text()
            )
            try:
                if "grpc" in check:
                    last = grpc_health(self.port(check["grpc"]["port"]), check["grpc"].get("service", ""))
                elif "tcpSocket" in check:
                    with socket.create_connection(("127.0.0.1", self.port(check["tcpSocket"]["port"])), timeout=2):
                        last = "connected"
                elif "httpGet" in check:
                    import urllib.request

                    url = f"http://127.0.0.1:{self.port(check['httpGet']['port'])}{check['httpGet'].get('path', '/')}"
                    with urllib.request.urlopen(url, timeout=2) as response:
                        last = response.status
                        if 200 <= response.status < 400:
                            return
                if last in ("SERVING", "connected"):
                    return
            except OSError as e:
                last = e
            time.sleep(0.1)
        pytest.fail(f"{self.name}: {which} {check} did not pass: {last}\n" + self.service.tail_text())


def grpc_health(port, service):
    """`grpc.health.v1.Health/Check` for `service`: its status's name."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError as e:
            return f"{e.code()}: {e.details()}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def plain_grpc_call(port, method):
    """Calls `method` with an empty message in plain gRPC, without a
    certificate: the status code it ends with."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            channel.unary_unary(method)(b"", timeout=5)
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


def walk(table, prefix=""):
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from walk(value, name + ".")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from walk(item, name + ".")
                else:
                    yield name, item
        else:
            yield name, value


def start_order(cluster, statefulsets):
    """Callees before their callers."""
    names = {s["metadata"]["name"]: s for s in statefulsets}
    order, seen = [], set()

    def visit(name, path=()):
        assert name not in path, f"a call cycle: {path + (name,)}"
        if name in seen:
            return
        for callee in sorted(cluster.callees(names[name])):
            visit(callee, path + (name,))
        seen.add(name)
        order.append(names[name])

    for name in sorted(names):
        visit(name)
    return order


# ------------------------------------------------------------------ network policies


def policy_for(objects, app):
    policies = [
        p for p in of_kind(objects, "NetworkPolicy") if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == app
    ]
    assert len(policies) == 1, f"expected one NetworkPolicy selecting {app}'s pods, found {len(policies)}"
    policy = policies[0]["spec"]
    assert "Ingress" in policy["policyTypes"], policy
    return policy


def health_ports(container):
    """The container's health-only ports (named `health`: grpc.health_listen_addr)."""
    return {p["containerPort"] for p in container.get("ports", []) if p.get("name") == "health"}


def metrics_ports(container):
    """The container's Prometheus metrics port (named `metrics`: metrics.listen_addr)."""
    return {p["containerPort"] for p in container.get("ports", []) if p.get("name") == "metrics"}


def allowed_sources(rule):
    """The app names a rule's `from` admits; None for anyone."""
    if "from" not in rule:
        return None
    apps = set()
    for peer in rule["from"]:
        assert set(peer) == {"podSelector"}, f"only Herald's pods, by label: {peer}"
        selector = peer["podSelector"]
        if "matchLabels" in selector:
            assert set(selector["matchLabels"]) == {"app.kubernetes.io/name"}, selector
            apps.add(selector["matchLabels"]["app.kubernetes.io/name"])
        for expr in selector.get("matchExpressions", []):
            assert expr["key"] == "app.kubernetes.io/name" and expr["operator"] == "In", expr
            apps.update(expr["values"])
    return apps


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_internal_grpc_ports_admit_only_the_herald_pods_that_call_them(overlay):
    objects = render(overlay)
    cluster = Cluster(objects, Path("/nonexistent"))
    statefulsets = workloads(objects)
    pods = {sts["metadata"]["name"]: sts for sts in statefulsets}
    callers = {}
    for sts in statefulsets:
        for callee in cluster.callees(sts):
            callers.setdefault(callee, set()).add(sts["metadata"]["name"])
    # As the code has it: the config service calls the registry; the gateway both.
    assert callers == {"registry": {"config", "gateway"}, "config": {"gateway"}}, callers
    for svc in of_kind(objects, "Service"):
        app = svc["spec"]["selector"]["app.kubernetes.io/name"]
        service_ports = {p["port"] for p in svc["spec"]["ports"]}
        policy = policy_for(objects, app)
        opened = {}
        for rule in policy.get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            assert ports, f"{app}: a rule without ports opens every port"
            for port in ports:
                opened[port] = allowed_sources(rule)
        if app in callers:
            # Internal: each gRPC port only from the pods that call it; the
            # health-only port (plain gRPC, no API) from anywhere, since the
            # kubelet's probes come from the node.
            container = pod_spec(pods[app])["containers"][0]
            health = health_ports(container)
            metrics = metrics_ports(container)
            assert health and not health & service_ports, (app, health, service_ports)
            assert len(metrics) == 1 and not metrics & (service_ports | health), (app, metrics)
            assert set(opened) == service_ports | health | metrics, (app, opened)
            for port, sources in opened.items():
                if port in health:
                    assert sources is None, f"{app}:{port} (health) admits only {sources}: the probes come from the node"
                elif port in metrics:
                    assert sources is None, f"{app}:{port} (metrics) admits only {sources}: any scraper may read it"
                else:
                    assert sources == callers[app], f"{app}:{port} admits {sources}, callers are {callers[app]}"
            # The probes use the health port (or, for a standby's liveness,
            # the metrics port): the API port takes mutual TLS only.
            for probe in ("readinessProbe", "livenessProbe"):
                check = container[probe]
                if "grpc" in check:
                    assert container_port(container, check["grpc"]["port"]) in health, (app, probe)
                else:
                    assert container_port(container, check["tcpSocket"]["port"]) in metrics, (app, probe)
        else:
            # Public: the gateway's Service ports and its metrics port, from
            # anywhere, and no other.
            container = pod_spec(pods[app])["containers"][0]
            assert service_ports == {8080, 8883}, service_ports
            assert set(opened) == service_ports | metrics_ports(container), (app, opened)
            assert all(sources is None for sources in opened.values()), opened


# ------------------------------------------------------------------ starting the pods


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_starts_as_its_manifest_says_and_becomes_ready(overlay, tmp_path, internal_pki, request):
    try:
        import grpc  # noqa: F401
        from grpc_health.v1 import health_pb2  # noqa: F401

        have_grpc = True
    except ImportError:
        have_grpc = False
    need(have_grpc, "grpcio and grpcio-health-checking")
    objects = render(overlay)
    secrets = dict(internal_pki)
    if any("valueFrom" in e for w in workloads(objects) for e in pod_spec(w)["containers"][0].get("env", [])):
        secrets.update(request.getfixturevalue("cluster_backends"))
    cluster = Cluster(objects, tmp_path, secrets)
    pods = []
    try:
        for sts in start_order(cluster, workloads(objects)):
            pod = Pod(cluster, sts).start()
            pods.append(pod)
            pod.probe("readinessProbe")
            pod.probe("livenessProbe")
        gateway = next(p for p in pods if p.service.name == "gateway")
        endpoint = f"http://127.0.0.1:{gateway.port('http')}"
        # The Secret's key is accepted; the documented development key is not.
        client = make_client(endpoint, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
        assert client.list_things()["ResponseMetadata"]["HTTPStatusCode"] == 200
        import botocore.exceptions

        with pytest.raises(botocore.exceptions.ClientError) as refused:
            make_client(endpoint).list_things()
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
        # The config service answers through the gateway too.
        assert client.list_policies()["ResponseMetadata"]["HTTPStatusCode"] == 200
        # Internal TLS is on: a client without a certificate gets nothing from
        # the API ports, and the probes' port serves health and nothing else.
        for pod, method in (
            (next(p for p in pods if p.name == "registry"), "/herald.registry.v1.Registry/DescribeThing"),
            (next(p for p in pods if p.name == "config"), "/herald.config.v1.Config/ListPolicies"),
        ):
            import grpc

            api = pod.port("grpc")
            assert plain_grpc_call(api, method) == grpc.StatusCode.UNAVAILABLE, f"{pod.name}:{api} answered plain gRPC"
            health = next(iter(health_ports(pod.container)))
            assert plain_grpc_call(pod.port(health), method) == grpc.StatusCode.UNIMPLEMENTED, pod.name
        # Each pod serves its metrics on the port its manifest names.
        for pod in pods:
            port = pod.port(next(iter(metrics_ports(pod.container))))
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
                text = answer.read().decode()
            assert answer.status == 200 and "\nprocess_resident_memory_bytes " in text, (pod.name, text[:500])
        for pod in pods:
            assert pod.service.proc.poll() is None, f"{pod.name} exited\n" + pod.service.tail_text()
    finally:
        codes = {pod.name: pod.service.stop() for pod in reversed(pods)}
    assert all(code == 0 for code in codes.values()), codes
