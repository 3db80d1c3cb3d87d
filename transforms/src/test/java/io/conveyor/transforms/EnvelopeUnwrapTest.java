package io.conveyor.transforms;

import static io.conveyor.transforms.TestSupport.applySchemaless;
import static io.conveyor.transforms.TestSupport.assertValidateAccepts;
import static io.conveyor.transforms.TestSupport.assertValidateRejects;
import static io.conveyor.transforms.TestSupport.schemaless;
import static io.conveyor.transforms.TestSupport.value;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.Date;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class EnvelopeUnwrapTest {

    private static final Instant NOW = Instant.parse("2024-05-01T12:00:05Z");
    private static final Date OCCURRED = Date.from(Instant.parse("2024-05-01T12:00:00Z"));
    private static final long ACCEPTED_MILLIS = 1714564801000L;

    private static final Schema ADDRESS = SchemaBuilder.struct().optional().field("zip", Schema.STRING_SCHEMA).build();
    private static final Schema CUSTOMER = SchemaBuilder.struct().optional()
            .field("id", Schema.STRING_SCHEMA).field("address", ADDRESS).build();
    private static final Schema PAYLOAD = SchemaBuilder.struct().optional()
            .field("order_id", Schema.STRING_SCHEMA)
            .field("total", Schema.FLOAT64_SCHEMA)
            .field("customer", CUSTOMER)
            .field("items", SchemaBuilder.array(Schema.STRING_SCHEMA).optional().build())
            .build();
    private static final Schema ENVELOPE = SchemaBuilder.struct().name("conveyor.Envelope")
            .field("event_id", Schema.STRING_SCHEMA)
            .field("event_type", Schema.STRING_SCHEMA)
            .field("source", Schema.STRING_SCHEMA)
            .field("occurred_at", Schema.OPTIONAL_STRING_SCHEMA)
            .field("accepted_at", Schema.INT64_SCHEMA)
            .field("attributes", SchemaBuilder.map(Schema.STRING_SCHEMA, Schema.STRING_SCHEMA).optional().build())
            .field("payload", PAYLOAD)
            .build();

    private final EnvelopeUnwrap<SinkRecord> xform =
            new EnvelopeUnwrap.Value<>(Clock.fixed(NOW, ZoneOffset.UTC));

    @AfterEach
    void tearDown() {
        xform.close();
    }

    private static Map<String, Object> payloadMap() {
        Map<String, Object> payload = new LinkedHashMap<>();
        payload.put("order_id", "o-1");
        payload.put("total", 12.5);
        payload.put("customer", new LinkedHashMap<>(Map.of("id", "c-1", "address", Map.of("zip", "LS1"))));
        payload.put("items", List.of("apple", "pear"));
        return payload;
    }

    private static Map<String, Object> envelopeMap() {
        Map<String, Object> envelope = new LinkedHashMap<>();
        envelope.put("event_id", "e-1");
        envelope.put("event_type", "order.placed");
        envelope.put("source", "shop");
        envelope.put("occurred_at", "2024-05-01T12:00:00Z");
        envelope.put("accepted_at", ACCEPTED_MILLIS);
        envelope.put("attributes", Map.of("routing_key", "orders"));
        envelope.put("payload", payloadMap());
        return envelope;
    }

    private static Struct envelopeStruct() {
        Struct customer = new Struct(CUSTOMER).put("id", "c-1").put("address", new Struct(ADDRESS).put("zip", "LS1"));
        Struct payload = new Struct(PAYLOAD).put("order_id", "o-1").put("total", 12.5).put("customer", customer)
                .put("items", List.of("apple", "pear"));
        return new Struct(ENVELOPE).put("event_id", "e-1").put("event_type", "order.placed").put("source", "shop")
                .put("occurred_at", "2024-05-01T12:00:00+00:00").put("accepted_at", ACCEPTED_MILLIS)
                .put("attributes", Map.of("routing_key", "orders")).put("payload", payload);
    }

    // ---- schemaless ----

    @Test
    void schemalessEnvelopeBecomesFlatRow() {
        xform.configure(Map.of());
        Map<String, Object> input = envelopeMap();
        Map<String, Object> before = new HashMap<>(input);

        Map<String, Object> row = applySchemaless(xform, input);

        assertEquals(List.of("event_id", "event_type", "source", "occurred_at", "accepted_at", "attributes",
                "order_id", "total", "customer", "items", "landed_at"), List.copyOf(row.keySet()));
        assertEquals("e-1", row.get("event_id"));
        assertEquals(OCCURRED, row.get("occurred_at"));
        assertEquals(new Date(ACCEPTED_MILLIS), row.get("accepted_at"));
        assertEquals("{\"routing_key\":\"orders\"}", row.get("attributes"));
        assertEquals("o-1", row.get("order_id"));
        assertEquals(12.5, row.get("total"));
        assertEquals("{\"address\":{\"zip\":\"LS1\"},\"id\":\"c-1\"}", row.get("customer"));
        assertEquals("[\"apple\",\"pear\"]", row.get("items"));
        assertEquals(Date.from(NOW), row.get("landed_at"));
        assertEquals(before, input, "the input envelope must not be modified");
    }

    @Test
    void schemalessDeeperFlatteningWithPrefixDelimiterAndJsonColumn() {
        xform.configure(Map.of("payload.flatten.depth", "2", "payload.flatten.delimiter", "__",
                "payload.prefix", "p_", "payload.json.column", "payload_json"));
        Map<String, Object> row = applySchemaless(xform, envelopeMap());

        assertEquals("c-1", row.get("p_customer__id"));
        assertEquals("{\"zip\":\"LS1\"}", row.get("p_customer__address"));
        assertEquals("o-1", row.get("p_order_id"));
        assertTrue(((String) row.get("payload_json")).contains("\"order_id\":\"o-1\""));
    }

    @Test
    void schemalessNestedPayloadPathKeepsTheRestOfItsParent() {
        xform.configure(Map.of("payload.field", "body.payload", "field.syntax.version", "V2"));
        Map<String, Object> envelope = new LinkedHashMap<>();
        envelope.put("event_id", "e-1");
        envelope.put("body", Map.of("meta", "m", "payload", Map.of("a", 1)));

        Map<String, Object> row = applySchemaless(xform, envelope);

        assertEquals("{\"meta\":\"m\"}", row.get("body"));
        assertEquals(1, row.get("a"));
    }

    @Test
    void schemalessPayloadAsJsonStringIsParsed() {
        xform.configure(Map.of());
        Map<String, Object> envelope = envelopeMap();
        envelope.put("payload", "{\"order_id\":\"o-9\",\"lines\":2}");
        Map<String, Object> row = applySchemaless(xform, envelope);
        assertEquals("o-9", row.get("order_id"));
        assertEquals(2, row.get("lines"));
    }

    @Test
    void schemalessNameClashFailsUnlessPrefixed() {
        xform.configure(Map.of());
        Map<String, Object> envelope = envelopeMap();
        envelope.put("payload", Map.of("source", "app"));
        DataException e = assertThrows(DataException.class, () -> applySchemaless(xform, envelope));
        assertTrue(e.getMessage().contains("'source'"), e.getMessage());

        xform.configure(Map.of("payload.prefix", "payload_"));
        assertEquals("app", applySchemaless(xform, envelope).get("payload_source"));
    }

    @Test
    void schemalessWrongTypesFail() {
        xform.configure(Map.of());
        assertThrows(DataException.class, () -> xform.apply(schemaless("not an envelope")));

        Map<String, Object> listPayload = envelopeMap();
        listPayload.put("payload", List.of(1, 2));
        assertThrows(DataException.class, () -> applySchemaless(xform, listPayload));

        Map<String, Object> badTime = envelopeMap();
        badTime.put("occurred_at", "2024-05-01T12:00:00");
        DataException e = assertThrows(DataException.class, () -> applySchemaless(xform, badTime));
        assertTrue(e.getMessage().contains("occurred_at"), e.getMessage());

        Map<String, Object> noId = envelopeMap();
        noId.remove("event_id");
        assertThrows(DataException.class, () -> applySchemaless(xform, noId));
    }

    // ---- with schema ----

    @Test
    void structEnvelopeBecomesFlatRowWithTypedSchema() {
        xform.configure(Map.of("payload.json.column", "payload_json"));
        Struct input = envelopeStruct();

        SinkRecord out = xform.apply(value(ENVELOPE, input));
        Schema schema = out.valueSchema();
        Struct row = (Struct) out.value();

        assertEquals(Timestamp.LOGICAL_NAME, schema.field("occurred_at").schema().name());
        assertEquals(Timestamp.LOGICAL_NAME, schema.field("accepted_at").schema().name());
        assertEquals(Schema.Type.STRING, schema.field("attributes").schema().type());
        assertEquals(Schema.Type.STRING, schema.field("customer").schema().type());
        assertTrue(schema.field("order_id").schema().isOptional());
        assertNull(schema.field("payload"));
        assertEquals(Timestamp.LOGICAL_NAME, schema.field("landed_at").schema().name());

        assertEquals("e-1", row.get("event_id"));
        assertEquals(OCCURRED, row.get("occurred_at"));
        assertEquals(new Date(ACCEPTED_MILLIS), row.get("accepted_at"));
        assertEquals("{\"routing_key\":\"orders\"}", row.get("attributes"));
        assertEquals(12.5, row.get("total"));
        assertEquals("{\"address\":{\"zip\":\"LS1\"},\"id\":\"c-1\"}", row.get("customer"));
        assertEquals(Date.from(NOW), row.get("landed_at"));
        assertTrue(row.getString("payload_json").contains("\"order_id\":\"o-1\""));
        row.validate();
        assertEquals(envelopeStruct(), input, "the input struct must not be modified");

        SinkRecord again = xform.apply(value(ENVELOPE, envelopeStruct()));
        assertSame(schema, again.valueSchema(), "the derived schema is cached per input schema");
    }

    @Test
    void structDeeperFlatteningAndNullPayload() {
        xform.configure(Map.of("payload.flatten.depth", "3", "payload.prefix", "p_"));
        Struct row = (Struct) xform.apply(value(ENVELOPE, envelopeStruct())).value();
        assertEquals("LS1", row.get("p_customer_address_zip"));
        assertEquals("c-1", row.get("p_customer_id"));

        Struct noPayload = envelopeStruct().put("payload", null);
        Struct empty = (Struct) xform.apply(value(ENVELOPE, noPayload)).value();
        assertNull(empty.get("p_customer_address_zip"));
        assertEquals("e-1", empty.get("event_id"));
    }

    @Test
    void structNestedPayloadPath() {
        Schema body = SchemaBuilder.struct().field("meta", Schema.STRING_SCHEMA).field("payload", PAYLOAD).build();
        Schema envelope = SchemaBuilder.struct().field("event_id", Schema.STRING_SCHEMA).field("body", body).build();
        Struct input = new Struct(envelope).put("event_id", "e-1").put("body",
                new Struct(body).put("meta", "m").put("payload", envelopeStruct().getStruct("payload")));
        xform.configure(Map.of("payload.field", "body.payload", "field.syntax.version", "v2"));

        Struct row = (Struct) xform.apply(value(envelope, input)).value();

        assertEquals("{\"meta\":\"m\"}", row.get("body"));
        assertEquals("o-1", row.get("order_id"));
    }

    @Test
    void structWrongTypesFail() {
        xform.configure(Map.of());
        assertThrows(DataException.class, () -> xform.apply(value(Schema.STRING_SCHEMA, "x")));

        Schema stringPayload = SchemaBuilder.struct().field("event_id", Schema.STRING_SCHEMA)
                .field("payload", Schema.STRING_SCHEMA).build();
        DataException e = assertThrows(DataException.class, () -> xform.apply(value(stringPayload,
                new Struct(stringPayload).put("event_id", "e").put("payload", "{}"))));
        assertTrue(e.getMessage().contains("payload"), e.getMessage());

        Schema boolTime = SchemaBuilder.struct().field("event_id", Schema.STRING_SCHEMA)
                .field("occurred_at", Schema.BOOLEAN_SCHEMA).build();
        assertThrows(DataException.class, () -> xform.apply(value(boolTime,
                new Struct(boolTime).put("event_id", "e").put("occurred_at", true))));

        Struct clash = envelopeStruct();
        Schema clashing = SchemaBuilder.struct().field("event_id", Schema.STRING_SCHEMA)
                .field("payload", SchemaBuilder.struct().field("event_id", Schema.STRING_SCHEMA).build()).build();
        assertFalse(clash.schema().equals(clashing));
        assertThrows(DataException.class, () -> xform.apply(value(clashing, new Struct(clashing)
                .put("event_id", "e").put("payload", new Struct(clashing.field("payload").schema())
                        .put("event_id", "inner")))));
    }

    @Test
    void schemalessPayloadUnderANameWithDotsNeedsBackticksInV2() {
        Map<String, Object> envelope = new LinkedHashMap<>();
        envelope.put("event_id", "e-1");
        envelope.put("body.v1", Map.of("meta", "m", "payload", Map.of("a", 1)));

        xform.configure(Map.of("payload.field", "`body.v1`.payload", "field.syntax.version", "V2"));
        Map<String, Object> row = applySchemaless(xform, envelope);
        assertEquals("{\"meta\":\"m\"}", row.get("body.v1"));
        assertEquals(1, row.get("a"));

        // Without backticks V2 looks for body -> v1 -> payload, finds no payload and keeps the envelope as is.
        xform.configure(Map.of("payload.field", "body.v1.payload", "field.syntax.version", "V2"));
        Map<String, Object> unmatched = applySchemaless(xform, envelope);
        assertNull(unmatched.get("a"));
    }

    @Test
    void structPayloadUnderANameWithDotsNeedsBackticksInV2() {
        Schema body = SchemaBuilder.struct().field("meta", Schema.STRING_SCHEMA).field("payload", PAYLOAD).build();
        Schema envelope = SchemaBuilder.struct().field("event_id", Schema.STRING_SCHEMA).field("body.v1", body)
                .build();
        Struct input = new Struct(envelope).put("event_id", "e-1").put("body.v1",
                new Struct(body).put("meta", "m").put("payload", envelopeStruct().getStruct("payload")));
        xform.configure(Map.of("payload.field", "`body.v1`.payload", "field.syntax.version", "V2"));

        Struct row = (Struct) xform.apply(value(envelope, input)).value();

        assertEquals("{\"meta\":\"m\"}", row.get("body.v1"));
        assertEquals("o-1", row.get("order_id"));
    }

    @Test
    void v1ReadsTheWholeSettingAsOneName() {
        Map<String, Object> envelope = new LinkedHashMap<>();
        envelope.put("event_id", "e-1");
        envelope.put("body.payload", Map.of("a", 1));
        envelope.put("body", Map.of("payload", Map.of("b", 2)));

        xform.configure(Map.of("payload.field", "body.payload"));
        Map<String, Object> row = applySchemaless(xform, envelope);

        assertEquals(1, row.get("a"));
        assertNull(row.get("b"));
        assertEquals("{\"payload\":{\"b\":2}}", row.get("body"));
    }

    // ---- config ----

    @Test
    void badConfigsAreRejected() {
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("payload.flatten.depth", "0")));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("payload.flatten.depth", "-1")));
        ConfigException empty = assertThrows(ConfigException.class,
                () -> xform.configure(Map.of("payload.field", "a..b", "field.syntax.version", "V2")));
        assertTrue(empty.getMessage().contains("payload.field") && empty.getMessage().contains("empty field name"),
                empty.getMessage());
        ConfigException backtick = assertThrows(ConfigException.class,
                () -> xform.configure(Map.of("payload.field", "`body.payload", "field.syntax.version", "V2")));
        assertTrue(backtick.getMessage().contains("backtick"), backtick.getMessage());
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("field.syntax.version", "V3")));
        xform.configure(Map.of("payload.field", "a..b"));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("payload.flatten.delimiter", "")));

        assertValidateRejects(xform.config(), Map.of("payload.flatten.depth", "-1"), "payload.flatten.depth");
        assertValidateRejects(xform.config(), Map.of("payload.field", ""), "payload.field");
        assertValidateRejects(xform.config(), Map.of("field.syntax.version", "V3"), "field.syntax.version");
        assertValidateAccepts(xform.config(), Map.of("payload.field", "`a.b`.c", "field.syntax.version", "v2"));
        assertValidateRejects(xform.config(), Map.of("payload.flatten.delimiter", ""), "payload.flatten.delimiter");
        assertValidateAccepts(xform.config(), Map.of("payload.flatten.depth", "0", "payload.json.column", "p"));
    }
}
