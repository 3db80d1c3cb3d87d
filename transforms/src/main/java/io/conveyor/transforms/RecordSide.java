package io.conveyor.transforms;

import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Schema;

/**
 * The half of a record a transform reads and rewrites. Kafka's own transforms spell this out in every
 * {@code Key} and {@code Value} subclass ({@code operatingSchema}, {@code operatingValue}, {@code newRecord});
 * here all transforms share one definition, so a half can never be rebuilt with the other half's parts.
 */
enum RecordSide {
    KEY("key"),
    VALUE("value");

    private final String name;

    RecordSide(String name) {
        this.name = name;
    }

    Schema schema(ConnectRecord<?> record) {
        return this == KEY ? record.keySchema() : record.valueSchema();
    }

    Object value(ConnectRecord<?> record) {
        return this == KEY ? record.key() : record.value();
    }

    /** A new record with this half replaced; topic, partition, the other half, timestamp and headers are kept. */
    <R extends ConnectRecord<R>> R newRecord(R record, Schema updatedSchema, Object updatedValue) {
        if (this == KEY) {
            return record.newRecord(record.topic(), record.kafkaPartition(), updatedSchema, updatedValue,
                    record.valueSchema(), record.value(), record.timestamp(), record.headers());
        }
        return record.newRecord(record.topic(), record.kafkaPartition(), record.keySchema(), record.key(),
                updatedSchema, updatedValue, record.timestamp(), record.headers());
    }

    /** "key" or "value": how error messages name the half they looked at. */
    @Override
    public String toString() {
        return name;
    }
}
