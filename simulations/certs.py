"""Certificates and SuperNode keys for a trial deployment: ``python -m simulations.certs DIR``.

Writes, into DIR, what a secured Flower deployment needs (nothing that exists is overwritten)::

    ca.crt, ca.key           a local certificate authority (for a trial; production uses its own CA)
    server.pem, server.key   the SuperLink's TLS certificate, signed by the CA, valid for
                             localhost, 127.0.0.1, ::1 and every --host given
    keys/node<i>, .pub       one OpenSSH ECDSA P-384 key pair per SuperNode (--nodes N); the
                             SuperLink admits only nodes whose public key is registered

The CA certificate goes to every SuperNode (``--root-certificates``) and to ``flwr``; each
private node key stays on its node. Keys are made with the ``cryptography`` package, which
Flower itself depends on.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
KEYS_DIR = "keys"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
VALID_DAYS = 365


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, signer, extensions) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def make_ca(directory: Path) -> None:
    """A self-signed certificate authority in ``ca.crt`` / ``ca.key``."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = _name("fedhyper trial CA")
    cert = _certificate(name, name, key.public_key(), key, [(x509.BasicConstraints(ca=True, path_length=0), True)])
    _write_private(directory / CA_KEY, key, serialization.PrivateFormat.TraditionalOpenSSL)
    (directory / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_server_cert(directory: Path, hosts: list[str]) -> None:
    """The SuperLink's certificate for ``hosts``, signed by the CA in ``directory``."""
    ca_key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    key = ec.generate_private_key(ec.SECP384R1())
    extensions = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_san(hosts), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ]
    cert = _certificate(_name(hosts[0]), ca_cert.subject, key.public_key(), ca_key, extensions)
    _write_private(directory / SERVER_KEY, key, serialization.PrivateFormat.TraditionalOpenSSL)
    (directory / SERVER_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_node_key(directory: Path, name: str) -> Path:
    """An OpenSSH ECDSA P-384 key pair ``keys/<name>`` and ``keys/<name>.pub``; returns the private key's path."""
    keys = directory / KEYS_DIR
    keys.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    _write_private(keys / name, key, serialization.PrivateFormat.OpenSSH)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (keys / f"{name}.pub").write_bytes(public + b"\n")
    return keys / name


def node_key_name(index: int) -> str:
    return f"node{index}"


def ensure(directory: Path, num_nodes: int, hosts: list[str] = ()) -> Path:
    """Create whatever of the CA, the server certificate and ``num_nodes`` node keys is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / CA_CERT).exists():
        make_ca(directory)
    if not (directory / SERVER_CERT).exists():
        make_server_cert(directory, [*LOCAL_HOSTS, *hosts])
    for i in range(num_nodes):
        if not (directory / KEYS_DIR / node_key_name(i)).exists():
            make_node_key(directory, node_key_name(i))
    return directory


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulations.certs", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="where to write the certificates and keys")
    parser.add_argument("--nodes", type=int, default=2, help="node key pairs to create (node0, node1, ...)")
    parser.add_argument("--host", action="append", default=[], help="another name or IP of the SuperLink")
    args = parser.parse_args(argv)
    if args.nodes < 0:
        parser.error(f"--nodes={args.nodes} must be >= 0")
    directory = ensure(args.directory, args.nodes, args.host)
    print(f"CA, SuperLink certificate and node keys in {directory.resolve()}")


if __name__ == "__main__":
    main()
