package io.conveyor.preview;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.apache.kafka.connect.data.Date;
import org.apache.kafka.connect.data.Decimal;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Time;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.sink.SinkRecord;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The row a JDBC sink makes of a transformed record: its table, its columns with the types a
 * PostgreSQL table gets when Debezium's JDBC sink creates it (schema.evolution=basic), and
 * its values.
 *
 * <p>The type names are the PostgreSQL dialect's for the Connect types our transforms emit;
 * the preview integration test compares every one of them with the table the sink really
 * creates, so a Debezium upgrade that changes one shows up there. A type this table does not
 * know is shown as such, never guessed.
 */
final class Rows {

    static final String JDBC_SINK = "io.debezium.connector.jdbc.JdbcSinkConnector";

    private final String tableFormat;
    private final String pkMode;
    private final List<String> pkFields;
    private final boolean jdbc;

    Rows(Map<String, String> conn) {
        this.jdbc = JDBC_SINK.equals(conn.get("connector.class"));
        this.tableFormat = conn.getOrDefault("collection.name.format",
                conn.getOrDefault("table.name.format", "${topic}"));
        this.pkMode = conn.getOrDefault("primary.key.mode", "none");
        this.pkFields = new ArrayList<>();
        for (String f : conn.getOrDefault("primary.key.fields", "").split(",")) {
            if (!f.isBlank()) {
                pkFields.add(f.trim());
            }
        }
    }

    /** Debezium's default collection naming: the format with ${topic}, dots made underscores. */
    String table(String topic) {
        return tableFormat.replace("${topic}", topic).replace('.', '_');
    }

    void describe(SinkRecord record, ObjectNode result) {
        result.put("table", table(record.topic()));
        ArrayNode pk = result.putArray("primary_key");
        pkFields.forEach(pk::add);
        result.put("primary_key_mode", pkMode);
        ArrayNode columns = result.putArray("columns");
        ObjectNode row = result.putObject("row");
        if ("record_key".equals(pkMode)) {
            addStruct(record.keySchema(), record.key(), columns, row, "key", result);
        }
        addStruct(record.valueSchema(), record.value(), columns, row, "value", result);
    }

    private void addStruct(Schema schema, Object value, ArrayNode columns, ObjectNode row, String side,
                           ObjectNode result) {
        if (value == null) {
            result.put("warning", "the record's " + side + " is null: a JDBC sink deletes (delete.enabled) or skips it");
            return;
        }
        if (schema == null || schema.type() != Schema.Type.STRUCT || !(value instanceof Struct struct)) {
            result.put("warning", "the record's " + side + " is not a Struct with a schema ("
                    + Render.typeName(schema) + "): a JDBC sink cannot make a row of it and fails the record");
            return;
        }
        for (Field f : schema.fields()) {
            ObjectNode c = columns.addObject();
            c.put("name", f.name());
            c.put("connect_type", Render.typeName(f.schema()));
            c.put("optional", f.schema().isOptional());
            // PostgreSQL types only for the JDBC sink; Snowflake and Iceberg type columns their way.
            c.put("sql_type", jdbc ? sqlType(f.schema()) : null);
            row.set(f.name(), Render.value(f.schema(), struct.get(f)));
        }
    }

    /** information_schema.columns.data_type of the column Debezium's PostgreSQL dialect creates. */
    static String sqlType(Schema s) {
        String logical = s.name();
        if (Timestamp.LOGICAL_NAME.equals(logical)) {
            return "timestamp without time zone";
        }
        if (Date.LOGICAL_NAME.equals(logical)) {
            return "date";
        }
        if (Time.LOGICAL_NAME.equals(logical)) {
            return "time without time zone";
        }
        if (Decimal.LOGICAL_NAME.equals(logical)) {
            return "numeric";
        }
        if ("io.debezium.data.Json".equals(logical)) {
            return "json";
        }
        if ("io.debezium.time.ZonedTimestamp".equals(logical)) {
            return "timestamp with time zone";
        }
        return switch (s.type()) {
            case INT8, INT16 -> "smallint";
            case INT32 -> "integer";
            case INT64 -> "bigint";
            case FLOAT32 -> "real";
            case FLOAT64 -> "double precision";
            case BOOLEAN -> "boolean";
            case STRING -> "text";
            case BYTES -> "bytea";
            default -> "unsupported (" + s.type() + ")";
        };
    }
}
