"""Hostile input in any field of any endpoint is a 4xx problem, never a 500, and changes nothing.

Hostile here means what JSON or a URL can carry but the service cannot hold: a lone UTF-16
surrogate ("\\ud800", valid JSON, not a character: UTF-8 cannot encode it), a NUL (PostgreSQL
text and jsonb cannot store it), a datetime whose UTC value falls outside what Python and
PostgreSQL hold (0001-01-01T00:00:00+14:00), NaN, Infinity, numbers past any float or past any
bound, extra keys that are not text, and deeply nested JSON.

The fields come from the app's own OpenAPI document: every property of every request body
(through $refs, nullable and discriminated unions, arrays and free-form objects), every query,
path and header parameter. A field or an operation added later is covered without touching this
file: the hostile value goes into a valid base request, written here for the operations whose
valid bodies need real ids or a real place, else made from the schema; and
`test_every_operation_has_a_valid_base_request` fails when such a body is refused, so a hostile
value is always the only thing wrong. Each refused request is followed by a look at the
database: no table gained or lost a row and no row of the merchant under attack changed.

The console's forms are found by reading its pages' HTML (a few pages, then the pages they link
to), and each field is sent hostile values; they answer HTML, but never a 500.
"""

from __future__ import annotations

import copy
import json
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from api.main import app
from api.problems import problem_response
from tests.factories import Merchant, World, offer_body
from tests.roles import MERCHANT_ROLES, app_routes, role_for
from tests.test_console_webhooks import webhook_pages

