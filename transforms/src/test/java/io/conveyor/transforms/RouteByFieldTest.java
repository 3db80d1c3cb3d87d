package io.conveyor.transforms;

import static io.conveyor.transforms.TestSupport.assertValidateAccepts;
import static io.conveyor.transforms.TestSupport.assertValidateRejects;
import static io.conveyor.transforms.TestSupport.schemaless;
import static io.conveyor.transforms.TestSupport.value;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.header.ConnectHeaders;
import org.apache.kafka.connect.sink.SinkRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class RouteByFieldTest {

    private static final Schema META = SchemaBuilder.struct().field("type", Schema.OPTIONAL_STRING_SCHEMA).build();
    private static final Schema EVENT = SchemaBuilder.struct()
            .field("event_type", Schema.OPTIONAL_STRING_SCHEMA).field("meta", META).build();

    private final RouteByField<SinkRecord> xform = new RouteByField.Value<>();

    @AfterEach
    void tearDown() {
        xform.close();
    }

    private static Struct event(String type, String metaType) {
        return new Struct(EVENT).put("event_type", type).put("meta", new Struct(META).put("type", metaType));
    }

    // ---- sanitising ----

    @Test
    void sanitiseMakesSafeTableNames() {
        assertEquals("events_order_placed", RouteByField.sanitize("events_Order.Placed"));
        assertEquals("a_b", RouteByField.sanitize("a--__--b"));
        assertEquals("a_b", RouteByField.sanitize("a__b"));
        assertEquals("t_3d_secure", RouteByField.sanitize("3D Secure"));
        String longName = RouteByField.sanitize("x".repeat(100));
        assertEquals(63, longName.length());
        assertEquals(63, RouteByField.sanitize("9" + "x".repeat(100)).length());
    }

    @Test
    void longNamesThatShareAPrefixStayApart() {
        String prefix = "snowplow_com_example_" + "checkout_".repeat(6);
        String first = RouteByField.sanitize(prefix + "step_one");
        String second = RouteByField.sanitize(prefix + "step_two");
        assertEquals(63, first.length());
        assertEquals(63, second.length());
        assertNotEquals(first, second);
        // Cut names keep their readable prefix and end in '_' and 8 hex digits.
        assertTrue(first.startsWith(prefix.substring(0, 54)), first);
        assertTrue(first.matches("[a-z0-9_]{54}_[0-9a-f]{8}"), first);
        // Stable: the same value always names the same table.
        assertEquals(first, RouteByField.sanitize(prefix + "step_one"));
        // Names that fit are left alone.
        String fits = "x".repeat(63);
        assertEquals(fits, RouteByField.sanitize(fits));
    }

    // ---- schemaless ----

    @Test
    void schemalessRoutesByNestedField() {
        xform.configure(Map.of("field", "meta.type", "topic.format", "events_${value}", "field.syntax.version", "V2"));
        SinkRecord in = schemaless(Map.of("meta", Map.of("type", "Order.Placed")));
        SinkRecord out = xform.apply(in);
        assertEquals("events_order_placed", out.topic());
        assertSame(in.value(), out.value());
        assertEquals(in.kafkaOffset(), out.kafkaOffset());
    }

    @Test
    void templateCanUseOriginalTopic() {
        xform.configure(Map.of("field", "n", "topic.format", "${topic}_${value}"));
        assertEquals("events_raw_7", xform.apply(schemaless(Map.of("n", 7))).topic());
    }

    @Test
    void schemalessTombstoneUsesFallbackOrFails() {
        xform.configure(Map.of("field", "event_type"));
        DataException e = assertThrows(DataException.class, () -> xform.apply(schemaless(null)));
        assertTrue(e.getMessage().contains("fallback.topic"), e.getMessage());

        xform.configure(Map.of("field", "event_type", "fallback.topic", "Unrouted-Events"));
        assertEquals("unrouted_events", xform.apply(schemaless(null)).topic());
        assertEquals("unrouted_events", xform.apply(schemaless(Map.of("other", 1))).topic());
        assertEquals("unrouted_events", xform.apply(schemaless(Map.of("event_type", ""))).topic());
    }

    @Test
    void schemalessWrongTypesFail() {
        xform.configure(Map.of("field", "event_type", "fallback.topic", "unrouted"));
        assertThrows(DataException.class, () -> xform.apply(schemaless("plain string")));
        DataException e = assertThrows(DataException.class,
                () -> xform.apply(schemaless(Map.of("event_type", List.of("a")))));
        assertTrue(e.getMessage().contains("event_type"), e.getMessage());
    }

    // ---- with schema ----

    @Test
    void structRoutesByNestedField() {
        xform.configure(Map.of("field", "meta.type", "topic.format", "events_${value}", "field.syntax.version", "V2"));
        SinkRecord out = xform.apply(value(EVENT, event("x", "delivery.Completed")));
        assertEquals("events_delivery_completed", out.topic());
        assertSame(EVENT, out.valueSchema());
    }

    @Test
    void structMissingValueUsesFallback() {
        xform.configure(Map.of("field", "event_type", "fallback.topic", "unrouted"));
        assertEquals("unrouted", xform.apply(value(EVENT, event(null, null))).topic());
        assertEquals("unrouted", xform.apply(value(EVENT, null)).topic());
    }

    @Test
    void structWrongTypeFails() {
        xform.configure(Map.of("field", "meta"));
        assertThrows(DataException.class, () -> xform.apply(value(EVENT, event("a", "b"))));
        xform.configure(Map.of("field", "meta.type.deeper", "field.syntax.version", "V2"));
        assertThrows(DataException.class, () -> xform.apply(value(EVENT, event("a", "b"))));
    }

    // ---- field names containing dots ----

    private static final Schema DOTTED = SchemaBuilder.struct()
            .field("meta.type", Schema.OPTIONAL_STRING_SCHEMA).field("meta", META)
            .field("ctx.v1", SchemaBuilder.struct().field("type", Schema.OPTIONAL_STRING_SCHEMA).build())
            .build();

    private static Struct dotted() {
        return new Struct(DOTTED).put("meta.type", "Flat").put("meta", new Struct(META).put("type", "Nested"))
                .put("ctx.v1", new Struct(DOTTED.field("ctx.v1").schema()).put("type", "Quoted"));
    }

    private static Map<String, Object> dottedMap() {
        return Map.of("meta.type", "Flat", "meta", Map.of("type", "Nested"), "ctx.v1", Map.of("type", "Quoted"));
    }

    @Test
    void v2WithBackticksRoutesByAFieldUnderANameWithDots() {
        xform.configure(Map.of("field", "`ctx.v1`.type", "field.syntax.version", "V2"));
        assertEquals("quoted", xform.apply(schemaless(dottedMap())).topic());
        assertEquals("quoted", xform.apply(value(DOTTED, dotted())).topic());

        xform.configure(Map.of("field", "`meta.type`", "field.syntax.version", "V2"));
        assertEquals("flat", xform.apply(schemaless(dottedMap())).topic());
        assertEquals("flat", xform.apply(value(DOTTED, dotted())).topic());

        xform.configure(Map.of("field", "meta.type", "field.syntax.version", "V2"));
        assertEquals("nested", xform.apply(schemaless(dottedMap())).topic());
        assertEquals("nested", xform.apply(value(DOTTED, dotted())).topic());
    }

    @Test
    void v1TreatsTheWholeSettingAsOneName() {
        xform.configure(Map.of("field", "meta.type"));
        assertEquals("flat", xform.apply(schemaless(dottedMap())).topic());
        assertEquals("flat", xform.apply(value(DOTTED, dotted())).topic());

        xform.configure(Map.of("field", "ctx.v1.type", "fallback.topic", "unrouted"));
        assertEquals("unrouted", xform.apply(schemaless(dottedMap())).topic());
    }

    // ---- header and key ----

    @Test
    void routesByHeaderAndKey() {
        xform.configure(Map.of("header", "event-type", "topic.format", "events_${value}"));
        ConnectHeaders headers = new ConnectHeaders();
        headers.addBytes("event-type", "Robot.Moved".getBytes(StandardCharsets.UTF_8));
        SinkRecord withHeader = new SinkRecord("t", 0, null, null, null, null, 1L, null, null, headers);
        assertEquals("events_robot_moved", xform.apply(withHeader).topic());

        RouteByField<SinkRecord> byKey = new RouteByField.Key<>();
        byKey.configure(Map.of("field", "tenant"));
        SinkRecord keyed = new SinkRecord("t", 0, null, Map.of("tenant", "Acme"), null, null, 1L);
        assertEquals("acme", byKey.apply(keyed).topic());
        byKey.close();
    }

    // ---- config ----

    @Test
    void badConfigsAreRejected() {
        assertThrows(ConfigException.class, () -> xform.configure(Map.of()));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("field", "a", "header", "h")));
        ConfigException empty = assertThrows(ConfigException.class,
                () -> xform.configure(Map.of("field", "a..b", "field.syntax.version", "V2")));
        assertTrue(empty.getMessage().contains("field") && empty.getMessage().contains("empty field name"),
                empty.getMessage());
        assertThrows(ConfigException.class,
                () -> xform.configure(Map.of("field", "`meta.type", "field.syntax.version", "V2")));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("field", "a", "field.syntax.version", "V0")));
        xform.configure(Map.of("field", "a..b"));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("field", "a", "topic.format", "fixed")));

        assertValidateRejects(xform.config(), Map.of("field", "a", "field.syntax.version", "V0"),
                "field.syntax.version");
        assertValidateRejects(xform.config(), Map.of("field", "a", "topic.format", "fixed"), "topic.format");
        assertValidateAccepts(xform.config(), Map.of("field", "a.b", "topic.format", "events_${value}"));
        assertValidateAccepts(xform.config(), Map.of("field", "`a.b`.c", "field.syntax.version", "v2"));
    }
}
