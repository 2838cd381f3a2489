"""A property-based run of the OpenAPI document against a live `newsletter serve`: no answer is a 5xx.

schemathesis generates requests for every operation of ``/api/v1/openapi.json``, valid
ones (the schemas) and invalid ones (anything the schemas refuse), and sends them with
an admin's token, who passes every permission check and so reaches every handler. The
number of examples per operation is bounded, so the run takes seconds, not minutes; the
server is the real one (uvicorn in its own process), sending to a real SMTP server.
"""

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from newsletter.core.models import Edition, Item
from tests.conftest import Cli
from tests.smtp_server import SmtpServer, free_port
from tests.web_server import serving
from tests.workspace import ADMIN, KEY

schemathesis = pytest.importorskip("schemathesis")
GenerationMode = schemathesis.GenerationMode
EXAMPLES = 5


def test_no_request_makes_the_server_fail(cli: Cli, smtp_server: SmtpServer, tmp_path: Path) -> None:
    """Every operation x generated requests (valid and invalid): never a 5xx, always JSON errors."""
    cli("users", "add", ADMIN, "--role", "admin")
    token = cli("tokens", "create", "--user", ADMIN, "--name", "fuzz").stdout.split()[-1]
    # Something to find: an approved item and a member of uk, so the handlers go past "not found".
    cli("items", "add", "--title", "WIPO news for the fuzzer", "--group", "uk", "--approve")
    cli("subscribers", "add", "uk", "reader@example.org")
    cli("editions", "build", "uk")
    with cli.database() as session:
        item = session.exec(select(Item)).one()
        edition = session.exec(select(Edition)).one()
    known = {"slug": "uk", "item_id": item.id, "edition_id": edition.id, "source_name": "wipo-news"}
    environment = {
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_SMTP_URL": smtp_server.url(),
        "NEWSLETTER_SECRET_KEY": KEY,
    }
    with serving(cli.site, cli.db_url, tmp_path / "serve.log", port=free_port(), **environment) as base:
        schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 15
        headers = {"Authorization": f"Bearer {token}"}
        failures: list[str] = []
        statuses: Counter[int] = Counter()
        for operation in operations:
            fuzz(operation, base, headers, known, failures, statuses)
        assert failures == [], (tmp_path / "serve.log").read_text()[-3000:]
        # The run is not blind: valid requests got through to the handlers, invalid ones were refused.
        print(sorted(statuses.items()))
        assert sum(n for status, n in statuses.items() if status < 300) >= len(operations) // 2
        assert statuses[422] > 0


def fuzz(
    operation: Any,
    base: str,
    headers: dict[str, str],
    known: dict[str, Any],
    failures: list[str],
    statuses: "Counter[int]",
) -> None:
    """A bounded number of valid and invalid requests to one operation; any 5xx but 503 is noted."""
    modes = st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE])

    fixed = {name: value for name, value in known.items() if "{" + name + "}" in operation.path}
    strategy = modes.flatmap(lambda mode: operation.as_strategy(generation_mode=mode, path_parameters=fixed))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(base_url=base, headers=headers, timeout=30)
        statuses[response.status_code] += 1
        # 503 is the database asking to try again (SQLite busy): an answer, not a failure.
        if response.status_code >= 500 and response.status_code != 503:
            failures.append(
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
            )
        if response.status_code >= 400:
            assert "error" in response.json(), (case.method, case.formatted_path, response.text[:200])

    check()
