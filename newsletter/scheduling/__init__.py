"""Schedules, the scheduler's tick, the daemon and its leadership."""
