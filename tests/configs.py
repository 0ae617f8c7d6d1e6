"""The config text and helpers the config tests share."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from authgw import config
from authgw.config import ConfigError

MINIMAL = """\
version: 1
routes:
  - name: dash
    hosts: [dash.example.com]
    token:
      type: hmac
      secret: {env: DASH_SECRET}
"""


def parse(text: str, base: Path = Path("/etc/authgw")) -> config.Config:
    return config.parse(textwrap.dedent(text), file="gateway.yaml", base_dir=base)


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value
