"""Hostile inputs for the fuzz tests of the HTTP gateway and of validation: seeded, bounded, by category.

Three kinds, all for the demo contract (``schemas/streams/demo.yaml``):

- request bodies for ``POST /v1/streams/{stream}/events`` (:class:`Probe`), built by hand per category:
  arbitrary bytes, invalid UTF-8, truncated JSON, deep nesting, huge numbers, NaN/Infinity, duplicated
  keys, lone surrogates, NUL bytes, unicode edge cases, strings near and over the body limit, wrong
  content types and encodings, hostile paths and API-key headers, batches of good and bad together;
- hypothesis strategies of structurally valid but hostile JSON (:func:`hostile_batches`);
- Avro values for ``S.events`` written byte by byte (:func:`demo_event`), so that they can carry what
  no well-behaved writer would: invalid UTF-8, NaN bit patterns, out-of-range union branches, overlong
  varints, trailing bytes.

And what both fuzz tests need around them: the services started side by side (:func:`services`), the
demo serdes without a registry (:func:`one_schema_serde`), and the accounting (:func:`account_stream`):
wait until the services have committed past every input, read the stream's topics to their end, and
list every record not validated or dead-lettered exactly once.

Every event a probe may get accepted carries an event id unique across the run (``<category>-<n>``)
unless the id itself is the hostile part, so what reaches the topics can be traced to its probe.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import random
import struct
import subprocess
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from eddy.avro.serde import SerdeError, TopicSerde
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.history.backtest.source import read_to_end
from eddy.kafka.client import committed_offsets, consumer_config
from eddy.runtime.dlq import read_dlq_headers
from hypothesis import strategies as st

from tests.helpers import serdes_for, service

REGIONS = ("north", "south", "east", "west")

# Unicode that has broken parsers, normalisers and log pipelines: invisible, bidirectional, combining,
# non-characters, look-alike digits and spaces. All encodable as UTF-8 (lone surrogates are below).
HOSTILE_TEXTS: dict[str, str] = {
    "empty": "",
    "ascii_spaces": " \t\n\r\x0b\x0c",
    "unicode_spaces": "\u00a0\u2003\u3000\x85",
    "file_separators": "\x1c\x1d\x1e\x1f",
    "zero_width": "\u200b\u200c\u200d\u2060",
    "bom": "\ufeffid",
    "rtl_override": "\u202eevil\u202c",
    "rtl_marks": "\u200fid\u200e",
    "arabic": "\u0645\u0631\u062d\u0628\u0627",
    "mixed_direction": "abc\u05d0\u05d1\u05d2123",
    "combining": "e\u0301\u0327",
    "zalgo": "z" + "\u0336\u0337\u0338\u0489" * 200,
    "emoji_zwj": "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "max_code_point": "\U0010ffff",
    "non_characters": "\ufffe\uffff\ufdd0",
    "replacement": "\ufffd",
    "nul": "a\x00b",
    "only_nul": "\x00",
    "controls": "\x01\x07\x1b[31m\x7f",
    "line_separators": "a\u2028b\u2029c",
    "superscript_digits": "\u00b2\u00b3",
    "arabic_digits": "\u0661\u0662\u0663",
    "fullwidth": "\uff45\uff56\uff45\uff4e\uff54",
    "long": "x" * 20_000,
}

# Only representable in JSON as \u escapes: Python keeps them in str, UTF-8 cannot carry them.
LONE_SURROGATES: dict[str, str] = {
    "high": "\ud800",
    "low": "\udfff",
    "reversed_pair": "\udfff\ud800",
    "trailing": "id\udc80",
}

# JSON number tokens that overflow, underflow or exceed what Python converts.
HUGE_NUMBERS: dict[str, str] = {
    "1e400": "1e400",
    "-1e400": "-1e400",
    "1e-400": "1e-400",
    "int_400_digits": "1" + "0" * 400,
    "int_5000_digits": "9" * 5000,
    "fraction_5000_digits": "0." + "0" * 4998 + "1",
    "2**53+1": "9007199254740993",
    "2**64": "18446744073709551616",
    "max_double": "1.7976931348623157e308",
    "min_subnormal": "5e-324",
    "minus_zero": "-0",
}

NON_FINITE = ("NaN", "Infinity", "-Infinity")


@dataclass(frozen=True)
class Probe:
    """One request to the gateway: what to send, and under which category its answer is counted.

    ``path`` is ``events`` or ``feedback`` under the test's stream, or, starting with ``/``, a path of
    its own. ``headers`` are added to the test's (its API key); a ``bytes`` value is sent as it is.
    """

    category: str
    name: str
    body: bytes
    headers: dict[str, str | bytes] = field(default_factory=dict)
    path: str = "events"
    method: str = "POST"


def dumps(doc: Any) -> bytes:
    """JSON as a lenient client writes it: NaN and Infinity literals allowed, non-ASCII escaped."""
    return json.dumps(doc, allow_nan=True).encode()


def _event_with(field_name: str, token: str, event_id: str) -> bytes:
    """An event object whose ``field_name`` is the raw JSON ``token`` (a literal json.dumps cannot write)."""
    if field_name == "event_id":
        return b'{"event_id": ' + token.encode() + b', "x0": 1, "x1": 2, "x2": 3}'
    base = {"event_id": event_id, "x0": 1, "x1": 2, "x2": 3}
    base.pop(field_name, None)
    head = dumps(base)[:-1]
    return head + b', "' + field_name.encode() + b'": ' + token.encode() + b"}"


def arbitrary_bytes(rng: random.Random, count: int) -> list[Probe]:
    """Random bytes of random lengths, some dressed up to look like JSON at first glance."""
    prefixes = (b"", b"[", b"{", b'{"event_id": "', b"[{", b"\xef\xbb\xbf")
    out = []
    for i in range(count):
        body = rng.choice(prefixes) + rng.randbytes(rng.choice((0, 1, 7, 64, 512, 4096)))
        out.append(Probe("arbitrary_bytes", f"random-{i}", body))
    return out


def invalid_utf8() -> list[Probe]:
    cases = {
        "lone_continuation": b'{"event_id": "\x80"}',
        "ff_fe": b'{"event_id": "\xff\xfe"}',
        "overlong_slash": b'{"event_id": "\xc0\xaf"}',
        "overlong_nul": b'{"event_id": "\xc0\x80"}',
        "cesu_surrogate": b'{"event_id": "\xed\xa0\x80"}',
        "beyond_max_code_point": b'{"event_id": "\xf4\x90\x80\x80"}',
        "truncated_sequence": b'{"event_id": "\xe2\x82"}',
        "latin1_body": '{"event_id": "caf\u00e9"}'.encode("latin-1"),
        "utf16_body": '{"event_id": "utf16"}'.encode("utf-16"),
        "utf32_body": '{"event_id": "utf32"}'.encode("utf-32"),
        "bad_in_second_line": b'{"event_id": "ok-utf8-1"}\n{"event_id": "\xff"}',
    }
    return [Probe("invalid_utf8", name, body) for name, body in cases.items()]


def truncated_json(rng: random.Random, count: int) -> list[Probe]:
    """Valid batches cut short at a random byte: mostly refused, a cut at a line end may be accepted."""
    out = []
    for i in range(count):
        events = [{"event_id": f"truncated-{i}-{j}", "x0": 1.5, "x1": 2, "x2": 3, "region": "east"} for j in range(3)]
        whole = dumps(events) if i % 2 == 0 else b"\n".join(dumps(e) for e in events)
        out.append(Probe("truncated_json", f"cut-{i}", whole[: rng.randint(1, len(whole) - 1)]))
    return out


def deep_nesting() -> list[Probe]:
    """Nesting far past the parser's recursion limit, and a sweep across the limit inside an event."""
    out = []
    for depth in (1_000, 10_000, 100_000):
        out += [
            Probe("deep_nesting", f"arrays-{depth}", b"[" * depth + b"]" * depth),
            Probe("deep_nesting", f"objects-{depth}", b'{"a":' * depth + b"1" + b"}" * depth),
            Probe("deep_nesting", f"mixed-{depth}", b'[{"a":' * depth + b"1" + b"}]" * depth),
            Probe("deep_nesting", f"unclosed-{depth}", b"[" * depth),
        ]
    out.append(Probe("deep_nesting", "json-lines-deep-second-line", b'{"x0": 1}\n' + b"[" * 5000 + b"]" * 5000))
    for depth in range(900, 1_001, 5):
        nested = b"[" * depth + b"1" + b"]" * depth
        out.append(Probe("deep_nesting", f"event-id-depth-{depth}", b'[{"event_id": ' + nested + b"}]"))
        out.append(
            Probe(
                "deep_nesting", f"region-depth-{depth}", b'[{"event_id": "deep-%d", "region": ' % depth + nested + b"}]"
            )
        )
    return out


