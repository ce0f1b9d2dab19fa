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

    blob_backend: Literal["local", "ipfs"] = "local"
    ipfs_api_url: str = Field("/ip4/127.0.0.1/tcp/5001/http", description="IPFS RPC API (multiaddr)")
    max_upload_bytes: int = Field(2 * 1024**3, ge=1024, description="evidence uploads (default 2 GiB)")
    capture_allow_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs capture may reach although private/loopback (e.g. a lab server); default none")
    capture_timeout_s: float = Field(30.0, gt=0)
    capture_max_response_bytes: int = Field(20 * 1024**2, ge=1024)
    capture_extra_ca_file: Path | None = Field(None, description="PEM of an extra CA trusted for capture")
    chromium_path: Path = Path("/usr/bin/chromium")

    api_url: str = Field("http://127.0.0.1:8000", description="the server the CLI's notarize commands talk to")
    api_token: SecretStr | None = Field(None, description="the officer's API token for the CLI")

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
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def key_encryption_key_path(self) -> Path:
        return self.keys_dir / "officer-keys.kek"

    @field_validator("capture_allow_networks")
    @classmethod
    def _networks_ok(cls, v: list[str]) -> list[str]:
        import ipaddress

        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as e:
                raise ValueError(f"capture_allow_networks: {cidr!r} is not a CIDR network: {e}") from e
        return v

    @property
    def anvil_dir(self) -> Path:
        return self.data_dir / "anvil"

    def origin(self, log_name: str) -> str:
        return f"{self.origin_prefix}/{log_name}"
