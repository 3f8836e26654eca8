"""The clustered profile: a RabbitMQ cluster for devices and ingest (issue 14)."""
