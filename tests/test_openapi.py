"""The published API contract: openapi.json is the running app's document, and it documents errors.

Clients for Kotlin and Swift are generated from openapi.json, so it must not drift from the app, and
every error an operation can answer must be in it as problem+json.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from pathlib import Path

import pytest

CONTRACT = Path(__file__).resolve().parents[1] / "openapi.json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _document() -> dict:
    from api.main import app

    return app.openapi()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_openapi_json_is_the_apps_document():
    expected = json.dumps(_document(), indent=2, sort_keys=True) + "\n"  # what `checkin-offers openapi` prints
    committed = CONTRACT.read_text() if CONTRACT.exists() else ""
    diff = "".join(
        list(
            difflib.unified_diff(
                committed.splitlines(True), expected.splitlines(True), "openapi.json (committed)", "app.openapi()"
            )
        )[:60]
    )
    assert committed == expected, f"openapi.json is out of date: run `make openapi` and commit it\n{diff}"


def test_every_api_operation_documents_its_errors_as_problem_json():
    document = _document()
    assert document["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "code"]
    missing = []
    for path, method, operation in _operations(document):
        if not path.startswith("/v1/"):
            continue
        responses = operation["responses"]
        errors = {status: response for status, response in responses.items() if status >= "400"}
        if not any(status.startswith("4") for status in errors):
            missing.append(f"{method.upper()} {path}: no 4xx response documented")
        for status in ("401", "403", "422"):  # every /v1 operation authenticates and validates
            if status not in errors:
                missing.append(f"{method.upper()} {path}: {status} not documented")
        for status, response in errors.items():
            content = response.get("content", {})
            if content != {"application/problem+json": {"schema": PROBLEM_REF}}:
                missing.append(f"{method.upper()} {path}: {status} is not problem+json: {content}")
        if operation.get("security") != [{"bearer": []}]:
            missing.append(f"{method.upper()} {path}: bearer security not declared")
    assert not missing, "\n".join(missing)


def test_operation_ids_are_unique_and_readable():
    ids = [operation["operationId"] for _, _, operation in _operations(_document())]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z_]*", operation_id) for operation_id in ids), ids
    assert _document()["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


@pytest.mark.parametrize("path,method", [(p, m) for p, m, _ in _operations(_document()) if p.startswith("/v1/")])
def test_the_running_service_answers_401_as_documented(http, path, method):
    operation = _document()["paths"][path][method]
    concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
    response = http.request(method.upper(), concrete, json={} if "requestBody" in operation else None)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "missing_token"
    assert "401" in operation["responses"]
