"""Helpers shared by the tests: builders, loopback servers, processes, conformance vectors."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root folder (scenarios/, examples/, notebooks/ live there)."""
