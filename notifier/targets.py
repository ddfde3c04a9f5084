"""Where notifications go: the console, and one apprise service per configured URL.

Each URL is its own target so that a retry re-sends only to the services that failed, and so that
progress per target can be remembered across restarts. Notification URLs hold credentials (the
Telegram bot token is the URL's host, a Slack token its path, an SMTP password its user info), so
nothing here ever logs or raises with a URL: a target is named by its scheme only, and the failure
reasons apprise reports are scrubbed of every part of the URL before anyone sees them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise
from apprise.manager_plugins import NotificationManager

from crypto_watcher.config import ConfigError, NotifierSettings
from crypto_watcher.times import ms_to_s
from notifier.text import Notification

# apprise's notify_type picks colours and icons in chat services.
_NOTIFY_TYPE = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "critical": apprise.NotifyType.FAILURE,
}
_REDACTED = "***"
_MIN_SECRET_LEN = 3


class Target(Protocol):
    @property
    def name(self) -> str:
        """Safe to log: ``console`` or the URL's scheme (``tgram://``)."""
        ...

    @property
    def key(self) -> str:
        """Stable across restarts (it keys the delivery state) and reveals nothing of the URL."""
        ...

    def send(self, note: Notification) -> str | None:
        """None when delivered; otherwise why not, safe to log."""
        ...


class ConsoleTarget:
    """One line per alert on stdout, where a person running the service (or ``docker logs``) sees it."""

    name = "console"
    key = "console"

    def __init__(self, stream: Callable[[], TextIO] | None = None) -> None:
        # Looked up at each write, not at start-up, so a replaced sys.stdout (pytest capture) is used.
        self._stream = stream or (lambda: sys.stdout)

    def send(self, note: Notification) -> str | None:
        try:
            out = self._stream()
            out.write(note.line + "\n")
            out.flush()
        except OSError as exc:
            return f"cannot write to stdout: {exc.strerror or type(exc).__name__}"
        return None


class AppriseTarget:
    def __init__(self, url: str, timeout_s: float) -> None:
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            raise ValueError("not a valid apprise URL")
        self._apprise = apprise.Apprise()
        self._apprise.add(plugin)
        self._timeout_s = timeout_s
        self._secrets = url_secrets(url)
        self.name = scheme_of(url) + "://"
        self.key = "url:" + hashlib.sha256(url.encode()).hexdigest()[:16]

    def send(self, note: Notification) -> str | None:
        try:
            result = self._apprise.notify(
                body=note.body,
                title=note.title,
                notify_type=_NOTIFY_TYPE[note.alert.severity],
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self._timeout_s,
            )
        except Exception as exc:  # a plugin bug must not take the service down: retried like a failure
            return self.redact(f"{type(exc).__name__}: {exc}")
        if result:
            return None
        reasons = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
        status = result.status.name.lower()
        return self.redact("; ".join(reasons) if reasons else f"apprise reported {status}")

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def scheme_of(url: str) -> str:
    match = re.match(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return match.group(1).lower() if match else "?"


def url_secrets(url: str) -> list[str]:
    """Every piece of the URL that may be a credential, longest first (so no piece is half-replaced)."""
    pieces = {url}
    try:
        parts = urlsplit(url)
        rest = url.split("://", 1)[1] if "://" in url else url
        pieces.update(re.split(r"[/:@?&=#,]+", rest))
        pieces.update(filter(None, (parts.username, parts.password, parts.hostname, parts.netloc, parts.path)))
        for key, value in parse_qsl(parts.query, keep_blank_values=False):
            pieces.update((key, value))
    except ValueError:
        pass
    pieces.update({unquote(p) for p in pieces})
    return sorted((p for p in pieces if len(p) >= _MIN_SECRET_LEN), key=len, reverse=True)


def quiet_apprise_logging() -> None:
    """apprise logs each failure itself (and at DEBUG the full request URL, token included).

    Our own log line per failed attempt replaces it; apprise still hands its messages back in the
    notify result, which is where ``AppriseTarget.send`` reads (and scrubs) them.
    """
    logger = logging.getLogger("apprise")
    logger.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def build_targets(settings: NotifierSettings) -> list[Target]:
    """The console (unless turned off while URLs exist) and one target per URL.

    Raises ConfigError naming the entry's position and scheme, never its text.
    """
    quiet_apprise_logging()
    urls = settings.urls
    known = NotificationManager()  # type: ignore[no-untyped-call]  # apprise leaves it unannotated
    targets: list[Target] = []
    problems: list[str] = []
    for index, url in enumerate(urls, start=1):
        scheme = scheme_of(url)
        where = f"  CW_NOTIFY_URLS entry {index} of {len(urls)}"
        if scheme == "?":
            problems.append(f"{where}: not a URL (expected scheme://...; value not shown, it may hold a secret)")
        elif scheme not in known:
            problems.append(f"{where}: unknown apprise scheme '{scheme}://'")
        else:
            try:
                targets.append(AppriseTarget(url, ms_to_s(settings.notify_timeout)))
            except ValueError:
                problems.append(
                    f"{where} ({scheme}://): apprise cannot use it (a missing or malformed token, id or address; "
                    "value not shown, it may hold a secret)"
                )
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))
    if settings.notify_console or not targets:
        targets.insert(0, ConsoleTarget())
    return targets


def describe(targets: Sequence[Target]) -> str:
    return ", ".join(t.name for t in targets)
