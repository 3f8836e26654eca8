"""Devices that log in with an X.509 certificate from the device CA, against a real
Mosquitto of this test's own (ports 18896-18897, data under .run/certs-test), set up as
scripts/services.sh sets up the project's: a listener that requires a certificate from
the device CA, takes its CN as the username (so the ACL's %u patterns apply) and reads
the CRL, which a revocation rewrites and the broker reloads on SIGHUP."""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

from firmware_sim.fleet import Fleet
from firmware_sim.scenario import fleet_plan
from tests.conftest import ROOT
from transit import pki
from transit.config import Settings
from transit.db import device_certs, devices
from transit.devices import payload as wire
from transit.geofence.corridor import acts_network
from transit.mqtt import ClientCert, make_client
from transit.provision import register_with_certificate, revoke_certificates, sync_broker

CERT_PORT, PLAIN_PORT = 18896, 18897

# paho keeps the socket of a refused TLS handshake open until it is collected.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@dataclass
class Stack:
    run: Settings  # the test's data folder: its password file, ACL, device CA
    device: Settings  # a device's view: mqtts:// to the certificate listener
    admin: Settings  # the backend's view: the password listener
    dir: Path
    made: list[str]

    def register(self, db: psycopg.Connection[Any], device_id: str, **kw: Any) -> pki.Issued:
        self.made.append(device_id)
        issued = register_with_certificate(db, self.run, device_id, **kw)
        return issued

    def cert(self, issued: pki.Issued, key_pem: str | None = None) -> ClientCert:
        folder = self.dir / "devices"
        cert_file, key_file = pki.write_issued(issued, folder)
        if key_pem is not None:
            key_file = folder / f"{issued.device_id}.key"
            key_file.write_text(key_pem)
        assert key_file is not None
        return ClientCert(cert_file, key_file)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[Stack]:
    d = settings.run_dir / "certs-test"
    shutil.rmtree(d, ignore_errors=True)
    (d / "run").mkdir(parents=True)
    for p in (d, d / "run"):
        p.chmod(0o755)
    made = subprocess.run(
        ["bash", str(ROOT / "scripts" / "make-ca.sh"), str(d / "server"), "localhost"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    run = settings.model_copy(update={"run_dir": d / "run"})
    with psycopg.connect(settings.database_url) as conn:
        sync_broker(conn, run, reload=False)  # passwd, acl, the device CA and its CRL
    mq = run.run_dir / "mosquitto"
    ca_dir = run.run_dir / "device-ca"
    (mq / "mosquitto.conf").write_text(
        "\n".join(
            [
                "per_listener_settings false",
                "allow_anonymous false",
                f"password_file {mq / 'passwd'}",
                f"acl_file {mq / 'acl'}",
                f"listener {PLAIN_PORT} 127.0.0.1",
                f"listener {CERT_PORT} 127.0.0.1",
                f"cafile {ca_dir / 'ca.crt'}",
                f"certfile {d / 'server' / 'server.crt'}",
                f"keyfile {d / 'server' / 'server.key'}",
                "require_certificate true",
                "use_identity_as_username true",
                f"crlfile {ca_dir / 'crl.pem'}",
                "persistence false",
                f"log_dest file {mq / 'mosquitto.log'}",
                "log_type all",
                f"pid_file {mq / 'mosquitto.pid'}",
                "user mosquitto",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        for p in (mq, *mq.iterdir()):
            shutil.chown(p, "mosquitto", "mosquitto")
    broker = subprocess.Popen(["mosquitto", "-c", str(mq / "mosquitto.conf")])
    st = Stack(
        run=run,
        device=run.model_copy(
            update={
                "mqtt_url": f"mqtts://127.0.0.1:{CERT_PORT}",
                "mqtt_ca_file": d / "server" / "ca.crt",
            }
        ),
        admin=run.model_copy(update={"mqtt_url": f"mqtt://127.0.0.1:{PLAIN_PORT}"}),
        dir=d,
        made=[],
    )
    try:
        _wait_port(PLAIN_PORT)
        _wait_port(CERT_PORT)
        yield st
    finally:
        broker.terminate()
        broker.wait(10)
        gc.collect()
        with psycopg.connect(settings.database_url) as conn:
            conn.execute("DELETE FROM devices WHERE device_id = ANY(%s)", (st.made,))


def _attempt(settings: Settings, cert: ClientCert, device_id: str) -> tuple[bool, str]:
    """Connect with ``cert``: (True, "") on a successful CONNACK, else (False, why)."""
    c = make_client(
        settings, device_id, "", client_id=f"{device_id}-{secrets.token_hex(2)}", cert=cert
    )
    done = threading.Event()
    out: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        out["reason"] = reason
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = lambda *_: done.set()
    try:
        c.connect("127.0.0.1", CERT_PORT)
        c.loop_start()
        done.wait(10)
        reason = out.get("reason")
        if reason is None:
            return False, "connection closed without CONNACK"
        return (not reason.is_failure), str(reason)
    except (ssl.SSLError, OSError) as exc:
        return False, str(exc)
    finally:
        c.disconnect()
        c.loop_stop()
        sock = c.socket()
        if sock is not None:
            sock.close()


def _subscriber(settings: Settings, topic: str) -> tuple[mqtt.Client, list[mqtt.MQTTMessage]]:
    got: list[mqtt.MQTTMessage] = []
    ready = threading.Event()
    sub = make_client(settings, settings.mqtt_admin_user, settings.mqtt_admin_password)
    sub.on_message = lambda _c, _u, m: got.append(m)
    sub.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda *_: ready.set()
    sub.connect("127.0.0.1", PLAIN_PORT)
    sub.loop_start()
    assert ready.wait(10), "the subscriber did not subscribe"
    return sub, got


def test_a_device_publishes_signed_telemetry_with_its_certificate_on_its_own_topic_only(
    stack: Stack, db: psycopg.Connection[Any]
) -> None:
    token = secrets.token_hex(3).upper()
    me, other = f"CRT{token}A", f"CRT{token}B"
    key = secrets.token_bytes(32)
    mine = stack.register(db, me, hmac_key=key)  # the key pair made by the registration
    stack.register(db, other)
    sub, got = _subscriber(stack.admin, "transit/v1/devices/+/telemetry")
    try:
        plan = fleet_plan(acts_network(), 1, seed=3, incidents=False, traffic=False)[0]
        truck = plan.truck(1)
        truck.device_id = me
        fleet = Fleet(
            stack.device,
            [truck],
            realtime=False,
            keys={me: key},
            certs={me: stack.cert(mine, mine.key_pem)},
        )
        fleet.connect()
        try:
            # Forged first, then its own: when its own has arrived, a forged one let
            # through would have arrived before it.
            c = fleet.clients[me]
            c.publish(wire.topic_for(other, "telemetry"), b"forged", qos=1).wait_for_publish(5)
            fleet.run(steps=3, start=datetime.now(UTC) - timedelta(seconds=30))
            fleet.flush()
        finally:
            fleet.close()
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert [m.topic for m in got] == [wire.topic_for(me, "telemetry")] * 3
    for m in got:
        sig = dict(m.properties.UserProperty)["sig"]  # type: ignore[union-attr]
        wire.verify(key, m.topic, m.payload, sig)


def test_a_certificate_from_another_ca_is_refused(
    stack: Stack, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    device_id = f"CRT{secrets.token_hex(3).upper()}X"
    stack.register(db, device_id)  # registered, but this certificate is not the CA's
    stranger = pki.DeviceCA.open(tmp_path / "other-ca", datetime.now(UTC))
    key = pki.new_key()
    forged = stranger.issue(device_id, key.public_key(), datetime.now(UTC))
    ok, why = _attempt(stack.device, stack.cert(forged, pki.key_pem(key)), device_id)
    assert not ok, why


def test_a_revoked_certificate_is_refused_on_its_next_connection_after_the_reload(
    stack: Stack, db: psycopg.Connection[Any]
) -> None:
    token = secrets.token_hex(3).upper()
    ids = [f"CRT{token}R1", f"CRT{token}R2", f"CRT{token}OK"]
    certs = {}
    for d in ids:
        issued = stack.register(db, d)
        certs[d] = stack.cert(issued, issued.key_pem)
        ok, why = _attempt(stack.device, certs[d], d)
        assert ok, f"{d} before any revocation: {why}"
    log = stack.run.run_dir / "mosquitto" / "mosquitto.log"
    # Two revocations one after the other: Mosquitto 2.0 adds each CRL it reloads to the
    # same store, so the second must win over the first.
    for revoked in ids[:2]:
        reloads = log.read_text().count("Reloading config")
        assert revoke_certificates(db, stack.run, revoked), "nothing revoked"
        deadline = time.monotonic() + 10
        while log.read_text().count("Reloading config") == reloads:
            assert time.monotonic() < deadline, "the broker did not reload"
            time.sleep(0.05)
        ok, why = _attempt(stack.device, certs[revoked], revoked)
        assert not ok, f"{revoked} still accepted after its revocation"
    ok, why = _attempt(stack.device, certs[ids[0]], ids[0])
    assert not ok, "the first revocation was lost by the second reload"
    ok, why = _attempt(stack.device, certs[ids[2]], ids[2])
    assert ok, f"a device not revoked is refused after the reloads: {why}"
    assert {r["serial"] for r in device_certs.for_device(db, ids[0]) if r["revoked_at"]}


def test_registering_with_a_certificate_leaves_the_password_file_alone(
    stack: Stack, db: psycopg.Connection[Any]
) -> None:
    passwd = stack.run.run_dir / "mosquitto" / "passwd"
    token = secrets.token_hex(3).upper()
    before = (passwd.read_bytes(), passwd.stat().st_mtime_ns)
    key = pki.new_key()
    stack.register(db, f"CRT{token}P", csr=pki.csr_pem(key, f"CRT{token}P"))
    stack.register(db, f"CRT{token}Q")
    assert (passwd.read_bytes(), passwd.stat().st_mtime_ns) == before
    # The password path, for comparison, rewrites it.
    stack.made.append(f"PWD{token}")
    devices.register(db, f"PWD{token}")
    db.commit()
    sync_broker(db, stack.run, reload=False)
    assert passwd.read_bytes() != before[0]
    assert f"PWD{token}:".encode() in passwd.read_bytes()
    assert f"CRT{token}P:".encode() not in passwd.read_bytes()


def test_a_password_device_moved_to_a_certificate_loses_its_password(
    stack: Stack, db: psycopg.Connection[Any]
) -> None:
    device_id = f"MOV{secrets.token_hex(3).upper()}"
    stack.made.append(device_id)
    devices.register(db, device_id)
    db.commit()
    passwd = stack.run.run_dir / "mosquitto" / "passwd"
    sync_broker(db, stack.run, reload=False)
    assert f"{device_id}:".encode() in passwd.read_bytes()
    stack.register(db, device_id)
    assert f"{device_id}:".encode() not in passwd.read_bytes()


@pytest.mark.parametrize(
    ("csr", "problem"),
    [
        (b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n", "malformed CSR"),
        (b"\x30\x03\x02\x01\x00", "malformed CSR"),
        (lambda: pki.csr_pem(pki.new_key(), "SOMEONE-ELSE"), "is not the device id"),
    ],
)
def test_a_bad_csr_is_refused_naming_the_problem_and_registers_nothing(
    stack: Stack, tx: psycopg.Connection[Any], csr: Any, problem: str
) -> None:
    device_id = f"BAD{secrets.token_hex(3).upper()}"
    with pytest.raises(pki.CertificateRequestError, match=problem) as err:
        register_with_certificate(tx, stack.run, device_id, csr=csr() if callable(csr) else csr)
    if "device id" in problem:
        assert "SOMEONE-ELSE" in str(err.value) and device_id in str(err.value)
    assert not devices.exists(tx, device_id)


@pytest.mark.parametrize(
    ("device_id", "problem"),
    [("bad/id", "is not allowed"), ("transit-ingest", "backend user")],
)
def test_a_bad_device_id_is_refused(
    stack: Stack, tx: psycopg.Connection[Any], device_id: str, problem: str
) -> None:
    with pytest.raises(pki.CertificateRequestError, match=problem):
        register_with_certificate(tx, stack.run, device_id)


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRANSIT_RUN_DIR": str(stack.run.run_dir)}
    return subprocess.run(
        [sys.executable, "-m", "transit.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_the_cli_registers_with_a_certificate_that_logs_in_and_revokes_it(
    stack: Stack, tmp_path: Path
) -> None:
    device_id = f"CRT{secrets.token_hex(3).upper()}CLI"
    stack.made.append(device_id)
    done = _cli(stack, "devices", "register", device_id, "--cert", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"device {device_id} registered (tracker) with certificate" in done.stdout
    cert = ClientCert(tmp_path / f"{device_id}.crt", tmp_path / f"{device_id}.key")
    ok, why = _attempt(stack.device, cert, device_id)
    assert ok, f"the certificate the CLI wrote does not log in: {why}"

    log = stack.run.run_dir / "mosquitto" / "mosquitto.log"
    reloads = log.read_text().count("Reloading config")
    serial = next(line for line in done.stdout.splitlines() if "with certificate" in line)
    serial = serial.rsplit(" ", 1)[1]
    # as `openssl x509 -serial` prints it: upper case, in pairs with colons
    openssl = ":".join(serial.upper().zfill(40)[i : i + 2] for i in range(0, 40, 2))
    done = _cli(stack, "devices", "revoke", device_id, "--serial", openssl)
    assert done.returncode == 0, done.stderr
    assert f"revoked {serial}" in done.stdout
    deadline = time.monotonic() + 10
    while log.read_text().count("Reloading config") == reloads:
        assert time.monotonic() < deadline, "the broker did not reload"
        time.sleep(0.05)
    ok, why = _attempt(stack.device, cert, device_id)
    assert not ok, "still accepted after `transit devices revoke`"
    again = _cli(stack, "devices", "revoke", device_id)
    assert again.returncode == 1 and "no valid certificate" in again.stderr


def test_the_cli_refuses_a_bad_csr_with_the_reason(stack: Stack, tmp_path: Path) -> None:
    csr = tmp_path / "bad.csr"
    csr.write_text("-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n")
    device_id = f"CRT{secrets.token_hex(3).upper()}BAD"
    done = _cli(stack, "devices", "register", device_id, "--csr", str(csr), "--out", str(tmp_path))
    assert done.returncode == 2
    assert "transit: error:" in done.stderr and "CSR" in done.stderr.upper()
    assert not (tmp_path / f"{device_id}.crt").exists()


def test_concurrent_revocations_all_reach_the_crl(stack: Stack) -> None:
    """Officers revoke stolen devices at the same moment (several API processes, each
    its own connection): the revocation list the broker reads must list every one."""
    from cryptography import x509

    token = secrets.token_hex(3).upper()
    ids = [f"CRT{token}C{i}" for i in range(8)]
    serials = {}
    with psycopg.connect(stack.run.database_url) as conn:
        for d in ids:
            serials[d] = stack.register(conn, d).serial
            conn.commit()
    start = threading.Barrier(len(ids))
    errors: list[BaseException] = []

    def revoke(device_id: str) -> None:
        try:
            with psycopg.connect(stack.run.database_url) as conn:
                start.wait(10)
                assert revoke_certificates(conn, stack.run, device_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=revoke, args=(d,)) for d in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    crl = x509.load_pem_x509_crl((stack.run.run_dir / "device-ca" / "crl.pem").read_bytes())
    listed = {format(r.serial_number, "x") for r in crl}
    assert set(serials.values()) <= listed, set(serials.values()) - listed
    leftovers = [p.name for p in (stack.run.run_dir / "device-ca").iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_the_cli_refuses_an_out_folder_it_cannot_use_before_registering(
    stack: Stack, tmp_path: Path, db: psycopg.Connection[Any]
) -> None:
    """The private key made here exists nowhere else: where it goes is checked first."""
    device_id = f"CRT{secrets.token_hex(3).upper()}OUT"
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    done = _cli(stack, "devices", "register", device_id, "--cert", "--out", str(a_file))
    assert done.returncode == 2 and "is not a directory" in done.stderr
    (tmp_path / f"{device_id}.key").write_text("an earlier key")
    done = _cli(stack, "devices", "register", device_id, "--cert", "--out", str(tmp_path))
    assert done.returncode == 2 and "exists" in done.stderr
    assert (tmp_path / f"{device_id}.key").read_text() == "an earlier key"
    assert not devices.exists(db, device_id)
