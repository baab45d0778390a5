"""The secure Kafka profile: Apache Kafka (``medsettle.kafka_broker``) with
SASL/SCRAM-SHA-512 over TLS on every listener, the StandardAuthorizer of
KRaft refusing whatever no ACL allows, and one principal per service, one for
the registry feeds and one for the hospital HTTP API (the gateway), each
allowed exactly its topics and its consumer group (``RIGHTS``).

Hospitals get no Kafka principal: they use the hospital HTTP API. The
outsourced insurer's principal (``insurer``, its service) reads
``settlement.basic`` and writes ``settlement.serious-illness``, and writes
the dead-letter topic as every stage does (CONTRACT.md §2), nothing else.
``admin`` (a super user) is the broker's own and the bureau's administrator:
it creates the topics and the ACLs.

The certificates come from ``deploy/kafka-secure/certs.sh`` (``make
kafka-certs``) into a folder git ignores; the SCRAM passwords are random per
profile, kept in ``credentials.json`` beside the broker's logs. Nothing is
built at import.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsettle import topics
from medsettle.kafka_broker import ApacheKafka
from medsettle.settings import ROOT

CERTS_SCRIPT = ROOT / "deploy" / "kafka-secure" / "certs.sh"
CERTS_DIR = ROOT / ".kafka-certs"
MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"


@dataclass(frozen=True)
class Rights:
    """What one principal may do: read (and describe) these topics, write
    these, and use the consumer groups whose id starts with ``group``."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    group: str | None = None


RIGHTS: dict[str, Rights] = {
    # eligibility reads the answers to re-drive what no stage answered (redrive.py)
    "eligibility": Rights(reads=(topics.CLAIMS, topics.PERSONS, topics.HOSPITALS, topics.SETTLEMENTS),
                          writes=(topics.ELIGIBLE, topics.SETTLEMENTS, topics.DLQ), group="eligibility"),
    "basic": Rights(reads=(topics.ELIGIBLE,), writes=(topics.BASIC, topics.DLQ), group="basic"),
    "insurer": Rights(reads=(topics.BASIC,), writes=(topics.SERIOUS_ILLNESS, topics.DLQ), group="insurer"),
    "assistance": Rights(reads=(topics.SERIOUS_ILLNESS,), writes=(topics.ASSISTANCE, topics.DLQ), group="assistance"),
    "backstop": Rights(reads=(topics.ASSISTANCE,), writes=(topics.BACKSTOP, topics.DLQ), group="backstop"),
    # a claim settlement fails sends its compensation back through the layers on settlement.eligible
    "settlement": Rights(reads=(topics.BACKSTOP,), writes=(topics.SETTLEMENTS, topics.ELIGIBLE, topics.DLQ),
                         group="settlement"),
    # a replay goes back to the topic the dead letter came from: any topic a stage reads
    "operations": Rights(reads=(topics.DLQ,),
                         writes=(topics.CLAIMS, topics.PERSONS, topics.HOSPITALS, topics.ELIGIBLE, topics.BASIC,
                                 topics.SERIOUS_ILLNESS, topics.ASSISTANCE, topics.BACKSTOP),
                         group="operations"),
    "registry": Rights(writes=(topics.PERSONS, topics.HOSPITALS)),
    "gateway": Rights(reads=(topics.SETTLEMENTS,), writes=(topics.CLAIMS,), group="gateway"),
}
"""Every principal but ``admin``, and exactly what it may do."""

# Kafka's ACL codes (org.apache.kafka.common.acl / resource)
_TOPIC, _GROUP = 2, 3
_LITERAL, _PREFIXED = 3, 4
_READ, _WRITE, _DESCRIBE = 3, 4, 8
_ALLOW = 3


def acl_bindings(rights: Mapping[str, Rights] = RIGHTS) -> list[tuple[int, str, int, str, int]]:
    """(resource type, name, pattern, principal, operation) of every ACL the profile creates."""
    bindings = []
    for name, right in rights.items():
        principal = f"User:{name}"
        for topic in right.reads:
            bindings += [(_TOPIC, topic, _LITERAL, principal, _READ), (_TOPIC, topic, _LITERAL, principal, _DESCRIBE)]
        for topic in right.writes:
            bindings += [(_TOPIC, topic, _LITERAL, principal, _WRITE), (_TOPIC, topic, _LITERAL, principal, _DESCRIBE)]
        if right.group:
            bindings.append((_GROUP, right.group, _PREFIXED, principal, _READ))
    return sorted(set(bindings))


def make_certificates(folder: Path = CERTS_DIR) -> Path:
    """The CA and the broker's certificate (``make kafka-certs``), made once."""
    subprocess.run(["sh", str(CERTS_SCRIPT), str(folder)], check=True, capture_output=True, text=True)
    return folder


