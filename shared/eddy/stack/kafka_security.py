"""A local Apache Kafka node with SASL/SCRAM, the standard ACL authorizer and, optionally, TLS.

For tests and trials of least privilege (``eddy.kafka.acls``): :func:`start_secure_kafka` formats a
KRaft node whose client listener speaks ``SASL_PLAINTEXT`` or ``SASL_SSL`` with SCRAM-SHA-512, runs
``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``, and has one super user,
``admin``. KRaft keeps SCRAM credentials in its metadata log, so the admin's is written at
``kafka-storage format --add-scram`` time (the broker authenticates to itself with it); every other
user is created afterwards through the admin API (:meth:`SecureKafka.add_users`).

The controller listener cannot use SCRAM (its credentials live in the log the controller serves), so
it takes SASL/PLAIN with the admin alone, from a static JAAS line; nothing on it is anonymous.
TLS certificates come from :func:`make_certificates`: a throwaway CA and a server certificate for
127.0.0.1, as PEM files Kafka and librdkafka both read.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.kafka.acls import CONFLUENT_REGISTRY, PRINCIPALS, acl_bindings, confluent_registry_bindings
from eddy.kafka.client import admin_client
from eddy.stack.apache_kafka import (
    DEFAULT_HEAP_MB,
    QUIET,
    KafkaCluster,
    KafkaNode,
    KafkaUnavailable,
    free_port,
)

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 4096
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throwaway CA and a server certificate for 127.0.0.1 and localhost."""

    ca: Path
    server: Path  # the server's private key (PKCS#8, unencrypted) followed by its certificate


def make_certificates(directory: Path, days: int = 2) -> TlsFiles:
    """Generate a CA and a server certificate signed by it, with ``openssl``.

    The server certificate names ``IP:127.0.0.1`` and ``DNS:localhost``, so clients can keep
    endpoint identification on. Keys stay in ``directory``; nothing here is meant to outlive a test.
    """
    directory.mkdir(parents=True, exist_ok=True)
    d = directory

    def run(*argv: str) -> None:
        done = subprocess.run(["openssl", *argv], capture_output=True, text=True, check=False, cwd=d)
        if done.returncode != 0:
            raise KafkaUnavailable(f"openssl {argv[0]} failed: {done.stderr.strip()[-300:]}")

    run(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"),
        *("-days", str(days), "-subj", "/CN=eddy-test-ca"),
    )
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"),
        *("-out", "server.crt", "-days", str(days), "-extfile", "san.cnf"),
    )
    server = d / "server.pem"
    server.write_text((d / "server.key").read_text() + (d / "server.crt").read_text())
    server.chmod(0o600)
    return TlsFiles(ca=d / "ca.pem", server=server)


def secure_properties(
    port: int, controller_port: int, protocol: str, admin_password: str, tls: TlsFiles | None
) -> dict[str, str]:
    """The server properties of one combined KRaft node with a SASL client listener and ACLs.

    >>> props = secure_properties(9092, 9093, "SASL_PLAINTEXT", "pw", None)
    >>> props["listener.security.protocol.map"], props["super.users"], props["allow.everyone.if.no.acl.found"]
    ('CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT', 'User:admin', 'false')
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if (protocol == "SASL_SSL") != (tls is not None):
        raise ValueError("SASL_SSL needs TLS files, and only SASL_SSL takes them")
    scram = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{admin_password}";'
    )
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{admin_password}" user_{ADMIN}="{admin_password}";'
    )
    props = {
        "listeners": f"CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"CLIENT://127.0.0.1:{port}",
        "listener.security.protocol.map": f"CLIENT:{protocol},CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "CLIENT",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.client.{MECHANISM.lower()}.sasl.jaas.config": scram,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": plain,
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN}",
    }
    if tls is not None:
        props.update(
            {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(tls.server),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(tls.ca),
                "ssl.client.auth": "none",
            }
        )
    return props


def client_security(protocol: str, username: str, password: str, tls: TlsFiles | None) -> dict[str, str]:
    """librdkafka properties for ``username`` on a node of :func:`start_secure_kafka`.

    >>> client_security("SASL_PLAINTEXT", "eddy-inference", "pw", None)["sasl.username"]
    'eddy-inference'
    """
    conf = {
        "security.protocol": protocol,
        "sasl.mechanism": MECHANISM,
        "sasl.username": username,
        "sasl.password": password,
    }
    if tls is not None:
        conf["ssl.ca.location"] = str(tls.ca)
        conf["ssl.endpoint.identification.algorithm"] = "https"
    return conf


@dataclass
class SecureKafka:
    """A running secured node, its admin's credentials, and the passwords of the users it made."""

    cluster: KafkaCluster
    protocol: str
    admin_password: str
    tls: TlsFiles | None = None
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str:
        return self.cluster.bootstrap_servers

    def security(self, username: str) -> dict[str, str]:
        """Client properties for ``username`` (``admin`` or a user made by :meth:`add_users`)."""
        password = self.admin_password if username == ADMIN else self.passwords[username]
        return client_security(self.protocol, username, password, self.tls)

    def admin(self) -> AdminClient:
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "logger": QUIET, **self.security(ADMIN)}
        return AdminClient(conf)

    def add_users(self, names: Sequence[str], timeout_s: float = 30.0) -> dict[str, str]:
        """Create a SCRAM-SHA-512 user with a fresh random password for each name; returns the passwords."""
        made = {name: secrets.token_urlsafe(18) for name in names}
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(n, info, pw.encode()) for n, pw in made.items()
        ]
        admin = self.admin()  # held while its futures run: a collected client cancels them
        for user, future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).items():
            try:
                future.result()
            except KafkaException as exc:
                raise KafkaUnavailable(f"could not create the SCRAM user {user}: {exc}") from exc
        self.passwords.update(made)
        return made

    def grant(self, bindings: Sequence[AclBinding], timeout_s: float = 30.0) -> None:
        """Create ACLs; raises if the broker refuses one."""
        if not bindings:
            return
        admin = self.admin()
        for binding, future in admin.create_acls(list(bindings), request_timeout=timeout_s).items():
            try:
                future.result()
            except KafkaException as exc:
                raise KafkaUnavailable(f"could not create the ACL {binding}: {exc}") from exc

    def apply_principals(self, streams: Sequence[str], group_prefix: str = "eddy") -> dict[str, str]:
        """Every principal of ``eddy.kafka.acls.PRINCIPALS`` as a user, with its ACLs for ``streams``."""
        made = self.add_users([p.name for p in PRINCIPALS if p.name not in self.passwords])
        self.grant([b for p in PRINCIPALS for b in acl_bindings(p, streams, group_prefix)])
        return made

    def stop(self, timeout_s: float = 30.0) -> None:
        self.cluster.stop(timeout_s)

    @property
    def pids(self) -> list[int]:
        return self.cluster.pids

    def alive(self) -> bool:
        return self.cluster.alive()


