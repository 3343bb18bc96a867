"""Starts Herald's three binaries once per session (registry, config,
gateway; test mode, port 0, a temporary data directory), resets their state
before each test with a SigV4-signed `POST /_herald/reset`, and hands tests a
boto3 `iot` client pointed at the gateway.

`cargo xtask e2e` builds the binaries and names them in `HERALD_E2E_<SVC>_BIN`;
without those, `target/debug/<name>` under the repository root is used.
"""

import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import make_client, signed  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_DEADLINE_SECS = 30
STOP_DEADLINE_SECS = 20
LOG_TAIL_LINES = 60

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# `... grpc listening addr=127.0.0.1:PORT ...` or `... http listening addr=...`
# in plain logs, or `"message":"grpc listening","addr":"127.0.0.1:PORT"` in JSON ones.
# Every `<kind> listening addr=HOST:PORT` line, e.g. the gateway's `mqtt tls listening`.
LISTENING = re.compile(r"\b((?:grpc|http|mqtt|metrics)(?: tls| websocket)?) listening\b.*?\baddr\"?\s*[=:]\s*\"?(\d+\.\d+\.\d+\.\d+):(\d+)")
READY = re.compile(r"\b(?:grpc|http) listening\b.*?\baddr\"?\s*[=:]\s*\"?(\d+\.\d+\.\d+\.\d+):(\d+)")


def binary(name):
    """The service binary: `HERALD_E2E_<NAME>_BIN`, `HERALD_E2E_BIN_DIR/<name>`,
    or `target/debug/<name>` under the repository root."""
    explicit = os.environ.get(f"HERALD_E2E_{name.upper()}_BIN")
    if explicit:
        return Path(explicit)
    bin_dir = os.environ.get("HERALD_E2E_BIN_DIR")
    if bin_dir:
        return Path(bin_dir) / name
    return REPO_ROOT / "target" / "debug" / name


def service_env(extra):
    """The environment for a service: ours without any HERALD_ setting that
    could point it elsewhere, plain logs, and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env["NO_COLOR"] = "1"
    env.setdefault("RUST_BACKTRACE", "1")
    env.update(extra)
    return env


class Service:
    """One running binary, its output drained into a log file on a thread."""

    def __init__(self, name, log_dir, env, args=(), wrapper=()):
        self.name = name
        self.path = binary(name)
        if not self.path.is_file():
            raise RuntimeError(
                f"{self.path} does not exist: build it with `cargo build --bins` "
                "(or run the suite with `cargo xtask e2e`)"
            )
        self.log_path = log_dir / f"{name}.log"
        self.tail = collections.deque(maxlen=400)
        self.addr = None
        self.listening = {}
        self._ready = threading.Event()
        self._log = open(self.log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [*wrapper, str(self.path), *args],
            cwd=log_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C at the terminal reaches pytest, whose
            # teardown then stops the services in order.
            start_new_session=True,
        )
        self._drain = threading.Thread(target=self._pump, name=f"drain-{name}", daemon=True)
        self._drain.start()

    def _pump(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\r\n")
            self._log.write(line + "\n")
            self._log.flush()
            self.tail.append(line)
            listening = LISTENING.search(line)
            if listening:
                self.listening[listening.group(1)] = (listening.group(2), int(listening.group(3)))
            if self.addr is None:
                match = READY.search(line)
                if match:
                    self.addr = (match.group(1), int(match.group(2)))
                    self._ready.set()
        self._log.close()

    def wait_ready(self):
        """Waits for the `listening addr=` line; fails if the process exits first
        or the deadline passes."""
        deadline = time.monotonic() + READY_DEADLINE_SECS
        while not self._ready.wait(timeout=0.05):
            if self.proc.poll() is not None:
                self._drain.join(timeout=2)
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before listening\n"
                    + self.tail_text()
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not log `listening addr=` within {READY_DEADLINE_SECS}s\n"
                    + self.tail_text()
                )
        return self.addr

    def endpoint(self, kind):
        """The (host, port) of a `<kind> listening` line, e.g. `mqtt tls`,
        waiting for it with a deadline."""
        deadline = time.monotonic() + READY_DEADLINE_SECS
        while kind not in self.listening:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} never logged `{kind} listening`\n" + self.tail_text())
            time.sleep(0.05)
        return self.listening[kind]

    @property
    def url(self):
        host, port = self.addr
        return f"http://{host}:{port}"

    def stop(self):
        """SIGTERM, then waits for the exit; returns the exit code (None when it
        had to be killed after the deadline)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE_SECS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._drain.join(timeout=2)
                return None
        self._drain.join(timeout=5)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail_text(self, lines=LOG_TAIL_LINES):
        last = list(self.tail)[-lines:]
        return f"--- last {len(last)} lines of {self.log_path} ---\n" + "\n".join(last)


