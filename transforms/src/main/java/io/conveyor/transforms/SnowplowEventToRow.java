package io.conveyor.transforms;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.transforms.field.FieldSyntaxVersion;
import org.apache.kafka.connect.transforms.util.SimpleConfig;

/**
 * Lays out a Snowplow enriched event the way Snowplow's Snowflake and BigQuery loaders do: the
 * self-describing event becomes a column {@code unstruct_event_<vendor>_<name>_<model>} and each entity
 * schema a column {@code contexts_<vendor>_<name>_<model>} holding the list of that schema's data objects.
 * Analysts' queries written against those loaders then work unchanged on our tables.
 *
 * <p>Columns exist only for the schemas a record carries, so with-schema records get a per-record
 * output schema; sinks that evolve tables (the JDBC sink's schema.evolution=basic) add columns as new
 * schemas appear.
 */
public abstract class SnowplowEventToRow<R extends ConnectRecord<R>> extends BaseTransformation<R> {

    public static final String OVERVIEW_DOC = "Turn Snowplow unstruct_event and contexts into loader-style columns.";

    public static final String UNSTRUCT_FIELD_CONFIG = "unstruct.field";
    public static final String CONTEXTS_FIELD_CONFIG = "contexts.field";
    public static final String DERIVED_CONTEXTS_FIELD_CONFIG = "derived_contexts.field";
    public static final String OUTPUT_FORMAT_CONFIG = "output.format";
    public static final String FORMAT_JSON = "json";
    public static final String FORMAT_MAP = "map";

    static final String UNSTRUCT_PREFIX = "unstruct_event_";
    static final String CONTEXTS_PREFIX = "contexts_";

    private static final Pattern IGLU_URI = Pattern.compile(
            "^iglu:([a-zA-Z0-9_.-]+)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/([0-9]+)-([0-9]+)-([0-9]+)$");
    private static final String SNOWPLOW_VENDOR = "com.snowplowanalytics.snowplow";

    public static final ConfigDef CONFIG_DEF = FieldSyntaxVersion.appendConfigTo(new ConfigDef()
            .define(UNSTRUCT_FIELD_CONFIG, ConfigDef.Type.STRING, "unstruct_event", FieldPath.validator(true),
                    ConfigDef.Importance.HIGH,
                    "Field path of the self-describing event (JSON string or map). Empty: not read.")
            .define(CONTEXTS_FIELD_CONFIG, ConfigDef.Type.STRING, "contexts", FieldPath.validator(true),
                    ConfigDef.Importance.HIGH,
                    "Field path of the entities array (JSON string, list, or the contexts wrapper). Empty: not read.")
            .define(DERIVED_CONTEXTS_FIELD_CONFIG, ConfigDef.Type.STRING, "derived_contexts",
                    FieldPath.validator(true), ConfigDef.Importance.MEDIUM,
                    "Field path of the entities added by enrichment; merged into the same contexts_ columns, "
                            + "as Snowplow's loaders do. Empty: not read.")
            .define(OUTPUT_FORMAT_CONFIG, ConfigDef.Type.STRING, FORMAT_JSON,
                    ConfigDef.ValidString.in(FORMAT_JSON, FORMAT_MAP), ConfigDef.Importance.MEDIUM,
                    "'json': columns hold JSON strings (works with every sink). 'map': columns hold the parsed "
                            + "object or list (schemaless records only)."));

    private record SchemaKey(Schema input, List<String> columns) {
    }

    private List<FieldPath> sourcePaths;
    private FieldPath unstructPath;
    private List<FieldPath> contextPaths;
    private boolean asJson;
    private SchemaCache<SchemaKey, Schema> schemaUpdateCache;

    SnowplowEventToRow() {
        super(CONFIG_DEF);
    }

