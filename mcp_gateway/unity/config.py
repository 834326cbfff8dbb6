"""The `unity:` section of the skill_lanes YAML file, validated beside the Unity code.

`skill_lanes/config.py` keeps that section as a raw mapping (the lane manager has no use
for it and must not import the gateway); the gateway validates it here at start-up with the
same one-line `FILE: key.path: what is wrong` ConfigError format.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from skill_lanes.config import ConfigError, format_validation_error

DEFAULT_SERVER_URL = 'http://127.0.0.1:8080/mcp'


class UnityConfig(BaseModel):
    """Unity Editor tools: off unless enabled.

    transport: `stdio` talks to the Editor's TCP bridge (status files, or host/port pinned);
    `http` goes through the official MCP for Unity server at `server_url` (the Editor's
    default since v8); `auto` uses whichever finds an Editor, stdio first.
    """

    model_config = ConfigDict(extra='forbid', frozen=True)

    enabled: bool = False
    transport: Literal['auto', 'stdio', 'http'] = 'auto'
    server_url: str = Field(DEFAULT_SERVER_URL, pattern=r'^https?://[^\s/]+(/\S*)?$')
    host: str = '127.0.0.1'
    port: Optional[int] = Field(None, ge=1, le=65535)
    instance: Optional[str] = None
    status_dir: Optional[str] = None
    lease_dir: Optional[str] = None
    lease_ttl_s: float = Field(30.0, gt=0)
    ready_wait_s: float = Field(120.0, gt=0)
    test_poll_s: float = Field(1.0, gt=0)
    compile_grace_s: float = Field(
        5.0, gt=0, description='after a refresh that requested a compile, hold the lease '
        'this long for the compile/reload to show before deciding none will come')
    test_deadline_s: float = Field(3600.0, gt=0, description='a test run ends after this')
    test_stall_s: float = Field(
        300.0, gt=0, description='a run whose progress does not move this long is stalled')
    play_mode_init_timeout_ms: int = Field(
        120_000, ge=1000, description='initTimeout sent with PlayMode runs (Editor: 15000)')


def load_unity_config(raw: Any, source: str = '<config>') -> UnityConfig:
    """Validate the raw `unity:` mapping; ConfigError `FILE: unity.key: what` when bad."""
    if raw is None:
        raw = {}
    if isinstance(raw, UnityConfig):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f'{source}: unity: expected a mapping, got {type(raw).__name__}')
    try:
        return UnityConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, ('unity',))) from None
