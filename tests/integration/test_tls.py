"""Transport security as deployed: the CA script's certificates, a real Mosquitto with
a TLS listener, and the API over HTTPS, all on loopback."""

from __future__ import annotations

import gc
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from transit.mqtt import make_client

# paho keeps the socket of a refused TLS handshake open until it is collected: a
# warning about the client library, not about what is tested here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def tls_dir(settings) -> Path:
    """Under the project's run folder: the broker, once it drops to its own user,
    must reach it (pytest's own temporary folders are private to root)."""
    d = settings.run_dir / "tls-test"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    d.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def certs(tls_dir) -> Path:
    d = tls_dir / "certs"
    d.mkdir()
    d.chmod(0o755)
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "make-ca.sh"), str(d), "localhost"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return d


def test_the_ca_script_makes_a_chain_openssl_accepts(certs) -> None:
    ok = subprocess.run(
        ["openssl", "verify", "-CAfile", str(certs / "ca.crt"), str(certs / "server.crt")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "OK" in ok.stdout
    text = subprocess.run(
        ["openssl", "x509", "-in", str(certs / "server.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
    ).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text


def test_mqtt_over_tls_with_the_project_users(settings, certs, tls_dir) -> None:
    port = free_port()
    tmp_path = tls_dir / "broker"
    tmp_path.mkdir()
    main = settings.run_dir / "mosquitto"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                "per_listener_settings false",
                "allow_anonymous false",
                f"password_file {main / 'passwd'}",
                f"acl_file {main / 'acl'}",
                f"listener {port} 127.0.0.1",
                f"cafile {certs / 'ca.crt'}",
                f"certfile {certs / 'server.crt'}",
                f"keyfile {certs / 'server.key'}",
                "tls_version tlsv1.2",
                "persistence false",
                f"log_dest file {tmp_path / 'mosquitto.log'}",
                "user mosquitto",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        shutil.chown(tmp_path, "mosquitto", "mosquitto")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)])
    try:
        tls = settings.model_copy(
            update={"mqtt_url": f"mqtts://127.0.0.1:{port}", "mqtt_ca_file": certs / "ca.crt"}
        )
        got = threading.Event()
        sub = make_client(tls, settings.mqtt_admin_user, settings.mqtt_admin_password)
        sub.on_message = lambda *_: got.set()
        sub.on_connect = lambda c, *_: c.subscribe("transit/v1/devices/TLS-PROBE/status", qos=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                sub.connect("127.0.0.1", port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        sub.loop_start()
        pub = make_client(tls, settings.mqtt_admin_user, settings.mqtt_admin_password)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        time.sleep(0.5)
        pub.publish("transit/v1/devices/TLS-PROBE/status", b"{}", qos=1).wait_for_publish(5)
        assert got.wait(5), "a message over TLS did not arrive"
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()
            sock = c.socket()
            if sock is not None:
                sock.close()
        # A client that does not trust the CA is refused by the handshake.
        stranger = settings.model_copy(update={"mqtt_url": f"mqtts://127.0.0.1:{port}"})
        bad = make_client(stranger, settings.mqtt_admin_user, settings.mqtt_admin_password)
        refused = None
        try:
            bad.connect("127.0.0.1", port)
        except ssl.SSLError as exc:
            refused = str(exc)  # not the exception: its frames hold paho's socket
        finally:
            sock = bad.socket()
            if sock is not None:
                sock.close()
        assert refused is not None and "CERTIFICATE_VERIFY_FAILED" in refused
    finally:
        broker.terminate()
        broker.wait(10)
        gc.collect()  # the refused client's socket goes now, under this module's filter


def test_the_api_over_https(certs) -> None:
    port = free_port()
    env = dict(
        os.environ,
        TRANSIT_API_TLS_CERT=str(certs / "server.crt"),
        TRANSIT_API_TLS_KEY=str(certs / "server.key"),
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "transit.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
    )
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"https://localhost:{port}/health", context=ctx, timeout=2
                ) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        # Plain HTTP is not served on that port.
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        api.terminate()
        api.wait(10)
