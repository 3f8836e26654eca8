"""Ingest: MQTT messages in, telemetry and alerts committed, then acknowledged."""
