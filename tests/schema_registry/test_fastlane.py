"""The lookup fast lane: same answers as aiohttp, order kept, connections handed over cleanly."""

from __future__ import annotations

import json
import socket

from tests.schema_registry.conftest import RegistryProcess

SCHEMA = json.dumps({"type": "record", "name": "FastLane", "fields": [{"name": "a", "type": "long"}]})


def _port(registry: RegistryProcess) -> int:
    return int(registry.url.rsplit(":", 1)[1])


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    buf, out = b"", []
    while len(out) < count:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode()
            length = next(
                int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length")
            )
            if len(buf) >= end + 4 + length:
                out.append((int(head.split()[1]), buf[end + 4 : end + 4 + length]))
                buf = buf[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        buf += chunk
    return out


def _register(registry: RegistryProcess) -> int:
    import httpx

    reply = httpx.post(f"{registry.url}/subjects/fast-value/versions", json={"schema": SCHEMA}, timeout=10)
    return int(reply.json()["id"])


def test_pipelined_mix_keeps_order_and_hands_over(shared_registry: RegistryProcess) -> None:
    schema_id = _register(shared_registry)
    body = json.dumps({"schema": SCHEMA}).encode()
    requests = [
        f"GET /schemas/ids/{schema_id} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        b"GET /schemas/ids/999999 HTTP/1.1\r\nHost: x\r\n\r\n",  # unknown id: aiohttp answers 40403
        f"GET /schemas/ids/{schema_id} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),  # after handover, aiohttp too
        b"POST /subjects/fast-value HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    ]
    with socket.create_connection(("127.0.0.1", _port(shared_registry)), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        answers = _read_responses(sock, 4)
    assert [status for status, _ in answers] == [200, 404, 200, 200]
    assert json.loads(answers[0][1]) == json.loads(answers[2][1])
    assert json.loads(answers[0][1])["schema"] == json.loads(answers[2][1])["schema"]
    assert json.loads(answers[1][1])["error_code"] == 40403
    assert json.loads(answers[3][1])["id"] == schema_id


def test_split_request_head_and_many_lookups_on_one_connection(shared_registry: RegistryProcess) -> None:
    schema_id = _register(shared_registry)
    request = f"GET /schemas/ids/{schema_id} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", _port(shared_registry)), timeout=10) as sock:
        sock.sendall(request[:7])
        sock.sendall(request[7:] + request * 99)
        answers = _read_responses(sock, 100)
    assert {status for status, _ in answers} == {200}
    assert len({body for _, body in answers}) == 1


def test_connection_close_is_honoured(shared_registry: RegistryProcess) -> None:
    schema_id = _register(shared_registry)
    with socket.create_connection(("127.0.0.1", _port(shared_registry)), timeout=10) as sock:
        sock.sendall(f"GET /schemas/ids/{schema_id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        ((status, _),) = _read_responses(sock, 1)
        assert status == 200
        sock.settimeout(5)
        assert sock.recv(1024) == b""  # closed by the server after answering


def test_lookups_are_counted_in_metrics(shared_registry: RegistryProcess) -> None:
    import httpx

    schema_id = _register(shared_registry)
    httpx.get(f"{shared_registry.url}/schemas/ids/{schema_id}")
    text = httpx.get(f"{shared_registry.url}/metrics").text
    assert 'eddy_schema_registry_requests_total{method="GET",route="/schemas/ids/{id}",status="200"}' in text
