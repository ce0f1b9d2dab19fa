"""The one place that reads the environment (``LEDGER_*`` variables, or a ``.env`` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_NAMES = ("evidence", "trace", "flows", "custody")
REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", env_file=".env", extra="ignore")

    data_dir: Path = Field(REPO_ROOT / "var", description="runtime state: database, keys, anvil, blobs")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite under data_dir")

    chain: Literal["anvil", "memory", "rpc"] = "anvil"
    rpc_url: str = "http://127.0.0.1:8545"
    anvil_port: int = 8545
    anvil_binary: Path | None = None
    node_modules_dir: Path = REPO_ROOT / "node_modules"
    private_key: SecretStr | None = Field(None, description="anchoring key (hex) for the rpc chain")
    keystore_path: Path | None = None
    keystore_password: SecretStr | None = None
    deployments_path: Path | None = None

    origin_prefix: str = Field("evidence-ledger.local", description="checkpoint origins are <prefix>/<log>")
    anchor_interval_s: float = Field(2.0, gt=0)
    anchor_max_leaves: int = Field(10_000, ge=1)
    max_record_bytes: int = Field(64 * 1024, ge=64)
    max_bulk_records: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)

    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    log_level: str = "info"

    @field_validator("origin_prefix")
    @classmethod
    def _origin_ok(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v) or "+" in v:
            raise ValueError("origin_prefix must be non-empty, without spaces or '+'")
        return v

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ledger.db'}"

    @property
    def resolved_deployments_path(self) -> Path:
        return self.deployments_path or self.data_dir / "deployments.json"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def anvil_dir(self) -> Path:
        return self.data_dir / "anvil"

    def origin(self, log_name: str) -> str:
        return f"{self.origin_prefix}/{log_name}"
