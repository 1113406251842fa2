"""``rediss://`` URLs: both forms honour the URL's TLS options, against a real TLS server.

A CA, a server certificate (for ``localhost`` only) and a client certificate are
made with the ``openssl`` command; a server is started with TLS only, once trusting
any client and once requiring a client certificate. The sync form (redis-py's
pools) and the async form (dagrt's auto-pipelined connection, its value connection
and redis-py's pool for blocking reads) must connect with the CA given in the URL,
refuse a server they cannot trust, check the host name unless told not to, and
present a client certificate when the URL names one.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dagrt.exceptions import StorageConnectionError
from dagrt.storage import RedisServer, RedisStorage, find_server_binary
from dagrt.storage.server import free_port

LARGE = b"v" * (2 << 20)  # a read this large moves value reads to the value connection


@dataclass
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("tls")
    days = "2"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days, "-subj",
             "/CN=dagrt test CA", "-keyout", d / "ca.key", "-out", d / "ca.pem")  # fmt: skip
    made = {}
    for who, san in (("server", "subjectAltName=DNS:localhost"), ("client", None)):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=dagrt {who}",
                 "-keyout", d / f"{who}.key", "-out", d / f"{who}.csr")  # fmt: skip
        ext = d / f"{who}.ext"
        ext.write_text((san or "extendedKeyUsage=clientAuth") + "\n")
        _openssl("x509", "-req", "-in", d / f"{who}.csr", "-CA", d / "ca.pem", "-CAkey",
                 d / "ca.key", "-CAcreateserial", "-days", days, "-extfile", ext,
                 "-out", d / f"{who}.pem")  # fmt: skip
        made[who] = (d / f"{who}.pem", d / f"{who}.key")
    return Certificates(d / "ca.pem", *made["server"], *made["client"])


def _tls_server(certs: Certificates, auth_clients: str) -> RedisServer:
    """A server listening with TLS only; a binary built without TLS is passed over."""
    candidates = [find_server_binary(), shutil.which("redis-server"), shutil.which("valkey-server")]
    tried = []
    for executable in dict.fromkeys(c for c in candidates if c):
        port = free_port()
        server = RedisServer(
            executable=executable,
            port=port,
            die_with_parent=True,
            options={
                "port": 0,
                "tls-port": port,
                "tls-cert-file": certs.server_cert,
                "tls-key-file": certs.server_key,
                "tls-ca-cert-file": certs.ca,
                "tls-auth-clients": auth_clients,
            },
        )
        try:
            return server.start()
        except Exception as exc:  # e.g. "Failed finding TLS support": built without TLS
            server.cleanup()
            tried.append(f"{executable}: {str(exc).strip().splitlines()[-1]}")
    pytest.skip("no server binary here was built with TLS (" + "; ".join(tried) + ")")


@pytest.fixture(scope="module")
def tls_server(certificates: Certificates) -> Iterator[RedisServer]:
    server = _tls_server(certificates, "no")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def mutual_tls_server(certificates: Certificates) -> Iterator[RedisServer]:
    server = _tls_server(certificates, "yes")
    yield server
    server.cleanup()


def url(server: RedisServer, host: str = "localhost", **options: str | Path) -> str:
    query = "&".join(f"ssl_{name}={value}" for name, value in options.items())
    return f"rediss://{host}:{server.port}/0" + (f"?{query}" if query else "")


async def round_trips(storage: RedisStorage) -> None:
    """Every kind of connection of both forms: commands, blocking reads, large values."""
    assert storage.set("k", b"sync")
    assert storage.get("k") == b"sync"
    assert storage.xread({"s": "0"}, block=0.05) == []
    await storage.aset("k", b"async")
    assert await storage.aget("k") == b"async"
    assert await storage.axread({"s": "0"}, block=0.05) == []
    await storage.aset("large", LARGE)
    for _ in range(2):  # the second read goes on the value connection
        assert bytes(await storage.aget("large") or b"") == LARGE
    assert storage._large_reads


async def refused(storage: RedisStorage) -> None:
    with pytest.raises(StorageConnectionError):
        storage.ping()
    with pytest.raises(StorageConnectionError):
        await storage.aping()


async def test_both_forms_connect_with_the_ca_named_in_the_url(
    tls_server: RedisServer, certificates: Certificates
) -> None:
    storage = RedisStorage(url(tls_server, ca_certs=certificates.ca), retries=0)
    try:
        await round_trips(storage)
    finally:
        await storage.aclose()


async def test_both_forms_refuse_a_server_they_cannot_trust(tls_server: RedisServer) -> None:
    for options in ({"cert_reqs": "required"}, {}):  # required is the default
        storage = RedisStorage(url(tls_server, **options), retries=0)
        try:
            await refused(storage)
        finally:
            await storage.aclose()


async def test_both_forms_trust_any_server_when_told_not_to_check(
    tls_server: RedisServer,
) -> None:
    storage = RedisStorage(url(tls_server, cert_reqs="none"), retries=0)
    try:
        await round_trips(storage)
    finally:
        await storage.aclose()


async def test_both_forms_check_the_host_name_unless_told_not_to(
    tls_server: RedisServer, certificates: Certificates
) -> None:
    """The server's certificate names localhost, not 127.0.0.1."""
    wrong_name = RedisStorage(url(tls_server, "127.0.0.1", ca_certs=certificates.ca), retries=0)
    unchecked = RedisStorage(
        url(tls_server, "127.0.0.1", ca_certs=certificates.ca, check_hostname="false"),
        retries=0,
    )
    try:
        await refused(wrong_name)
        await round_trips(unchecked)
    finally:
        await wrong_name.aclose()
        await unchecked.aclose()


async def test_both_forms_present_the_client_certificate_named_in_the_url(
    mutual_tls_server: RedisServer, certificates: Certificates
) -> None:
    anonymous = RedisStorage(url(mutual_tls_server, ca_certs=certificates.ca), retries=0)
    known = RedisStorage(
        url(
            mutual_tls_server,
            ca_certs=certificates.ca,
            certfile=certificates.client_cert,
            keyfile=certificates.client_key,
        ),
        retries=0,
    )
    try:
        await refused(anonymous)
        await round_trips(known)
    finally:
        await anonymous.aclose()
        await known.aclose()


@pytest.mark.parametrize(
    "bad",
    [
        "rediss://localhost?ssl_cert_reqs=sometimes",
        "rediss://localhost?ssl_check_hostname=perhaps",
        "rediss://localhost?ssl_min_version=TLSv9",
        "rediss://localhost?ssl_no_such_option=1",
        "redis://localhost?ssl_ca_certs=/ca.pem",
    ],
)
def test_tls_options_that_do_not_read_fail_when_the_storage_is_made(bad: str) -> None:
    with pytest.raises(ValueError, match="ssl_"):
        RedisStorage(bad)


def test_a_client_key_password_in_the_url_is_not_shown() -> None:
    storage = RedisStorage("rediss://:secret@localhost/0?ssl_password=hidden&ssl_ca_certs=/c.pem")
    assert "secret" not in repr(storage)
    assert "hidden" not in repr(storage)
    assert "ssl_ca_certs=/c.pem" in repr(storage)
