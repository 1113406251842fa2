"""Lua scripts of the scheduler, loaded once by :mod:`dagrt.scheduler`."""