class Herald:
    """The three services, wired together, in test mode."""

    def __init__(self, root, gateway_settings=None, gateway_wrapper=()):
        self.root = root
        self.services = []
        # Settings over the defaults below, and a command the gateway runs
        # under (`prlimit ...`), for tests that start a Herald of their own.
        self.gateway_settings = gateway_settings or {}
        self.gateway_wrapper = gateway_wrapper
        data = root / "data"
        self.registry_dir = data / "registry"
        self.config_dir = data / "config"
        self.gateway_dir = data / "gateway"

    def start(self):
        registry = self._start(
            "registry",
            {
                "HERALD_REGISTRY__GRPC__LISTEN_ADDR": "127.0.0.1:0",
                "HERALD_REGISTRY__DATA_DIR": str(self.registry_dir),
                "HERALD_REGISTRY__TEST_MODE": "true",
                "HERALD_REGISTRY__INTERNAL_TLS__ENABLED": "false",
                "HERALD_REGISTRY__THING_TYPE_DELETE_DELAY_SECS": "0",
                "HERALD_REGISTRY__METRICS__LISTEN_ADDR": "127.0.0.1:0",
            },
        )
        config = self._start(
            "config",
            {
                "HERALD_CONFIG__GRPC__LISTEN_ADDR": "127.0.0.1:0",
                "HERALD_CONFIG__DATA_DIR": str(self.config_dir),
                "HERALD_CONFIG__REGISTRY_URL": registry.url,
                "HERALD_CONFIG__TEST_MODE": "true",
                "HERALD_CONFIG__INTERNAL_TLS__ENABLED": "false",
                "HERALD_CONFIG__METRICS__LISTEN_ADDR": "127.0.0.1:0",
            },
        )
        self.gateway = self._start(
            "gateway",
            {
                "HERALD_GATEWAY__HTTP__LISTEN_ADDR": "127.0.0.1:0",
                "HERALD_GATEWAY__MQTT__LISTEN_ADDR": "127.0.0.1:0",
                "HERALD_GATEWAY__MQTT__TLS_LISTEN_ADDR": "127.0.0.1:0",
                "HERALD_GATEWAY__DATA_DIR": str(self.gateway_dir),
                "HERALD_GATEWAY__REGISTRY_URL": registry.url,
                "HERALD_GATEWAY__CONFIG_URL": config.url,
                "HERALD_GATEWAY__TEST_MODE": "true",
                "HERALD_GATEWAY__INTERNAL_TLS__ENABLED": "false",
                "HERALD_GATEWAY__METRICS__LISTEN_ADDR": "127.0.0.1:0",
                **self.gateway_settings,
            },
            wrapper=self.gateway_wrapper,
        )
        self.endpoint = self.gateway.url

    def _start(self, name, settings, wrapper=()):
        service = Service(name, self.root, service_env(settings), wrapper=wrapper)
        self.services.append(service)
        service.wait_ready()
        return service

    @property
    def ca_pem(self):
        """The Herald CA's certificate, written by the config service at first start."""
        return (self.config_dir / "ca.pem").read_text()

    def stop(self):
        """Stops the gateway, then config, then the registry; returns
        {name: exit code}."""
        codes = {}
        for service in reversed(self.services):
            codes[service.name] = service.stop()
        return codes

    def kill(self):
        for service in reversed(self.services):
            service.kill()

    def tails(self, lines=LOG_TAIL_LINES):
        return "\n\n".join(service.tail_text(lines) for service in self.services)


_HERALD = None


@pytest.fixture(scope="session")
def herald():
    """The running services; stopped at the end of the session, each of
    which must then exit 0."""
    global _HERALD
    with tempfile.TemporaryDirectory(prefix="herald-e2e-") as tmp:
        instance = Herald(Path(tmp))
        try:
            instance.start()
        except BaseException:
            instance.kill()
            raise
        _HERALD = instance
        try:
            yield instance
        finally:
            _HERALD = None
            codes = instance.stop()
            bad = {name: code for name, code in codes.items() if code != 0}
            if bad:
                pytest.fail(
                    "services did not exit 0 within "
                    f"{STOP_DEADLINE_SECS}s of SIGTERM (None: killed): {bad}\n{instance.tails()}"
                )


@pytest.fixture(autouse=True)
def reset(request):
    """Wipes the registry's and the config service's state before each test,
    through the gateway's test-mode endpoint (skipped for tests marked
    `standalone`, which start their own Herald)."""
    if request.node.get_closest_marker("standalone"):
        yield None
        return
    instance = request.getfixturevalue("herald")
    response = signed(instance.endpoint, "POST", "/_herald/reset")
    assert response.status_code == 200, (
        f"POST /_herald/reset answered {response.status_code}: {response.content!r}"
    )
    yield instance


@pytest.fixture(scope="session")
def client(herald):
    """boto3's `iot` client, signed with the development key pair."""
    return make_client(herald.endpoint)


@pytest.fixture(scope="session")
def jobs_data(herald):
    """boto3's `iot-jobs-data` client (the device side of jobs), on the same endpoint."""
    return make_client(herald.endpoint, service="iot-jobs-data")


@pytest.fixture(scope="session")
def unchecked_client(herald):
    """The same client without botocore's parameter validation, to send what
    the model forbids (an empty list, say) and see what Herald answers."""
    return make_client(herald.endpoint, validate=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the last lines of every service's log."""
    report = yield
    if report.failed and _HERALD is not None:
        report.sections.append(("herald service logs", _HERALD.tails()))
    return report