class SecureKafka:
    """Apache Kafka on the secure profile, on loopback free ports: one node, or
    ``nodes`` (the crash test's cluster of three, ``deploy/chaos.py --secure``)."""

    def __init__(self, dir: Path, *, certs: Path = CERTS_DIR, heap: str = "384m", nodes: int = 1) -> None:
        self.dir = Path(dir)
        self.certs = make_certificates(certs)
        self.dir.mkdir(parents=True, exist_ok=True)
        stored = self.dir / "credentials.json"
        if stored.exists():
            self.passwords: dict[str, str] = json.loads(stored.read_text())
        else:
            self.passwords = {name: secrets.token_urlsafe(18) for name in (ADMIN, *RIGHTS)}
            stored.write_text(json.dumps(self.passwords))
            stored.chmod(0o600)
        keystore_password = (self.certs / "broker.password").read_text().strip()
        admin = self.passwords[ADMIN]
        scram_jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" '
                      f'password="{admin}";')
        # the controllers cannot use SCRAM (its credentials live in the metadata they serve): PLAIN over TLS
        plain_jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{ADMIN}" '
                      f'password="{admin}" user_{ADMIN}="{admin}";')
        properties = {
            # every listener TLS and SASL: no PLAINTEXT port at all
            "listeners": "SECURE://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": "SECURE://127.0.0.1:{port}",
            "listener.security.protocol.map": "SECURE:SASL_SSL,CONTROLLER:SASL_SSL",
            "inter.broker.listener.name": "SECURE",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.secure.sasl.enabled.mechanisms": MECHANISM,
            "listener.name.secure.scram-sha-512.sasl.jaas.config": scram_jaas,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain_jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.certs / "broker.p12"),
            "ssl.keystore.password": keystore_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.certs / "ca.pem"),
            "ssl.endpoint.identification.algorithm": "https",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN}",
        }
        scram = [arg for name, password in self.passwords.items()
                 for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")]
        self.kafka = ApacheKafka(nodes, dir=self.dir / "kafka", heap=heap, extra_properties=properties,
                                 format_args=scram)

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def settings(self, principal: str, password: str | None = None) -> dict[str, Any]:
        """The Settings fields (and environment variables, upper-cased) of a client signing in as ``principal``."""
        return {
            "kafka_bootstrap_servers": self.bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_username": principal,
            "kafka_password": self.passwords[principal] if password is None else password,
            "kafka_ssl_cafile": str(self.certs / "ca.pem"),
        }

    def environment(self, principal: str) -> dict[str, str]:
        return {k.upper(): str(v) for k, v in self.settings(principal).items()}

    def client(self, principal: str, password: str | None = None) -> dict[str, Any]:
        """aiokafka's arguments for a client signing in as ``principal``."""
        from medsettle.settings import Settings

        fields = self.settings(principal, password)
        return {"bootstrap_servers": self.bootstrap,
                **Settings(**{k: v for k, v in fields.items() if k != "kafka_bootstrap_servers"}).kafka_client_security()}

    def start(self, timeout: float = 180.0) -> SecureKafka:
        self.kafka.start(timeout)
        return self

    async def prepare(self, partitions: int) -> None:
        """The topics (as admin; 3 copies of each partition on a cluster) and every principal's ACLs."""
        await prepare(self.client(ADMIN), partitions, replication=min(3, len(self.kafka.nodes)))

    def denials(self) -> list[str]:
        """Every authorization the broker refused so far, once each: the
        StandardAuthorizer's audit lines in the nodes' logs (``Principal =
        User:insurer is Denied operation = READ ... on resource = Topic:...``)."""
        seen: dict[str, None] = {}
        for node in self.kafka.nodes:
            for line in node.log_path.read_text(errors="replace").splitlines():
                if " is Denied operation = " in line:
                    seen[line[line.index("Principal = "):].split(" for request")[0]] = None
        return list(seen)

    def stop(self) -> None:
        self.kafka.stop()

    def kill(self) -> None:
        self.kafka.kill()

    def restart(self) -> None:
        self.kafka.restart()


async def prepare(admin_client: Mapping[str, Any], partitions: int, replication: int = 1) -> None:
    """Create the topics that are missing and every principal's ACLs, signed in
    as ``admin`` (``admin_client``: aiokafka's arguments). Safe to run again."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(**admin_client, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics.ALL_TOPICS if t not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
            except TopicAlreadyExistsError:
                pass
        client = admin._client  # aiokafka's admin has no create_acls: its protocol class, sent as admin does
        for resource, name, pattern, principal, operation in acl_bindings():
            request = CreateAclsRequest(resource, name, pattern, principal, "*", operation, _ALLOW)
            response = await client.send(client.get_random_node(), request)
            errors = [(code, message) for code, message in response.creation_responses if code]
            if errors:
                raise RuntimeError(f"ACL {principal} {operation} on {name} refused: {errors}")
    finally:
        await admin.close()


def main() -> int:
    """``python -m medsettle.secure_kafka``: compose's topics job on the secure
    profile, signed in with the ``KAFKA_*`` settings of the environment (admin)."""
    import asyncio

    from medsettle.settings import Settings

    settings = Settings()
    client = {"bootstrap_servers": settings.kafka_bootstrap_servers, **settings.kafka_client_security()}
    asyncio.run(prepare(client, settings.partitions(local=False)))
    print(f"topics and ACLs ready on {settings.kafka_bootstrap_servers}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
