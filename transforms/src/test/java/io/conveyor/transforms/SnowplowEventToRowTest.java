package io.conveyor.transforms;

import static io.conveyor.transforms.TestSupport.applySchemaless;
import static io.conveyor.transforms.TestSupport.assertValidateRejects;
import static io.conveyor.transforms.TestSupport.schemaless;
import static io.conveyor.transforms.TestSupport.value;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class SnowplowEventToRowTest {

    private static final String CHECKOUT = "{\"schema\":\"iglu:com.acme/checkout/jsonschema/1-0-2\","
            + "\"data\":{\"order_id\":\"o-1\",\"total\":12.5}}";
    private static final String WRAPPED_CHECKOUT =
            "{\"schema\":\"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0\",\"data\":"
                    + CHECKOUT + "}";
    private static final String CONTEXTS =
            "{\"schema\":\"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0\",\"data\":["
                    + "{\"schema\":\"iglu:com.acme/basketItem/jsonschema/2-0-0\",\"data\":{\"sku\":\"a\"}},"
                    + "{\"schema\":\"iglu:com.acme/basketItem/jsonschema/2-1-0\",\"data\":{\"sku\":\"b\"}},"
                    + "{\"schema\":\"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0\","
                    + "\"data\":{\"id\":\"p-1\"}}]}";
    private static final String DERIVED = "[{\"schema\":\"iglu:com.acme/basketItem/jsonschema/2-0-0\","
            + "\"data\":{\"sku\":\"c\"}},{\"schema\":\"iglu:nl.basjes/yauaa_context/jsonschema/1-0-4\","
            + "\"data\":{\"deviceClass\":\"Phone\"}}]";

    private static final Schema EVENT = SchemaBuilder.struct().name("snowplow.Enriched")
            .field("event_id", Schema.STRING_SCHEMA)
            .field("app_id", Schema.OPTIONAL_STRING_SCHEMA)
            .field("unstruct_event", Schema.OPTIONAL_STRING_SCHEMA)
            .field("contexts", Schema.OPTIONAL_STRING_SCHEMA)
            .field("derived_contexts", Schema.OPTIONAL_STRING_SCHEMA)
            .build();

    private final SnowplowEventToRow<SinkRecord> xform = new SnowplowEventToRow.Value<>();

    @AfterEach
    void tearDown() {
        xform.close();
    }

    private static Map<String, Object> eventMap() {
        Map<String, Object> event = new LinkedHashMap<>();
        event.put("event_id", "e-1");
        event.put("app_id", "shop");
        event.put("unstruct_event", WRAPPED_CHECKOUT);
        event.put("contexts", CONTEXTS);
        event.put("derived_contexts", DERIVED);
        return event;
    }

    private static Struct eventStruct() {
        return new Struct(EVENT).put("event_id", "e-1").put("app_id", "shop").put("unstruct_event", WRAPPED_CHECKOUT)
                .put("contexts", CONTEXTS).put("derived_contexts", DERIVED);
    }

    @Test
    void columnNamesFollowTheLoaders() {
        assertEquals("com_acme_checkout_1",
                SnowplowEventToRow.IgluUri.parse("iglu:com.acme/checkout/jsonschema/1-0-2", "t").columnSuffix());
        assertEquals("com_my_company_add_to_basket_2",
                SnowplowEventToRow.IgluUri.parse("iglu:com.my-company/addToBasket/jsonschema/2-0-0", "t")
                        .columnSuffix());
        assertEquals("nl_basjes_yauaa_context_1",
                SnowplowEventToRow.IgluUri.parse("iglu:nl.basjes/yauaa_context/jsonschema/1-0-4", "t").columnSuffix());
    }

    // ---- schemaless ----

    @Test
    void schemalessJsonStringsBecomeColumns() {
        xform.configure(Map.of());
        Map<String, Object> input = eventMap();
        Map<String, Object> before = new LinkedHashMap<>(input);

        Map<String, Object> row = applySchemaless(xform, input);

        assertEquals("e-1", row.get("event_id"));
        assertEquals("shop", row.get("app_id"));
        assertFalse(row.containsKey("unstruct_event"));
        assertFalse(row.containsKey("contexts"));
        assertFalse(row.containsKey("derived_contexts"));
        assertEquals("{\"order_id\":\"o-1\",\"total\":12.5}", row.get("unstruct_event_com_acme_checkout_1"));
        assertEquals("[{\"sku\":\"a\"},{\"sku\":\"b\"},{\"sku\":\"c\"}]", row.get("contexts_com_acme_basket_item_2"),
                "revisions of one model, from contexts and derived_contexts, share one column");
        assertEquals("[{\"id\":\"p-1\"}]", row.get("contexts_com_snowplowanalytics_snowplow_web_page_1"));
        assertEquals("[{\"deviceClass\":\"Phone\"}]", row.get("contexts_nl_basjes_yauaa_context_1"));
        assertEquals(before, input, "input must not be modified");
    }

    @Test
    void schemalessParsedMapsNestedPathsAndMapOutput() {
        xform.configure(Map.of("unstruct.field", "sp.ue", "contexts.field", "sp.ctx", "derived_contexts.field", "",
                "output.format", "map", "field.syntax.version", "V2"));
        Map<String, Object> sp = new LinkedHashMap<>();
        sp.put("ue", Map.of("schema", "iglu:com.acme/checkout/jsonschema/1-0-0", "data", Map.of("order_id", "o-2")));
        sp.put("ctx", List.of(Map.of("schema", "iglu:com.acme/store/jsonschema/3-0-0", "data", Map.of("id", 4))));
        sp.put("keep", "me");
        Map<String, Object> row = applySchemaless(xform, new LinkedHashMap<>(Map.of("event_id", "e-2", "sp", sp)));

        assertEquals(Map.of("order_id", "o-2"), row.get("unstruct_event_com_acme_checkout_1"));
        assertEquals(List.of(Map.of("id", 4)), row.get("contexts_com_acme_store_3"));
        assertEquals(Map.of("keep", "me"), row.get("sp"));
    }

    @Test
    void schemalessEventWithoutSelfDescribingPartsIsUnchanged() {
        xform.configure(Map.of());
        Map<String, Object> row =
                applySchemaless(xform, new LinkedHashMap<>(Map.of("event_id", "e-3", "event", "page_view")));
        assertEquals(Map.of("event_id", "e-3", "event", "page_view"), row);
    }

    @Test
    void schemalessWrongTypesFail() {
        xform.configure(Map.of());
        assertThrows(DataException.class, () -> xform.apply(schemaless(List.of())));

        Map<String, Object> badJson = eventMap();
        badJson.put("unstruct_event", "{not json");
        DataException e = assertThrows(DataException.class, () -> applySchemaless(xform, badJson));
        assertTrue(e.getMessage().contains("unstruct_event"), e.getMessage());

        Map<String, Object> badUri = eventMap();
        badUri.put("unstruct_event", "{\"schema\":\"com.acme/checkout\",\"data\":{}}");
        assertThrows(DataException.class, () -> applySchemaless(xform, badUri));

        Map<String, Object> notList = eventMap();
        notList.put("contexts", 42);
        assertThrows(DataException.class, () -> applySchemaless(xform, notList));

        Map<String, Object> clash = eventMap();
        clash.put("unstruct_event_com_acme_checkout_1", "already here");
        assertThrows(DataException.class, () -> applySchemaless(xform, clash));
    }

    // ---- with schema ----

    @Test
    void structGetsOptionalStringColumnsPerSchemaSet() {
        xform.configure(Map.of());
        Struct input = eventStruct();

        SinkRecord out = xform.apply(value(EVENT, input));
        Schema schema = out.valueSchema();
        Struct row = (Struct) out.value();

        assertNull(schema.field("unstruct_event"));
        assertNull(schema.field("contexts"));
        Schema column = schema.field("contexts_com_acme_basket_item_2").schema();
        assertEquals(Schema.Type.STRING, column.type());
        assertTrue(column.isOptional());
        assertEquals("e-1", row.get("event_id"));
        assertEquals("{\"order_id\":\"o-1\",\"total\":12.5}", row.get("unstruct_event_com_acme_checkout_1"));
        assertEquals("[{\"sku\":\"a\"},{\"sku\":\"b\"},{\"sku\":\"c\"}]", row.get("contexts_com_acme_basket_item_2"));
        row.validate();
        assertEquals(eventStruct(), input, "input must not be modified");

        assertSame(schema, xform.apply(value(EVENT, eventStruct())).valueSchema(), "cached for the same columns");
        Struct fewer = eventStruct().put("contexts", null).put("derived_contexts", null);
        Schema other = xform.apply(value(EVENT, fewer)).valueSchema();
        assertNotSame(schema, other);
        assertEquals(List.of("event_id", "app_id", "unstruct_event_com_acme_checkout_1"),
                other.fields().stream().map(f -> f.name()).toList());
    }

    @Test
    void structNestedPath() {
        Schema sp = SchemaBuilder.struct().field("ue", Schema.OPTIONAL_STRING_SCHEMA)
                .field("keep", Schema.STRING_SCHEMA).build();
        Schema event = SchemaBuilder.struct().field("event_id", Schema.STRING_SCHEMA).field("sp", sp).build();
        Struct input = new Struct(event).put("event_id", "e").put("sp", new Struct(sp).put("ue", CHECKOUT).put("keep", "k"));
        xform.configure(Map.of("unstruct.field", "sp.ue", "contexts.field", "", "derived_contexts.field", "",
                "field.syntax.version", "V2"));

        Struct row = (Struct) xform.apply(value(event, input)).value();

        assertEquals("k", row.getStruct("sp").get("keep"));
        assertNull(row.getStruct("sp").schema().field("ue"));
        assertEquals("{\"order_id\":\"o-1\",\"total\":12.5}", row.get("unstruct_event_com_acme_checkout_1"));
    }

    @Test
    void structWrongTypesFail() {
        xform.configure(Map.of());
        Schema intField = SchemaBuilder.struct().field("unstruct_event", Schema.INT32_SCHEMA).build();
        DataException e = assertThrows(DataException.class,
                () -> xform.apply(value(intField, new Struct(intField).put("unstruct_event", 1))));
        assertTrue(e.getMessage().contains("JSON string"), e.getMessage());
        assertThrows(DataException.class, () -> xform.apply(value(Schema.STRING_SCHEMA, "x")));

        xform.configure(Map.of("output.format", "map"));
        assertThrows(DataException.class, () -> xform.apply(value(EVENT, eventStruct())));
    }

    // ---- field names containing dots ----

    @Test
    void v2WithBackticksReadsFieldsUnderANameWithDots() {
        xform.configure(Map.of("unstruct.field", "`sp.v1`.ue", "contexts.field", "`sp.v1`.`ctx.all`",
                "derived_contexts.field", "", "field.syntax.version", "V2"));
        Map<String, Object> sp = new LinkedHashMap<>();
        sp.put("ue", CHECKOUT);
        sp.put("ctx.all", CONTEXTS);
        sp.put("keep", "me");
        Map<String, Object> row = applySchemaless(xform, new LinkedHashMap<>(Map.of("event_id", "e-3", "sp.v1", sp)));

        assertEquals("{\"order_id\":\"o-1\",\"total\":12.5}", row.get("unstruct_event_com_acme_checkout_1"));
        assertEquals("[{\"id\":\"p-1\"}]", row.get("contexts_com_snowplowanalytics_snowplow_web_page_1"));
        assertEquals(Map.of("keep", "me"), row.get("sp.v1"));

        Schema spSchema = SchemaBuilder.struct().field("ue", Schema.OPTIONAL_STRING_SCHEMA)
                .field("ctx.all", Schema.OPTIONAL_STRING_SCHEMA).field("keep", Schema.STRING_SCHEMA).build();
        Schema event = SchemaBuilder.struct().field("event_id", Schema.STRING_SCHEMA).field("sp.v1", spSchema).build();
        Struct input = new Struct(event).put("event_id", "e").put("sp.v1",
                new Struct(spSchema).put("ue", CHECKOUT).put("ctx.all", CONTEXTS).put("keep", "k"));
        Struct struct = (Struct) xform.apply(value(event, input)).value();

        assertEquals("k", struct.getStruct("sp.v1").get("keep"));
        assertNull(struct.getStruct("sp.v1").schema().field("ue"));
        assertNull(struct.getStruct("sp.v1").schema().field("ctx.all"));
        assertEquals("{\"order_id\":\"o-1\",\"total\":12.5}", struct.get("unstruct_event_com_acme_checkout_1"));
    }

    @Test
    void v1TreatsTheWholeSettingAsOneName() {
        xform.configure(Map.of("unstruct.field", "sp.ue", "contexts.field", "", "derived_contexts.field", ""));
        Map<String, Object> event = new LinkedHashMap<>();
        event.put("event_id", "e-4");
        event.put("sp.ue", CHECKOUT);
        event.put("sp", Map.of("ue", WRAPPED_CHECKOUT));
        Map<String, Object> row = applySchemaless(xform, event);

        assertEquals("{\"order_id\":\"o-1\",\"total\":12.5}", row.get("unstruct_event_com_acme_checkout_1"));
        assertFalse(row.containsKey("sp.ue"));
        assertEquals(Map.of("ue", WRAPPED_CHECKOUT), row.get("sp"));
    }

    // ---- config ----

    @Test
    void badConfigsAreRejected() {
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("output.format", "xml")));
        ConfigException empty = assertThrows(ConfigException.class,
                () -> xform.configure(Map.of("unstruct.field", "a..b", "field.syntax.version", "V2")));
        assertTrue(empty.getMessage().contains("unstruct.field"), empty.getMessage());
        ConfigException open = assertThrows(ConfigException.class,
                () -> xform.configure(Map.of("contexts.field", "`sp.ctx", "field.syntax.version", "V2")));
        assertTrue(open.getMessage().contains("contexts.field") && open.getMessage().contains("backtick"),
                open.getMessage());
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("contexts.field", "sp",
                "unstruct.field", "sp.ue", "field.syntax.version", "V2")));
        xform.configure(Map.of("contexts.field", "sp", "unstruct.field", "sp.ue"));
        xform.configure(Map.of("unstruct.field", "a..b"));
        assertThrows(ConfigException.class, () -> xform.configure(
                Map.of("unstruct.field", "", "contexts.field", "", "derived_contexts.field", "")));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("contexts.field", "unstruct_event")));

        assertValidateRejects(xform.config(), Map.of("output.format", "xml"), "output.format");
        assertValidateRejects(xform.config(), Map.of("field.syntax.version", "V3"), "field.syntax.version");
    }
}
