package io.conveyor.transforms;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.ArrayList;
import java.util.Date;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.config.types.Password;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.transforms.field.FieldSyntaxVersion;
import org.apache.kafka.connect.transforms.util.SimpleConfig;

/**
 * Drops, nulls or pseudonymises (HMAC-SHA-256) fields before they reach a table.
 *
 * <p>Hashing is keyed so that the same customer id always maps to the same token, which keeps joins
 * working, while nobody without the key can rebuild the original by hashing guesses.
 */
public abstract class MaskFields<R extends ConnectRecord<R>> extends BaseTransformation<R> {

    public static final String OVERVIEW_DOC = "Drop, null or HMAC-hash fields (nested paths a.b.c with field.syntax.version=V2).";

    public static final String DROP_FIELDS_CONFIG = "drop.fields";
    public static final String NULL_FIELDS_CONFIG = "null.fields";
    public static final String HASH_FIELDS_CONFIG = "hash.fields";
    public static final String HASH_KEY_CONFIG = "hash.key";

    private static final String HMAC = "HmacSHA256";

    public static final ConfigDef CONFIG_DEF = FieldSyntaxVersion.appendConfigTo(new ConfigDef()
            .define(DROP_FIELDS_CONFIG, ConfigDef.Type.LIST, "", FieldPath.listValidator(),
                    ConfigDef.Importance.HIGH,
                    "Field paths to remove from the record (and from its schema).")
            .define(NULL_FIELDS_CONFIG, ConfigDef.Type.LIST, "", FieldPath.listValidator(),
                    ConfigDef.Importance.HIGH,
                    "Field paths whose values are replaced by null; their schema becomes optional.")
            .define(HASH_FIELDS_CONFIG, ConfigDef.Type.LIST, "", FieldPath.listValidator(),
                    ConfigDef.Importance.HIGH,
                    "Field paths replaced by the lowercase hex HMAC-SHA-256 of their string form (structs and "
                            + "maps as JSON, bytes as is); their schema becomes optional string. Nulls stay null.")
            .define(HASH_KEY_CONFIG, ConfigDef.Type.PASSWORD, "", ConfigDef.Importance.HIGH,
                    "Secret key for " + HASH_FIELDS_CONFIG + "; required when any are set. Never write it in "
                            + "clear: supply it through a worker config provider, e.g. ${env:MASK_KEY} or "
                            + "${file:/etc/conveyor/secrets.properties:mask.key}. Rotating it changes every token."));

    private final RecordSide side;
    private List<FieldPath> dropPaths;
    private List<FieldPath> nullPaths;
    private List<FieldPath> hashPaths;
    private byte[] hashKey;
    // Mac is not thread-safe. Connect gives each task its own instance, but the interface does not promise
    // single-threaded use, and a per-thread Mac costs nothing on the usual single thread.
    private ThreadLocal<Mac> mac;
    private SchemaCache<Schema, Schema> schemaUpdateCache;

    MaskFields(RecordSide side) {
        super(CONFIG_DEF);
        this.side = side;
    }

    @Override
    public void configure(Map<String, ?> props) {
        SimpleConfig config = new SimpleConfig(CONFIG_DEF, props);
        FieldSyntaxVersion syntax = FieldSyntaxVersion.fromConfig(config);
        dropPaths = FieldPath.parseAll(DROP_FIELDS_CONFIG, config.getList(DROP_FIELDS_CONFIG), syntax);
        nullPaths = FieldPath.parseAll(NULL_FIELDS_CONFIG, config.getList(NULL_FIELDS_CONFIG), syntax);
        hashPaths = FieldPath.parseAll(HASH_FIELDS_CONFIG, config.getList(HASH_FIELDS_CONFIG), syntax);
        if (dropPaths.isEmpty() && nullPaths.isEmpty() && hashPaths.isEmpty()) {
            throw new ConfigException("MaskFields has nothing to do: set at least one of " + DROP_FIELDS_CONFIG
                    + ", " + NULL_FIELDS_CONFIG + ", " + HASH_FIELDS_CONFIG);
        }
        rejectOverlaps();
        Password key = config.getPassword(HASH_KEY_CONFIG);
        String keyText = key == null ? "" : key.value();
        if (!hashPaths.isEmpty() && keyText.isEmpty()) {
            throw new ConfigException(HASH_KEY_CONFIG, "[hidden]",
                    "a key is required because " + HASH_FIELDS_CONFIG + " is set");
        }
        hashKey = keyText.getBytes(StandardCharsets.UTF_8);
        mac = hashPaths.isEmpty() ? null : ThreadLocal.withInitial(this::newMac);
        schemaUpdateCache = new SchemaCache<>(16);
    }