def huge_numbers() -> list[Probe]:
    out = []
    for n, ((name, token), field_name) in enumerate(
        itertools.product(HUGE_NUMBERS.items(), ("x0", "event_time_ms", "event_id", "region"))
    ):
        out.append(Probe("huge_numbers", f"{field_name}={name}", _event_with(field_name, token, f"huge-{n}")))
    out.append(
        Probe(
            "huge_numbers", "label=int_400_digits", b'{"event_id": "x", "label": 1' + b"0" * 400 + b"}", path="feedback"
        )
    )
    out.append(
        Probe(
            "huge_numbers",
            "label_time=1e300",
            b'{"event_id": "x", "label": true, "label_time_ms": 1e300}',
            path="feedback",
        )
    )
    # Times that fit in 64 bits but that Kafka refuses as a record's timestamp: before 1970, or days ahead.
    out.append(Probe("huge_numbers", "event_time=-1", _event_with("event_time_ms", "-1", "kafka-time-0")))
    out.append(
        Probe("huge_numbers", "event_time=min_int64", _event_with("event_time_ms", str(-(2**63)), "kafka-time-1"))
    )
    out.append(
        Probe("huge_numbers", "event_time=max_int64", _event_with("event_time_ms", str(2**63 - 1), "kafka-time-2"))
    )
    out.append(
        Probe(
            "huge_numbers", "label_time=-1", b'{"event_id": "x", "label": true, "label_time_ms": -1}', path="feedback"
        )
    )
    return out


