"""`cargo xtask dev` driven by the real `aws` CLI: the commands of the AWS IoT
documentation, verbatim but for `--endpoint-url`, then Ctrl-C (SIGINT) stops
everything cleanly.

This test starts its own Herald through xtask (marked `standalone`: the
session's services and the per-test reset are not used).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from support import cert_arn, cert_id_of, load_cert, public_key_der, run_aws

pytestmark = pytest.mark.standalone

REPO_ROOT = Path(__file__).resolve().parents[2]
# `cargo xtask dev` builds first; `cargo xtask e2e` has built already, so this
# is normally a few seconds, but a cold or contended build directory is slower.
RUNNING_DEADLINE_SECS = 240
# xtask gives each service up to 15 s after SIGTERM, one after the other.
STOP_DEADLINE_SECS = 60

POLICY_JSON = """{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "iot:Publish",
                "iot:Receive"
            ],
            "Resource": [
                "arn:aws:iot:us-west-2:123456789012:topic/test/topic"
            ]
        },
        {
            "Effect": "Allow",
            "Action": [
                "iot:Subscribe"
            ],
            "Resource": [
                "arn:aws:iot:us-west-2:123456789012:topicfilter/test/topic"
            ]
        },
        {
            "Effect": "Allow",
            "Action": [
                "iot:Connect"
            ],
            "Resource": [
                "arn:aws:iot:us-west-2:123456789012:client/basicPubSub"
            ]
        }
    ]
}
"""


def free_ports(count):
    """Distinct loopback ports that were free a moment ago (xtask dev needs
    fixed ports, so these are chosen here and handed over)."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


