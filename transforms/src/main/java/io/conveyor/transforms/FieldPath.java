package io.conveyor.transforms;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;

/**
 * A dotted path to a field inside a record value, such as {@code customer.address.zip}, that works the
 * same way on schemaless maps and on Structs.
 *
 * <p>Names are split on every dot; a field whose own name contains a dot cannot be addressed. That keeps
 * the syntax obvious in connector configs, and none of our envelopes or Snowplow fields use dots.
 *
 * <p>Updates are copy-on-write: only the maps and schemas along the path are rebuilt, everything else is
 * shared, and the input is never modified.
 */
public final class FieldPath {

    /** Returned by a map-update operator to remove the field instead of setting it. */
    public static final Object REMOVE = new Object() {
        @Override
        public String toString() {
            return "REMOVE";
        }
    };

    private final String text;
    private final List<String> segments;

    private FieldPath(String text, List<String> segments) {
        this.text = text;
        this.segments = segments;
    }

    /** Parses {@code a.b.c}; blank input or empty segments ({@code a..b}, {@code .a}) are rejected. */
    public static FieldPath parse(String text) {
        if (text == null || text.isBlank()) {
            throw new IllegalArgumentException("a field path must not be empty");
        }
        String trimmed = text.trim();
        List<String> parts = Arrays.asList(trimmed.split("\\.", -1));
        for (String part : parts) {
            if (part.isEmpty()) {
                throw new IllegalArgumentException("field path '" + trimmed + "' has an empty segment");
            }
        }
        return new FieldPath(trimmed, Collections.unmodifiableList(new ArrayList<>(parts)));
    }

    public static List<FieldPath> parseAll(List<String> texts) {
        List<FieldPath> paths = new ArrayList<>(texts.size());
        for (String text : texts) {
            paths.add(parse(text));
        }
        return paths;
    }

    /** ConfigDef validator for a STRING key holding one path; an empty value is allowed only if optional. */
    public static ConfigDef.Validator validator(boolean optional) {
        return new ConfigDef.Validator() {
            @Override
            public void ensureValid(String name, Object value) {
                if (value == null || value.toString().isEmpty()) {
                    if (!optional) {
                        throw new ConfigException(name, value, "a field path is required");
                    }
                    return;
                }
                check(name, value.toString());
            }

            @Override
            public String toString() {
                return optional ? "empty, or a field path such as a.b.c" : "a field path such as a.b.c";
            }
        };
    }

    /** ConfigDef validator for a LIST key holding zero or more paths. */
    public static ConfigDef.Validator listValidator() {
        return new ConfigDef.Validator() {
            @Override
            public void ensureValid(String name, Object value) {
                if (value == null) {
                    return;
                }
                for (Object item : (List<?>) value) {
                    check(name, String.valueOf(item));
                }
            }

            @Override
            public String toString() {
                return "comma-separated field paths such as a,b.c";
            }
        };
    }

    private static void check(String name, String value) {
        try {
            parse(value);
        } catch (IllegalArgumentException e) {
            throw new ConfigException(name, value, e.getMessage());
        }
    }

    public List<String> segments() {
        return segments;
    }

    public String first() {
        return segments.get(0);
    }

    public String last() {
        return segments.get(segments.size() - 1);
    }

    public boolean isNested() {
        return segments.size() > 1;
    }

    /** The path below the first segment, or null for a single-segment path. */
    public FieldPath tail() {
        if (!isNested()) {
            return null;
        }
        List<String> rest = segments.subList(1, segments.size());
        return new FieldPath(String.join(".", rest), rest);
    }

    /** True when this path equals {@code other} or one is an ancestor of the other. */
    public boolean overlaps(FieldPath other) {
        int common = Math.min(segments.size(), other.segments.size());
        return segments.subList(0, common).equals(other.segments.subList(0, common));
    }

    /** The value at this path in a schemaless value; null when any segment is absent or null. */
    public Object get(Map<?, ?> root) {
        Object current = root;
        for (int i = 0; i < segments.size(); i++) {
            if (current == null) {
                return null;
            }
            if (!(current instanceof Map)) {
                throw notAContainer(i, "a map", current);
            }
            current = ((Map<?, ?>) current).get(segments.get(i));
        }
        return current;
    }

