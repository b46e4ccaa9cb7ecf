"""Placeholder: the noise corruptions are being written."""

from __future__ import annotations

CORRUPTIONS: tuple = ()