def non_finite() -> list[Probe]:
    out = []
    for n, (token, field_name) in enumerate(
        itertools.product(NON_FINITE, ("x0", "event_time_ms", "event_id", "region"))
    ):
        out.append(Probe("nan_infinity", f"{field_name}={token}", _event_with(field_name, token, f"nonfinite-{n}")))
    out.append(Probe("nan_infinity", "label=NaN", b'{"event_id": "x", "label": NaN}', path="feedback"))
    out.append(Probe("nan_infinity", "label=Infinity", b'{"event_id": "x", "label": Infinity}', path="feedback"))
    out.append(Probe("nan_infinity", "bare-NaN-body", b"NaN"))
    return out


def duplicate_keys() -> list[Probe]:
    cases = {
        "event_id-twice": b'{"event_id": "dup-first", "event_id": "dup-last", "x0": 1}',
        "x0-number-then-string": b'{"event_id": "dup-1", "x0": 1, "x0": "high"}',
        "x0-string-then-number": b'{"event_id": "dup-2", "x0": "high", "x0": 1}',
        "unknown-then-known": b'{"event_id": "dup-3", "colour": 1, "colour": 2}',
        "ten-thousand-times": b'{"event_id": "dup-4", ' + b'"x0": 1, ' * 10_000 + b'"x1": 2}',
    }
    return [Probe("duplicate_keys", name, body) for name, body in cases.items()]


def lone_surrogates() -> list[Probe]:
    out = []
    for name, text in LONE_SURROGATES.items():
        out += [
            Probe("lone_surrogates", f"event_id-{name}", dumps({"event_id": text, "x0": 1})),
            Probe("lone_surrogates", f"region-{name}", dumps({"event_id": f"surrogate-{name}", "region": text})),
            Probe("lone_surrogates", f"key-{name}", dumps({"event_id": f"surrogate-key-{name}", text: 1})),
            Probe("lone_surrogates", f"time-{name}", dumps({"event_id": f"surrogate-t-{name}", "event_time_ms": text})),
            Probe("lone_surrogates", f"label-{name}", dumps({"event_id": text, "label": text}), path="feedback"),
        ]
    pair = "\ud83d\ude00"  # a valid pair as escapes: the emoji, which is fine
    out.append(
        Probe("lone_surrogates", "escaped-valid-pair", b'{"event_id": "' + json.dumps(pair)[1:-1].encode() + b'"}')
    )
    return out


def nul_bytes() -> list[Probe]:
    cases = {
        "escaped-in-id": dumps({"event_id": "nul\x00id", "x0": 1}),
        "escaped-in-region": dumps({"event_id": "nul-region", "region": "north\x00"}),
        "escaped-as-id": dumps({"event_id": "\x00"}),
        "raw-in-string": b'{"event_id": "raw\x00nul"}',
        "raw-after-json": b'{"event_id": "nul-after"}\x00',
        "raw-only": b"\x00",
        "raw-many": b"\x00" * 4096,
    }
    return [Probe("nul_bytes", name, body) for name, body in cases.items()]


def unicode_text() -> list[Probe]:
    out = []
    for name, text in HOSTILE_TEXTS.items():
        out.append(Probe("unicode", f"event_id-{name}", dumps({"event_id": text, "x0": 1, "x1": 2, "x2": 3})))
        out.append(Probe("unicode", f"region-{name}", dumps({"event_id": f"uni-{name}", "region": text})))
        raw = json.dumps({"event_id": f"uni-raw-{name}", "region": text}, ensure_ascii=False).encode()
        out.append(Probe("unicode", f"unescaped-{name}", raw))
    return out


