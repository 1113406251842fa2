"""Command-line options derived from the settings models, and back.

:class:`~dagrt.workers.WorkerSettings` and :class:`~dagrt.metrics.FlushPolicy`
say what each setting means, its default and its bounds; the tables here say
only which flag stands for it (:class:`Flag`). From the two, :func:`add_options`
makes ``argparse`` options (help, default, type and bounds), :func:`from_args`
reads them back, and :func:`worker_args` turns settings into the flags and
environment of a ``dagrt worker`` process (what ``LocalCluster`` starts for a
client or for ``dagrt cluster``).
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .metrics import FlushPolicy
from .resources import describe, parse_resources
from .secret import env_value
from .workers.settings import WorkerSettings

__all__ = [
    "FLUSH_FLAGS",
    "LOG_FLAGS",
    "WORKER_FLAGS",
    "Flag",
    "add_log_options",
    "add_options",
    "add_worker_options",
    "flush_policy",
    "from_args",
    "log_args",
    "number",
    "url",
    "usage_error",
    "worker_args",
    "worker_settings",
]


# --------------------------------------------------------------------------- argparse types


def url(value: str) -> str:
    """A server URL, checked as the storage will read it."""
    from .storage.redis import RedisConfig

    try:
        RedisConfig(url=value)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(_message(exc)) from None
    return value


def number(kind: type, low: float, *, strict: bool = False) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number >= ``low`` (> with ``strict``)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value != value or (value <= low if strict else value < low):  # NaN, or too small
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}: {text}")
        return value

    return parse


def _resources(value: str) -> dict[str, float]:
    """``gpu=2,memory=32GB``, checked (:func:`dagrt.resources.parse_resources`)."""
    try:
        return parse_resources(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _message(exc: ValidationError) -> str:
    return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")


# --------------------------------------------------------------------------- flags of fields


@dataclass(frozen=True)
class Flag:
    """Which ``dagrt`` flag stands for a field of a settings model (the field says the rest).

    ``style``: ``value`` takes a value; ``on`` is a bool the flag alone sets;
    ``off`` a bool the flag alone clears (``--no-keep``); ``switch`` both
    (``--x``/``--no-x``). ``zero_is_none``: 0 on the command line means ``None``
    (a condition that is off). ``env``: the default comes from this environment
    variable, and a worker is given the value by it, not on its command line (a URL
    with a password stays out of process listings). ``parse``: the argparse type of
    a field that is not a number (a string, a map); ``show``: its value as that text.
    """

    name: str
    style: Literal["value", "on", "off", "switch"] = "value"
    zero_is_none: bool = False
    env: str | None = None
    parse: Callable[[str], Any] | None = None
    show: Callable[[Any], str] | None = None


#: ``dagrt worker``'s options for :class:`~dagrt.workers.WorkerSettings`, in help order.
WORKER_FLAGS: dict[str, Flag] = {
    "concurrency": Flag("concurrency"),
    "threads": Flag("threads"),
    "native_threads": Flag("native-threads"),
    "name": Flag("name"),
    "claim_timeout": Flag("claim-timeout"),
    "heartbeat": Flag("heartbeat"),
    "graceful_timeout": Flag("graceful-timeout"),
    "connect_timeout": Flag("connect-timeout"),
    "burst": Flag("burst", "on"),
    "keep_children": Flag("no-keep", "off"),
    "heartbeat_file": Flag("heartbeat-file"),
    "preload": Flag("preload"),
    "store": Flag("store"),
    "store_bytes": Flag("store-bytes"),
    "store_min_bytes": Flag("store-min-bytes"),
    "host_id": Flag("host-id"),
    "data_bind": Flag("data-bind"),
    "data_advertise": Flag("data-advertise"),
    "resources": Flag("resources", parse=_resources, show=describe),
    "unauthenticated": Flag("unauthenticated", "on"),
}

#: A worker's event log (``dagrt worker``, and ``dagrt cluster`` for its workers).
LOG_FLAGS: dict[str, Flag] = {
    "metrics": Flag("no-metrics", "off"),
    "metrics_url": Flag("metrics-redis", env="DAGRT_METRICS_URL", parse=url),
}

#: :class:`~dagrt.metrics.FlushPolicy`, the ``flush`` of a worker's settings.
FLUSH_FLAGS: dict[str, Flag] = {
    "interval": Flag("flush-interval", zero_is_none=True),
    "max_events": Flag("flush-size", zero_is_none=True),
    "after_each_task": Flag("flush-each-task", "on"),
    "when_idle": Flag("flush-when-idle", "switch"),
    "max_buffer": Flag("flush-buffer"),
    "close_timeout": Flag("flush-close-timeout"),
}


def add_options(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    flags: Mapping[str, Flag],
    *,
    prefix: str = "",
) -> None:
    """Add an option per field in ``flags``: its help, default, type and bounds come from
    the model's field. Values land in ``args.<prefix><field>`` (see :func:`from_args`)."""
    for field, flag in flags.items():
        info = model.model_fields[field]
        says = info.description or ""
        dest = prefix + field
        if flag.style == "on":
            parser.add_argument(f"--{flag.name}", dest=dest, action="store_true", help=says)
        elif flag.style == "off":
            parser.add_argument(
                f"--{flag.name}", dest=dest, action="store_false", help=f"do not {says}"
            )
        elif flag.style == "switch":
            parser.add_argument(
                f"--{flag.name}",
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=info.default,
                help=f"{says} (default: {'on' if info.default else 'off'})",
            )
        else:
            default = info.default
            if flag.env is not None:
                default = env_value(flag.env) or default
                says += f" (default: ${flag.env} or ${flag.env}_FILE if set)"
            elif default is not None:
                says += f" (default: {default}{'; 0: off' if flag.zero_is_none else ''})"
            parser.add_argument(
                f"--{flag.name}",
                dest=dest,
                type=_parse(info, flag),
                default=default,
                metavar=_metavar(info, flag),
                help=says,
            )


