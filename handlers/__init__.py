"""What arrives over NATS: event schemas, the ingest subscriber, the admin responders."""
