"""The device CA: per-device X.509 client certificates and their revocation list.

A device logs into the broker's certificate listener with a certificate whose common
name (CN) is its device id; Mosquitto takes that name as the username
(``use_identity_as_username``), so the ACL's ``%u`` patterns apply to it, and refuses a
certificate listed in the CRL (``crlfile``). The CA lives in a folder of its own
(``ca.key``, readable by its owner only; ``ca.crt`` and ``crl.pem``, which the broker
reads). ECDSA P-256 throughout. Issuing costs the same whatever the fleet's size: one
signature, one row; nothing the broker reads changes, except the CRL on a revocation.
docs/credentials.md says why this design and how the broker is set up.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from transit.devices.payload import DEVICE_ID_RE

CERT_DAYS = 825  # a device certificate's life (the CA/Browser limit of old; renew before)
CA_DAYS = 3650
CRL_DAYS = 30  # how long a CRL is believed: re-signed at every set-up and revocation
BACKDATE = timedelta(minutes=5)  # tolerate a device clock a little behind
_CURVES = (ec.SECP256R1, ec.SECP384R1)
_MIN_RSA_BITS = 2048

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class CertificateRequestError(ValueError):
    """A bad device id or certificate signing request, with what is wrong in words."""


@dataclass(frozen=True)
class Issued:
    """A certificate just issued: its PEM, serial (lowercase hex) and validity, and the
    private key's PEM when the registration made the key pair (shown once, never
    stored)."""

    device_id: str
    serial: str
    cert_pem: str
    not_before: datetime
    not_after: datetime
    key_pem: str | None = None


@dataclass(frozen=True)
class Revoked:
    """One revoked certificate, as the CRL lists it."""

    serial: str
    revoked_at: datetime


def check_device_id(device_id: str, reserved: frozenset[str] = frozenset()) -> None:
    """Refuse a device id the topics do not allow, or a backend user's name (a device
    certificate with that name would log in as that user)."""
    if not DEVICE_ID_RE.match(device_id):
        raise CertificateRequestError(
            f"device id {device_id!r} is not allowed (letters, digits, '_', '.', '-';"
            " at most 64, starting with a letter or digit)"
        )
    if device_id in reserved:
        raise CertificateRequestError(f"device id {device_id!r} is a backend user's name")


def parse_csr(data: bytes | str, device_id: str) -> PublicKey:
    """The public key of a device's CSR (PEM or DER), once checked: it parses, its
    signature verifies (the device holds the key), its CN is ``device_id``, and its key
    is ECDSA P-256/P-384 or RSA of 2048 bits or more. Anything else in the request
    (other names, extensions) is ignored: the certificate says only what the CA says.

    Raises:
        CertificateRequestError: naming the problem.
    """
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(raw)
        else:
            csr = x509.load_der_x509_csr(raw)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateRequestError(
            f"malformed CSR: not a PKCS#10 certificate signing request ({exc})"
        ) from None
    if not csr.is_signature_valid:
        raise CertificateRequestError("CSR signature does not verify with its own key")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise CertificateRequestError(f"CSR has no common name (CN); it must be {device_id!r}")
    cn = names[0].value
    if cn != device_id:
        raise CertificateRequestError(f"CSR common name {cn!r} is not the device id {device_id!r}")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise CertificateRequestError(
                f"CSR key is on curve {key.curve.name}; P-256 or P-384 is accepted"
            )
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise CertificateRequestError(
                f"CSR key is RSA of {key.key_size} bits; at least {_MIN_RSA_BITS} are needed"
            )
        return key
    raise CertificateRequestError(
        f"CSR key type {type(key).__name__} is not accepted (ECDSA P-256 or RSA)"
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    """A private key as unencrypted PKCS#8 PEM (what paho and OpenSSL load)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def csr_pem(key: ec.EllipticCurvePrivateKey, common_name: str) -> str:
    """A CSR for ``common_name`` signed by ``key``: what a device (or a test) sends."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


class DeviceCA:
    """A CA in ``directory`` (``ca.key``, ``ca.crt``, ``crl.pem``) that issues device
    certificates and signs the revocation list. :meth:`open` makes it when missing."""

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate):
        self.directory = directory
        self.key = key
        self.cert = cert

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @classmethod
    def open(cls, directory: Path, now: datetime, name: str = "transit device CA") -> DeviceCA:
        """The CA in ``directory``; made first (key, self-signed certificate, an empty
        CRL) when the folder holds none."""
        key_file, cert_file = directory / "ca.key", directory / "ca.crt"
        if not (key_file.exists() and cert_file.exists()):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)  # the broker, under its own user, reads ca.crt and crl.pem
            # Several processes may find no CA at once: one makes it, the others wait
            # and read it (two keys would make certificates that never verify).
            with (directory / "ca.lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not (key_file.exists() and cert_file.exists()):
                    return cls._make(directory, now, name)
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file} is not an ECDSA key")
        return cls(directory, key, x509.load_pem_x509_certificate(cert_file.read_bytes()))

    @classmethod
    def _make(cls, directory: Path, now: datetime, name: str) -> DeviceCA:
        """A new CA in ``directory``: key, self-signed certificate, an empty CRL."""
        cert_file = directory / "ca.crt"
        key = new_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "transit"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(directory / "ca.key", key_pem(key).encode(), 0o600)
        _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        ca = cls(directory, key, cert)
        ca.write_crl([], now)
        return ca

    def issue(self, device_id: str, public_key: PublicKey, now: datetime) -> Issued:
        """A client certificate for ``device_id`` (CN) on ``public_key``: TLS client
        authentication only, valid ``CERT_DAYS``, a random 159-bit serial."""
        not_before, not_after = now - BACKDATE, now + timedelta(days=CERT_DAYS)
        serial = x509.random_serial_number()
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Issued(
            device_id=device_id,
            serial=format(serial, "x"),
            cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            not_before=not_before.replace(microsecond=0),
            not_after=not_after.replace(microsecond=0),
        )

    def crl_is_current(self, revoked: list[Revoked], now: datetime) -> bool:
        """Whether the CRL on disk lists exactly ``revoked`` and has more than half its
        life ahead (then signing it again would change nothing the broker needs)."""
        if not self.crl_path.exists():
            return False
        crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
        listed = {format(r.serial_number, "x") for r in crl}
        ahead = (crl.next_update_utc or now) - now
        return listed == {r.serial for r in revoked} and ahead > timedelta(days=CRL_DAYS / 2)

    def write_crl(self, revoked: list[Revoked], now: datetime) -> Path:
        """Sign and write (atomically) the CRL listing ``revoked``, believed for
        ``CRL_DAYS``. Its lastUpdate is later than the file's before, by a second at
        least: a broker that keeps every CRL it loaded (Mosquitto 2.0 adds each reload
        to the same store) takes the newest by that date."""
        last = now.replace(microsecond=0)
        if self.crl_path.exists():
            before = x509.load_pem_x509_crl(self.crl_path.read_bytes()).last_update_utc
            if last <= before:
                last = before + timedelta(seconds=1)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(last)
            .next_update(last + timedelta(days=CRL_DAYS))
        )
        for r in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(r.serial, 16))
                .revocation_date(r.revoked_at)
                .build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        _write(self.crl_path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
        return self.crl_path


def _key_usage(ca: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; a device's key signs its TLS handshakes."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)  # a name of this writer's own: two writers never mix their bytes
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.chmod(mode)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_issued(issued: Issued, directory: Path) -> tuple[Path, Path | None]:
    """Write ``<device id>.crt`` (and ``.key``, owner-only, when the key pair was made
    here) into ``directory``: what ``transit devices register --cert`` hands over."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / f"{issued.device_id}.crt"
    _write(cert_file, issued.cert_pem.encode(), 0o644)
    if issued.key_pem is None:
        return cert_file, None
    key_file = directory / f"{issued.device_id}.key"
    _write(key_file, issued.key_pem.encode(), 0o600)
    return cert_file, key_file
