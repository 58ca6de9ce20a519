"""Helpers shared by the test suites: generated tiny checkpoints."""
