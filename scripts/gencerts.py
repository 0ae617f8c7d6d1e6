"""Generate a throwaway local CA and a loopback server certificate signed by it.

`generate(out_dir)` writes four PEM files and returns their paths:

    ca.pem           the CA certificate (trust this in clients and in mitmproxy's
                     `ssl_verify_upstream_trusted_ca`)
    ca-key.pem       the CA's private key (mode 0600)
    server.pem       the server certificate, SubjectAltNames = the given hosts
    server-key.pem   the server's private key (mode 0600)

Keys are EC P-256; certificates are valid for a short time (30 days by default)
and backdated one hour so a slightly skewed clock still accepts them. Every call
makes new keys: nothing is reused from an earlier run.

    python scripts/gencerts.py [--out certs/] [--host H ...] [--days N]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "certs"
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class CertPaths:
    """Where `generate` wrote the CA and the server certificate and keys."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _san_entry(host: str) -> x509.GeneralName:
    """An IP address entry for an IP literal (brackets allowed), else a DNS name."""
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return x509.IPAddress(ipaddress.ip_address(literal))
    except ValueError:
        pass
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"not a host name or IP address: {host!r}")
    return x509.DNSName(host.lower())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start, and fixed up if the file already existed.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def generate(
    out_dir: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    days: int = 30,
) -> CertPaths:
    """Write a fresh CA and a server certificate for `hosts` into `out_dir`.

    `out_dir` is created if needed; existing files of the same names are replaced.
    Raises ValueError for an empty host list or a host that is neither a DNS name
    nor an IP address.
    """
    if not hosts:
        raise ValueError("at least one host is needed for the server certificate")
    if days < 1:
        raise ValueError("days must be at least 1")
    sans = [_san_entry(h) for h in hosts]
    out_dir.mkdir(parents=True, exist_ok=True)

    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - BACKDATE
    not_after = now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "authgw local test"),
            x509.NameAttribute(NameOID.COMMON_NAME, "authgw local test CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    # A common name is limited to 64 characters; the SANs are what clients check.
    common_name = hosts[0][:64]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    paths = CertPaths(
        ca_cert=out_dir / "ca.pem",
        ca_key=out_dir / "ca-key.pem",
        server_cert=out_dir / "server.pem",
        server_key=out_dir / "server-key.pem",
    )
    _write_key(paths.ca_key, ca_key)
    _write_key(paths.server_key, server_key)
    _write_cert(paths.ca_cert, ca_cert)
    _write_cert(paths.server_cert, server_cert)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a local CA and a server certificate for loopback testing."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="H",
        help="DNS name or IP address for the server certificate; repeatable "
        f"(default: {' '.join(DEFAULT_HOSTS)})",
    )
    parser.add_argument("--days", type=int, default=30, help="validity in days (default: 30)")
    args = parser.parse_args(argv)
    hosts: Sequence[str] = args.hosts or DEFAULT_HOSTS
    try:
        paths = generate(args.out, hosts, days=args.days)
    except ValueError as e:
        parser.error(str(e))
    print(f"CA certificate:     {paths.ca_cert}")
    print(f"CA key:             {paths.ca_key} (mode 0600, keep private)")
    print(f"server certificate: {paths.server_cert} (for {', '.join(hosts)})")
    print(f"server key:         {paths.server_key} (mode 0600, keep private)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
