"""Command-line flags derived from the settings they set, shared by every service's CLI.

A flag's help used to re-type its setting's default, and drifted when the default changed. Here the
help is built from the settings field itself: its description, its environment variable and its
default, so the README's reference (``crypto_watcher.reference``) and ``--help`` say the same.
"""

from __future__ import annotations

import argparse
from enum import Enum
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from crypto_watcher.config import ENV_PREFIX, KafkaSettings, LogSettings, default_of, unset_means
from crypto_watcher.durations import format_duration, is_duration


def shown_default(model: type[BaseModel], name: str) -> str | None:
    """A field's default as a person writes it (``15m``, ``5m,15m,1h``, ``true``); None when unset."""
    value = default_of(model, name)
    if value is None:
        return None
    if is_duration(model.model_fields[name]):
        return format_duration(int(value)) if value else "0"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def env_name(name: str) -> str:
    """The environment variable of a settings field."""
    return f"{ENV_PREFIX}{name.upper()}"


def setting_help(model: type[BaseModel], name: str, text: str | None = None) -> str:
    """``text`` (default: the field's description) followed by ``[CW_NAME, default VALUE]``.

    Escaped for argparse, which %-formats help strings."""
    what = text if text is not None else (model.model_fields[name].description or "")
    what = " ".join(what.replace("`", "").split())
    default = shown_default(model, name)
    unset = unset_means(model, name) or "none"
    where = f"[{env_name(name)}, default {default}]" if default is not None else f"[{env_name(name)}, default: {unset}]"
    return f"{what} {where}".strip().replace("%", "%%")


def choices_of(model: type[BaseModel], name: str) -> list[str] | None:
    """The values an enum or ``Literal`` field takes, for argparse's ``choices``; None for other types."""
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(member.value) for member in annotation]
    if get_origin(annotation) is Literal:
        return [str(arg) for arg in get_args(annotation)]
    return None


def add_setting(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[BaseModel],
    name: str,
    *flags: str,
    text: str | None = None,
    **kwargs: Any,
) -> argparse.Action:
    """A flag that sets ``name`` of ``model``: ``--the-name`` unless ``flags`` are given, help and
    (for enums and literals) choices from the field; ``kwargs`` go to ``add_argument``."""
    kwargs.setdefault("dest", name)
    kwargs.setdefault("help", setting_help(model, name, text))
    if "action" not in kwargs:
        choices = choices_of(model, name)
        if choices is not None:
            kwargs.setdefault("choices", choices)
    return parser.add_argument(*(flags or (f"--{name.replace('_', '-')}",)), **kwargs)


def service_parser(prog: str, description: str | None, epilog: str) -> argparse.ArgumentParser:
    """A service's top-level parser: the module docstring above, the examples below, both as written
    but for the docstrings' reStructuredText quotes (````x````), which a terminal shows as noise."""
    return argparse.ArgumentParser(
        prog=prog,
        description=_plain(description),
        epilog=_plain(epilog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _plain(text: str | None) -> str | None:
    return None if text is None else text.replace("``", "")


def add_bootstrap(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> argparse.Action:
    """``--bootstrap``: every service's Kafka."""
    return add_setting(parser, KafkaSettings, "kafka_bootstrap", "--bootstrap")


def add_log_level(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> argparse.Action:
    """``--log-level``: every service's; ``setup_logging`` reads it (None: ``CW_LOG_LEVEL``)."""
    return add_setting(parser, LogSettings, "log_level")


def add_stop_when_idle(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str) -> argparse.Action:
    """``--stop-when-idle SECONDS`` (0: run until stopped), for batch runs and tests."""
    return parser.add_argument(
        "--stop-when-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"exit once no {what} arrived for this long (default: run until stopped)",
    )
