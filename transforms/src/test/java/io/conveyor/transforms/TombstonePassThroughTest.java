package io.conveyor.transforms;

import static io.conveyor.transforms.TestSupport.schemaless;
import static io.conveyor.transforms.TestSupport.value;
import static org.junit.jupiter.api.Assertions.assertSame;

import java.util.Map;
import java.util.function.Supplier;
import java.util.stream.Stream;

import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.transforms.Transformation;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The tombstone row of every transform's test matrix. Passing tombstones through untouched is a rule all
 * transforms share (README), so it is checked in one place over all of them; RouteByField is the exception,
 * since it still has to choose a topic, and its own tests cover that.
 */
class TombstonePassThroughTest {

    private static final Schema SCHEMA = SchemaBuilder.struct().field("event_id", Schema.STRING_SCHEMA).build();

    static Stream<Arguments> transforms() {
        return Stream.of(
                transform("EnvelopeUnwrap", EnvelopeUnwrap.Value::new, Map.of()),
                transform("MaskFields", MaskFields.Value::new, Map.of("drop.fields", "event_id")),
                transform("SnowplowEventToRow", SnowplowEventToRow.Value::new, Map.of()),
                transform("InsertLandedAt", InsertLandedAt.Value::new, Map.of()));
    }

    private static Arguments transform(String name, Supplier<Transformation<SinkRecord>> factory,
                                       Map<String, String> config) {
        return Arguments.of(name, factory, config);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("transforms")
    void schemalessTombstonePassesThrough(String name, Supplier<Transformation<SinkRecord>> factory,
                                          Map<String, String> config) {
        assertPassesThrough(factory.get(), config, schemaless(null));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("transforms")
    void structTombstonePassesThrough(String name, Supplier<Transformation<SinkRecord>> factory,
                                      Map<String, String> config) {
        assertPassesThrough(factory.get(), config, value(SCHEMA, null));
    }

    private static void assertPassesThrough(Transformation<SinkRecord> xform, Map<String, String> config,
                                            SinkRecord tombstone) {
        xform.configure(config);
        try {
            assertSame(tombstone, xform.apply(tombstone));
        } finally {
            xform.close();
        }
    }
}
