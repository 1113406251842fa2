"""Where tasks run and what their outputs cross: the locality options of a run.

One model, :class:`LocalityOptions`, given to ``Client(locality=...)`` (or as a dict
of its fields). It travels with each run (the run's meta) to the workers, which read
it per run; the in-process runtime accepts it and has nothing to do with it (every
value is in its one process already). What each switch saves, measured, is in
``docs/architecture.md`` ("Locality, measured again with the object store") and
``benchmarks/locality.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .validated import options_of

__all__ = [
    "CLUSTER_MIN_BYTES",
    "INLINE_BUDGET",
    "INLINE_MAX_BYTES",
    "MAX_CHAIN_LENGTH",
    "MAX_CLUSTER",
    "LocalityOptions",
]

MAX_CHAIN_LENGTH = 4096  # the most links of a chain a worker runs one after another
MAX_CLUSTER = 1024  # the most children of one output clustered on its worker
CLUSTER_MIN_BYTES = 4 * 2**20  # an output this large is "large" (see the sweep in the docs)
INLINE_MAX_BYTES = 16 * 2**10  # an output this small travels in its children's entries
INLINE_LIMIT = 512 * 2**10  # ... and inline_max_bytes may be this much at most
INLINE_BUDGET = 2**20  # bytes one completion writes inline in its children's entries, at most


class LocalityOptions(BaseModel):
    """The locality switches of a run on workers.

    ``enabled=False`` turns every switch below off but ``upload_all`` (every ready
    child is dispatched, every output with a consumer is stored, no chain is fused):
    the baseline to compare with.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    enabled: bool = Field(True, description="master switch: False turns the switches below off")
    keep_children: bool = Field(
        True,
        description="a worker runs a child that became ready on its own completion, where one"
        " of its inputs is (Wukong's 'become')",
    )
    keep_outputs: bool = Field(
        True,
        description="the output of a task whose one child runs on the same worker is not"
        " stored (keep mode L): it stays in that worker's memory",
    )
    fuse_chains: bool = Field(
        True,
        description="a tiny task's one child that has no other parent runs right after it"
        " from its value, and all the links are counted by one completion (needs"
        " keep_children and keep_outputs)",
    )
    max_chain_length: int = Field(
        64, ge=1, le=MAX_CHAIN_LENGTH, description="links of a chain run one after another, at most"
    )
    cluster_fanout: bool = Field(
        True,
        description="fan-out clustering: the children that a large output (cluster_min_bytes"
        " or more) makes ready run on the worker that holds it, as many as"
        " cluster_max_children; those that have not started after spill_after_s go back to"
        " the pool (needs keep_children)",
    )
    cluster_min_bytes: int = Field(
        CLUSTER_MIN_BYTES,
        ge=0,
        description="an output this large (its serialized size) is large: its children are"
        " clustered on its worker",
    )
    cluster_max_children: int = Field(
        16, ge=2, le=MAX_CLUSTER, description="children of one output clustered, at most"
    )
    spill_after_s: float | None = Field(
        None,
        ge=0,
        description="a clustered child that has not started this long after its parent"
        " completed goes back to the pool; None: the time this worker takes to read that"
        " many bytes from elsewhere (its reads, measured; 1 GB/s until it has read any)",
    )
    delayed_io: bool = Field(
        True,
        description="delayed I/O (fan-in clustering): a worker that made a large output"
        " (cluster_min_bytes or more) waits to run each of its children that is not ready"
        " yet, as its one waiter (the first large parent to ask), for delayed_io_max_wait_s;"
        " the completion that makes the child ready hands it to that worker (needs"
        " keep_children)",
    )
    delayed_io_max_wait_s: float = Field(
        5.0, ge=0, le=3600, description="how long a worker waits for such a child, at most"
    )
    inline_inputs: bool = Field(
        True,
        description="an output of at most inline_max_bytes (or the location of one in a"
        " host's store) is written into the stream entry of each child that its"
        " completion dispatches: a worker that reads the entry has that input without"
        " asking the server for it (a child whose other inputs are stored elsewhere still"
        " reads those)",
    )
    inline_max_bytes: int = Field(
        INLINE_MAX_BYTES,
        ge=0,
        le=INLINE_LIMIT,
        description="an output this small travels inside its children's entries",
    )
    upload_all: bool = Field(
        False,
        description="an output kept in a host's object store is also uploaded to the server"
        " (durability over speed: when its host is gone it is read from there, not made"
        " again)",
    )

    @classmethod
    def of(cls, value: LocalityOptions | dict[str, Any] | bool | None) -> LocalityOptions:
        """``value`` as options: the model itself, a dict of its fields, ``True`` or
        ``False`` for ``enabled``, or the defaults; a wrong name or type is a
        ``ValueError`` that names it."""
        return options_of(cls, value, name="locality", true={}, false={"enabled": False})

    def effective(self) -> LocalityOptions:
        """The switches a run goes by: all off but ``upload_all`` when not enabled."""
        if self.enabled:
            return self
        return self.model_copy(
            update={
                "keep_children": False,
                "keep_outputs": False,
                "fuse_chains": False,
                "cluster_fanout": False,
                "delayed_io": False,
                "inline_inputs": False,
            }
        )

    def under(self, run: LocalityOptions) -> LocalityOptions:
        """These options as one task's over the run's: the fields set here (given when
        they were made) replace the run's, the others are the run's."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return run.model_copy(update=given) if given else run

    @classmethod
    def from_meta(cls, meta: Mapping[bytes, bytes]) -> LocalityOptions:
        """The options a run's meta says (the inverse of :meth:`meta`, up to fields a
        switch that is off makes moot): a sub-run goes by its parent run's."""

        def text(name: str, default: str) -> str:
            return meta.get(name.encode(), default.encode()).decode()

        base = cls()
        cluster = int(text("cluster", "0") or 0)
        wait = float(text("wait", "0") or 0)
        inline = int(text("inline", "0") or 0)
        spill = text("spill_after", "")
        return cls(
            keep_children=text("keep_children", "1") == "1",
            keep_outputs=text("keep_outputs", "1") == "1",
            fuse_chains=text("fuse_chains", "1") == "1",
            max_chain_length=int(text("max_chain", str(base.max_chain_length))),
            upload_all=text("upload_all", "0") == "1",
            cluster_fanout=cluster > 0,
            cluster_max_children=cluster or base.cluster_max_children,
            cluster_min_bytes=int(text("cluster_min", str(base.cluster_min_bytes))),
            spill_after_s=float(spill) if spill else None,
            delayed_io=wait > 0,
            delayed_io_max_wait_s=wait or base.delayed_io_max_wait_s,
            inline_inputs=inline > 0,
            inline_max_bytes=inline or base.inline_max_bytes,
        )

    def meta(self) -> dict[str, str]:
        """The run meta's fields that carry the options to the workers."""
        e = self.effective()
        return {
            "keep_children": "1" if e.keep_children else "0",
            "keep_outputs": "1" if e.keep_outputs else "0",
            "fuse_chains": "1" if e.fuse_chains else "0",
            "max_chain": str(e.max_chain_length),
            "upload_all": "1" if e.upload_all else "0",
            "cluster": str(e.cluster_max_children if e.cluster_fanout and e.keep_children else 0),
            "cluster_min": str(e.cluster_min_bytes),
            "spill_after": "" if e.spill_after_s is None else repr(e.spill_after_s),
            "wait": repr(e.delayed_io_max_wait_s if e.delayed_io and e.keep_children else 0.0),
            "inline": str(e.inline_max_bytes if e.inline_inputs else 0),
        }
