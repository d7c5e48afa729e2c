"""Schemathesis over the app's OpenAPI, in-process over ASGI, on both databases (issue 10.1).

Every operation of the schema gets positive (schema-valid) and negative (schema-violating)
examples; each response must not be a 5xx, must use a status the operation documents, must
match the documented body schema, and negative input must be rejected with a 4xx.

Examples per operation and mode: `AGORA_FUZZ_EXAMPLES` (default 5, a CI profile of about a
minute for both databases together); generation is derandomized, so a run is reproducible.
Requests carry the token of a member the auth provider signs up and logs in (a new member per
case: a case that deletes or suspends its own account cannot spoil the next one).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from requests.structures import CaseInsensitiveDict
from schemathesis.auths import AuthStorage
from schemathesis.checks import CheckFunction
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from agora.app import create_app
from tests.members.builders import PASSWORD
from tests.members.conftest import fast_settings
from tests.support.databases import TestDatabases, upgrade

Case = schemathesis.Case[Any]
EXAMPLES = int(os.environ.get("AGORA_FUZZ_EXAMPLES", "5"))
_members = itertools.count(1)


def _not_a_server_error(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    if response.status_code >= 500:
        raise AssertionError(f"server error {response.status_code}: {response.text[:500]}")
    return None


CHECKS: list[CheckFunction] = [
    _not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# Negative input must be refused with one of these (a 5xx is never a refusal). 413: the
# negative generator makes oversized bodies, and the fuzzed app caps them at 64 KiB.
REJECTIONS = ["400", "401", "403", "404", "409", "413", "422", "428", "429"]
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
)


class SignedUpMember:
    """Auth provider: signs up a new member and logs in, through the app itself."""

    def get(self, case: Case, context: schemathesis.AuthContext) -> str:
        n = next(_members)
        assert context.app is not None  # an in-process (ASGI) schema
        with asgi.get_client(context.app) as http:
            username = f"fuzz{n}"
            created = http.post(
                "/api/v1/users",
                json={
                    "email": f"{username}@example.com",
                    "username": username,
                    "password": PASSWORD,
                },
            )
            assert created.status_code == 201, created.text
            token = http.post(
                "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
            )
            assert token.status_code == 200, token.text
            return str(token.json()["access_token"])

    def set(self, case: Case, data: str, context: schemathesis.AuthContext) -> None:
        headers = CaseInsensitiveDict(case.headers or {})
        headers["Authorization"] = f"Bearer {data}"
        case.headers = headers


@dataclass
class Figures:
    operations: int = 0
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    no_negative: list[str] = field(default_factory=list)
    succeeded: set[str] = field(default_factory=set)  # operations that answered a 2xx


@pytest.fixture
async def fuzz_url(backend: str, databases: TestDatabases) -> str:
    """A database of its own: the fuzzer commits (it drives the app like a client would)."""
    url = await databases.fresh_url(backend)
    await upgrade(url)
    return url


@pytest.fixture
def fuzz_schema(fuzz_url: str) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(
        fast_settings(
            fuzz_url,
            # The fuzzer logs in once per case; the login limiter is tested elsewhere.
            login_limit_per_account="1000000/minute",
            login_limit_per_address="1000000/minute",
            max_body_bytes=64 * 1024,
        )
    )
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    finally:
        asgi.shutdown_lifespans()  # the app's engine is disposed of here


def _run(
    schema: schemathesis.BaseSchema,
    storage: AuthStorage[str],
    mode: GenerationMode,
    figures: Figures,
) -> None:
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the app's own schema is valid
        operation = result.ok()
        label = operation.label
        figures.operations += 1

        @given(case=operation.as_strategy(mode, auth_storage=storage))
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # report the first failure, no shrinking
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Case) -> None:
            response = case.call()
            figures.cases += 1
            if response.status_code < 300:
                figures.succeeded.add(label)  # noqa: B023 - called before the loop moves on
            figures.statuses[response.status_code] = (
                figures.statuses.get(response.status_code, 0) + 1
            )
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters)
            figures.no_negative.append(operation.label)
        except (Exception, BaseExceptionGroup) as exc:  # every operation's failure, then fail once
            figures.failures.append(f"[{mode.value}] {operation.label}: {exc}"[:3000])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms(
    fuzz_schema: schemathesis.BaseSchema, mode: GenerationMode, backend: str
) -> None:
    storage: AuthStorage[str] = AuthStorage()
    storage.auth(refresh_interval=None)(SignedUpMember)
    figures = Figures()
    started = time.perf_counter()
    _run(fuzz_schema, storage, mode, figures)
    elapsed = time.perf_counter() - started
    print(  # the figures docs/reliability.md quotes (pytest -s shows them)
        f"\nschemathesis {backend} {mode.value}: {figures.operations} operations, "
        f"{figures.cases} cases, {elapsed:.1f} s, statuses {sorted(figures.statuses.items())}"
    )
    assert figures.operations >= 20  # every route of the API is in the schema
    assert figures.cases >= figures.operations  # each operation got at least one example
    if mode is GenerationMode.POSITIVE:  # the auth provider's token works
        assert {"GET /api/v1/users/me", "POST /api/v1/posts"} <= figures.succeeded
    assert not figures.failures, "\n\n".join(figures.failures)
