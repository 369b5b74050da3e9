"""NATS JetStream: the embedded server, streams and subjects, publishing and consuming."""
