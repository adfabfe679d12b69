"""Screens own the handlers and the workers."""
