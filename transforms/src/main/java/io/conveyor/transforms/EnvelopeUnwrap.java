package io.conveyor.transforms;

import java.time.Clock;
import java.time.Instant;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Date;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.transforms.field.FieldSyntaxVersion;
import org.apache.kafka.connect.transforms.util.SimpleConfig;

/**
 * Turns a Conveyor envelope into one flat warehouse row: envelope fields become columns, the payload is
 * flattened into columns (and/or kept whole as JSON) and {@code landed_at} records when the row was made,
 * so that delivery latency is {@code landed_at - accepted_at}.
 *
 * <p>Columns cannot hold nested data, so any envelope field or payload part that is still a struct, map or
 * list after flattening becomes a JSON string column. Timestamps arriving as ISO-8601 strings or epoch
 * millis are normalised to one timestamp type, so a table never mixes the two.
 */
public abstract class EnvelopeUnwrap<R extends ConnectRecord<R>> extends BaseTransformation<R> {

    public static final String OVERVIEW_DOC = "Flatten a Conveyor event envelope and its payload into table columns.";

    public static final String PAYLOAD_FIELD_CONFIG = "payload.field";
    public static final String FLATTEN_DEPTH_CONFIG = "payload.flatten.depth";
    public static final String FLATTEN_DELIMITER_CONFIG = "payload.flatten.delimiter";
    public static final String JSON_COLUMN_CONFIG = "payload.json.column";
    public static final String PREFIX_CONFIG = "payload.prefix";
    public static final String TIMESTAMP_FIELDS_CONFIG = "timestamp.fields";
    public static final String REQUIRED_FIELDS_CONFIG = "required.fields";
    public static final String LANDED_AT_CONFIG = "landed_at.column";

    public static final ConfigDef CONFIG_DEF = FieldSyntaxVersion.appendConfigTo(new ConfigDef()
            .define(PAYLOAD_FIELD_CONFIG, ConfigDef.Type.STRING, "payload", FieldPath.validator(false),
                    ConfigDef.Importance.HIGH, "Field path of the payload inside the envelope, read as "
                            + FieldSyntaxVersion.FIELD_SYNTAX_VERSION_CONFIG + " says: with V1 (the default) one "
                            + "top-level field name, with V2 a dotted path such as body.payload.")
            .define(FLATTEN_DEPTH_CONFIG, ConfigDef.Type.INT, 1, ConfigDef.Range.atLeast(0),
                    ConfigDef.Importance.MEDIUM,
                    "How many levels of the payload become columns: 1 makes each top-level payload field a "
                            + "column, 2 also splits nested objects one level down, and so on. Anything deeper "
                            + "(and every list) becomes a JSON string column. 0 makes no payload columns and "
                            + "requires " + JSON_COLUMN_CONFIG + ".")
            .define(FLATTEN_DELIMITER_CONFIG, ConfigDef.Type.STRING, "_", new ConfigDef.NonEmptyString(),
                    ConfigDef.Importance.LOW, "Joins nested payload names into one column name.")
            .define(JSON_COLUMN_CONFIG, ConfigDef.Type.STRING, "", new ConfigDef.NonNullValidator(),
                    ConfigDef.Importance.MEDIUM,
                    "If set, a column of this name holds the whole payload as a JSON string. Empty: off.")
            .define(PREFIX_CONFIG, ConfigDef.Type.STRING, "", new ConfigDef.NonNullValidator(),
                    ConfigDef.Importance.MEDIUM,
                    "Prefix for flattened payload column names, e.g. 'p_'. Use it when payload names clash "
                            + "with envelope columns; a clash is otherwise a DataException.")
            .define(TIMESTAMP_FIELDS_CONFIG, ConfigDef.Type.LIST, "occurred_at,accepted_at",
                    new ConfigDef.NonNullValidator(), ConfigDef.Importance.MEDIUM,
                    "Top-level envelope fields written as timestamps. Each may arrive as an ISO-8601 string "
                            + "with an offset, epoch milliseconds or a timestamp; null stays null.")
            .define(REQUIRED_FIELDS_CONFIG, ConfigDef.Type.LIST, "event_id", new ConfigDef.NonNullValidator(),
                    ConfigDef.Importance.MEDIUM,
                    "Top-level envelope fields that must be present and non-null. event_id is the upsert key "
                            + "of every table, so a row without it would break idempotency.")
            .define(LANDED_AT_CONFIG, ConfigDef.Type.STRING, "landed_at", new ConfigDef.NonEmptyString(),
                    ConfigDef.Importance.LOW, "Column that receives the time the transform ran."));