    @Override
    public void configure(Map<String, ?> props) {
        SimpleConfig config = new SimpleConfig(CONFIG_DEF, props);
        FieldSyntaxVersion syntax = FieldSyntaxVersion.fromConfig(config);
        String unstruct = config.getString(UNSTRUCT_FIELD_CONFIG);
        unstructPath = unstruct.isEmpty() ? null : FieldPath.parse(UNSTRUCT_FIELD_CONFIG, unstruct, syntax);
        contextPaths = new ArrayList<>();
        for (String key : List.of(CONTEXTS_FIELD_CONFIG, DERIVED_CONTEXTS_FIELD_CONFIG)) {
            String text = config.getString(key);
            if (!text.isEmpty()) {
                contextPaths.add(FieldPath.parse(key, text, syntax));
            }
        }
        sourcePaths = new ArrayList<>(contextPaths);
        if (unstructPath != null) {
            sourcePaths.add(0, unstructPath);
        }
        if (sourcePaths.isEmpty()) {
            throw new ConfigException("SnowplowEventToRow has nothing to read: set " + UNSTRUCT_FIELD_CONFIG
                    + ", " + CONTEXTS_FIELD_CONFIG + " or " + DERIVED_CONTEXTS_FIELD_CONFIG);
        }
        for (int i = 0; i < sourcePaths.size(); i++) {
            for (int j = i + 1; j < sourcePaths.size(); j++) {
                if (sourcePaths.get(i).overlaps(sourcePaths.get(j))) {
                    throw new ConfigException("SnowplowEventToRow input fields '" + sourcePaths.get(i)
                            + "' and '" + sourcePaths.get(j) + "' overlap");
                }
            }
        }
        asJson = FORMAT_JSON.equals(config.getString(OUTPUT_FORMAT_CONFIG));
        schemaUpdateCache = new SchemaCache<>(64);
    }

