"""Spine clinic triage bot: flow language, engine, storage, channels and staff tools."""