DOCUMENT: dict[str, Any] = app.openapi()
PROBLEM_JSON = "application/problem+json"
EARLIEST = datetime(2, 1, 1)  # the accepted range of request datetimes, in UTC (api/schemas.py)
LATEST = datetime(9998, 12, 31, 23, 59, 59, 999999)
GENERATED = settings(
    max_examples=3,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI repeatable, time bounded
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --------------------------------------------------------------------------- JSON as sent


@dataclass(frozen=True)
class Raw:
    """JSON text placed into a body as it is: literals json.dumps never writes (1e400, a number
    of 400 digits, thousands of brackets). `parses` is False for text Python's JSON parser
    refuses although it is JSON (past its nesting or digit limits): the answer may then be 400."""

    text: str
    parses: bool = True


def encode(body: object) -> bytes:
    """The body as JSON text; lone surrogates and NUL become \\ud800 and \\u0000 escapes, as a
    client in any language can send them (httpx would refuse to encode them)."""
    raws: list[Raw] = []

    def mark(value: object) -> object:
        if isinstance(value, Raw):
            raws.append(value)
            return f"\x01raw{len(raws) - 1}\x01"
        if isinstance(value, dict):
            return {key: mark(child) for key, child in value.items()}
        if isinstance(value, list):
            return [mark(child) for child in value]
        return value

    text = json.dumps(mark(body), allow_nan=True)  # ensure_ascii: every non-ASCII character escaped
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x01raw{i}\x01"), raw.text)
    return text.encode("ascii")


def is_uuid(schema: dict[str, Any]) -> bool:
    return any(s.get("format") == "uuid" for s in [resolve(schema), *alternatives(resolve(schema))])


def parses(value: object) -> bool:
    if isinstance(value, Raw):
        return value.parses
    if isinstance(value, dict):
        return all(parses(v) for v in value.values())
    if isinstance(value, list):
        return all(parses(v) for v in value)
    return True


# --------------------------------------------------------------------------- the fields, from the document

Path = tuple[str | int, ...]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def alternatives(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [resolve(s) for s in schema.get("anyOf", schema.get("oneOf", [])) if resolve(s).get("type") != "null"]


def minimal(schema: dict[str, Any]) -> Any:
    """A small valid instance of a schema, for the objects around a field the base body lacks."""
    schema = resolve(schema)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "examples" in schema:
        return copy.deepcopy(schema["examples"][0])
    if alternatives(schema):
        return minimal(alternatives(schema)[0])
    kind = schema.get("type")
    if kind == "object":
        instance, clock = {}, 9
        for name in schema.get("required", []):
            sub = resolve(schema["properties"][name])
            if sub.get("format") == "time":  # distinct times: a window's start and end must differ
                clock += 1
                instance[name] = f"{clock:02d}:00"
            else:
                instance[name] = minimal(sub)
        return instance
    if kind == "array":
        return [minimal(schema["items"]) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    if schema.get("format") == "date-time":
        return datetime.now(UTC).isoformat()
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    return "x" * max(1, schema.get("minLength", 1))


@dataclass(frozen=True)
class Slot:
    """One place a client puts a value: a body property (path), or a query, path or header parameter."""

    method: str
    route: str
    operation: str
    location: str  # body, query, path, header
    path: Path
    kind: str  # text, datetime, number, free_form, object
    schema: dict[str, Any] = field(compare=False, hash=False)
    # Objects to put around the value when the base body lacks them, outermost first; True: replace
    # what is there (a union's variant, so its own fields are allowed).
    around: tuple[tuple[Path, Any, bool], ...] = field(default=(), compare=False, hash=False)
    tags: frozenset[str] = field(default=frozenset(), compare=False, hash=False)  # discriminator values in error paths

    def __str__(self) -> str:
        where = ".".join(map(str, self.path)) or "(the body)"
        return f"{self.method} {self.route} {self.location}:{where}"


def body_slots(
    operation: tuple[str, str, str],
    schema: dict[str, Any],
    path: Path = (),
    around: tuple[tuple[Path, Any, bool], ...] = (),
    tags: frozenset[str] = frozenset(),
) -> Iterator[Slot]:
    schema = resolve(schema)
    method, route, operation_id = operation
    choices = alternatives(schema)
    if choices:
        tag_name = schema.get("discriminator", {}).get("propertyName")
        for choice in choices:
            if tag_name:  # one variant at a time, with its own fields
                tag = choice["properties"][tag_name]["const"]
                yield from body_slots(operation, choice, path, (*around, (path, minimal(choice), True)), tags | {tag})
            else:
                yield from body_slots(operation, choice, path, around, tags)
        return

    def slot(kind: str) -> Slot:
        return Slot(method, route, operation_id, "body", path, kind, schema, around, tags)

    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        if not properties or schema.get("additionalProperties") is True:
            yield slot("free_form")
            return
        inside = around if not path else (*around, (path, minimal(schema), False))
        yield Slot(method, route, operation_id, "body", path, "object", schema, inside, tags)
        for name, sub in properties.items():
            yield from body_slots(operation, sub, (*path, name), inside, tags)
    elif kind == "array":
        yield from body_slots(
            operation, schema["items"], (*path, 0), (*around, (path, [minimal(schema["items"])], False)), tags
        )
    elif kind == "string" and schema.get("format") == "date-time":
        yield slot("datetime")
    elif kind in ("integer", "number"):
        yield slot("number")
    else:  # strings, enumerations, constants, booleans
        yield slot("text")


def all_slots() -> list[Slot]:
    found: dict[Slot, None] = {}
    for route, item in DOCUMENT["paths"].items():
        for method, spec in item.items():
            operation = (method.upper(), route, spec["operationId"])
            for parameter in spec.get("parameters", []):
                schema = resolve(parameter["schema"])
                kind = "number" if schema.get("type") in ("integer", "number") else "text"
                found.setdefault(
                    Slot(*operation, parameter["in"], (parameter["name"],), kind, parameter["schema"]), None
                )
            body = spec.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                for one in body_slots(operation, body["schema"]):
                    found.setdefault(one, None)
    return list(found)


SLOTS = all_slots()
BODY_SLOTS = [s for s in SLOTS if s.location == "body"]
PARAMETER_SLOTS = [s for s in SLOTS if s.location != "body"]


# --------------------------------------------------------------------------- hostile values

# Lone surrogates (either half, a pair in the wrong order), NUL, and both inside ordinary text.
TEXT_EDGES = ["\ud800", "\udfff", "Caf\udce9", "\udc00\ud800", "\x00", "NUL\x00here", "a" * 40 + "\ud83d"]

# Aware datetimes whose UTC value is outside years 2-9998, written every way a client may.
DATETIME_EDGES: list[object] = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00Z",
    "0001-12-31T23:59:59.999999+00:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59.999999Z",
    "9999-06-01T00:00:00+14:00",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "2024-02-30T12:00:00Z",
    "2024-01-01T10:00:00+24:00",
    Raw("1e400"),
    Raw("-1e400"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("9" * 400),
    Raw("-" + "9" * 40),
]

NUMBER_EDGES: list[object] = [
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("1e400"),
    Raw("-1e400"),
    Raw("9" * 400),
    Raw("-" + "9" * 400),
    Raw("1" + "0" * 5000, parses=False),  # past Python's 4300-digit limit for integers
    Raw("1.7976931348623157e308"),
    Raw("-1.7976931348623157e308"),
]

# Extra keys of a typed object that are not text (they are refused as unknown or as not text).
KEY_EDGES = ["\ud800", "\udfff", "\x00", "key\x00", "\udc00\ud800"]

# URL values: NUL, the UTF-8 bytes of a surrogate (invalid UTF-8), bytes that are never UTF-8,
# an overlong NUL, number literals Python's float() takes, and numbers past any bound.
PARAMETER_EDGES = [
    "%00",
    "a%00b",
    "%ED%A0%80",
    "%ED%B0%80%ED%A0%80",
    "%FF%FE",
    "%C0%80",
    "%F4%90%80%80",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "9" * 400,
]
# (DEL and other control characters are refused by the HTTP parser before the app, as a plain 400.)
HEADER_EDGES = [b"", b"x" * 201, "é".encode(), "é".encode("latin-1"), b"\xff\xfe", b"a\tb"]


def hostile_text() -> st.SearchStrategy[str]:
    """Ordinary text with one NUL or one lone surrogate somewhere in it (st.text never makes
    surrogates, so the one put in stays lone)."""
    bad = st.one_of(st.just("\x00"), st.integers(0xD800, 0xDFFF).map(chr))
    return st.tuples(st.text(max_size=12), bad, st.text(max_size=12)).map("".join)


def outside_utc_range(local: datetime, offset_minutes: int) -> bool:
    try:
        utc = local - timedelta(minutes=offset_minutes)
    except OverflowError:
        return True
    return not EARLIEST <= utc <= LATEST


def iso(local: datetime, offset_minutes: int) -> str:
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{local.isoformat()}{sign}{hours:02d}:{minutes:02d}"


def hostile_datetimes() -> st.SearchStrategy[str]:
    """Aware datetimes in years 1 and 9999 with any offset, kept when their UTC value is outside the range."""
    local = st.one_of(
        st.datetimes(datetime(1, 1, 1), datetime(1, 12, 31, 23, 59, 59)),
        st.datetimes(datetime(9999, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)),
    )
    pairs = st.tuples(local, st.integers(-(24 * 60 - 1), 24 * 60 - 1)).filter(lambda p: outside_utc_range(*p))
    return pairs.map(lambda p: iso(*p))


def out_of_bounds(schema: dict[str, Any]) -> st.SearchStrategy[object]:
    """Numbers a bounded number field must refuse: past its bounds, fractional for an integer, not finite."""
    schema = resolve(schema)
    low, high = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
    assert low is not None and high is not None, f"an unbounded number: {schema}"
    options: list[st.SearchStrategy[object]] = [
        st.integers(max_value=math.ceil(low) - 1),
        st.integers(min_value=math.floor(high) + 1),
        st.floats(max_value=low, exclude_max=True, allow_infinity=True),
        st.floats(min_value=high, exclude_min=True, allow_infinity=True),
        st.sampled_from([math.nan, math.inf, -math.inf]),
    ]
    if schema.get("type") == "integer":
        options.append(st.floats(low, high).filter(lambda x: not x.is_integer()))
    return st.one_of(options)


def hostile_json() -> st.SearchStrategy[object]:
    """JSON whose every leaf is hostile text, nested in lists and objects with ordinary keys."""
    return st.recursive(
        hostile_text(),
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3), st.dictionaries(st.text(max_size=6), inner, min_size=1, max_size=3)
        ),
        max_leaves=6,
    )


def nested(depth: int, leaf: str = "1") -> Raw:
    return Raw("[" * depth + leaf + "]" * depth, parses=depth < 900)


def free_form_edges(base: dict[str, Any]) -> list[object]:
    """A free-form object (a geofence) made hostile: its keys, its strings, its numbers, its depth."""
    some_key = next(iter(base), "type")
    return [
        {**base, "\ud800": 1},
        {**base, "\x00": 1},
        {**base, "a\udfff": "b"},
        {**base, some_key: "\ud800"},
        {**base, some_key: "Circle\x00"},
        {**base, "center": ["\x00", 1]},
        {**base, "center": [Raw("NaN"), Raw("Infinity")]},
        {**base, "center": [Raw("1e400"), Raw("9" * 400)]},
        {**base, "radius_m": Raw("-1e400")},
        {"type": "Polygon", "coordinates": [[{"\udfff": [1, 2]}]]},
        {"type": "Polygon", "coordinates": nested(20)},
        {"type": "Polygon", "coordinates": nested(5000)},
        {"type": "MultiPolygon", "coordinates": nested(30, '"\\ud800"')},
    ]


# --------------------------------------------------------------------------- the service under attack


# Tables the webhook worker writes on its own schedule, for any merchant's endpoint (another test's
# receiver that has gone away is retried for hours): their row counts change without any request, so
# only this merchant's rows are compared, and it has no endpoint.
WRITTEN_IN_THE_BACKGROUND = {
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
    "webhook_messages",
    "webhook_outbox_cursor",
    "webhook_srm_state",
}


class Scene:
    """A merchant with a venue, a draft campaign with an offer, an active campaign, an unlocked
    code and a redemption: what every operation's base request refers to."""

    def __init__(self, http: httpx.Client, service_settings: Any, database_url: str) -> None:
        self.world = World(http, service_settings)
        self.http = http
        world = self.world
        self.merchant: Merchant = world.merchant("Hostile Inputs Ltd")
        self.venue = world.venue(self.merchant)
        self.draft = world.campaign(self.merchant, [self.venue["id"]], activate=False)
        self.offer = self.draft["offers"][0]
        till = world.venue(self.merchant)
        world.campaign(self.merchant, [till["id"]])
        (self.code, self.unlock, self.customer), (self.spare_code, _, _) = (self._unlock(till) for _ in range(2))
        r = http.post("/v1/redemptions", json={"code": self.code, "venue_id": till["id"]}, headers=self.merchant.staff)
        assert r.status_code == 201, r.text
        self.redemption = r.json()["id"]
        self.till = till
        url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.db = psycopg.connect(url, autocommit=True)
        self._snapshot_sql = self._snapshot_query()
        self.before = self.snapshot()

    def _unlock(self, venue: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
        """A code unlocked at the venue: the code, its unlock id and the customer's headers."""
        customer = self.world.user()
        r = self.world.checkin(customer, *venue["center"])
        assert r.status_code == 201 and r.json()["unlocked"], r.text
        unlocked = r.json()["unlocked"][0]
        return str(unlocked["code"]), str(unlocked["unlock_id"]), customer

    # -- what the requests refer to

    def path_values(self) -> dict[str, str]:
        return {
            "venue_id": self.venue["id"],
            "campaign_id": self.draft["id"],
            "offer_id": self.offer["id"],
            "redemption_id": self.redemption,
            "code": self.code,
            "unlock_id": self.unlock,
        }

    def query_values(self) -> dict[str, str]:
        lon, lat = self.venue["center"]
        return {"lat": str(lat), "lon": str(lon), "venue_id": self.till["id"]}

    def base_body(self, operation: str) -> dict[str, Any]:
        """The operation's valid body: written here, or else a small one from its schema."""
        written = self.written_body(operation)
        if written is not None:
            return written
        spec = next(s for item in DOCUMENT["paths"].values() for s in item.values() if s["operationId"] == operation)
        body = minimal(spec["requestBody"]["content"]["application/json"]["schema"])
        assert isinstance(body, dict)
        return body

    def written_body(self, operation: str) -> dict[str, Any] | None:
        now = datetime.now(UTC)
        lon, lat = self.venue["center"]
        bodies: dict[str, Callable[[], dict[str, Any]]] = {
            "create_merchant_route": lambda: {"name": "Hostile Inc"},
            "create_venue": lambda: {
                "name": "Cafe",
                "geofence": {"type": "Circle", "center": list(self.world.spot()), "radius_m": 40},
            },
            "update_venue": dict,
            "create_campaign": lambda: {
                "name": "Spring",
                "venue_ids": [self.venue["id"]],
                "starts_at": (now - timedelta(days=1)).isoformat(),
                "ends_at": (now + timedelta(days=30)).isoformat(),
            },
            "update_campaign": dict,
            "add_offer": offer_body,
            "update_offer": dict,
            "create_checkin": lambda: {"lat": lat, "lon": lon, "accuracy_m": 10, "observed_at": now.isoformat()},
            "redeem": lambda: {"code": self.spare_code, "venue_id": self.till["id"]},
            "void": lambda: {"reason": "rang up the wrong code"},
            "create_webhook": lambda: {"url": "https://hooks.example.com/checkin", "events": ["offer_unlocked"]},
        }
        return bodies[operation]() if operation in bodies else None

    def headers(self, slot: Slot) -> dict[str, str]:
        role = role_for(app, slot.method, slot.route)
        if role is None:
            return {}
        merchant = self.merchant.id if role in MERCHANT_ROLES else None
        # A fresh subject per request: per-person limits (check-ins, failed code look-ups) never answer for the input.
        return {**self.world.headers(role, merchant_id=merchant), "Idempotency-Key": str(uuid.uuid4())}

    # -- sending one hostile value

    def send_body(self, slot: Slot, value: object) -> httpx.Response:
        body: Any = self.base_body(slot.operation)
        for where, instance, replace in slot.around:
            if replace or get_at(body, where) is None:
                body = set_at(body, where, copy.deepcopy(instance))
        if slot.kind == "object":
            # The value is an extra key of the object at slot.path.
            target = get_at(body, slot.path)
            assert isinstance(target, dict), (slot, body)
            body = set_at(body, slot.path, {**target, value: 1})  # type: ignore[dict-item]
        else:
            body = set_at(body, slot.path, value)
        url = self.url(slot.route, {}, slot.operation)
        return self.http.request(
            slot.method, url, content=encode(body), headers={**self.headers(slot), "Content-Type": "application/json"}
        )

    def send_parameter(self, slot: Slot, value: str | bytes) -> httpx.Response:
        name = str(slot.path[0])
        headers = self.headers(slot)
        body = self.base_body(slot.operation) if slot.operation in BODY_OPERATIONS else None
        overrides: dict[str, str] = {}
        if slot.location == "header":
            assert isinstance(value, bytes)
            headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
            raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()] + [(name.encode(), value)]
        else:
            assert isinstance(value, str)
            overrides[f"{slot.location}:{name}"] = value
            raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        url = self.url(slot.route, overrides, slot.operation)
        if body is not None:
            raw_headers.append((b"Content-Type", b"application/json"))
        return self.http.request(
            slot.method, url, content=encode(body) if body is not None else None, headers=raw_headers
        )

    def url(self, route: str, overrides: dict[str, str], operation: str | None = None) -> str:
        """The route with the scene's ids in its path and its required query parameters, raw
        (already percent-encoded) values from `overrides` in their place."""
        spec = next(s for s in DOCUMENT["paths"][route].values() if operation is None or s["operationId"] == operation)
        known_path, known_query = self.path_values(), self.query_values()
        path, query = route, []
        for p in spec.get("parameters", []):
            name, raw = p["name"], overrides.get(f"{p['in']}:{p['name']}")
            # A parameter the scene has no value for gets a small valid one from its schema.
            value = raw or quote(str(known_path.get(name, known_query.get(name, minimal(p["schema"])))), safe="")
            if p["in"] == "path":
                path = path.replace(f"{{{name}}}", value)
            elif p["in"] == "query" and (p.get("required") or raw is not None):
                query.append(f"{name}={value}")
        return path + ("?" + "&".join(query) if query else "")

    # -- the database, before and after

    def _snapshot_query(self) -> str:
        rows = self.db.execute(
            "SELECT c.table_name, bool_or(c.column_name = 'merchant_id'), bool_or(c.column_name = 'campaign_id')"
            " FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        parts = []
        for table, by_merchant, by_campaign in rows:
            if table not in WRITTEN_IN_THE_BACKGROUND:
                parts.append(f"(SELECT count(*) FROM {table})")
            if by_merchant:
                parts.append(
                    f"(SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t WHERE merchant_id = %(m)s)"
                )
            elif by_campaign:
                parts.append(
                    f"(SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
                    " WHERE campaign_id IN (SELECT id FROM campaigns WHERE merchant_id = %(m)s))"
                )
        return "SELECT " + ", ".join(parts)

    def snapshot(self) -> tuple[Any, ...]:
        """Every table's row count and the content of the merchant's rows."""
        row = self.db.execute(self._snapshot_sql, {"m": self.merchant.id}).fetchone()
        assert row is not None
        return tuple(row)

    def assert_unchanged(self, slot: Slot) -> None:
        """The database is as it was before the test's first request (refused requests change nothing)."""
        assert self.snapshot() == self.before, f"{slot}: a refused request changed the database"

    def close(self) -> None:
        self.db.close()


BODY_OPERATIONS = {s.operation for s in BODY_SLOTS}


def get_at(body: Any, path: Path) -> Any:
    for part in path:
        found = part in body if isinstance(body, dict) else isinstance(part, int) and part < len(body or ())
        if not found or not isinstance(body, dict | list):
            return None
        body = body[part]  # type: ignore[index]
    return body


def set_at(body: Any, path: Path, value: object) -> Any:
    """A copy of body with value at path, making the dicts and lists on the way."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(body) if isinstance(body, list) else []
        items += [None] * (head + 1 - len(items))
        items[head] = set_at(items[head], rest, value)
        return items
    mapping = dict(body) if isinstance(body, dict) else {}
    mapping[head] = set_at(mapping.get(head), rest, value)
    return mapping


def blamed(field_name: str, slot: Slot) -> bool:
    """The error's field names the slot: one is a prefix of the other (a discriminated union adds
    its tag to the path; "body" is the whole body)."""
    parts = [p for p in field_name.split(".") if p not in slot.tags]
    if parts == ["body"]:
        parts = []
    mine = [str(p) for p in slot.path]
    shorter = min(len(parts), len(mine))
    return parts[:shorter] == mine[:shorter]


def assert_refused(response: httpx.Response, slot: Slot, *, may_be_400: bool = False, may_be_404: bool = False) -> None:
    shown = response.text[:300].encode("ascii", "backslashreplace").decode()
    assert 400 <= response.status_code < 500, f"{slot}: {response.status_code} {shown}"
    assert response.headers["content-type"] == PROBLEM_JSON, f"{slot}: {response.headers}"
    problem = response.json()
    assert problem["status"] == response.status_code and problem["code"].isidentifier(), problem
    if response.status_code == 400:
        assert may_be_400, f"{slot}: 400 for JSON the service parses: {shown}"
        assert problem["code"] == "bad_request", problem
        return
    if response.status_code == 404:
        assert may_be_404, f"{slot}: {shown}"
        return
    assert response.status_code == 422, f"{slot}: {response.status_code} {shown}"
    assert problem["code"] == "validation_error", problem
    errors = problem["errors"]
    assert errors and all({"field", "code", "message"} <= e.keys() for e in errors), problem
    assert all(e["code"].isidentifier() for e in errors), problem
    assert any(blamed(e["field"], slot) for e in errors), f"{slot}: no error names the field: {errors}"


@pytest.fixture(scope="module")
def scene(http: httpx.Client, settings: Any, database_url: str) -> Iterator[Scene]:
    made = Scene(http, settings, database_url)
    yield made
    made.close()


@pytest.fixture
def attacked(scene: Scene) -> Scene:
    """The scene, its database state taken now: what every refused request must leave as it is."""
    scene.before = scene.snapshot()
    return scene


def refuse_body(scene: Scene, slot: Slot, value: object) -> None:
    response = scene.send_body(slot, value)
    assert_refused(response, slot, may_be_400=not parses(value))
    scene.assert_unchanged(slot)


def refuse_parameter(scene: Scene, slot: Slot, value: str | bytes) -> None:
    response = scene.send_parameter(slot, value)
    # A code is looked up whatever its characters: one that is not this merchant's is 404.
    assert_refused(response, slot, may_be_404=slot.path == ("code",) and slot.location == "path")
    scene.assert_unchanged(slot)


# --------------------------------------------------------------------------- the tests


def test_the_document_yields_every_kind_of_field():
    """The walk reaches what matters: nested and union fields, free-form objects, datetimes, parameters."""
    found = {(s.operation, s.location, ".".join(map(str, s.path))): s.kind for s in SLOTS}
    assert found[("create_venue", "body", "geofence")] == "free_form"
    assert found[("update_venue", "body", "address")] == "text"
    assert found[("create_campaign", "body", "starts_at")] == "datetime"
    assert found[("update_campaign", "body", "ends_at")] == "datetime"
    assert found[("create_checkin", "body", "observed_at")] == "datetime"
    assert found[("update_offer", "body", "rule.n")] == "number"
    assert found[("add_offer", "body", "schedule.windows.0.start")] == "text"
    assert found[("create_campaign", "body", "venue_ids.0")] == "text"
    assert found[("create_checkin", "header", "Idempotency-Key")] == "text"
    assert found[("my_offers", "query", "cursor")] == "text"
    assert found[("look_up_code", "path", "code")] == "text"
    assert len(BODY_SLOTS) > 60 and len(PARAMETER_SLOTS) > 30


def test_every_operation_has_a_valid_base_request(http, settings, database_url):
    """Each base request is accepted as it is, so a hostile value in it is the only thing wrong
    (an operation added to the API needs one here)."""
    fresh = Scene(http, settings, database_url)
    try:
        for operation in sorted(BODY_OPERATIONS):
            slot = next(s for s in BODY_SLOTS if s.operation == operation)
            r = http.request(
                slot.method,
                fresh.url(slot.route, {}, operation),
                json=fresh.base_body(operation),
                headers=fresh.headers(slot),
            )
            if fresh.written_body(operation) is not None:
                assert r.status_code in (200, 201), f"{operation}: {r.status_code} {r.text}"
            else:  # made from the schema: it must at least pass validation (ids it names may not exist)
                assert r.status_code not in (400, 422), (
                    f"{operation}: its body made from the schema is refused ({r.text}): write one in Scene.written_body"
                )
    finally:
        fresh.close()


@pytest.mark.parametrize("slot", BODY_SLOTS, ids=str)
def test_hostile_values_in_a_body_field_are_a_422_naming_it(attacked, slot):
    scene = attacked
    if slot.kind == "object":
        for key in KEY_EDGES:
            refuse_body(scene, slot, key)
        GENERATED(given(hostile_text())(lambda key: refuse_body(scene, slot, key)))()
        return
    edges: list[object] = [*TEXT_EDGES]
    generated: st.SearchStrategy[object] = hostile_text()
    if slot.kind == "datetime":
        edges += DATETIME_EDGES
        generated = st.one_of(hostile_text(), hostile_datetimes())
    elif slot.kind == "number":
        edges += NUMBER_EDGES
        generated = st.one_of(hostile_text(), out_of_bounds(slot.schema))
    elif slot.kind == "free_form":
        base = get_at(scene.base_body(slot.operation), slot.path)
        base = base if isinstance(base, dict) else minimal(slot.schema)
        edges += free_form_edges(base)
        generated = st.one_of(
            hostile_json().map(lambda inner: {**base, "extra": inner}),
            st.dictionaries(hostile_text(), st.integers(), min_size=1, max_size=2).map(lambda keys: {**base, **keys}),
        )
    for value in edges:
        refuse_body(scene, slot, value)
    GENERATED(given(generated)(lambda value: refuse_body(scene, slot, value)))()


@pytest.mark.parametrize("slot", PARAMETER_SLOTS, ids=str)
def test_hostile_values_in_a_parameter_are_a_4xx_naming_it(attacked, slot):
    scene = attacked
    if slot.location == "header":
        for header in HEADER_EDGES:
            refuse_parameter(scene, slot, header)
        return
    for value in PARAMETER_EDGES:
        refuse_parameter(scene, slot, value)
    encoded_bad = st.sampled_from(["%00", "%ED%A0%80", "%ED%BF%BF", "%F4%90%80%80", "%FF", "%C3"])
    generated = st.tuples(st.text(max_size=10), encoded_bad, st.text(max_size=10)).map(
        lambda p: quote(p[0], safe="") + p[1] + quote(p[2], safe="")
    )
    GENERATED(given(generated)(lambda value: refuse_parameter(scene, slot, value)))()


@pytest.mark.parametrize(
    "cursor",
    [
        "0001-01-01T00:00:00+14:00|{id}",
        "9999-12-31T23:59:59-14:00|{id}",
        "0001-01-01T00:00:00+00:00|{id}\x00",
        "NaN|{id}",
        "2024-01-01T00:00:00|{id}",
        "\udcff|{id}",
        "2024-01-01T00:00:00+00:00|\x00",
    ],
    ids=["year-0-in-utc", "year-10000-in-utc", "nul", "nan", "naive", "surrogate", "nul-id"],
)
def test_a_forged_cursor_is_a_422_on_every_keyset_list(scene, cursor):
    """Cursors decode to a time and an id: a forged one whose time Python cannot hold in UTC, or
    whose bytes are not text, is refused as invalid_cursor on each list that pages by keyset."""
    import base64

    raw = cursor.format(id=uuid.uuid4()).encode("utf-8", "surrogatepass")
    forged = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    listed = [s for s in PARAMETER_SLOTS if s.path == ("cursor",) and not is_uuid(s.schema)]
    assert {s.operation for s in listed} >= {"my_offers", "review_checkins", "list_redemptions", "list_offers"}
    for slot in listed:
        response = scene.send_parameter(slot, forged)
        assert_refused(response, slot)
        assert {e["code"] for e in response.json()["errors"]} == {"invalid_cursor"}, response.text


def test_a_problem_echoing_a_lone_surrogate_is_still_valid_utf8(scene):
    """A message that repeats what was sent (an unknown rule type, a field named by a key) cannot
    break the answer: the problem is rendered with U+FFFD for a lone surrogate, never a 500."""
    slot = next(s for s in BODY_SLOTS if s.operation == "add_offer" and s.path == ("rule", "type"))
    response = scene.send_body(slot, "\ud800 mystery")
    assert_refused(response, slot)
    response.content.decode("utf-8")  # strict: raises on anything UTF-8 cannot hold
    echoed = problem_response(
        422, "validation_error", "Request is not valid", "geofence.\ud800: unknown", errors=[{"field": "\udfff"}]
    )
    body = json.loads(bytes(echoed.body).decode("utf-8"))
    assert (body["detail"], body["errors"]) == ("geofence.\ufffd: unknown", [{"field": "\ufffd"}])
    assert echoed.media_type == PROBLEM_JSON


def test_datetimes_at_the_edges_of_the_accepted_range_work_end_to_end(world):
    """The first and last accepted instants are stored, read back, shown in any zone (the console's
    campaign pages), paged and counted without an error anywhere."""
    m = world.merchant()
    venue = world.venue(m)
    body = {
        "name": "Forever",
        "venue_ids": [venue["id"]],
        "starts_at": "0002-01-01T13:59:00+13:59",  # 0002-01-01T00:00Z, the earliest
        "ends_at": "9998-12-31T10:00:00-13:59",  # 9998-12-31T23:59Z
        "holdout_percent": 0,
        "attribution_days": 90,
    }
    r = world.http.post("/v1/campaigns", json=body, headers=m.admin)
    assert r.status_code == 201, r.text
    campaign = r.json()
    assert (campaign["starts_at"][:4], campaign["ends_at"][:4]) == ("0002", "9998")
    r = world.http.post(f"/v1/campaigns/{campaign['id']}/offers", json=offer_body(), headers=m.admin)
    assert r.status_code == 201, r.text
    assert world.http.post(f"/v1/campaigns/{campaign['id']}/activate", headers=m.admin).status_code == 200
    user = world.user()
    for observed in ("0002-01-01T00:00:00Z", "9998-12-31T23:59:59.999999Z"):
        r = world.checkin(user, *venue["center"], observed_at=datetime.fromisoformat(observed))
        assert r.status_code == 201 and r.json()["status"] == "rejected", r.text  # stale, future_timestamp
    r = world.checkin(user, *venue["center"])
    assert r.status_code == 201 and r.json()["unlocked"], r.text
    for path in (
        f"/v1/campaigns/{campaign['id']}",
        "/v1/campaigns",
        f"/v1/campaigns/{campaign['id']}/stats",
        f"/v1/campaigns/{campaign['id']}/stats?format=csv",
        "/v1/checkins?limit=1",
        "/dashboard/campaigns",
        f"/dashboard/campaigns/{campaign['id']}",
        f"/dashboard/campaigns/{campaign['id']}/edit",
        f"/dashboard/campaigns/{campaign['id']}/offers",
    ):
        r = world.http.get(path, headers=m.admin)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
    page = world.http.get("/v1/checkins?limit=1", headers=m.admin).json()
    while page["next_cursor"]:
        r = world.http.get(f"/v1/checkins?limit=1&cursor={page['next_cursor']}", headers=m.admin)
        assert r.status_code == 200, r.text
        page = r.json()
    r = world.http.get("/v1/me/offers", headers=user)
    assert r.status_code == 200 and r.json()["items"], r.text


# --------------------------------------------------------------------------- the console's forms


@dataclass
class Form:
    action: str
    fields: list[tuple[str, str, str]]  # (name, value, input type)


class FormReader(HTMLParser):
    """The post forms of a page (their action and every named input, select and textarea) and its
    links within the console."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: list[str] = []
        self._form: Form | None = None
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and a.get("href", "").startswith("/dashboard/"):
            self.links.append(a["href"])
        if tag == "form" and a.get("method", "").lower() == "post":
            self._form = Form(a.get("action", ""), [])
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio") and "checked" not in a:
                kind = f"{kind}-unchecked"
            self._form.fields.append((a["name"], a.get("value", ""), kind))
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
            self._form.fields.append((a["name"], "", "select"))
        elif tag == "option" and self._select is not None:
            name, value, _ = self._form.fields[-1]
            if not value or "selected" in a:
                self._form.fields[-1] = (name, a.get("value", ""), "select")
        elif tag == "textarea" and a.get("name"):
            self._textarea = a["name"]
            self._form.fields.append((a["name"], "", "textarea"))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None and self._form is not None:
            name, value, kind = self._form.fields[-1]
            self._form.fields[-1] = (name, value + data, kind)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


# Percent-encoded, as a browser (or anyone) may post them: NUL, invalid UTF-8, a number past any
# float, and JSON text whose escapes decode to lone surrogates (the geofence field parses JSON).
FORM_TEXT_EDGES = [
    "Caf%C3%A9%00",
    "%ED%A0%80%FF",
    "9" * 400,
    quote_plus('{"type": "Circle", "\\ud800": 1, "center": ["\\u0000", 1], "radius_m": 40}'),
    quote_plus('{"type": "\\udfff"}'),
    quote_plus("[" * 3000 + "]" * 3000),
]
FORM_NUMBER_EDGES = ["NaN", "Infinity", "1e400", "9" * 400, "%00"]
# Local times whose UTC value is outside the range, with the zone that puts them there.
FORM_DATETIME_EDGES = [
    ("0001-01-01T00:00", "Pacific/Kiritimati"),
    ("9999-12-31T23:59", "Etc/GMT+12"),
    ("0000-01-01T00:00", "UTC"),
    ("10000-01-01T00:00", "UTC"),
    ("2024-02-30T10:00", "UTC"),
]


MAX_CONSOLE_PAGES = 60


def console_forms(http: httpx.Client, scene: Scene) -> list[Form]:
    admin = scene.merchant.admin
    pages = [
        "/dashboard/venues/new",
        f"/dashboard/venues/{scene.venue['id']}/edit",
        "/dashboard/campaigns/new",
        f"/dashboard/campaigns/{scene.draft['id']}/edit",
        f"/dashboard/campaigns/{scene.draft['id']}/offers",
        f"/dashboard/campaigns/{scene.draft['id']}/offers/new",
        f"/dashboard/campaigns/{scene.draft['id']}/offers/{scene.offer['id']}/edit",
        f"/dashboard/till?venue_id={scene.till['id']}",
        *webhook_pages(http, scene.db, scene.merchant),  # add, delete, enable, redeliver
    ]
    forms: list[Form] = []
    seen, pending = set(pages), list(pages)
    while pending and len(seen) < MAX_CONSOLE_PAGES:  # the seed pages, then the pages they link to
        page = pending.pop(0)
        r = http.get(page, headers=admin)
        assert r.status_code == 200 or (page not in pages and r.status_code < 500), f"{page}: {r.status_code}"
        reader = FormReader()
        reader.feed(r.text)
        forms += [f for f in reader.forms if f.action.startswith("/dashboard/") and "sign-out" not in f.action]
        for link in reader.links:
            if (
                link not in seen
                and not link.startswith(("/dashboard/static", "/dashboard/sign"))
                and ".csv" not in link
            ):
                seen.add(link)
                pending.append(link)
    # The redeem form appears once a code has been looked up.
    lookup = next(f for f in forms if f.action.endswith("/till/lookup"))
    code = next(name for name, _, _ in lookup.fields if "code" in name)
    r = http.post(
        lookup.action,
        content=form_body(lookup.fields, code, quote_plus(scene.spare_code)),
        headers={**admin, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    reader = FormReader()
    reader.feed(r.text)
    forms += [f for f in reader.forms if f.action.endswith("/till/redeem")]
    reader = FormReader()
    reader.feed(http.get("/dashboard/sign-in").text)
    forms += reader.forms
    # The live fence check is posted by the page's script, not by a form.
    token = next(value for form in forms for name, value, _ in form.fields if name == "csrf_token")
    forms.append(
        Form("/dashboard/venues/fence-check", [("csrf_token", token, "hidden"), ("geofence", "{}", "textarea")])
    )
    # One of each: the same form for another row (a redemption, an offer) takes its fields the same way.
    distinct: dict[tuple[str, tuple[str, ...]], Form] = {}
    for form in forms:
        shape = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "{id}", form.action)
        distinct.setdefault((shape, tuple(name for name, _, _ in form.fields)), form)
    return list(distinct.values())


def form_body(fields: list[tuple[str, str, str]], name: str, raw: str, zone: str | None = None) -> str:
    parts = []
    for field_name, value, kind in fields:
        if kind.endswith("-unchecked") and field_name != name:
            continue
        if field_name == name:
            parts.append(f"{quote_plus(field_name)}={raw}")
        elif zone is not None and field_name == "timezone":
            parts.append(f"timezone={quote_plus(zone)}")
        else:
            parts.append(f"{quote_plus(field_name)}={quote_plus(value)}")
    return "&".join(parts)


@pytest.fixture(scope="module")
def console_scene(http: httpx.Client, settings: Any, database_url: str) -> Iterator[Scene]:
    made = Scene(http, settings, database_url)  # its own: a console form that is accepted changes it
    # What the customer does with the redeemed unlock (feedback, a message to the merchant), so the
    # console has the pages and forms that answer it.
    for slot in BODY_SLOTS:
        if slot.path == () and slot.kind == "object" and "{unlock_id}" in slot.route:
            url = made.url(slot.route, {}, slot.operation)
            r = http.request(slot.method, url, json=made.base_body(slot.operation), headers=made.customer)
            assert r.status_code < 300, f"{slot}: {r.status_code} {r.text}"
    yield made
    made.close()


def test_every_console_form_field_answers_hostile_values_without_a_server_error(http, console_scene):
    forms = console_forms(http, console_scene)
    posted = {form.action.split("?")[0] for form in forms}
    routes = {r.path for r in app_routes(app) if r.methods == {"POST"} and r.path.startswith("/dashboard/")}
    unreached = {
        route
        for route in routes
        if not any(_matches(route, action) for action in posted)
        and route not in ("/dashboard/sign-out", "/dashboard/sign-in/persona")
    }
    assert not unreached, f"console forms this test does not reach: {sorted(unreached)}"
    admin = console_scene.merchant.admin
    sent = 0
    for form in forms:
        headers = {**({} if form.action.startswith("/dashboard/sign-in") else admin)}
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        for name, _, kind in form.fields:
            if kind in ("number",):
                values = [(v, None) for v in FORM_NUMBER_EDGES]
            elif kind == "datetime-local":
                values = [(quote_plus(v), zone) for v, zone in FORM_DATETIME_EDGES]
            else:
                values = [(v, None) for v in FORM_TEXT_EDGES]
            for raw, zone in values:
                r = http.post(form.action, content=form_body(form.fields, name, raw, zone), headers=headers)
                sent += 1
                assert r.status_code < 500, f"{form.action} {name}={raw[:60]}: {r.status_code} {r.text[:300]}"
    assert sent > 100


def _matches(route: str, action: str) -> bool:
    route_parts, action_parts = route.split("/"), action.split("/")
    return len(route_parts) == len(action_parts) and all(
        r == a or r.startswith("{") for r, a in zip(route_parts, action_parts, strict=True)
    )