    @Override
    public R apply(R record) {
        Object value = record.value();
        if (value == null) {
            return record;
        }
        if (record.valueSchema() == null) {
            if (!(value instanceof Map)) {
                throw new DataException("SnowplowEventToRow expected a schemaless event to be a map but found "
                        + Schemas.describe(value));
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> event = (Map<String, Object>) value;
            return RecordSide.VALUE.newRecord(record, null, applySchemaless(event));
        }
        if (!(value instanceof Struct)) {
            throw new DataException("SnowplowEventToRow expected an event with a schema to be a struct but found "
                    + Schemas.describe(value));
        }
        if (!asJson) {
            throw new DataException("SnowplowEventToRow cannot use " + OUTPUT_FORMAT_CONFIG + "=" + FORMAT_MAP
                    + " on a record with a schema: the columns would have no schema; use " + FORMAT_JSON);
        }
        return applyWithSchema(record, (Struct) value);
    }

    private Map<String, Object> applySchemaless(Map<String, Object> event) {
        SortedMap<String, Object> columns = new TreeMap<>();
        if (unstructPath != null) {
            addUnstruct(unstructPath.get(event), columns);
        }
        for (FieldPath path : contextPaths) {
            addContexts(path.get(event), path, columns);
        }
        Map<String, Object> row = event;
        for (FieldPath path : sourcePaths) {
            row = path.update(row, old -> FieldPath.REMOVE);
        }
        if (row == event) {
            row = new LinkedHashMap<>(event);
        }
        for (Map.Entry<String, Object> column : columns.entrySet()) {
            if (row.containsKey(column.getKey())) {
                throw clash(column.getKey());
            }
            row.put(column.getKey(), asJson ? Json.write(column.getValue()) : column.getValue());
        }
        return row;
    }

    private R applyWithSchema(R record, Struct event) {
        SortedMap<String, Object> columns = new TreeMap<>();
        if (unstructPath != null) {
            addUnstruct(stringField(event, unstructPath), columns);
        }
        for (FieldPath path : contextPaths) {
            addContexts(stringField(event, path), path, columns);
        }
        SchemaKey key = new SchemaKey(event.schema(), List.copyOf(columns.keySet()));
        Schema updatedSchema = schemaUpdateCache.get(key, this::makeUpdatedSchema);
        Struct row = Schemas.project(event, updatedSchema);
        for (Map.Entry<String, Object> column : columns.entrySet()) {
            row.put(column.getKey(), Json.write(column.getValue()));
        }
        return RecordSide.VALUE.newRecord(record, updatedSchema, row);
    }

    private static Object stringField(Struct event, FieldPath path) {
        Field field = path.field(event.schema());
        if (field == null) {
            return null;
        }
        if (field.schema().type() != Schema.Type.STRING) {
            throw new DataException("SnowplowEventToRow expected field '" + path + "' to be a JSON string but its "
                    + "schema is " + field.schema().type());
        }
        return path.get(event);
    }

    private Schema makeUpdatedSchema(SchemaKey key) {
        Schema base = key.input();
        for (FieldPath path : sourcePaths) {
            base = path.updateSchema(base, old -> null);
        }
        SchemaBuilder builder = Schemas.structLike(base);
        for (Field field : base.fields()) {
            builder.field(field.name(), field.schema());
        }
        for (String column : key.columns()) {
            if (base.field(column) != null) {
                throw clash(column);
            }
            builder.field(column, SchemaBuilder.string().optional().build());
        }
        return builder.build();
    }

    private void addUnstruct(Object raw, Map<String, Object> columns) {
        String what = "unstruct_event field '" + unstructPath + "'";
        Map<?, ?> sdj = selfDescribing(parseIfString(raw, what), what);
        if (sdj == null) {
            return;
        }
        IgluUri uri = IgluUri.parse(sdj.get("schema"), what);
        // The enriched event wraps the real event in Snowplow's own unstruct_event schema.
        if (uri.isSnowplow("unstruct_event")) {
            sdj = selfDescribing(sdj.get("data"), what + " (inside the unstruct_event wrapper)");
            if (sdj == null) {
                return;
            }
            uri = IgluUri.parse(sdj.get("schema"), what);
        }
        columns.put(UNSTRUCT_PREFIX + uri.columnSuffix(), sdj.get("data"));
    }

    @SuppressWarnings("unchecked")
    private void addContexts(Object raw, FieldPath path, Map<String, Object> columns) {
        String what = "contexts field '" + path + "'";
        Object parsed = parseIfString(raw, what);
        if (parsed instanceof Map) {
            Map<?, ?> wrapper = (Map<?, ?>) parsed;
            if (!IgluUri.parse(wrapper.get("schema"), what).isSnowplow("contexts")) {
                throw new DataException("SnowplowEventToRow expected " + what + " to be a list of entities or "
                        + "the contexts wrapper but found schema " + wrapper.get("schema"));
            }
            parsed = wrapper.get("data");
        }
        if (parsed == null) {
            return;
        }
        if (!(parsed instanceof List)) {
            throw new DataException("SnowplowEventToRow expected " + what + " to hold a list of entities but "
                    + "found " + Schemas.describe(parsed));
        }
        for (Object item : (List<?>) parsed) {
            Map<?, ?> entity = selfDescribing(item, "an entity in " + what);
            if (entity == null) {
                throw new DataException("SnowplowEventToRow found a null entity in " + what);
            }
            String column = CONTEXTS_PREFIX + IgluUri.parse(entity.get("schema"), what).columnSuffix();
            ((List<Object>) columns.computeIfAbsent(column, c -> new ArrayList<>())).add(entity.get("data"));
        }
    }

    private static Object parseIfString(Object raw, String what) {
        if (raw instanceof String) {
            String text = (String) raw;
            return text.isBlank() ? null : Json.parse(text, "SnowplowEventToRow " + what);
        }
        return raw;
    }

    /** The value as a {"schema": ..., "data": ...} map, or null if it is null. */
    private static Map<?, ?> selfDescribing(Object value, String what) {
        if (value == null) {
            return null;
        }
        if (!(value instanceof Map) || !((Map<?, ?>) value).containsKey("schema")
                || !((Map<?, ?>) value).containsKey("data")) {
            throw new DataException("SnowplowEventToRow expected " + what + " to be a self-describing JSON "
                    + "object with 'schema' and 'data' but found " + Schemas.describe(value));
        }
        return (Map<?, ?>) value;
    }

    private static DataException clash(String column) {
        return new DataException("SnowplowEventToRow would add column '" + column + "' but the event already has "
                + "a field of that name");
    }

    /** An Iglu schema URI: iglu:vendor/name/format/model-revision-addition. */
    record IgluUri(String vendor, String name, int model) {

        static IgluUri parse(Object schema, String what) {
            Matcher m = schema instanceof String ? IGLU_URI.matcher((String) schema) : null;
            if (m == null || !m.matches()) {
                throw new DataException("SnowplowEventToRow expected an Iglu URI like "
                        + "iglu:com.acme/checkout/jsonschema/1-0-0 as the schema of " + what + " but found "
                        + (schema instanceof String ? "'" + schema + "'" : Schemas.describe(schema)));
            }
            return new IgluUri(m.group(1), m.group(2), Integer.parseInt(m.group(4)));
        }

        boolean isSnowplow(String schemaName) {
            return SNOWPLOW_VENDOR.equals(vendor) && schemaName.equals(name);
        }

        /** {@code com.acme/addToBasket} model 1 becomes {@code com_acme_add_to_basket_1}, as the loaders name it. */
        String columnSuffix() {
            return snakeCase(vendor) + "_" + snakeCase(name) + "_" + model;
        }

        static String snakeCase(String text) {
            return text.replaceAll("([A-Z]+)([A-Z][a-z])", "$1_$2")
                    .replaceAll("([a-z\\d])([A-Z])", "$1_$2")
                    .replaceAll("[.\\-]", "_")
                    .toLowerCase(Locale.ROOT);
        }
    }

    @Override
    public void close() {
        schemaUpdateCache = null;
    }

    /** Reads the Snowplow event from the record value. */
    public static class Value<R extends ConnectRecord<R>> extends SnowplowEventToRow<R> {
    }
}