def start_secure_kafka(
    base_dir: Path,
    *,
    protocol: str = "SASL_PLAINTEXT",
    heap_mb: int = DEFAULT_HEAP_MB,
    overrides: Mapping[str, str] | None = None,
    timeout_s: float = 120.0,
) -> SecureKafka:
    """Format and start one secured KRaft node under ``base_dir``; with ``SASL_SSL``, certificates too.

    Returns once the admin can read the cluster's metadata; the caller stops it (``SecureKafka.stop``).
    """
    base_dir = base_dir.resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    tls = make_certificates(base_dir / "tls") if protocol == "SASL_SSL" else None
    admin_password = secrets.token_urlsafe(18)
    node = KafkaNode(1, free_port(), free_port(), base_dir / "node-1" / "data", base_dir / "broker.log")
    props = secure_properties(node.port, node.controller_port, protocol, admin_password, tls)
    cluster = KafkaCluster(
        base_dir,
        [node],
        heap_mb=heap_mb,
        overrides={**props, **(overrides or {})},
        format_args=("--add-scram", f"{MECHANISM}=[name={ADMIN},password={admin_password}]"),
        client_security=client_security(protocol, ADMIN, admin_password, tls),
    )
    cluster.format_and_start(timeout_s)
    return SecureKafka(cluster, protocol, admin_password, tls)


# --- provisioning a deployment's cluster (compose's SASL variant) -------------------------------------------

PASSWORD_ENV_PREFIX = "KAFKA_PASSWORD_"
log = logging.getLogger("eddy.stack.kafka_security")


def password_variable(user: str) -> str:
    """The environment variable holding ``user``'s password for :func:`provision`.

    >>> password_variable("eddy-model-registry")
    'KAFKA_PASSWORD_MODEL_REGISTRY'
    """
    return PASSWORD_ENV_PREFIX + user.removeprefix("eddy-").replace("-", "_").upper()


def provision(settings: Settings, env: Mapping[str, str], with_confluent_registry: bool = True) -> list[str]:
    """Create every principal whose password ``env`` holds, and every principal's ACLs, on the cluster of ``settings``.

    ``settings`` connect as a principal allowed to alter users and ACLs (a super user). Passwords are set
    for both SCRAM mechanisms. ACLs name the streams of the contracts ``settings`` select and its group
    prefix. Existing users get the password given; existing ACLs are left as they are. Returns the users set.
    """
    users = [p.name for p in PRINCIPALS] + ([CONFLUENT_REGISTRY] if with_confluent_registry else [])
    given = {user: env[password_variable(user)] for user in users if env.get(password_variable(user))}
    admin = admin_client(settings)
    if given:
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, SCRAM_ITERATIONS), password.encode())
            for user, password in given.items()
            for mechanism in (ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256)
        ]
        for user, future in admin.alter_user_scram_credentials(upserts).items():
            future.result()
            log.info("SCRAM user set", extra={"user": user})
    streams = sorted(load_contracts(settings.contracts_dir, settings.streams))
    bindings = [b for p in PRINCIPALS for b in acl_bindings(p, streams, settings.group_prefix)]
    if with_confluent_registry:
        bindings += confluent_registry_bindings()
    for future in admin.create_acls(bindings).values():
        future.result()
    log.info("ACLs applied", extra={"bindings": len(bindings), "streams": streams})
    return sorted(given)


def main() -> int:
    """``python -m eddy.stack.kafka_security``: :func:`provision` from the environment (EDDY_* and KAFKA_PASSWORD_*)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        provision(Settings.from_env(), os.environ)
    except KafkaException as exc:
        print(f"could not provision Kafka principals: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
