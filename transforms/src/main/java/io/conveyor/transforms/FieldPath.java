package io.conveyor.transforms;

import java.util.ArrayList;
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
import org.apache.kafka.connect.transforms.field.FieldSyntaxVersion;
import org.apache.kafka.connect.transforms.field.SingleFieldPath;

/**
 * A path to a field inside a record value, in the syntax of Kafka's own transforms (KIP-821): with
 * {@code field.syntax.version=V1} the whole string is one top-level field name; with {@code V2}, dots
 * separate nested names and a name containing dots is wrapped in backticks ({@code `a.b`.c}).
 *
 * <p>Reading a value or a field schema is delegated to Kafka's {@link SingleFieldPath}, so a path means
 * exactly what it means in {@code ExtractField}. Kafka offers no way to write along a path (and does not
 * expose the steps it parsed), so the copy-on-write updates below walk our own copy of the steps, split
 * by {@link #splitV2}, which follows Kafka's parser step for step; a test checks that both agree.
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

    private static final char BACKTICK = '`';
    private static final char DOT = '.';
    private static final char BACKSLASH = '\\';

    private final String text;
    private final FieldSyntaxVersion version;
    private final List<String> segments;
    private final SingleFieldPath reader;

    private FieldPath(String text, FieldSyntaxVersion version, List<String> segments, SingleFieldPath reader) {
        this.text = text;
        this.version = version;
        this.segments = segments;
        this.reader = reader;
    }

    /**
     * Parses the value of config {@code key}. Empty paths, and under V2 empty names ({@code a..b},
     * {@code .a}, {@code a.}) and unclosed backticks, are a {@link ConfigException} naming the key.
     */
    public static FieldPath parse(String key, String text, FieldSyntaxVersion version) {
        if (text == null || text.isEmpty()) {
            throw new ConfigException(key, text, "a field path must not be empty");
        }
        SingleFieldPath reader;
        List<String> segments;
        try {
            reader = new SingleFieldPath(text, version);
            segments = version == FieldSyntaxVersion.V1 ? List.of(text) : splitV2(text);
        } catch (ConfigException e) {
            // Kafka's message says what is wrong with the backticks but not which setting holds them.
            throw new ConfigException(key, text, e.getMessage());
        }
        if (segments.contains("")) {
            // Kafka accepts an empty name and then never finds it; a path that can never match is a typo.
            throw new ConfigException(key, text, "the path has an empty field name (" + FieldSyntaxVersion
                    .FIELD_SYNTAX_VERSION_CONFIG + "=V2 splits on every dot outside backticks; wrap a name "
                    + "that contains dots in backticks, e.g. `a.b`.c)");
        }
        return new FieldPath(text, version, segments, reader);
    }

    public static List<FieldPath> parseAll(String key, List<String> texts, FieldSyntaxVersion version) {
        List<FieldPath> paths = new ArrayList<>(texts.size());
        for (String text : texts) {
            paths.add(parse(key, text, version));
        }
        return paths;
    }

    /**
     * The steps of a V2 path, split exactly as {@link SingleFieldPath} splits them (same loop as its
     * private {@code buildFieldPathV2}): a backtick opens a quoted name at the start of a step, and only a
     * backtick followed by a dot or the end (and not preceded by a backslash) closes it.
     */
    static List<String> splitV2(String path) {
        List<String> steps = new ArrayList<>();
        int idx = 0;
        while (idx < path.length() && idx >= 0) {
            if (path.charAt(idx) != BACKTICK) {
                int start = idx;
                idx = path.indexOf(DOT, idx);
                if (idx >= 0) {
                    steps.add(path.substring(start, idx));
                    idx++;
                } else {
                    steps.add(path.substring(start));
                }
            } else {
                int backtickAt = idx;
                idx++;
                StringBuilder field = new StringBuilder();
                int start = idx;
                while (true) {
                    idx = path.indexOf(BACKTICK, idx);
                    if (idx == -1) {
                        throw incompleteBacktickPair(path, backtickAt);
                    }
                    boolean escaped = path.charAt(idx - 1) == BACKSLASH;
                    if (idx >= path.length() - 1) {
                        if (escaped) {
                            throw incompleteBacktickPair(path, backtickAt);
                        }
                        field.append(path, start, idx);
                        steps.add(field.toString());
                        idx++;
                        break;
                    }
                    if (path.charAt(idx + 1) != DOT) {
                        idx++;
                        continue;
                    }
                    if (escaped) {
                        field.append(path, start, idx - 1).append(BACKTICK);
                        idx++;
                        start = idx;
                        continue;
                    }
                    field.append(path, start, idx);
                    steps.add(field.toString());
                    idx += 2;
                    break;
                }
            }
        }
        if (!path.isEmpty() && path.charAt(path.length() - 1) == DOT) {
            steps.add("");
        }
        return List.copyOf(steps);
    }

    private static ConfigException incompleteBacktickPair(String path, int backtickAt) {
        return new ConfigException("Incomplete backtick pair in path: [" + path + "], consider adding a "
                + "backslash before backtick at position " + backtickAt + " to escape it");
    }

    /**
     * ConfigDef validator for a STRING key holding one path. Whether a path is well formed depends on
     * {@code field.syntax.version}, which a per-key validator cannot see; that check runs in configure().
     */
    public static ConfigDef.Validator validator(boolean optional) {
        return new ConfigDef.Validator() {
            @Override
            public void ensureValid(String name, Object value) {
                if (!optional && (value == null || value.toString().isEmpty())) {
                    throw new ConfigException(name, value, "a field path is required");
                }
            }

            @Override
            public String toString() {
                return (optional ? "empty, or a field path" : "a field path")
                        + " (a name, or with field.syntax.version=V2 a dotted path a.b.c)";
            }
        };
    }

    /** ConfigDef validator for a LIST key holding zero or more paths; none may be empty. */
    public static ConfigDef.Validator listValidator() {
        return new ConfigDef.Validator() {
            @Override
            public void ensureValid(String name, Object value) {
                if (value == null) {
                    return;
                }
                for (Object item : (List<?>) value) {
                    if (item == null || item.toString().isEmpty()) {
                        throw new ConfigException(name, value, "a field path in the list is empty");
                    }
                }
            }

            @Override
            public String toString() {
                return "comma-separated field paths (names, or with field.syntax.version=V2 dotted paths)";
            }
        };
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

    /** True when this path equals {@code other} or one is an ancestor of the other. */
    public boolean overlaps(FieldPath other) {
        int common = Math.min(segments.size(), other.segments.size());
        return segments.subList(0, common).equals(other.segments.subList(0, common));
    }

    /** The value at this path in a schemaless value; null when any step is absent or null. */
    @SuppressWarnings("unchecked")
    public Object get(Map<?, ?> root) {
        try {
            return reader.valueFrom((Map<String, Object>) root);
        } catch (DataException e) {
            throw cannotFollow(e);
        }
    }

    /** The value at this path in a Struct; null when any step is absent from the schema or null. */
    public Object get(Struct root) {
        try {
            return reader.valueFrom(root);
        } catch (DataException e) {
            throw cannotFollow(e);
        }
    }

    /** The leaf field of this path in a struct schema, or null when the path is not in the schema. */
    public Field field(Schema root) {
        try {
            return reader.fieldFrom(root);
        } catch (DataException e) {
            throw cannotFollow(e);
        }
    }

    /**
     * A copy of {@code root} with the value at this path replaced by {@code leaf(oldValue)}, or removed when
     * it returns {@link #REMOVE}. Returns {@code root} itself when the path is absent.
     */
    public Map<String, Object> update(Map<String, Object> root, UnaryOperator<Object> leaf) {
        return update(root, 0, leaf);
    }

    /**
     * Like {@link #update} on the value of the first step: {@code inner} is what the first step holds, and
     * the rest of the path is applied inside it. For a single-step path, returns {@code inner} unchanged.
     */
    public Map<String, Object> updateBelowFirst(Map<String, Object> inner, UnaryOperator<Object> leaf) {
        return isNested() ? update(inner, 1, leaf) : inner;
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

    private DataException cannotFollow(DataException cause) {
        return new DataException("Cannot follow field path '" + text + "' (" + FieldSyntaxVersion
                .FIELD_SYNTAX_VERSION_CONFIG + "=" + version + "): " + cause.getMessage(), cause);
    }

    private DataException notAContainer(int depth, String expected, Object found) {
        List<String> prefix = segments.subList(0, depth);
        String where = prefix.isEmpty() ? "the record" : "field " + prefix;
        return new DataException("Cannot follow field path '" + text + "' (" + FieldSyntaxVersion
                .FIELD_SYNTAX_VERSION_CONFIG + "=" + version + "): expected " + where + " to be " + expected
                + " but found " + Schemas.describe(found));
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
