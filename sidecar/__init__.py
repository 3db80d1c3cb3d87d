"""Conveyor's bridges: RabbitMQ and Snowplow events into Kafka, exactly once."""