    /** How one output column takes its value from the envelope, its payload and the landing time. */
    private interface Source {
        Object value(Struct envelope, Struct payload, Date landedAt);
    }

    private record Column(String name, Schema schema, Source source) {
    }

    private record Plan(Schema schema, List<Column> columns) {
    }

    private final Clock clock;
    private FieldPath payloadPath;
    private int depth;
    private String delimiter;
    private String jsonColumn;
    private String prefix;
    private Set<String> timestampFields;
    private List<String> requiredFields;
    private String landedAtColumn;
    private SchemaCache<Schema, Plan> planCache;

    protected EnvelopeUnwrap(Clock clock) {
        super(CONFIG_DEF);
        this.clock = clock;
    }

    @Override
    public void configure(Map<String, ?> props) {
        SimpleConfig config = new SimpleConfig(CONFIG_DEF, props);
        payloadPath = FieldPath.parse(PAYLOAD_FIELD_CONFIG, config.getString(PAYLOAD_FIELD_CONFIG),
                FieldSyntaxVersion.fromConfig(config));
        depth = config.getInt(FLATTEN_DEPTH_CONFIG);
        delimiter = config.getString(FLATTEN_DELIMITER_CONFIG);
        jsonColumn = config.getString(JSON_COLUMN_CONFIG).trim();
        prefix = config.getString(PREFIX_CONFIG);
        timestampFields = new HashSet<>(config.getList(TIMESTAMP_FIELDS_CONFIG));
        requiredFields = config.getList(REQUIRED_FIELDS_CONFIG);
        landedAtColumn = config.getString(LANDED_AT_CONFIG).trim();
        if (depth == 0 && jsonColumn.isEmpty()) {
            throw new ConfigException(FLATTEN_DEPTH_CONFIG, depth, "with no payload columns the payload "
                    + "would be lost; set " + JSON_COLUMN_CONFIG + " or a depth of at least 1");
        }
        planCache = new SchemaCache<>(16);
    }

