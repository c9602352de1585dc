"""eddy's pipeline over SASL_SSL on real Apache Kafka, each service as its own principal.

The test makes a CA and a server certificate for 127.0.0.1 (``openssl``), starts one KRaft node whose
client listener is SASL_SSL with SCRAM-SHA-512 and the standard ACL authorizer, applies the principals
of ``eddy.kafka.acls``, and runs the seven services over it: events and labels through the gateway,
predictions read by the viewer role, labeled examples written by learning. Clients verify the broker's
certificate and host name (``EDDY_KAFKA_SSL_CA_LOCATION``, endpoint identification ``https``).

Kafka tier only; without Java and Maven it skips unless ``EDDY_REQUIRE_KAFKA=1``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from eddy.core.settings import Settings
from eddy.kafka.client import admin_client
from eddy.stack.kafka_security import make_certificates

from tests.kafka_secure import SecureEnv, run_pipeline_as_principals, secure_env, skip_unless_kafka_tier

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["kafka"])
def env(
    request: pytest.FixtureRequest, registry_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureEnv]:
    skip_unless_kafka_tier()
    with secure_env(tmp_path_factory.mktemp("sasl-ssl"), "SASL_SSL", registry_url, 1) as env:
        yield env


def test_the_pipeline_runs_over_sasl_ssl_with_one_principal_per_service(env: SecureEnv, tmp_path: Path) -> None:
    assert env.kafka.tls is not None and env.as_role("inference").kafka_security_protocol == "SASL_SSL"
    seconds = run_pipeline_as_principals(env, env.base.streams[0], tmp_path)
    print(f"seven services as seven principals over SASL_SSL: {seconds:.1f} s")


def reaches(settings: Settings) -> bool:
    try:
        admin_client(settings).list_topics(timeout=5)
        return True
    except KafkaException:
        return False


def test_the_listener_takes_only_tls_a_known_ca_and_a_right_password(env: SecureEnv, tmp_path: Path) -> None:
    good = env.as_role("viewer (user role)")
    assert env.kafka.tls is not None
    assert reaches(good)
    assert not reaches(dataclasses.replace(good, kafka_security_protocol="SASL_PLAINTEXT"))
    assert not reaches(dataclasses.replace(good, kafka_sasl_password="not-the-password"))
    other_ca = make_certificates(tmp_path / "other").ca  # a CA that did not sign the broker's certificate
    assert not reaches(dataclasses.replace(good, kafka_ssl_ca_location=str(other_ca)))
