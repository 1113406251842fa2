"""``FlushPolicy``: when the event log's writer writes what it buffers.

Its fields (with their defaults and descriptions) are the one statement of the
policy; :func:`flush_options` gives the ``dagrt worker`` flags that hand a policy
to a worker process (the client and ``dagrt cluster`` start workers that way).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FlushPolicy", "flush_options"]


class FlushPolicy(BaseModel):
    """When buffered task events are written. The conditions combine (any one flushes).
    Run and worker events (a worker's heartbeats too) are written at once whatever the
    policy, and what is buffered goes with them: with every condition off, task events
    wait for the next of those, or for close. ``when_idle``: a worker writes what it
    holds once it has been idle a moment (a run just ended)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    after_each_task: bool = Field(False, description="flush after every finished/failed task")
    interval: float | None = Field(
        1.0, ge=0.01, allow_inf_nan=False, description="flush every this many seconds"
    )
    max_events: int | None = Field(2000, ge=1, description="flush when this many are buffered")
    max_buffer: int = Field(500_000, ge=1, description="beyond this, drop (and count) events")
    close_timeout: float = Field(
        5.0, ge=0, allow_inf_nan=False, description="seconds the last write at close may take"
    )
    when_idle: bool = Field(
        True, description="a worker that goes idle writes what it holds (runs' logs fill soon)"
    )

    @model_validator(mode="after")
    def _size_within_bound(self) -> FlushPolicy:
        if self.max_events is not None and self.max_events > self.max_buffer:
            raise ValueError(
                f"max_events ({self.max_events}) must not exceed max_buffer ({self.max_buffer}):"
                " the buffer would drop events before the size threshold flushed them"
            )
        return self


def flush_options(policy: FlushPolicy) -> dict[str, Any]:
    """``dagrt worker`` flags that give a worker this policy (``""``: a flag alone)."""
    options: dict[str, Any] = {
        "flush-interval": policy.interval or 0,
        "flush-size": policy.max_events or 0,
        "flush-buffer": policy.max_buffer,
        "flush-close-timeout": policy.close_timeout,
    }
    if policy.after_each_task:
        options["flush-each-task"] = ""
    if not policy.when_idle:
        options["no-flush-when-idle"] = ""
    return options
