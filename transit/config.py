"""Runtime configuration, read from the environment (prefix ``TRANSIT_``) and ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting of the system; see ``.env.example`` for what each one means."""

    model_config = SettingsConfigDict(
        env_prefix="TRANSIT_",
        env_file=(str(PROJECT_ROOT / ".env"), ".env"),
        extra="ignore",
    )

    database_url: str = "postgresql://transit:transit@127.0.0.1:54329/transit"
    mqtt_url: str = "mqtt://127.0.0.1:18839"
    mqtt_ingest_user: str = "transit-ingest"
    mqtt_ingest_password: str = ""
    mqtt_api_user: str = "transit-api"
    mqtt_api_password: str = ""
    mqtt_admin_user: str = "transit-admin"
    mqtt_admin_password: str = ""
    device_secret: str = Field(
        default="",
        description="Provisioning secret: a device's MQTT password is derived from it.",
    )
    amqp_url: str = Field(
        default="",
        description="The clustered broker's AMQP URLs, comma-separated, one per node: when"
        " set, ingest consumes its quorum queue (docs/cluster.md) instead of MQTT.",
    )
    mqtt_ca_file: Path | None = Field(
        default=None, description="CA that signed the broker's certificate (mqtts:// URLs)."
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8470
    api_tls_cert: Path | None = Field(default=None, description="serve HTTPS with this cert")
    api_tls_key: Path | None = Field(default=None, description="and this private key")
    run_dir: Path = PROJECT_ROOT / ".run"
    # The ingest filters' bounds (transit/rules/filters.py, docs/protocol.md).
    filter_future_s: float = Field(
        default=300.0, gt=0, description="a fix taken later than now plus this is filtered"
    )
    filter_stale_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="a fix older than its device's newest fix by more is filtered",
    )
    filter_max_hdop: float = Field(
        default=10.0, gt=0, description="a fix with a larger hdop is filtered"
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Drop telemetry older than this many days (never an open transit's);"
        " unset: keep everything.",
    )
    rendezvous_m: float = Field(
        default=50.0, gt=0, description="two trucks stopped this close are together (m)"
    )
    rendezvous_s: float = Field(
        default=300.0,
        gt=0,
        description="together this long outside any office or parking: a rendezvous alert (s)",
    )

    @property
    def mqtt_urls(self) -> list[str]:
        """The broker's URLs: ``mqtt_url`` may list a cluster's nodes, comma-separated."""
        return [u.strip() for u in self.mqtt_url.split(",") if u.strip()]

    @property
    def amqp_urls(self) -> list[str]:
        """The clustered broker's AMQP URLs (none: ingest reads MQTT)."""
        return [u.strip() for u in self.amqp_url.split(",") if u.strip()]

    @property
    def mqtt_host(self) -> str:
        """Host part of the (first) broker URL."""
        return urlsplit(self.mqtt_urls[0]).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        """Port part of the (first) broker URL (1883, or 8883 for mqtts, when absent)."""
        return urlsplit(self.mqtt_urls[0]).port or (8883 if self.mqtt_tls else 1883)

    @property
    def mqtt_tls(self) -> bool:
        """Whether the broker is reached over TLS (an ``mqtts://`` URL)."""
        return urlsplit(self.mqtt_urls[0]).scheme == "mqtts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
