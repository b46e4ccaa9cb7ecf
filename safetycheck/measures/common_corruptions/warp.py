"""Placeholder: elastic_transform is being written."""

from __future__ import annotations

CORRUPTIONS: tuple = ()
