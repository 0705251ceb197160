"""The committed contract (openapi.json), fuzzed against the running service with schemathesis.

Every operation gets the boundary values of each of its parameters and properties, valid and
not (wrong types, values out of range, missing and extra fields: the coverage phase), then random
valid requests (fuzzing), all sent as the role the route admits, with a valid token. Whatever is
sent, the answer is never a 5xx; its status and content type are ones the contract documents;
and every error is application/problem+json that the contract's Problem schema accepts, with a
stable snake_case code.

Time-boxed for CI and repeatable: a fixed seed, derandomized generation, no example database, no
shrinking, MAX_EXAMPLES random requests per operation. Operations on a venue, campaign, offer,
redemption or code get the ids of a real one for half their valid requests, so those reach the
service's own checks and SQL, not only "not found".
"""

from __future__ import annotations

import json
import re
import uuid
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.formats import get_default_format_strategies

from api.main import app
from tests.factories import World
from tests.roles import MERCHANT_ROLES, role_for

CONTRACT = Path(__file__).resolve().parents[1] / "openapi.json"
PROBLEM_JSON = "application/problem+json"
MAX_EXAMPLES = 15  # valid requests per operation in the fuzzing phase: the file stays well under a minute

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20261203,
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large", "large_base_example"],
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "no-shrink": True,  # a failure is reported as found; shrinking could take minutes
            "with-security-parameters": False,  # the token is ours: a valid one of the right role
        },
        "phases": {
            "examples": {"enabled": True},
            # Boundary values of every parameter and property: not bounded by max-examples, so the
            # methods an operation does not have (answered 405 by the framework) are left out.
            "coverage": {"enabled": True, "unexpected-methods": []},
            # Negative cases come from the coverage phase, systematically; fuzzing sends valid ones, which
            # reach the service's own checks and SQL (where the 500s hide) instead of its validation.
            "fuzzing": {"enabled": True, "generation": {"mode": "positive"}},
            "stateful": {"enabled": False},
        },
    }
)

# date-time values as the format allows them, and often at the ends of time: a local time in year 1
# ahead of UTC or in year 9999 behind it (its UTC value is outside what Python holds), and the
# first and last instants the service accepts.
DEFAULT_DATE_TIME = get_default_format_strategies()["date-time"]


def _with_offset(local: datetime, minutes: int) -> str:
    return f"{local.isoformat()}{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


EDGE_DATE_TIME = st.one_of(
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0002-01-01T00:00:00Z"]),
    st.builds(_with_offset, st.datetimes(datetime(1, 1, 1), datetime(1, 1, 1, 23, 59)), st.integers(1, 1439)),
    st.builds(
        _with_offset, st.datetimes(datetime(9999, 12, 31), datetime(9999, 12, 31, 23, 59)), st.integers(-1439, -1)
    ),
    st.just("9998-12-31T23:59:59.999999Z"),
)
schemathesis.openapi.format("date-time", st.one_of(DEFAULT_DATE_TIME, EDGE_DATE_TIME))
schema = schemathesis.openapi.from_path(CONTRACT, config=CONFIG)
DOCUMENT: dict[str, Any] = json.loads(CONTRACT.read_text())
PROBLEM = jsonschema_rs.validator_for(DOCUMENT["components"]["schemas"]["Problem"])


class ProblemJsonFailure(Failure):
    """An error response that is not the contract's problem+json."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation=operation, title="Error response is not problem+json", message=message)

    @property
    def _unique_key(self) -> str:
        return self.message


def every_error_is_a_problem(ctx: CheckContext, response: Any, case: schemathesis.Case) -> bool | None:
    """Whatever the status, documented or not: problem+json, valid against Problem, a stable code."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    label = case.operation.label
    if content_type != PROBLEM_JSON:
        raise ProblemJsonFailure(label, f"{response.status_code} answered as {content_type!r}")
    body = json.loads(response.content)
    errors = [e.message for e in PROBLEM.iter_errors(body)]
    if errors:
        raise ProblemJsonFailure(label, f"{response.status_code} {body}: {'; '.join(errors)}")
    if body["status"] != response.status_code or not re.fullmatch(r"[a-z][a-z0-9_]*", body["code"]):
        raise ProblemJsonFailure(label, f"{response.status_code} with status {body['status']}, code {body['code']!r}")
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    every_error_is_a_problem,
]


class Tenant:
    """A merchant with a venue, a draft campaign with an offer, and a redeemed code: real ids for
    path parameters. Tokens are minted per request with a fresh subject, so per-person limits
    (check-in frequency, failed code look-ups) never decide an answer."""

    def __init__(self, http: httpx.Client, settings: Any) -> None:
        self.world = world = World(http, settings)
        self.merchant = world.merchant("Contract Tests Ltd")
        venue = world.venue(self.merchant)
        draft = world.campaign(self.merchant, [venue["id"]], activate=False)
        till = world.venue(self.merchant)
        world.campaign(self.merchant, [till["id"]])
        unlocked = world.checkin(world.user(), *till["center"]).json()["unlocked"][0]
        r = http.post(
            "/v1/redemptions", json={"code": unlocked["code"], "venue_id": till["id"]}, headers=self.merchant.staff
        )
        assert r.status_code == 201, r.text
        self.ids = {
            "venue_id": venue["id"],
            "campaign_id": draft["id"],
            "offer_id": draft["offers"][0]["id"],
            "redemption_id": r.json()["id"],
            "code": unlocked["code"],
            "unlock_id": unlocked["unlock_id"],
        }

    def headers(self, method: str, path: str) -> dict[str, str]:
        role = role_for(app, method, path)
        if role is None:
            return {}
        merchant = self.merchant.id if role in MERCHANT_ROLES else None
        return self.world.headers(role, sub=f"{role}-{uuid.uuid4().hex[:8]}", merchant_id=merchant)

    def use_real_ids(self, case: schemathesis.Case) -> None:
        """Half the valid cases of an operation that names a resource get a real one (chosen by the
        case's own content, so the same cases get them on every run). Deletions keep their generated
        ids, so the resources stay for the other operations."""
        positive = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
        if not positive or case.method.upper() == "DELETE" or not case.path_parameters:
            return
        if zlib.crc32(repr((case.path_parameters, case.query)).encode("utf-8", "surrogatepass")) % 2:
            return
        for name in case.path_parameters:
            if name in self.ids:
                case.path_parameters[name] = self.ids[name]


@pytest.fixture(scope="module")
def tenant(http: httpx.Client, settings: Any) -> Tenant:
    return Tenant(http, settings)


def test_the_contract_is_the_committed_file():
    assert schema.location is not None and schema.location.endswith("/openapi.json")
    assert len(list(schema.get_all_operations())) >= 25


@schema.parametrize()
def test_generated_requests_never_fail_the_contract(case: schemathesis.Case, base_url: str, tenant: Tenant) -> None:
    tenant.use_real_ids(case)
    headers = tenant.headers(case.operation.method, case.operation.path)  # the documented one, whatever is sent
    response = case.call(base_url=base_url, headers=headers, timeout=30)
    case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs={"base_url": base_url})
