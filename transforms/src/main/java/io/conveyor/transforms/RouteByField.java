package io.conveyor.transforms;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.transforms.field.FieldSyntaxVersion;
import org.apache.kafka.connect.transforms.util.SimpleConfig;

/**
 * Sets a record's topic, and so the table a sink writes it to, from a field or a header, through a
 * template such as {@code events_${value}}. The result is made a safe SQL table name.
 *
 * <p>A missing, null or empty value goes to {@code fallback.topic}; with no fallback it is a
 * DataException, so a record that cannot be routed reaches the dead-letter topic instead of an
 * arbitrary table.
 */
public abstract class RouteByField<R extends ConnectRecord<R>> extends BaseTransformation<R> {

    public static final String OVERVIEW_DOC = "Route each record to a topic (table) named from a field or header value.";

    public static final String FIELD_CONFIG = "field";
    public static final String HEADER_CONFIG = "header";
    public static final String TOPIC_FORMAT_CONFIG = "topic.format";
    public static final String FALLBACK_TOPIC_CONFIG = "fallback.topic";

    static final String VALUE_PLACEHOLDER = "${value}";
    static final String TOPIC_PLACEHOLDER = "${topic}";
    /** PostgreSQL truncates identifiers at 63 bytes. */
    static final int MAX_TABLE_NAME = 63;
    /** A cut name ends in '_' and this many hex digits of the SHA-256 of the whole cleaned name. */
    static final int HASH_HEX_DIGITS = 8;

    private static final Pattern NOT_ALLOWED = Pattern.compile("[^a-z0-9_]");
    private static final Pattern REPEATED_UNDERSCORES = Pattern.compile("_{2,}");

    public static final ConfigDef CONFIG_DEF = FieldSyntaxVersion.appendConfigTo(new ConfigDef()
            .define(FIELD_CONFIG, ConfigDef.Type.STRING, "", FieldPath.validator(true),
                    ConfigDef.Importance.HIGH,
                    "Field whose value names the topic: a top-level name, or with " + FieldSyntaxVersion
                            .FIELD_SYNTAX_VERSION_CONFIG + "=V2 a dotted path (a.b.c). "
                            + "Set exactly one of 'field' and 'header'.")
            .define(HEADER_CONFIG, ConfigDef.Type.STRING, "", new ConfigDef.NonNullValidator(),
                    ConfigDef.Importance.HIGH,
                    "Header whose value names the topic (the last one wins if repeated). "
                            + "Set exactly one of 'field' and 'header'.")
            .define(TOPIC_FORMAT_CONFIG, ConfigDef.Type.STRING, VALUE_PLACEHOLDER, new TemplateValidator(),
                    ConfigDef.Importance.MEDIUM,
                    "Template for the new topic: " + VALUE_PLACEHOLDER + " is replaced by the routing value and "
                            + TOPIC_PLACEHOLDER + " by the original topic. The result is lowercased, characters "
                            + "outside [a-z0-9_] become '_', repeats collapse, it is cut to " + MAX_TABLE_NAME
                            + " characters (a longer name keeps its first " + (MAX_TABLE_NAME - HASH_HEX_DIGITS - 1)
                            + " and ends in '_' and " + HASH_HEX_DIGITS + " hex digits of the SHA-256 of the whole "
                            + "name, so two long names that share a prefix never share a table) and prefixed "
                            + "with 't_' if it starts with a digit.")
            .define(FALLBACK_TOPIC_CONFIG, ConfigDef.Type.STRING, "", new ConfigDef.NonNullValidator(),
                    ConfigDef.Importance.MEDIUM,
                    "Topic for records whose routing value is missing, null or empty (sanitised the same way). "
                            + "Empty means such records fail with a DataException."));

    private final RecordSide side;
    private FieldPath field;
    private String header;
    private String topicFormat;
    private String fallbackTopic;

    RouteByField(RecordSide side) {
        super(CONFIG_DEF);
        this.side = side;
    }

    @Override
    public void configure(Map<String, ?> props) {
        SimpleConfig config = new SimpleConfig(CONFIG_DEF, props);
        String fieldText = config.getString(FIELD_CONFIG);
        String headerText = config.getString(HEADER_CONFIG).trim();
        if (fieldText.isEmpty() == headerText.isEmpty()) {
            throw new ConfigException("RouteByField needs exactly one of '" + FIELD_CONFIG + "' and '"
                    + HEADER_CONFIG + "'; found " + (fieldText.isEmpty() ? "neither" : "both"));
        }
        field = fieldText.isEmpty() ? null
                : FieldPath.parse(FIELD_CONFIG, fieldText, FieldSyntaxVersion.fromConfig(config));
        header = headerText.isEmpty() ? null : headerText;
        topicFormat = config.getString(TOPIC_FORMAT_CONFIG);
        String fallback = config.getString(FALLBACK_TOPIC_CONFIG).trim();
        fallbackTopic = fallback.isEmpty() ? null : sanitize(fallback);
    }

