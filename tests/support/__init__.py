"""Helpers shared by unit and integration tests (fake servers, fixtures)."""
