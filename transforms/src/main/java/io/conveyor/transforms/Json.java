package io.conveyor.transforms;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;

/** JSON text for columns that hold nested data, and parsing of JSON that arrives as strings. */
final class Json {

    // Thread-safe once configured, and costly to build: one per plugin. Keys are sorted so that equal
    // content always gives equal text: hashes of it match and column diffs between pipelines stay quiet.
    private static final ObjectMapper MAPPER = new ObjectMapper()
            .configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true);

    private Json() {
    }

    /**
     * Converts Connect data to plain maps, lists and scalars that serialize predictably: timestamps become
     * ISO-8601 UTC strings (not epoch numbers a reader has to guess the unit of), bytes become base64.
     */
    static Object toPlain(Object value) {
        if (value instanceof Struct) {
            Struct struct = (Struct) value;
            Map<String, Object> map = new LinkedHashMap<>();
            for (Field field : struct.schema().fields()) {
                map.put(field.name(), toPlain(struct.getWithoutDefault(field.name())));
            }
            return map;
        }
        if (value instanceof Map) {
            Map<String, Object> map = new LinkedHashMap<>();
            for (Map.Entry<?, ?> entry : ((Map<?, ?>) value).entrySet()) {
                map.put(String.valueOf(entry.getKey()), toPlain(entry.getValue()));
            }
            return map;
        }
        if (value instanceof Collection) {
            List<Object> list = new ArrayList<>();
            for (Object item : (Collection<?>) value) {
                list.add(toPlain(item));
            }
            return list;
        }
        if (value instanceof Date) {
            return ((Date) value).toInstant().toString();
        }
        if (value instanceof byte[]) {
            return Base64.getEncoder().encodeToString((byte[]) value);
        }
        if (value instanceof ByteBuffer) {
            ByteBuffer buffer = ((ByteBuffer) value).duplicate();
            byte[] bytes = new byte[buffer.remaining()];
            buffer.get(bytes);
            return Base64.getEncoder().encodeToString(bytes);
        }
        return value;
    }

    static String write(Object value) {
        try {
            return MAPPER.writeValueAsString(toPlain(value));
        } catch (JsonProcessingException e) {
            throw new DataException("Cannot write a value as JSON: " + e.getOriginalMessage(), e);
        }
    }

    /** Parses JSON text; {@code what} names the field in the error, the text itself is never echoed. */
    static Object parse(String text, String what) {
        try {
            return MAPPER.readValue(text, Object.class);
        } catch (JsonProcessingException e) {
            throw new DataException(what + " is not valid JSON: " + e.getOriginalMessage(), e);
        }
    }
}