def _parse(info: FieldInfo, flag: Flag) -> Callable[[str], Any]:
    """The argparse type of a field: its kind of number and lower bound, or ``flag.parse``."""
    if flag.parse is not None:
        return flag.parse
    kind = _kind(info.annotation)
    if kind not in (int, float):
        return flag.parse or kind
    if flag.zero_is_none:  # 0 is off; the model checks the bound of other values
        return number(kind, 0)
    for bound in info.metadata:
        if isinstance(bound, at.Ge):
            return number(kind, float(bound.ge))  # type: ignore[arg-type]
        if isinstance(bound, at.Gt):
            return number(kind, float(bound.gt), strict=True)  # type: ignore[arg-type]
    return number(kind, float("-inf"))


def _metavar(info: FieldInfo, flag: Flag) -> str:
    if flag.parse is not None:
        return "URL" if flag.parse is url else flag.name.upper().replace("-", "_")
    kind = _kind(info.annotation)
    if kind is float and "seconds" in (info.description or ""):
        return "SECONDS"
    if kind is int:
        return "N"
    return "URL" if flag.parse is url else flag.name.upper().replace("-", "_")


def _kind(annotation: Any) -> type:
    """``int`` for ``int | None``, and so on."""
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
    if not isinstance(annotation, type):
        raise TypeError(f"no command-line form for a field of type {annotation!r}")
    return annotation


def from_args(
    args: argparse.Namespace, flags: Mapping[str, Flag], *, prefix: str = ""
) -> dict[str, Any]:
    """The fields :func:`add_options` parsed, as model arguments."""
    values = {}
    for field, flag in flags.items():
        value = getattr(args, prefix + field)
        values[field] = None if flag.zero_is_none and value == 0 else value
    return values


def usage_error(exc: ValidationError, flags: Mapping[str, Flag]) -> str:
    """A model's complaint about parsed options, naming the flag: ``argument --x: ...``."""
    loc = exc.errors()[0]["loc"]
    flag = flags.get(str(loc[0])) if loc else None
    where = f"--{flag.name}" if flag is not None else "options"
    return f"argument {where}: {_message(exc)}"


# --------------------------------------------------------------------------- dagrt worker


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """``dagrt worker``'s options for its settings (not its event log: see below)."""
    add_options(parser, WorkerSettings, WORKER_FLAGS)


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """A worker's event log: off, its server, and the flush policy (``dagrt worker``,
    and ``dagrt cluster`` for its workers); :func:`flush_policy` reads the policy."""
    add_options(parser, WorkerSettings, LOG_FLAGS)
    add_options(parser, FlushPolicy, FLUSH_FLAGS, prefix="flush_")


def flush_policy(args: argparse.Namespace) -> FlushPolicy:
    """The flush policy the options of :func:`add_log_options` give (a
    ``ValidationError`` for a combination the policy refuses: see :func:`usage_error`)."""
    return FlushPolicy(**from_args(args, FLUSH_FLAGS, prefix="flush_"))


def worker_settings(args: argparse.Namespace, **more: Any) -> WorkerSettings:
    """The settings the options of both give, with ``args.flush`` and ``more``."""
    fields = from_args(args, WORKER_FLAGS) | from_args(args, LOG_FLAGS)
    return WorkerSettings(**fields, flush=args.flush, **more)


# --------------------------------------------------------------------------- settings to flags


def worker_args(**settings: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """``dagrt worker`` flags (``""``: a flag alone) and environment that give a worker
    these :class:`~dagrt.workers.WorkerSettings` fields (``flush``: a ``FlushPolicy``)."""
    argv: dict[str, Any] = {}
    env: dict[str, str] = {}
    for field, value in settings.items():
        if field == "flush":
            more, _ = _args(dict(value), FLUSH_FLAGS)
            argv.update(more)
            continue
        flag = WORKER_FLAGS.get(field) or LOG_FLAGS.get(field)
        if flag is None:
            raise TypeError(f"{field!r} is not a dagrt worker option")
        more, more_env = _args({field: value}, {field: flag})
        argv.update(more)
        env.update(more_env)
    return argv, env


def _args(
    values: Mapping[str, Any], flags: Mapping[str, Flag]
) -> tuple[dict[str, Any], dict[str, str]]:
    argv: dict[str, Any] = {}
    env: dict[str, str] = {}
    for field, value in values.items():
        flag = flags[field]
        if flag.style == "on":
            if value:
                argv[flag.name] = ""
        elif flag.style == "off":
            if not value:
                argv[flag.name] = ""
        elif flag.style == "switch":
            argv[flag.name if value else f"no-{flag.name}"] = ""
        elif value is None:
            if flag.zero_is_none:
                argv[flag.name] = 0
        elif flag.env is not None:
            env[flag.env] = str(value)
        else:
            argv[flag.name] = flag.show(value) if flag.show is not None else value
    return argv, env


def log_args(
    *, metrics: bool = True, url: str | None = None, flush: FlushPolicy | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The worker flags and environment of an event log: off, on the server at ``url``
    (the tasks' server if ``None``), with the ``flush`` policy (the workers' default if
    ``None``)."""
    if not metrics:
        return worker_args(metrics=False)
    settings: dict[str, Any] = {}
    if url is not None:
        settings["metrics_url"] = url
    if flush is not None:
        settings["flush"] = flush
    return worker_args(**settings)