    /** Overlapping paths (a and a.b, or one path in two lists) have no single sensible meaning. */
    private void rejectOverlaps() {
        List<FieldPath> all = new ArrayList<>(dropPaths);
        all.addAll(nullPaths);
        all.addAll(hashPaths);
        for (int i = 0; i < all.size(); i++) {
            for (int j = i + 1; j < all.size(); j++) {
                if (all.get(i).overlaps(all.get(j))) {
                    throw new ConfigException("MaskFields paths '" + all.get(i) + "' and '" + all.get(j)
                            + "' overlap; list each field once and not together with its parent");
                }
            }
        }
    }

    private Mac newMac() {
        try {
            Mac instance = Mac.getInstance(HMAC);
            instance.init(new SecretKeySpec(hashKey, HMAC));
            return instance;
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HMAC-SHA-256 is not available in this JVM", e);
        }
    }

    @Override
    public R apply(R record) {
        Object value = side.value(record);
        if (value == null) {
            return record;
        }
        if (side.schema(record) == null) {
            if (!(value instanceof Map)) {
                throw new DataException("MaskFields expected the schemaless record " + side
                        + " to be a map but found " + Schemas.describe(value));
            }
            return applySchemaless(record, value);
        }
        if (!(value instanceof Struct)) {
            throw new DataException("MaskFields expected the record " + side + " to be a struct but found "
                    + Schemas.describe(value));
        }
        return applyWithSchema(record, (Struct) value);
    }

    @SuppressWarnings("unchecked")
    private R applySchemaless(R record, Object value) {
        Map<String, Object> updated = (Map<String, Object>) value;
        for (FieldPath path : dropPaths) {
            updated = path.update(updated, old -> FieldPath.REMOVE);
        }
        for (FieldPath path : nullPaths) {
            updated = path.update(updated, old -> null);
        }
        for (FieldPath path : hashPaths) {
            updated = path.update(updated, this::hash);
        }
        return side.newRecord(record, null, updated);
    }

    private R applyWithSchema(R record, Struct value) {
        Schema updatedSchema = schemaUpdateCache.get(value.schema(), this::makeUpdatedSchema);
        // Nulled fields need nothing more: project() leaves every field whose schema changed null.
        Struct updated = Schemas.project(value, updatedSchema);
        for (FieldPath path : hashPaths) {
            path.setInProjected(updated, hash(path.get(value)));
        }
        return side.newRecord(record, updatedSchema, updated);
    }

    private Schema makeUpdatedSchema(Schema schema) {
        Schema updated = schema;
        for (FieldPath path : dropPaths) {
            updated = path.updateSchema(updated, old -> null);
        }
        for (FieldPath path : nullPaths) {
            updated = path.updateSchema(updated, Schemas::optional);
        }
        // A new instance each time, never Schema.OPTIONAL_STRING_SCHEMA: project() detects changes by identity.
        for (FieldPath path : hashPaths) {
            updated = path.updateSchema(updated, old -> SchemaBuilder.string().optional().build());
        }
        return updated;
    }

    private String hash(Object value) {
        if (value == null) {
            return null;
        }
        byte[] input;
        if (value instanceof byte[]) {
            input = (byte[]) value;
        } else if (value instanceof ByteBuffer) {
            ByteBuffer buffer = ((ByteBuffer) value).duplicate();
            input = new byte[buffer.remaining()];
            buffer.get(input);
        } else {
            input = stringForm(value).getBytes(StandardCharsets.UTF_8);
        }
        return HexFormat.of().formatHex(mac.get().doFinal(input));
    }

    private static String stringForm(Object value) {
        if (value instanceof String) {
            return (String) value;
        }
        if (value instanceof Date) {
            return ((Date) value).toInstant().toString();
        }
        if (value instanceof Struct || value instanceof Map || value instanceof List) {
            return Json.write(value);
        }
        return value.toString();
    }

    @Override
    public void close() {
        schemaUpdateCache = null;
    }

    /** Masks fields of the record key. */
    public static class Key<R extends ConnectRecord<R>> extends MaskFields<R> {
        public Key() {
            super(RecordSide.KEY);
        }
    }

    /** Masks fields of the record value. */
    public static class Value<R extends ConnectRecord<R>> extends MaskFields<R> {
        public Value() {
            super(RecordSide.VALUE);
        }
    }
}
