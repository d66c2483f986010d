"""Runnable examples built on dynamic_streams."""
