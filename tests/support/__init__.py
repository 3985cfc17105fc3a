"""Helpers shared by the test-suite (building published-format weights, fixtures)."""
