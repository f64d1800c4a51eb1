"""kafka-eventbridge: an at-least-once bridge from Apache Kafka to Amazon EventBridge."""

__version__ = "0.1.0"