def big_strings(max_body_bytes: int) -> list[Probe]:
    """Bodies near and over the body limit, and events too large for Kafka though under it."""

    def event_of(event_id: str, pad_field: str, total: int) -> bytes:
        head = dumps({"event_id": event_id, pad_field: ""})
        return head[:-2] + b"a" * max(0, total - len(head)) + b'"}'

    return [
        Probe("big_strings", "region-just-under-limit", event_of("big-1", "region", max_body_bytes - 1)),
        Probe("big_strings", "region-at-limit", event_of("big-2", "region", max_body_bytes)),
        Probe("big_strings", "region-just-over-limit", event_of("big-3", "region", max_body_bytes + 1)),
        Probe("big_strings", "twice-the-limit", b" " * (2 * max_body_bytes)),
        Probe("big_strings", "region-0.6-limit", event_of("big-4", "region", int(max_body_bytes * 0.6))),
        Probe("big_strings", "event_id-0.45-limit", dumps({"event_id": "i" * int(max_body_bytes * 0.45)})),
        Probe("big_strings", "event_id-0.9-limit", dumps({"event_id": "j" * int(max_body_bytes * 0.9)})),
        Probe(
            "big_strings",
            "many-medium-records",
            dumps([{"event_id": f"big-many-{i}", "region": "r" * 8_000} for i in range(max_body_bytes // 9_000)]),
        ),
        Probe("big_strings", "gzip-bomb", gzip.compress(b" " * (4 * max_body_bytes)), {"Content-Encoding": "gzip"}),
    ]


def content_types() -> list[Probe]:
    """Wrong or odd content types and encodings: the gateway reads JSON whatever the type says."""

    def good(name: str) -> bytes:
        return dumps({"event_id": f"ctype-{name}", "x0": 1, "x1": 2, "x2": 3})

    multipart = b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n"
    cases: list[tuple[str, bytes, dict[str, str | bytes]]] = [
        ("text-plain", good("text-plain"), {"Content-Type": "text/plain"}),
        ("xml", b"<event><event_id>x</event_id></event>", {"Content-Type": "application/xml"}),
        ("form", b"event_id=form&x0=1", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("multipart", multipart, {"Content-Type": "multipart/form-data; boundary=x"}),
        (
            "utf16-declared",
            '{"event_id": "ctype-utf16"}'.encode("utf-16"),
            {"Content-Type": "application/json; charset=utf-16"},
        ),
        ("garbage-type", good("garbage-type"), {"Content-Type": "\x01;;==;charset"}),
        ("gzip-valid", gzip.compress(good("gzip")), {"Content-Encoding": "gzip"}),
        ("gzip-invalid", b"not gzip at all", {"Content-Encoding": "gzip"}),
        ("gzip-truncated", gzip.compress(good("gzip-truncated"))[:12], {"Content-Encoding": "gzip"}),
        ("deflate-invalid", b"not deflate", {"Content-Encoding": "deflate"}),
        ("deflate-valid", zlib.compress(good("deflate")), {"Content-Encoding": "deflate"}),
        ("unknown-encoding", good("zzz"), {"Content-Encoding": "zzz"}),
        ("brotli-undecodable", b"\x00\x01", {"Content-Encoding": "br"}),
        ("empty-body", b"", {}),
        ("whitespace-body", b" \n\t\r\n ", {}),
        ("empty-array", b"[]", {}),
    ]
    return [Probe("content_types", name, body, headers) for name, body, headers in cases]


def feedback_labels() -> list[Probe]:
    """Labels through ``/feedback``: plain ones, and ones whose event id or label is hostile."""
    cases: dict[str, Any] = {
        "plain": {"event_id": "label-1", "label": True},
        "late-and-sourced": {"event_id": "label-2", "label": False, "label_time_ms": 1, "source": "\u202ereviewer"},
        "unicode-event-id": {"event_id": HOSTILE_TEXTS["emoji_zwj"], "label": True},
        "nul-event-id": {"event_id": "label\x00nul", "label": True},
        "label-list": {"event_id": "label-3", "label": [True]},
        "label-object": {"event_id": "label-4", "label": {"a": 1}},
        "label-string": {"event_id": "label-5", "label": HOSTILE_TEXTS["zalgo"]},
        "label-int-2**64": {"event_id": "label-6", "label": 2**64},
        "no-event-id": {"label": True},
        "batch": [{"event_id": f"label-batch-{i}", "label": i % 2 == 0} for i in range(20)],
    }
    return [Probe("feedback", name, dumps(doc), path="feedback") for name, doc in cases.items()]


def hostile_paths() -> list[Probe]:
    ok = dumps({"event_id": "path-x"})
    return [
        Probe("paths", "unknown-stream", ok, path="/v1/streams/nope/events"),
        Probe("paths", "traversal", ok, path="/v1/streams/..%2F..%2Fetc/events"),
        Probe("paths", "nul-stream", ok, path="/v1/streams/%00/events"),
        Probe("paths", "rtl-stream", ok, path="/v1/streams/%E2%80%AEdemo/events"),
        Probe("paths", "invalid-utf8-stream", ok, path="/v1/streams/%FF%FE/events"),
        Probe("paths", "long-stream", ok, path="/v1/streams/" + "s" * 4000 + "/events"),
        Probe("paths", "unknown-endpoint", ok, path="/v1/streams/x/nothing"),
        Probe("paths", "get-on-post", b"", path="events", method="GET"),
        Probe("paths", "put-on-post", ok, path="events", method="PUT"),
    ]


def hostile_auth() -> list[Probe]:
    """API-key headers that are not keys: no key, wrong, not UTF-8, not ASCII, huge."""
    ok = dumps({"event_id": "auth-x"})
    cases: dict[str, dict[str, str | bytes]] = {
        "empty-key": {"X-API-Key": ""},
        "wrong-key": {"X-API-Key": "nope"},
        "latin1-key": {"X-API-Key": b"\xe9"},
        "invalid-utf8-key": {"X-API-Key": b"\xff\xfe"},
        "cesu-key": {"X-API-Key": b"\xed\xa0\x80"},
        "huge-key": {"X-API-Key": "k" * 7000},
        "bearer-invalid-utf8": {"X-API-Key": "", "Authorization": b"Bearer \xff"},
        "basic-not-base64": {"X-API-Key": "", "Authorization": "Basic !!!"},
        "basic-invalid-utf8": {"X-API-Key": "", "Authorization": b"Basic \xff\xfe"},
        "basic-base64-of-garbage": {"X-API-Key": "", "Authorization": "Basic /w=="},
    }
    return [Probe("auth", name, ok, headers) for name, headers in cases.items()]


def mixed_batches(rng: random.Random, count: int) -> list[Probe]:
    """Arrays and JSON lines mixing valid events, contract breakers, schema breakers and non-objects."""
    bad_items: list[Any] = [
        {"x0": "high"},
        {"colour": "red"},
        {"event_time_ms": "yesterday"},
        {"event_time_ms": "2026-01-01T00:00:00"},
        {"x0": [1, 2]},
        {"x0": {"nested": True}},
        {"x0": True},
        {"event_id": None, "x0": None},
        "a string",
        42,
        None,
        [],
        [{"event_id": "nested-array"}],
        {"x0": math.nan},
        {"x0": math.inf},
        {"region": LONE_SURROGATES["high"]},
    ]
    out = []
    for i in range(count):
        items: list[Any] = []
        for j in range(rng.randint(2, 40)):
            if rng.random() < 0.5:
                region = rng.choice((*REGIONS, None, "mars"))
                items.append(
                    {"event_id": f"mixed-{i}-{j}", "x0": rng.uniform(-1, 11), "x1": 2, "x2": 3, "region": region}
                )
            else:
                items.append(rng.choice(bad_items))
        body = dumps(items) if i % 3 else b"\n".join(dumps(item) for item in items)
        out.append(Probe("mixed_batches", f"batch-{i}", body))
    return out


def hand_picked(rng: random.Random, max_body_bytes: int) -> list[Probe]:
    """Every hand-written category, in a seeded order (counts bounded: a few hundred requests)."""
    probes = (
        arbitrary_bytes(rng, 60)
        + invalid_utf8()
        + truncated_json(rng, 30)
        + deep_nesting()
        + huge_numbers()
        + non_finite()
        + duplicate_keys()
        + lone_surrogates()
        + nul_bytes()
        + unicode_text()
        + big_strings(max_body_bytes)
        + content_types()
        + feedback_labels()
        + hostile_paths()
        + hostile_auth()
        + mixed_batches(rng, 25)
    )
    rng.shuffle(probes)
    return probes


# -- hypothesis strategies ---------------------------------------------------------------------------------------

# Every code point, lone surrogates included (the default leaves category Cs out).
ANY_CHARACTER = st.characters(codec=None, exclude_categories=())
HOSTILE_STRINGS = st.one_of(
    st.text(ANY_CHARACTER, max_size=30),
    st.sampled_from(sorted(HOSTILE_TEXTS.values()) + sorted(LONE_SURROGATES.values())),
)
HOSTILE_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, -(2**63), 5e-324, -0.0]),
)
HOSTILE_LEAVES = st.one_of(st.none(), st.booleans(), HOSTILE_NUMBERS, HOSTILE_STRINGS)


def hostile_json(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON document (NaN and infinities included) with hostile leaves, nested a little."""
    return st.recursive(
        HOSTILE_LEAVES,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_STRINGS, inner, max_size=4),
        max_leaves=max_leaves,
    )


def hostile_event(ids: Iterator[str]) -> st.SearchStrategy[dict[str, Any]]:
    """An event-shaped object: some of the demo fields (hostile values in them), now and then an unknown one.

    The event id, when present and not itself drawn hostile, comes from ``ids`` so it is unique.
    """
    value = st.one_of(HOSTILE_LEAVES, hostile_json(4))
    fields = {
        "event_time_ms": st.one_of(value, st.integers(1, 2**63 - 1), st.just("2026-01-01T00:00:00Z")),
        "x0": st.one_of(value, st.floats(0, 10)),
        "x1": st.one_of(value, st.floats(0, 10)),
        "x2": st.one_of(value, st.floats(0, 10)),
        "region": st.one_of(value, st.sampled_from(REGIONS)),
    }
    unique_id = st.builds(lambda: next(ids))
    return st.fixed_dictionaries(
        {"event_id": st.one_of(unique_id, unique_id, value)},
        optional={**fields, "colour": value},
    )


def hostile_batches(ids: Iterator[str]) -> st.SearchStrategy[tuple[bytes, str]]:
    """A request body and how it was written: a batch of hostile events and JSON, as an array or JSON lines.

    The JSON is written as a lenient client would (NaN literals, surrogates as escapes); one in a few
    bodies is written unescaped, where a lone surrogate makes the body invalid UTF-8.
    """
    items = st.lists(st.one_of(hostile_event(ids), hostile_event(ids), hostile_json()), min_size=1, max_size=6)

    def write(docs: list[Any], form: str) -> tuple[bytes, str]:
        if form == "array":
            return json.dumps(docs, allow_nan=True).encode(), form
        if form == "lines":
            return b"\n".join(json.dumps(d, allow_nan=True).encode() for d in docs), form
        text = json.dumps(docs, allow_nan=True, ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass"), form

    return st.builds(write, items, st.sampled_from(["array", "array", "lines", "unescaped"]))


# -- Avro of the demo schema, byte by byte ---------------------------------------------------------------------


def zigzag(n: int) -> bytes:
    """An Avro long: zigzag, then a little-endian base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def avro_string(raw: bytes) -> bytes:
    """An Avro string of these exact bytes (which need not be UTF-8)."""
    return zigzag(len(raw)) + raw


def optional_double(x: float | bytes | None) -> bytes:
    """A ``["null", "double"]`` value; ``bytes`` are the double's 8 bytes as they are (NaN payloads)."""
    if x is None:
        return b"\x00"
    return b"\x02" + (x if isinstance(x, bytes) else struct.pack("<d", x))


def demo_event(
    header: bytes,
    event_id: bytes,
    time_ms: int,
    x: tuple[float | bytes | None, float | bytes | None, float | bytes | None] = (1.0, 2.0, 3.0),
    region: bytes | None = b"north",
) -> bytes:
    """A demo event in the Confluent wire format, every field written by hand (``schemas/streams/demo.avsc``)."""
    body = avro_string(event_id) + zigzag(time_ms) + b"".join(optional_double(v) for v in x)
    body += b"\x00" if region is None else b"\x02" + avro_string(region)
    return header + body


# NaNs as bit patterns: quiet and signalling, of both signs, with payloads.
NAN_PATTERNS: dict[str, bytes] = {
    "quiet_nan": struct.pack("<Q", 0x7FF8000000000000),
    "negative_nan": struct.pack("<Q", 0xFFF8000000000000),
    "signalling_nan": struct.pack("<Q", 0x7FF0000000000001),
    "nan_payload": struct.pack("<Q", 0x7FFDEADBEEF00001),
}
# The edges of the demo contract's [0, 10], and beyond.
EDGE_DOUBLES: dict[str, float] = {
    "minus_zero": -0.0,
    "min_subnormal": 5e-324,
    "ten": 10.0,
    "just_over_ten": math.nextafter(10.0, math.inf),
    "just_under_zero": -5e-324,
    "infinity": math.inf,
    "minus_infinity": -math.inf,
    "max_double": 1.7976931348623157e308,
}


# -- in-process serdes and reading back what the services made of the inputs ------------------------------------


class OneSchemaRegistry:
    """A stand-in registry client for in-process tests: every schema registers as id 1; no other id exists."""

    def register_schema(self, subject: str, schema: Any, *args: Any, **kwargs: Any) -> int:
        return 1

    def get_schema(self, schema_id: int, *args: Any, **kwargs: Any) -> Any:
        raise LookupError(f"schema id {schema_id} is not registered")


def one_schema_serde(topic: str, schema_path: Path) -> TopicSerde:
    """The serde a service would use for ``topic``, its schema registered as id 1, without a registry."""
    return TopicSerde(OneSchemaRegistry(), topic, schema_path.read_text())  # type: ignore[arg-type]


Position = tuple[str, int, int]  # topic, partition, offset
Running = tuple[subprocess.Popen[bytes], str, Path]  # the process, its base URL, its log


@contextmanager
def services(settings: Settings, tmp_path: Path, envs: dict[str, dict[str, str]]) -> Iterator[dict[str, Running]]:
    """``tests.helpers.service`` for several services at once: they start side by side, and all stop at the end."""
    managers = {name: service(name, settings, tmp_path, **env) for name, env in envs.items()}
    with ExitStack() as stack, ThreadPoolExecutor(len(managers)) as pool:
        futures = {name: pool.submit(manager.__enter__) for name, manager in managers.items()}
        running: dict[str, Running] = {}
        failure: BaseException | None = None
        for name, future in futures.items():
            try:
                running[name] = future.result()
            except Exception as exc:  # the others must still be stopped
                failure = failure or exc
                continue
            stack.push(managers[name].__exit__)
        if failure is not None:
            raise failure
        yield running


@dataclass(frozen=True)
class DeadCopy:
    """One dead letter: its ``eddy.dlq.*`` headers (prefix removed), value and key."""

    headers: dict[str, str]
    value: bytes | None
    key: bytes | None


@dataclass
class StreamReport:
    """A stream's topics read to their end once the services had handled everything, and what does not add up.

    ``dead_letters`` are keyed by the position of the record they keep (``eddy.dlq.source.*``).
    ``problems`` lists each ``S.events`` record not accounted for exactly once (validated by its event id,
    or dead-lettered by its position), each dead letter without a reason or from an unknown position,
    and each validated record that differs from the event it came from.
    """

    events: list[Message] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    label_ids: list[str] = field(default_factory=list)
    validated: list[Message] = field(default_factory=list)
    dead_letters: dict[Position, list[DeadCopy]] = field(default_factory=lambda: defaultdict(list))
    problems: list[str] = field(default_factory=list)

    def table(self) -> str:
        """Dead letters by source topic, stage and reason, as a markdown table."""
        rows: Counter[tuple[str, str, str]] = Counter()
        for (topic, _, _), letters in self.dead_letters.items():
            for letter in letters:
                rows[(topic, letter.headers.get("stage", "?"), letter.headers.get("reason", "?"))] += 1
        lines = ["| source topic | stage | eddy.dlq.reason | dead letters |", "|---|---|---|---:|"]
        lines += [f"| {t} | {stage} | {reason} | {n} |" for (t, stage, reason), n in sorted(rows.items())]
        lines.append(f"| (validated) | | | {len(self.validated)} |")
        return "\n".join(lines)


def read_all(settings: Settings, topics: list[str], timeout_s: float = 60.0) -> list[Message]:
    """Every record of ``topics``, each partition read to the end it has now (partition EOF, no "latest")."""
    return [msg for batch in read_to_end(settings, topics, timeout_s) for msg in batch]


def wait_committed(
    settings: Settings,
    group: str,
    positions: Iterable[tuple[str, int, int]],
    process: subprocess.Popen[bytes],
    timeout_s: float = 60.0,
) -> None:
    """Until ``group`` has committed past every position: the service handled them and its output was acknowledged.

    Raises
    ------
    AssertionError
        If ``process`` exits first, or ``timeout_s`` passes, naming the partitions still behind.
    """
    ends: dict[tuple[str, int], int] = {}
    for topic, partition, offset in positions:
        ends[(topic, partition)] = max(ends.get((topic, partition), 0), offset + 1)
    if not ends:
        return
    consumer = Consumer(consumer_config(settings, group))  # never subscribes: it only reads the group's offsets
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            committed = committed_offsets(consumer, [TopicPartition(t, p) for t, p in ends])
            behind = {
                f"{tp.topic}:{tp.partition}": (tp.offset, ends[(tp.topic, tp.partition)])
                for tp in committed
                if tp.offset < ends[(tp.topic, tp.partition)]
            }
            if not behind:
                return
            if process.poll() is not None:
                raise AssertionError(f"{group}: the service exited with {process.returncode}; behind: {behind}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{group}: not done after {timeout_s:.0f}s (committed, end): {behind}")
            time.sleep(0.25)
    finally:
        consumer.close()


def account_stream(
    settings: Settings,
    processes: dict[str, subprocess.Popen[bytes]],
    other_sources: dict[str, list[tuple[int, int]]] | None = None,
    timeout_s: float = 60.0,
    reencoded: Collection[str] = (),
) -> StreamReport:
    """Wait until the services in ``processes`` handled every input, then read the stream back and account for it.

    ``processes`` holds ``validation``, and ``ingestion`` when its bridge has input: ``other_sources``
    names the (partition, offset) positions of records produced to ``S.raw`` (or any topic whose dead
    letters are expected in ``S.dlq``). A validated record is the very bytes of its event, but for the
    event ids in ``reencoded`` (written with an older schema, so validation writes them anew).
    """
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    serdes = serdes_for(settings)
    sources = other_sources or {}
    if topics.raw in sources:
        raw = [(topics.raw, p, o) for p, o in sources[topics.raw]]
        wait_committed(settings, f"{settings.group_prefix}-ingestion", raw, processes["ingestion"], timeout_s)
    report = StreamReport()
    report.events = read_all(settings, [topics.events])
    events_serde = serdes.for_topic(topics.events)
    by_id: dict[str, bytes] = {}
    decoded: list[str | None] = []
    for msg in report.events:
        try:
            event_id = str(events_serde.decode(msg.value())["event_id"])
        except SerdeError:
            event_id = None
        decoded.append(event_id)
        if event_id is not None:
            report.event_ids.append(event_id)
            by_id[event_id] = msg.value() or b""
    positions = [(topics.events, m.partition() or 0, m.offset() or 0) for m in report.events]
    wait_committed(settings, f"{settings.group_prefix}-validation", positions, processes["validation"], timeout_s)

    downstream = read_all(settings, [topics.validated, topics.dlq, topics.feedback])
    validated_ids: Counter[str] = Counter()
    validated_serde = serdes.for_topic(topics.validated)
    for msg in downstream:
        if msg.topic() == topics.feedback:
            report.label_ids.append(str(serdes.for_topic(topics.feedback).decode(msg.value())["event_id"]))
        elif msg.topic() == topics.validated:
            report.validated.append(msg)
            event_id = str(validated_serde.decode(msg.value())["event_id"])
            validated_ids[event_id] += 1
            if event_id not in reencoded and by_id.get(event_id) not in (None, msg.value()):
                report.problems.append(f"validated {event_id!r} is not the bytes of its event")
        else:
            headers = read_dlq_headers(msg.headers())
            where = (
                headers.get("source.topic", "?"),
                int(headers.get("source.partition", -1)),
                int(headers.get("source.offset", -1)),
            )
            report.dead_letters[where].append(DeadCopy(headers, msg.value(), msg.key()))
            if not headers.get("reason") or not headers.get("error.message"):
                report.problems.append(f"dead letter of {where} without a reason or message: {headers}")

    known = set(positions) | {(t, p, o) for t, pos in sources.items() for p, o in pos}
    report.problems += [
        f"dead letter of an unknown record {where}" for where in report.dead_letters if where not in known
    ]
    report.problems += [f"validated {i!r} is no event of S.events" for i in validated_ids if i not in by_id]
    for (topic, partition, offset), event_id in zip(positions, decoded, strict=True):
        copies = len(report.dead_letters.get((topic, partition, offset), [])) + (
            validated_ids[event_id] if event_id is not None else 0
        )
        if copies != 1:
            report.problems.append(
                f"{topic}:{partition}:{offset} (event id {event_id!r}) is validated or dead-lettered {copies} times"
            )
    return report


def status_table(rows: Iterable[tuple[str, int | None, int]]) -> str:
    """Requests by category: how many, the records they got accepted, and the answers by status."""
    requests: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    statuses: dict[str, Counter[int | None]] = defaultdict(Counter)
    for category, status, records in rows:
        requests[category] += 1
        accepted[category] += records
        statuses[category][status] += 1
    seen = sorted({s for c in statuses.values() for s in c}, key=lambda s: -1 if s is None else s)
    header = "| category | requests | records accepted | " + " | ".join(str(s) for s in seen) + " |"
    lines = [header, "|---|---:|---:|" + "---:|" * len(seen)]
    for category in sorted(requests):
        counts = " | ".join(str(statuses[category][s] or "") for s in seen)
        lines.append(f"| {category} | {requests[category]} | {accepted[category]} | {counts} |")
    return "\n".join(lines)
