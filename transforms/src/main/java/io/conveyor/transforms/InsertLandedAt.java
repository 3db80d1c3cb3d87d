package io.conveyor.transforms;

import java.time.Clock;
import java.util.Date;
import java.util.HashMap;
import java.util.Map;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.transforms.util.SimpleConfig;

/**
 * Adds {@code landed_at}, the time the sink made the row, to a value that is already a row: what
 * {@link EnvelopeUnwrap} stamps on envelopes, for records that carry no envelope (Debezium's change
 * events after its {@code ExtractNewRecordState}). Kafka's {@code InsertField} can only insert the
 * record's own timestamp, which is when the record was produced, not when it landed.
 *
 * <p>A value that already has the field is refused: overwriting a source column named like ours would
 * lose data silently.
 */
public abstract class InsertLandedAt<R extends ConnectRecord<R>> extends BaseTransformation<R> {

    public static final String OVERVIEW_DOC = "Add a timestamp field holding the time the transform ran "
            + "(when the sink makes the row); tombstones pass through.";

    public static final String FIELD_CONFIG = "field";

    public static final ConfigDef CONFIG_DEF = new ConfigDef()
            .define(FIELD_CONFIG, ConfigDef.Type.STRING, "landed_at", new ConfigDef.NonEmptyString(),
                    ConfigDef.Importance.MEDIUM,
                    "Name of the field to add (a top-level name, not a path); its schema is an optional "
                            + "Connect Timestamp, its value the wall-clock time in UTC.");

    private final Clock clock;
    private String field;
    private SchemaCache<Schema, Schema> schemaCache;

    InsertLandedAt(Clock clock) {
        super(CONFIG_DEF);
        this.clock = clock;
    }

    @Override
    public void configure(Map<String, ?> props) {
        SimpleConfig config = new SimpleConfig(CONFIG_DEF, props);
        field = config.getString(FIELD_CONFIG);
        schemaCache = new SchemaCache<>(16);
    }

    @Override
    public R apply(R record) {
        Object value = record.value();
        if (value == null) {
            return record;
        }
        Date now = new Date(clock.millis());
        if (record.valueSchema() == null) {
            if (!(value instanceof Map)) {
                throw new DataException("InsertLandedAt expected the schemaless record value to be a map but found "
                        + Schemas.describe(value));
            }
            Map<?, ?> map = (Map<?, ?>) value;
            if (map.containsKey(field)) {
                throw new DataException(alreadyThere(record));
            }
            Map<Object, Object> updated = new HashMap<>(map);
            updated.put(field, now);
            return RecordSide.VALUE.newRecord(record, null, updated);
        }
        if (!(value instanceof Struct)) {
            throw new DataException("InsertLandedAt expected the record value to be a struct but found "
                    + Schemas.describe(value));
        }
        Struct struct = (Struct) value;
        Schema updatedSchema = schemaCache.get(struct.schema(), schema -> withField(schema, record));
        Struct updated = new Struct(updatedSchema);
        for (Field f : struct.schema().fields()) {
            updated.put(f.name(), struct.get(f));
        }
        updated.put(field, now);
        return RecordSide.VALUE.newRecord(record, updatedSchema, updated);
    }

    private Schema withField(Schema schema, R record) {
        if (schema.field(field) != null) {
            throw new DataException(alreadyThere(record));
        }
        SchemaBuilder builder = Schemas.structLike(schema);
        for (Field f : schema.fields()) {
            builder.field(f.name(), f.schema());
        }
        builder.field(field, Timestamp.builder().optional().build());
        return builder.build();
    }

    private String alreadyThere(R record) {
        return "InsertLandedAt cannot add field '" + field + "' to a record of topic " + record.topic()
                + ": the value already has a field of that name; set " + FIELD_CONFIG + " to another name";
    }

    @Override
    public void close() {
        schemaCache = null;
    }

    /** Adds the field to the record value. */
    public static class Value<R extends ConnectRecord<R>> extends InsertLandedAt<R> {
        public Value() {
            this(Clock.systemUTC());
        }

        /** For tests: a fixed clock makes the value predictable. */
        Value(Clock clock) {
            super(clock);
        }
    }
}