    /** The value at this path in a Struct; null when any segment is absent from the schema or null. */
    public Object get(Struct root) {
        Object current = root;
        for (int i = 0; i < segments.size(); i++) {
            if (current == null) {
                return null;
            }
            if (!(current instanceof Struct)) {
                throw notAContainer(i, "a struct", current);
            }
            Struct struct = (Struct) current;
            if (struct.schema().field(segments.get(i)) == null) {
                return null;
            }
            current = struct.get(segments.get(i));
        }
        return current;
    }

    /** The leaf field of this path in a struct schema, or null when the path is not in the schema. */
    public Field field(Schema root) {
        Schema current = root;
        Field field = null;
        for (int i = 0; i < segments.size(); i++) {
            if (current.type() != Schema.Type.STRUCT) {
                throw notAContainer(i, "a struct schema", current.type());
            }
            field = current.field(segments.get(i));
            if (field == null) {
                return null;
            }
            current = field.schema();
        }
        return field;
    }

    /**
     * A copy of {@code root} with the value at this path replaced by {@code leaf(oldValue)}, or removed when
     * it returns {@link #REMOVE}. Returns {@code root} itself when the path is absent.
     */
    public Map<String, Object> update(Map<String, Object> root, UnaryOperator<Object> leaf) {
        return update(root, 0, leaf);
    }

    @SuppressWarnings("unchecked")
    private Map<String, Object> update(Map<String, Object> map, int depth, UnaryOperator<Object> leaf) {
        String name = segments.get(depth);
        if (!map.containsKey(name)) {
            return map;
        }
        Object current = map.get(name);
        Object replacement;
        if (depth == segments.size() - 1) {
            replacement = leaf.apply(current);
        } else if (current == null) {
            return map;
        } else if (current instanceof Map) {
            replacement = update((Map<String, Object>) current, depth + 1, leaf);
            if (replacement == current) {
                return map;
            }
        } else {
            throw notAContainer(depth + 1, "a map", current);
        }
        Map<String, Object> copy = new LinkedHashMap<>(map);
        if (replacement == REMOVE) {
            copy.remove(name);
        } else {
            copy.put(name, replacement);
        }
        return copy;
    }

    /**
     * A copy of a struct schema with the leaf field's schema replaced by {@code leaf(oldSchema)}, or the field
     * removed when it returns null. Returns {@code root} itself when the path is absent. Untouched field
     * schemas are shared by identity, which {@link Schemas#project} relies on.
     */
    public Schema updateSchema(Schema root, UnaryOperator<Schema> leaf) {
        return updateSchema(root, 0, leaf);
    }

    private Schema updateSchema(Schema schema, int depth, UnaryOperator<Schema> leaf) {
        if (schema.type() != Schema.Type.STRUCT) {
            throw notAContainer(depth, "a struct schema", schema.type());
        }
        String name = segments.get(depth);
        Field target = schema.field(name);
        if (target == null) {
            return schema;
        }
        Schema replacement = depth == segments.size() - 1
                ? leaf.apply(target.schema())
                : updateSchema(target.schema(), depth + 1, leaf);
        if (replacement == target.schema()) {
            return schema;
        }
        SchemaBuilder builder = Schemas.structLike(schema);
        for (Field field : schema.fields()) {
            if (field != target) {
                builder.field(field.name(), field.schema());
            } else if (replacement != null) {
                builder.field(field.name(), replacement);
            }
        }
        return builder.build();
    }

    /**
     * Sets the leaf value in a Struct built by {@link Schemas#project}, where every Struct along a path whose
     * schema changed is a fresh copy. Does nothing when a parent on the path is null or absent.
     */
    void setInProjected(Struct root, Object value) {
        Struct current = root;
        for (String name : segments.subList(0, segments.size() - 1)) {
            if (current.schema().field(name) == null) {
                return;
            }
            current = (Struct) current.getWithoutDefault(name);
            if (current == null) {
                return;
            }
        }
        if (current.schema().field(last()) != null) {
            current.put(last(), value);
        }
    }

    private DataException notAContainer(int depth, String expected, Object found) {
        String prefix = String.join(".", segments.subList(0, depth));
        String where = prefix.isEmpty() ? "the record" : "'" + prefix + "'";
        return new DataException("Cannot follow field path '" + text + "': expected " + where + " to be "
                + expected + " but found " + Schemas.describe(found));
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof FieldPath && ((FieldPath) o).segments.equals(segments);
    }

    @Override
    public int hashCode() {
        return segments.hashCode();
    }

    @Override
    public String toString() {
        return text;
    }
}
