"""schemathesis against the review service's own OpenAPI description (`/api/openapi.json`), served by
a real uvicorn server on loopback, authenticated as a moderator and as an admin: every operation,
every check (no 5xx, status codes, content types, headers and bodies as declared, invalid input
refused, valid input accepted, Allow headers, ...), coverage and fuzzing phases, 50 fuzzed cases
per operation that has inputs. Redis holds two judged images so that the item, image and label
routes answer 200 for a real id (schemathesis picks the ids up from the queue's answers, and the
responses are checked against the schema) as well as 404 for made-up ones; labels go to the
session's real broker, explanations come from the tiny test checkpoint.

One deliberate exception, written in the config below: a schema cannot say "a decodable image",
so random bytes are schema-valid uploads that the service refuses with 422 and the reason.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.review_server import ReviewServer
from tests.integration.test_moderation_api import add_user, make_pair, seed

pytestmark = pytest.mark.integration

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
MAX_EXAMPLES = 50
CONFIG = """
[[operations]]
include-name = "POST /api/uploads"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "401", "403", "404", "409", "413", "422", "429", "5xx",
]
"""


def cases_per_operation(ndjson: Path) -> dict[str, collections.Counter[str]]:
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in ndjson.read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if event:
            out[event["recorder"]["label"]][event["phase"]] += len(event["recorder"].get("cases", {}))
    return out


@pytest.mark.parametrize("role", ["moderator", "admin"])
def test_the_api_keeps_its_openapi_contract(settings, tiny_model, tmp_path, role):
    # schemathesis finds the seeded ids in the queue's answers and asks for their explanations:
    # the session's tiny checkpoint answers, instead of one built per test.
    settings = dataclasses.replace(settings, model_path=tiny_model)
    asyncio.run(seed(settings, [make_pair(settings, 401), make_pair(settings, 402, label="synthesized")]))
    token = add_user(settings, f"schema-{role}", role)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / "events.ndjson"
    with ReviewServer(settings) as srv:
        out = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(config),
                "run",
                srv.url("/api/openapi.json"),
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--phases",
                "coverage,fuzzing",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--workers",
                "1",
                "--report",
                "ndjson",
                "--report-ndjson-path",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
    assert "Tested: 15" in out.stdout, out.stdout[-3000:]
    counts = cases_per_operation(report)
    assert len(counts) == 15, counts
    for label, phases in counts.items():
        if label in ("GET /api/stats", "GET /api/users"):
            # No parameters and no body: there is only one request to make (plus the coverage
            # phase's unexpected methods and parameters).
            assert phases["coverage"] >= 3, (label, phases)
        elif label.startswith("DELETE "):
            # schemathesis fuzzes a DELETE with ids from its resource pool (the seeded items the
            # queue named) and takes an id out of the pool once a DELETE of it succeeded: a few cases.
            assert phases["coverage"] >= 3 and phases["fuzzing"] >= 1, (label, phases)
        else:
            assert phases["fuzzing"] >= MAX_EXAMPLES, (label, phases)
