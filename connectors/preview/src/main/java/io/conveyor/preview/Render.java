package io.conveyor.preview;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.connect.data.Date;
import org.apache.kafka.connect.data.Decimal;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Time;
import org.apache.kafka.connect.data.Timestamp;

import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Base64;
import java.util.List;
import java.util.Map;

/** Connect data as JSON a person (and a golden file) can read; never throws on odd values. */
final class Render {

    private static final JsonNodeFactory F = JsonNodeFactory.instance;
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("HH:mm:ss.SSS").withZone(ZoneOffset.UTC);

    private Render() {
    }

    /** The record as read, enough to replay it (--input) and to show it. */
    static ObjectNode input(ConsumerRecord<byte[], byte[]> r) {
        ObjectNode n = F.objectNode();
        n.put("topic", r.topic());
        n.put("partition", r.partition());
        n.put("offset", r.offset());
        n.put("timestamp", r.timestamp());
        n.put("timestamp_type", r.timestampType().name);
        n.put("key_b64", r.key() == null ? null : Base64.getEncoder().encodeToString(r.key()));
        n.put("value_b64", r.value() == null ? null : Base64.getEncoder().encodeToString(r.value()));
        ArrayNode headers = n.putArray("headers");
        for (org.apache.kafka.common.header.Header h : r.headers()) {
            ObjectNode hn = headers.addObject();
            hn.put("key", h.key());
            hn.put("value_b64", h.value() == null ? null : Base64.getEncoder().encodeToString(h.value()));
        }
        return n;
    }

    static JsonNode value(Schema schema, Object v) {
        if (v == null) {
            return F.nullNode();
        }
        String logical = schema == null ? null : schema.name();
        if (v instanceof java.util.Date d) {
            if (Date.LOGICAL_NAME.equals(logical)) {
                return F.textNode(Instant.ofEpochMilli(d.getTime()).atOffset(ZoneOffset.UTC).toLocalDate().toString());
            }
            if (Time.LOGICAL_NAME.equals(logical)) {
                return F.textNode(TIME.format(Instant.ofEpochMilli(d.getTime())));
            }
            return F.textNode(Instant.ofEpochMilli(d.getTime()).toString());
        }
        if (v instanceof BigDecimal b) {
            return F.textNode(b.toPlainString());
        }
        if (v instanceof byte[] b) {
            return F.textNode(Base64.getEncoder().encodeToString(b));
        }
        if (v instanceof ByteBuffer b) {
            byte[] copy = new byte[b.remaining()];
            b.duplicate().get(copy);
            return F.textNode(Base64.getEncoder().encodeToString(copy));
        }
        if (v instanceof Struct s) {
            ObjectNode o = F.objectNode();
            for (Field f : s.schema().fields()) {
                o.set(f.name(), value(f.schema(), s.get(f)));
            }
            return o;
        }
        if (v instanceof List<?> list) {
            ArrayNode a = F.arrayNode();
            Schema element = schema != null && schema.type() == Schema.Type.ARRAY ? schema.valueSchema() : null;
            for (Object item : list) {
                a.add(value(element, item));
            }
            return a;
        }
        if (v instanceof Map<?, ?> map) {
            ObjectNode o = F.objectNode();
            Schema element = schema != null && schema.type() == Schema.Type.MAP ? schema.valueSchema() : null;
            for (Map.Entry<?, ?> e : map.entrySet()) {
                o.set(String.valueOf(e.getKey()), value(element, e.getValue()));
            }
            return o;
        }
        if (v instanceof Boolean b) {
            return F.booleanNode(b);
        }
        if (v instanceof Long l) {
            return F.numberNode(l);
        }
        if (v instanceof Integer i) {
            return F.numberNode(i);
        }
        if (v instanceof Short s) {
            return F.numberNode(s);
        }
        if (v instanceof Byte b) {
            return F.numberNode(b);
        }
        if (v instanceof Double d) {
            return Double.isFinite(d) ? F.numberNode(d) : F.textNode(d.toString());
        }
        if (v instanceof Float f) {
            return Float.isFinite(f) ? F.numberNode(f) : F.textNode(f.toString());
        }
        return F.textNode(String.valueOf(v));
    }

    /** A schema's type as a person reads it: INT64, STRING, or the logical name. */
    static String typeName(Schema s) {
        if (s == null) {
            return "schemaless";
        }
        if (s.name() != null && (s.name().equals(Timestamp.LOGICAL_NAME) || s.name().equals(Date.LOGICAL_NAME)
                || s.name().equals(Time.LOGICAL_NAME) || s.name().equals(Decimal.LOGICAL_NAME))) {
            return s.name();
        }
        return s.name() == null ? s.type().name() : s.type().name() + " (" + s.name() + ")";
    }
}