    @Override
    public R apply(R record) {
        String routingValue = header != null ? fromHeader(record) : fromField(record);
        String topic;
        if (routingValue == null || routingValue.isEmpty()) {
            if (fallbackTopic == null) {
                throw new DataException("RouteByField could not route a record from topic '" + record.topic()
                        + "': " + describeSource() + " is missing, null or empty and no '"
                        + FALLBACK_TOPIC_CONFIG + "' is configured");
            }
            topic = fallbackTopic;
        } else {
            topic = sanitize(topicFormat.replace(TOPIC_PLACEHOLDER, record.topic())
                    .replace(VALUE_PLACEHOLDER, routingValue));
        }
        return record.newRecord(topic, record.kafkaPartition(), record.keySchema(), record.key(),
                record.valueSchema(), record.value(), record.timestamp(), record.headers());
    }

    private String fromField(R record) {
        Object container = side.value(record);
        // A tombstone (or a null key) has nothing to route by: treated like a missing value.
        if (container == null) {
            return null;
        }
        Object value;
        if (container instanceof Struct) {
            value = field.get((Struct) container);
        } else if (container instanceof Map) {
            value = field.get((Map<?, ?>) container);
        } else {
            throw new DataException("RouteByField expected the record " + side + " to be a struct or a map "
                    + "to read field '" + field + "' but found " + Schemas.describe(container));
        }
        return asRoutingString(value, "field '" + field + "'");
    }

    private String fromHeader(R record) {
        Header found = record.headers().lastWithName(header);
        if (found == null) {
            return null;
        }
        Object value = found.value();
        if (value instanceof byte[]) {
            value = new String((byte[]) value, StandardCharsets.UTF_8);
        }
        return asRoutingString(value, "header '" + header + "'");
    }

    private static String asRoutingString(Object value, String source) {
        if (value == null) {
            return null;
        }
        if (value instanceof String || value instanceof Number || value instanceof Boolean
                || value instanceof Character) {
            return value.toString();
        }
        throw new DataException("RouteByField expected " + source + " to hold a string, number or boolean "
                + "to name a topic but found " + Schemas.describe(value));
    }

    /** Makes {@code name} a lowercase SQL identifier that needs no quoting and fits PostgreSQL's limit. */
    static String sanitize(String name) {
        String cleaned = NOT_ALLOWED.matcher(name.toLowerCase(Locale.ROOT)).replaceAll("_");
        cleaned = REPEATED_UNDERSCORES.matcher(cleaned).replaceAll("_");
        if (!cleaned.isEmpty() && Character.isDigit(cleaned.charAt(0))) {
            cleaned = "t_" + cleaned;
        }
        if (cleaned.length() <= MAX_TABLE_NAME) {
            return cleaned;
        }
        return cleaned.substring(0, MAX_TABLE_NAME - HASH_HEX_DIGITS - 1) + "_" + hashHex(cleaned);
    }

    private static String hashHex(String name) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(name.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(digest).substring(0, HASH_HEX_DIGITS);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every Java runtime has SHA-256", e);
        }
    }

    private String describeSource() {
        return header != null ? "header '" + header + "'" : side + " field '" + field + "'";
    }

    /** Routes by a field of the record key. */
    public static class Key<R extends ConnectRecord<R>> extends RouteByField<R> {
        public Key() {
            super(RecordSide.KEY);
        }
    }

    /** Routes by a field of the record value. */
    public static class Value<R extends ConnectRecord<R>> extends RouteByField<R> {
        public Value() {
            super(RecordSide.VALUE);
        }
    }

    /** Rejects templates that would send every record to one topic: a likely typo. */
    private static final class TemplateValidator implements ConfigDef.Validator {
        @Override
        public void ensureValid(String name, Object value) {
            if (value == null || !value.toString().contains(VALUE_PLACEHOLDER)) {
                throw new ConfigException(name, value, "the template must contain " + VALUE_PLACEHOLDER);
            }
        }

        @Override
        public String toString() {
            return "a template containing " + VALUE_PLACEHOLDER;
        }
    }
}
