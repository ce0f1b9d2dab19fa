from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from evidence_ledger.ledger_api.app import create_app
from evidence_ledger.ledger_api.settings import Settings


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        rt = client.app.state.runtime
        self.runtime = rt
        self.tokens: dict[str, str] = {}
        for role in ("admin", "officer", "operator", "tax", "hr", "police", "court"):
            self.tokens[role], _ = rt.tokens.create(f"test-{role}", {role})

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture
def api(tmp_path, db_url: str) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    settings = Settings(_env_file=None, data_dir=tmp_path / "var", database_url=db_url, chain="memory",
                        anchor_interval_s=0.2, max_record_bytes=2048, max_bulk_records=50,
                        max_body_bytes=256 * 1024, max_upload_bytes=1024 * 1024,
                        public_base_url="http://ledger.test")
    with TestClient(create_app(settings)) as client:
        yield Api(client)
