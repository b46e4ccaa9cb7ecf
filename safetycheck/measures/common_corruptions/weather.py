"""Placeholder: the weather corruptions are being written."""

from __future__ import annotations

CORRUPTIONS: tuple = ()
