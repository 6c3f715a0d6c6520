"""Manifests: agent files (Markdown + YAML front matter) and bottle profiles (TOML).

Each loads, validates with pydantic (unknown keys rejected) and fails with a
:class:`bottle.errors.UsageError` that names the file and the field.
"""
