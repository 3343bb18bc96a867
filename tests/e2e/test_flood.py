"""A flood of idle HTTP connections, more than the gateway has file
descriptors, starves no one: while it lasts, a SigV4-signed request (boto3)
is answered, and so are an MQTT CONNECT on the plain listener and one on the
TLS listener (with a client certificate), each with a CONNACK.

The gateway runs under `prlimit --nofile=600:600`, with connection caps
that fit in it (HTTP 32, MQTT 16, MQTT/TLS 16) and a short header-read
timeout. Without caps it would accept idle connections until it had no
descriptor left, and then accept nothing on any listener.
"""

import resource
import selectors
import shutil
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import Herald
from support import allow, document, make_client

pytestmark = [
    pytest.mark.standalone,
    pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is not installed"),
]

NOFILE = 600
FLOOD = 800
DEADLINE_SECS = 30
GATEWAY_SETTINGS = {
    "HERALD_GATEWAY__HTTP__MAX_CONNECTIONS": "32",
    "HERALD_GATEWAY__MQTT__MAX_CONNECTIONS": "16",
    "HERALD_GATEWAY__MQTT__MAX_TLS_CONNECTIONS": "16",
    "HERALD_GATEWAY__HTTP__HEADER_READ_TIMEOUT_MS": "200",
}


@pytest.fixture
def flooded_herald():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FLOOD + 200
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"this process may open only {hard} files; the flood needs {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    with tempfile.TemporaryDirectory(prefix="herald-flood-") as tmp:
        herald = Herald(
            Path(tmp),
            gateway_settings=GATEWAY_SETTINGS,
            gateway_wrapper=("prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"),
        )
        try:
            herald.start()
        except BaseException:
            herald.kill()
            raise
        try:
            yield herald
        finally:
            codes = herald.stop()
        assert all(code == 0 for code in codes.values()), f"{codes}\n{herald.tails()}"


class Flood:
    """`count` connections to `addr` that never send a byte, each reopened
    as soon as the server closes it, on a thread, until stopped."""

    def __init__(self, addr, count):
        self.addr = addr
        self.count = count
        self.selector = selectors.DefaultSelector()
        self.stopped = threading.Event()
        self.reopened = 0
        self.thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def _open(self):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(self.addr)
        self.selector.register(sock, selectors.EVENT_READ)

    def _run(self):
        for _ in range(self.count):
            self._open()
        while not self.stopped.is_set():
            for key, _ in self.selector.select(timeout=0.05):
                sock = key.fileobj
                try:
                    closed = sock.recv(64) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    self.selector.unregister(sock)
                    sock.close()
                    self._open()
                    self.reopened += 1
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stopped.set()
        self.thread.join(timeout=10)


def connect_packet(client_id, username=None, password=None):
    """An MQTT 3.1.1 CONNECT, clean session, keep-alive 60."""

    def string(text):
        data = text.encode()
        return len(data).to_bytes(2, "big") + data

    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = string("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + string(client_id)
    if username:
        body += string(username)
    if password:
        body += string(password)
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def connack(sock, packet):
    """Sends CONNECT `packet` on `sock` and reads the CONNACK: (session
    present, return code)."""
    sock.settimeout(DEADLINE_SECS)
    sock.sendall(packet)
    answer = b""
    while len(answer) < 4:
        chunk = sock.recv(4 - len(answer))
        assert chunk, f"closed after {answer!r}, before a whole CONNACK"
        answer += chunk
    assert answer[:2] == b"\x20\x02", answer
    return answer[2], answer[3]


def test_a_flood_beyond_the_descriptor_limit_leaves_every_listener_answering(flooded_herald, tmp_path):
    herald = flooded_herald
    client = make_client(herald.endpoint)
    # A device certificate allowed to connect, made before the flood.
    keys = client.create_keys_and_certificate(setAsActive=True)
    client.create_policy(policyName="flood-connect", policyDocument=document(allow("iot:Connect", "*")))
    client.attach_policy(policyName="flood-connect", target=keys["certificateArn"])
    (tmp_path / "ca.pem").write_text(herald.ca_pem)
    (tmp_path / "device.pem").write_text(keys["certificatePem"])
    (tmp_path / "device.key").write_text(keys["keyPair"]["PrivateKey"])
    tls = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    tls.load_cert_chain(str(tmp_path / "device.pem"), str(tmp_path / "device.key"))
    http_host, http_port = herald.gateway.addr
    mqtt = herald.gateway.endpoint("mqtt")
    mqtt_tls = herald.gateway.endpoint("mqtt tls")

    with Flood((http_host, http_port), FLOOD) as flood:
        # The flood is under way: connections are being closed and reopened.
        deadline = time.monotonic() + DEADLINE_SECS
        while flood.reopened < 2 * 32 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flood.reopened >= 2 * 32, f"the flood never cycled: {flood.reopened}\n{herald.tails()}"

        # A signed request waits its turn in the accept queue and is answered.
        listed = client.list_things()
        assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200

        # Plain MQTT has its own cap: CONNACK (the development user is not
        # allowed to connect without its policy, and is told so: 5).
        with socket.create_connection(mqtt, timeout=DEADLINE_SECS) as sock:
            _, code = connack(sock, connect_packet("flood-plain", "herald-dev", "herald-dev-secret"))
            assert code in (0, 5), code

        # MQTT over TLS, with the device's certificate: CONNACK 0, accepted.
        with socket.create_connection(mqtt_tls, timeout=DEADLINE_SECS) as raw:
            with tls.wrap_socket(raw, server_hostname="localhost") as sock:
                assert connack(sock, connect_packet("flood-tls")) == (0, 0)

        # The gateway is alive and the flood still holds: more than its
        # descriptor limit are connected or waiting.
        assert herald.gateway.proc.poll() is None, herald.tails()
        assert flood.count > NOFILE