    @Override
    public R apply(R record) {
        // A tombstone deletes the row keyed by event_id; it has no envelope to unwrap.
        if (record.value() == null) {
            return record;
        }
        Date landedAt = Date.from(clock.instant());
        if (record.valueSchema() == null) {
            if (!(record.value() instanceof Map)) {
                throw new DataException("EnvelopeUnwrap expected a schemaless envelope to be a map but found "
                        + Schemas.describe(record.value()));
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> envelope = (Map<String, Object>) record.value();
            return RecordSide.VALUE.newRecord(record, null, unwrapSchemaless(envelope, landedAt));
        }
        if (!(record.value() instanceof Struct)) {
            throw new DataException("EnvelopeUnwrap expected an envelope with a schema to be a struct but found "
                    + Schemas.describe(record.value()));
        }
        Struct envelope = (Struct) record.value();
        Plan plan = planCache.get(envelope.schema(), this::makePlan);
        return RecordSide.VALUE.newRecord(record, plan.schema(), unwrapWithSchema(envelope, plan, landedAt));
    }

    private Map<String, Object> unwrapSchemaless(Map<String, Object> envelope, Date landedAt) {
        for (String name : requiredFields) {
            if (envelope.get(name) == null) {
                throw missingRequired(name);
            }
        }
        Object payload = payloadPath.get(envelope);
        if (payload instanceof String) {
            payload = Json.parse((String) payload, "EnvelopeUnwrap payload '" + payloadPath + "'");
        }
        if (payload != null && !(payload instanceof Map)) {
            throw new DataException("EnvelopeUnwrap expected payload '" + payloadPath + "' to be a map (a JSON "
                    + "object) but found " + Schemas.describe(payload));
        }
        Map<String, Object> row = new LinkedHashMap<>();
        Map<String, Object> rest = payloadPath.update(envelope, old -> FieldPath.REMOVE);
        for (Map.Entry<String, Object> entry : rest.entrySet()) {
            String name = entry.getKey();
            Object value = entry.getValue();
            if (timestampFields.contains(name)) {
                value = toTimestamp(value, name);
            } else if (value instanceof Map || value instanceof List) {
                value = Json.write(value);
            }
            row.put(name, value);
        }
        if (payload != null && depth > 0) {
            flattenSchemaless((Map<?, ?>) payload, prefix, 1, row);
        }
        if (!jsonColumn.isEmpty()) {
            putNew(row, jsonColumn, payload == null ? null : Json.write(payload));
        }
        putNew(row, landedAtColumn, landedAt);
        return row;
    }

    private void flattenSchemaless(Map<?, ?> map, String namePrefix, int level, Map<String, Object> row) {
        for (Map.Entry<?, ?> entry : map.entrySet()) {
            String column = namePrefix + entry.getKey();
            Object value = entry.getValue();
            if (value instanceof Map && level < depth) {
                flattenSchemaless((Map<?, ?>) value, column + delimiter, level + 1, row);
            } else {
                putNew(row, column, value instanceof Map || value instanceof List ? Json.write(value) : value);
            }
        }
    }

    private static void putNew(Map<String, Object> row, String column, Object value) {
        if (row.containsKey(column)) {
            throw clash(column);
        }
        row.put(column, value);
    }

    private Struct unwrapWithSchema(Struct envelope, Plan plan, Date landedAt) {
        for (String name : requiredFields) {
            if (envelope.get(name) == null) {
                throw missingRequired(name);
            }
        }
        // makePlan() already checked that the payload, if present in the schema, is a struct.
        Struct payload = (Struct) payloadPath.get(envelope);
        Struct row = new Struct(plan.schema());
        for (Column column : plan.columns()) {
            row.put(column.name(), column.source().value(envelope, payload, landedAt));
        }
        return row;
    }

    private Plan makePlan(Schema schema) {
        for (String name : requiredFields) {
            if (schema.field(name) == null) {
                throw new DataException("EnvelopeUnwrap requires envelope field '" + name
                        + "' but the record schema has no such field");
            }
        }
        List<Column> columns = new ArrayList<>();
        Schema rest = payloadPath.updateSchema(schema, old -> null);
        for (Field field : rest.fields()) {
            columns.add(envelopeColumn(field));
        }
        Field payloadField = payloadPath.field(schema);
        if (payloadField != null && payloadField.schema().type() != Schema.Type.STRUCT) {
            throw new DataException("EnvelopeUnwrap expected payload '" + payloadPath + "' to be a struct but "
                    + "its schema is " + payloadField.schema().type() + "; a JSON-string payload can only be "
                    + "unwrapped from schemaless records");
        }
        if (payloadField != null && depth > 0) {
            flattenSchema(payloadField.schema(), prefix, new ArrayList<>(), columns);
        }
        if (!jsonColumn.isEmpty()) {
            columns.add(new Column(jsonColumn, SchemaBuilder.string().optional().build(),
                    (envelope, payload, landedAt) -> payload == null ? null : Json.write(payload)));
        }
        columns.add(new Column(landedAtColumn, Timestamp.SCHEMA, (envelope, payload, landedAt) -> landedAt));

        SchemaBuilder builder = SchemaBuilder.struct();
        Set<String> seen = new HashSet<>();
        for (Column column : columns) {
            if (!seen.add(column.name())) {
                throw clash(column.name());
            }
            builder.field(column.name(), column.schema());
        }
        return new Plan(builder.build(), columns);
    }

    private Column envelopeColumn(Field field) {
        String name = field.name();
        if (timestampFields.contains(name)) {
            Schema.Type type = field.schema().type();
            if (type != Schema.Type.INT64 && type != Schema.Type.STRING) {
                throw new DataException("EnvelopeUnwrap expected timestamp field '" + name + "' to be a string "
                        + "or int64 (millis) but its schema is " + type);
            }
            return new Column(name, Timestamp.builder().optional().build(),
                    (envelope, payload, landedAt) -> toTimestamp(envelope.get(name), name));
        }
        if (Schemas.isContainer(field.schema())) {
            // The field that held a nested payload path is kept, minus the payload itself. This walks our own
            // steps: Kafka's SingleFieldPath can only read along a path, not remove what is at its end.
            boolean holdsPayload = payloadPath.isNested() && name.equals(payloadPath.first());
            return new Column(name, SchemaBuilder.string().optional().build(), (envelope, payload, landedAt) -> {
                Object value = envelope.get(name);
                if (value == null) {
                    return null;
                }
                Object plain = Json.toPlain(value);
                if (holdsPayload && plain instanceof Map) {
                    @SuppressWarnings("unchecked")
                    Map<String, Object> map = (Map<String, Object>) plain;
                    plain = payloadPath.updateBelowFirst(map, old -> FieldPath.REMOVE);
                }
                return Json.write(plain);
            });
        }
        return new Column(name, field.schema(), (envelope, payload, landedAt) -> envelope.get(name));
    }

    private void flattenSchema(Schema schema, String namePrefix, List<String> parents, List<Column> columns) {
        for (Field field : schema.fields()) {
            String column = namePrefix + field.name();
            List<String> names = new ArrayList<>(parents);
            names.add(field.name());
            if (field.schema().type() == Schema.Type.STRUCT && names.size() < depth) {
                flattenSchema(field.schema(), column + delimiter, names, columns);
            } else if (Schemas.isContainer(field.schema())) {
                columns.add(new Column(column, SchemaBuilder.string().optional().build(),
                        (envelope, payload, landedAt) -> {
                            Object value = valueAt(payload, names);
                            return value == null ? null : Json.write(value);
                        }));
            } else {
                // Optional: the payload (or a parent struct) may be null, and then so is the column.
                columns.add(new Column(column, Schemas.optional(field.schema()),
                        (envelope, payload, landedAt) -> valueAt(payload, names)));
            }
        }
    }

    private static Object valueAt(Struct payload, List<String> names) {
        Object current = payload;
        for (String name : names) {
            if (current == null) {
                return null;
            }
            current = ((Struct) current).get(name);
        }
        return current;
    }

    static Date toTimestamp(Object value, String name) {
        if (value == null || value instanceof Date) {
            return (Date) value;
        }
        if (value instanceof Long || value instanceof Integer) {
            return new Date(((Number) value).longValue());
        }
        if (value instanceof String) {
            try {
                // Requires an offset: a zone-less time would silently be read as UTC.
                return Date.from(Instant.from(DateTimeFormatter.ISO_OFFSET_DATE_TIME.parse((String) value)));
            } catch (DateTimeParseException e) {
                throw new DataException("EnvelopeUnwrap could not read envelope field '" + name + "' as an "
                        + "ISO-8601 timestamp with an offset (e.g. 2024-05-01T12:00:00Z): " + e.getMessage());
            }
        }
        throw new DataException("EnvelopeUnwrap expected envelope field '" + name + "' to be an ISO-8601 string "
                + "or epoch millis but found " + Schemas.describe(value));
    }

    private static DataException missingRequired(String name) {
        return new DataException("EnvelopeUnwrap found no value for required envelope field '" + name + "'");
    }

    private static DataException clash(String column) {
        return new DataException("EnvelopeUnwrap would write column '" + column + "' twice (an envelope field, "
                + "a payload field or the landed_at/JSON column share that name); set " + PREFIX_CONFIG
                + " to tell them apart");
    }

    @Override
    public void close() {
        planCache = null;
    }

    /** Unwraps the envelope in the record value. */
    public static class Value<R extends ConnectRecord<R>> extends EnvelopeUnwrap<R> {
        public Value() {
            this(Clock.systemUTC());
        }

        /** For tests: a fixed clock makes landed_at predictable. */
        Value(Clock clock) {
            super(clock);
        }
    }
}
