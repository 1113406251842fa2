"""Lua scripts, loaded once: the scheduler's (:mod:`dagrt.scheduler`) and the runs index's
(:mod:`dagrt.metrics.runs_index`)."""