class Dev:
    """`cargo xtask dev` as a subprocess, its output collected on a thread."""

    def __init__(self, tmp, env, args=(), data_dir=None):
        self.log_path = tmp / "xtask-dev.log"
        self.lines = []
        self.running = threading.Event()
        self._log = open(self.log_path, "w", encoding="utf-8")
        cargo = os.environ.get("CARGO", "cargo")
        self.proc = subprocess.Popen(
            [cargo, "xtask", "dev", "--data-dir", str(data_dir or tmp / "data"), *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group, as a shell job: SIGINT to the group is Ctrl-C.
            start_new_session=True,
        )
        self._drain = threading.Thread(target=self._pump, daemon=True)
        self._drain.start()

    def _pump(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._log.write(line + "\n")
            self._log.flush()
            self.lines.append(line)
            if "herald is running" in line:
                self.running.set()
        self._log.close()

    def wait_running(self):
        deadline = time.monotonic() + RUNNING_DEADLINE_SECS
        while not self.running.wait(timeout=0.1):
            if self.proc.poll() is not None:
                self._drain.join(timeout=5)
                pytest.fail(f"cargo xtask dev exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no `herald is running` within {RUNNING_DEADLINE_SECS}s:\n{self.tail()}")

    def interrupt(self):
        """Ctrl-C: SIGINT to xtask's process group (the services have their own)."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._drain.join(timeout=5)

    def service_pids(self):
        """The services' PIDs, from xtask's `started NAME (pid N)` lines."""
        return [int(m.group(1)) for m in map(re.compile(r"started [\w-]+ \(pid (\d+)\)").search, self.lines) if m]

    def cleanup(self):
        """After a failure: stop xtask, and any service it left behind, by PID."""
        if self.proc.poll() is None:
            self.interrupt()
            try:
                self.proc.wait(timeout=STOP_DEADLINE_SECS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.service_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def tail(self, lines=80):
        return "\n".join(self.lines[-lines:])


@pytest.fixture
def dev(tmp_path):
    gateway_port, registry_port, config_port, mqtt_port, mqtts_port, wss_port = free_ports(6)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "AWS_"))}
    env.update(
        NO_COLOR="1",
        HERALD_REGISTRY__GRPC__LISTEN_ADDR=f"127.0.0.1:{registry_port}",
        HERALD_CONFIG__GRPC__LISTEN_ADDR=f"127.0.0.1:{config_port}",
        HERALD_GATEWAY__HTTP__LISTEN_ADDR=f"127.0.0.1:{gateway_port}",
        HERALD_GATEWAY__MQTT__LISTEN_ADDR=f"127.0.0.1:{mqtt_port}",
        HERALD_GATEWAY__MQTT__TLS_LISTEN_ADDR=f"127.0.0.1:{mqtts_port}",
        HERALD_GATEWAY__MQTT__WEBSOCKET_LISTEN_ADDR=f"127.0.0.1:{wss_port}",
        HERALD_REGISTRY__METRICS__LISTEN_ADDR="127.0.0.1:0",
        HERALD_CONFIG__METRICS__LISTEN_ADDR="127.0.0.1:0",
        HERALD_GATEWAY__METRICS__LISTEN_ADDR="127.0.0.1:0",
    )
    running = Dev(tmp_path, env)
    try:
        running.wait_running()
        running.endpoint = f"http://127.0.0.1:{gateway_port}"
        running.data_dir = tmp_path / "data"
        yield running
    finally:
        running.cleanup()


def test_the_documented_cli_commands_against_xtask_dev(dev, tmp_path):
    work = tmp_path / "cli"
    work.mkdir()

    def aws(command):
        return run_aws(command, dev.endpoint, work)

    # Event configurations.
    assert aws('aws iot update-event-configurations --event-configurations "{\\"THING\\":{\\"Enabled\\": true}}"') is None
    described = aws("aws iot describe-event-configurations")
    flags = {k: v["Enabled"] for k, v in described["eventConfigurations"].items()}
    assert flags["THING"] is True
    assert len(flags) == 11
    assert [k for k, v in flags.items() if v] == ["THING"]
    assert "creationDate" in described and "lastModifiedDate" in described

    # Where devices connect.
    assert aws("aws iot describe-endpoint --endpoint-type iot:Data-ATS") == {"endpointAddress": "localhost"}

    # A thing.
    created = aws(
        'aws iot create-thing --thing-name MyLightBulb --attribute-payload "{\\"attributes\\": {\\"wattage\\":\\"75\\", \\"model\\":\\"123\\"}}"'
    )
    assert created["thingName"] == "MyLightBulb"
    assert created["thingArn"] == "arn:aws:iot:us-east-1:123456789012:thing/MyLightBulb"
    assert created["thingId"]
    thing = aws('aws iot describe-thing --thing-name "MyLightBulb"')
    assert thing["thingName"] == "MyLightBulb"
    assert thing["thingId"] == created["thingId"]
    assert thing["thingArn"] == created["thingArn"]
    assert thing["defaultClientId"] == "MyLightBulb"
    assert thing["attributes"] == {"wattage": "75", "model": "123"}
    assert thing["version"] == 1

    # A certificate and its keys, written to files.
    keys = aws(
        "aws iot create-keys-and-certificate --set-as-active --certificate-pem-outfile cert.pem "
        "--public-key-outfile pub.key --private-key-outfile priv.key"
    )
    cert_id = keys["certificateId"]
    assert re.fullmatch(r"[0-9a-f]{64}", cert_id), cert_id
    assert keys["certificateArn"] == cert_arn(cert_id)
    assert (work / "cert.pem").read_text() == keys["certificatePem"]
    assert (work / "pub.key").read_text() == keys["keyPair"]["PublicKey"]
    assert (work / "priv.key").read_text() == keys["keyPair"]["PrivateKey"]
    assert cert_id_of((work / "cert.pem").read_text()) == cert_id
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private = load_pem_private_key((work / "priv.key").read_bytes(), password=None)
    assert public_key_der(private) == public_key_der(load_cert(keys["certificatePem"]))
    # Issued by the Herald CA that `xtask dev` keeps under its data directory.
    ca = load_cert((dev.data_dir / "config" / "ca.pem").read_text())
    load_cert(keys["certificatePem"]).verify_directly_issued_by(ca)

    # A policy from a file, attached to the certificate.
    (work / "policy.json").write_text(POLICY_JSON)
    policy = aws("aws iot create-policy --policy-name TestIoTPolicy --policy-document file://policy.json")
    assert policy["policyName"] == "TestIoTPolicy"
    assert policy["policyArn"] == "arn:aws:iot:us-east-1:123456789012:policy/TestIoTPolicy"
    assert policy["policyVersionId"] == "1"
    assert json.loads(policy["policyDocument"]) == json.loads(POLICY_JSON)

    arn = keys["certificateArn"]
    assert aws(f'aws iot attach-policy --policy-name TestIoTPolicy --target "{arn}"') is None
    attached = aws(f'aws iot list-attached-policies --target "{arn}"')
    assert attached["policies"] == [
        {"policyName": "TestIoTPolicy", "policyArn": "arn:aws:iot:us-east-1:123456789012:policy/TestIoTPolicy"}
    ]

    # A job for the thing, and the device completing it, as the README's walkthrough does.
    aws(
        "aws iot update-event-configurations --event-configurations "
        """'{"JOB":{"Enabled":true},"JOB_EXECUTION":{"Enabled":true}}'"""
    )
    job = aws(
        "aws iot create-job --job-id fw-2 --targets arn:aws:iot:us-east-1:123456789012:thing/MyLightBulb "
        """--document '{"operation":"update","version":"2"}'"""
    )
    assert job["jobArn"] == "arn:aws:iot:us-east-1:123456789012:job/fw-2"
    assert aws("aws iot describe-job --job-id fw-2")["job"]["status"] == "IN_PROGRESS"
    started = aws("aws iot-jobs-data start-next-pending-job-execution --thing-name MyLightBulb")
    assert started["execution"]["jobId"] == "fw-2"
    assert started["execution"]["status"] == "IN_PROGRESS"
    assert not aws("aws iot-jobs-data update-job-execution --thing-name MyLightBulb --job-id fw-2 --status SUCCEEDED")
    assert aws("aws iot describe-job --job-id fw-2")["job"]["status"] == "COMPLETED"

    # A document from the documents directory, a rollout rate and a maintenance window, as the README shows.
    documents = dev.data_dir / "registry" / "documents" / "firmware"
    documents.mkdir(parents=True, exist_ok=True)
    (documents / "v3.json").write_text('{"operation":"update"}\n')
    aws(
        "aws iot create-job --job-id fw-3 --targets arn:aws:iot:us-east-1:123456789012:thing/MyLightBulb "
        "--document-source https://s3.amazonaws.com/firmware/v3.json "
        """--job-executions-rollout-config '{"maximumPerMinute": 50}' """
        """--scheduling-config '{"maintenanceWindows": [{"startTime": "cron(0 1 * * ? *)", "durationInMinutes": 120}]}'"""
    )
    described = aws("aws iot describe-job --job-id fw-3")
    assert described["documentSource"] == "https://s3.amazonaws.com/firmware/v3.json"
    assert described["job"]["jobExecutionsRolloutConfig"] == {"maximumPerMinute": 50}
    assert json.loads(aws("aws iot get-job-document --job-id fw-3")["document"]) == {"operation": "update"}

    # Ctrl-C stops the services and xtask, cleanly.
    dev.interrupt()
    try:
        code = dev.wait(timeout=STOP_DEADLINE_SECS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cargo xtask dev still running {STOP_DEADLINE_SECS}s after SIGINT:\n{dev.tail()}")
    assert code == 0, f"cargo xtask dev exited {code}:\n{dev.tail()}"
    for name in ["gateway", "config", "registry"]:
        assert any(f"xtask: {name} stopped" in line for line in dev.lines), dev.tail()


def test_xtask_dev_cluster_runs_herald_on_postgresql_and_nats(tmp_path):
    """`cargo xtask dev --cluster`: PostgreSQL, NATS, the registry and the
    config service on PostgreSQL, two gateways over NATS; a thing made
    through one gateway is listed through the other, a message published on
    one reaches a subscriber on the other, and Ctrl-C stops it all."""
    need_postgres = any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) if Path("/usr/lib/postgresql").exists() else False
    if not need_postgres or shutil.which("nats-server") is None or shutil.which("mosquitto_sub") is None:
        if os.environ.get("HERALD_REQUIRE_POSTGRES") == "1":
            pytest.fail("dev --cluster needs PostgreSQL, nats-server and mosquitto clients (.ci/run installs them)")
        pytest.skip("PostgreSQL, nats-server or the mosquitto clients are not installed")
    ports = free_ports(15)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "AWS_"))}
    env.update(
        NO_COLOR="1",
        HERALD_REGISTRY__GRPC__LISTEN_ADDR=f"127.0.0.1:{ports[0]}",
        HERALD_CONFIG__GRPC__LISTEN_ADDR=f"127.0.0.1:{ports[1]}",
        HERALD_GATEWAY__HTTP__LISTEN_ADDR=f"127.0.0.1:{ports[2]}",
        HERALD_GATEWAY__MQTT__LISTEN_ADDR=f"127.0.0.1:{ports[3]}",
        HERALD_GATEWAY__MQTT__TLS_LISTEN_ADDR=f"127.0.0.1:{ports[4]}",
        HERALD_GATEWAY_B__HTTP__LISTEN_ADDR=f"127.0.0.1:{ports[5]}",
        HERALD_GATEWAY_B__MQTT__LISTEN_ADDR=f"127.0.0.1:{ports[6]}",
        HERALD_GATEWAY_B__MQTT__TLS_LISTEN_ADDR=f"127.0.0.1:{ports[7]}",
        HERALD_GATEWAY_B__METRICS__LISTEN_ADDR=f"127.0.0.1:{ports[8]}",
        HERALD_GATEWAY__MQTT__WEBSOCKET_LISTEN_ADDR=f"127.0.0.1:{ports[13]}",
        HERALD_GATEWAY_B__MQTT__WEBSOCKET_LISTEN_ADDR=f"127.0.0.1:{ports[14]}",
        HERALD_DEV_POSTGRES_PORT=str(ports[9]),
        HERALD_DEV_NATS_PORT=str(ports[10]),
        HERALD_REGISTRY__METRICS__LISTEN_ADDR="127.0.0.1:0",
        HERALD_CONFIG__METRICS__LISTEN_ADDR="127.0.0.1:0",
        HERALD_GATEWAY__METRICS__LISTEN_ADDR="127.0.0.1:0",
    )
    # PostgreSQL runs as the postgres user when this runs as root, and must
    # reach its data folder: not under pytest's private temporary root.
    data_dir = Path(tempfile.mkdtemp(prefix="herald-dev-cluster-"))
    data_dir.chmod(0o755)
    running = Dev(tmp_path, env, args=["--cluster"], data_dir=data_dir)
    try:
        running.wait_running()
        a, b = f"http://127.0.0.1:{ports[2]}", f"http://127.0.0.1:{ports[5]}"
        work = tmp_path / "cli"
        work.mkdir()
        assert run_aws("aws iot create-thing --thing-name lamp-1", a, work)["thingName"] == "lamp-1"
        listed = run_aws("aws iot list-things", b, work)
        assert [t["thingName"] for t in listed["things"]] == ["lamp-1"]
        policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}'
        run_aws(f"aws iot create-policy --policy-name herald-dev --policy-document '{policy}'", a, work)
        creds = ["-u", "herald-dev", "-P", "herald-dev-secret"]
        deadline = time.monotonic() + 60
        received = ""
        while time.monotonic() < deadline and "hello from A" not in received:
            sub = subprocess.Popen(
                ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(ports[6]), *creds, "-i", "sub-b", "-t", "demo/#", "-C", "1", "-W", "3", "-v"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.5)  # mosquitto_sub says nothing once subscribed
            subprocess.run(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(ports[3]), *creds, "-i", "pub-a", "-t", "demo/hello", "-m", "hello from A", "-q", "1"],
                capture_output=True,
                timeout=30,
            )
            received, _ = sub.communicate(timeout=30)
        assert received.strip() == "demo/hello hello from A", received
        running.interrupt()
        assert running.wait(STOP_DEADLINE_SECS) == 0, running.tail()
        assert any("postgres" in line and f"127.0.0.1:{ports[9]}" in line for line in running.lines), running.tail()
        for pid in running.service_pids():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        # PostgreSQL and NATS were stopped too: nothing listens on their ports.
        for port in (ports[9], ports[10]):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        running.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
