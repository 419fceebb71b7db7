"""A running service's effective settings, secrets redacted (the control channel's ``config``;
``servicehost config NAME``). The channel imports it on the first request.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..config import holds_url_secret, looks_secret, redact_urls, specs

if TYPE_CHECKING:
    from ..host import Host

#: What ``config`` shows instead of a secret.
REDACTED = "(redacted)"


def effective_settings(host: Host, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The host's settings, then each service's, as ``config`` answers them: ``owner`` (``host``
    or the service's name), ``name``, ``value`` (JSON: text for paths and choices) and whether it
    was ``redacted``: a setting whose name looks secret (``…password``, ``…token``, ``api_key``),
    or whose value holds a secret the service was given as a file (``--env NAME=@file``: the
    contents of any file an environment variable ``*_FILE`` names), is shown as ``(redacted)``; a
    value holding a URL with a password shows the URL with ``***`` for it."""
    secrets = _secret_values(os.environ if env is None else env)
    out = []
    owners: list[tuple[str, Any]] = [("host", host.config)]
    owners += [(service.name, service.settings) for service in host.services
               if dataclasses.is_dataclass(getattr(service, "settings", None))]
    for owner, values in owners:
        kind: type = type(values)
        for spec in specs(kind):
            value = getattr(values, spec.name)
            shown = value if isinstance(value, (bool, int, float)) else str(value)
            redacted = looks_secret(spec.name) or (
                isinstance(shown, str) and any(secret in shown for secret in secrets))
            if redacted:
                shown = REDACTED
            elif isinstance(shown, str) and holds_url_secret(shown):
                shown, redacted = redact_urls(shown), True  # postgresql://u:***@h/db: the rest still helps
            out.append({"owner": owner, "name": spec.name, "value": shown, "redacted": redacted})
    return out


def _secret_values(env: Mapping[str, str]) -> list[str]:
    """The secrets this process was given as files: the contents (at most 64 KiB, stripped) of
    each regular file an environment variable ``*_FILE`` names."""
    found = []
    for key, path in env.items():
        if not key.endswith("_FILE") or not path:
            continue
        try:
            with open(path, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    continue
                data = fh.read(64 * 1024 + 1)
        except (OSError, ValueError):
            continue
        text = data.decode("utf-8", "replace").strip()
        if len(data) <= 64 * 1024 and len(text) >= 4:  # shorter would redact innocent values
            found.append(text)
    return found
