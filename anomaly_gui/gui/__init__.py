"""Thin Qt layer on top of the core. Nothing below `core/` or `engines/` imports Qt."""
