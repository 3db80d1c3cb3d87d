package io.conveyor.transforms;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigValue;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.transforms.Transformation;

/** Record builders and config assertions shared by the transform tests. */
final class TestSupport {

    static final String TOPIC = "events_raw";

    private TestSupport() {
    }

    static SinkRecord value(Schema schema, Object value) {
        return new SinkRecord(TOPIC, 0, null, "k1", schema, value, 42L);
    }

    static SinkRecord schemaless(Object value) {
        return value(null, value);
    }

    /** The value {@code xform} makes of a schemaless record holding {@code value}, which must be a map. */
    @SuppressWarnings("unchecked")
    static Map<String, Object> applySchemaless(Transformation<SinkRecord> xform, Map<String, Object> value) {
        return (Map<String, Object>) xform.apply(schemaless(value)).value();
    }

    /** Asserts that Connect's pre-deploy validation (ConfigDef.validate) reports an error for {@code key}. */
    static void assertValidateRejects(ConfigDef def, Map<String, String> props, String key) {
        List<ConfigValue> values = def.validate(props);
        ConfigValue value = values.stream().filter(v -> v.name().equals(key)).findFirst().orElseThrow();
        assertFalse(value.errorMessages().isEmpty(), "expected validate() to reject " + key + "=" + props.get(key));
    }

    static void assertValidateAccepts(ConfigDef def, Map<String, String> props) {
        for (ConfigValue value : def.validate(props)) {
            assertTrue(value.errorMessages().isEmpty(), value.name() + ": " + value.errorMessages());
        }
    }
}
