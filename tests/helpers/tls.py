"""Certificates for tests, made with the openssl command line: a CA, and serving certificates it signs."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_ca(folder: Path, name: str = "ca") -> Path:
    """A self-signed CA (``<name>.crt``/``<name>.key`` in ``folder``); returns the certificate's path."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN=aibrix test {name}",
        "-keyout",
        str(folder / f"{name}.key"),
        "-out",
        str(folder / f"{name}.crt"),
    )
    return folder / f"{name}.crt"


def issue(
    ca: Path, folder: Path, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ("127.0.0.1",), key: Path | None = None
) -> tuple[Path, Path]:
    """``tls.crt``/``tls.key`` in ``folder`` signed by ``ca`` for the names given (a new key unless ``key``)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, new_key, csr = folder / "tls.crt", folder / "tls.key", folder / "tls.csr"
    if key is None:
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(new_key))
    else:
        new_key.write_bytes(key.read_bytes())
    _openssl("req", "-new", "-key", str(new_key), "-subj", "/CN=aibrix-webhook", "-out", str(csr))
    names = ",".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips])
    (folder / "ext.cnf").write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca.with_suffix(".key")),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(folder / "ext.cnf"),
        "-out",
        str(cert),
    )
    return cert, new_key
