"""``FlushPolicy``: when the event log's writer writes what it buffers.

Its fields (with their defaults, bounds and descriptions) are the one statement of
the policy: ``dagrt worker``'s flush flags are derived from them (:mod:`dagrt.options`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FlushPolicy"]


class FlushPolicy(BaseModel):
    """When buffered task events are written. The conditions combine (any one flushes).
    Run and worker events (a worker's heartbeats too) are written at once whatever the
    policy, and what is buffered goes with them: with every condition off, task events
    wait for the next of those, or for close. ``when_idle``: a worker writes what it
    holds once it has been idle a moment (a run just ended)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    after_each_task: bool = Field(
        False, description="write events after every finished or failed task"
    )
    interval: float | None = Field(
        1.0, ge=0.01, allow_inf_nan=False, description="write events every this many seconds"
    )
    max_events: int | None = Field(
        2000, ge=1, description="write events when this many are buffered"
    )
    max_buffer: int = Field(
        500_000,
        ge=1,
        description="events kept while the event log cannot be written; beyond, they are"
        " dropped and counted",
    )
    close_timeout: float = Field(
        5.0, ge=0, allow_inf_nan=False, description="seconds the last write of events may take"
    )
    when_idle: bool = Field(
        True, description="a worker that goes idle writes the events it holds at once"
    )

    @model_validator(mode="after")
    def _size_within_bound(self) -> FlushPolicy:
        if self.max_events is not None and self.max_events > self.max_buffer:
            raise ValueError(
                f"max_events ({self.max_events}) must not exceed max_buffer ({self.max_buffer}):"
                " the buffer would drop events before the size threshold flushed them"
            )
        return self
