package io.conveyor.transforms;

import static io.conveyor.transforms.TestSupport.applySchemaless;
import static io.conveyor.transforms.TestSupport.assertValidateRejects;
import static io.conveyor.transforms.TestSupport.schemaless;
import static io.conveyor.transforms.TestSupport.value;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class MaskFieldsTest {

    private static final String KEY = "test-key";
    private static final Schema ADDRESS = SchemaBuilder.struct()
            .field("street", Schema.STRING_SCHEMA).field("zip", Schema.STRING_SCHEMA).build();
    private static final Schema CUSTOMER = SchemaBuilder.struct()
            .field("id", Schema.INT64_SCHEMA)
            .field("email", Schema.STRING_SCHEMA)
            .field("phone", SchemaBuilder.string().optional().defaultValue("none").build())
            .field("address", ADDRESS)
            .build();
    private static final Schema ORDER = SchemaBuilder.struct()
            .field("order_id", Schema.STRING_SCHEMA).field("customer", CUSTOMER).build();

    private static final Map<String, String> CONFIG = Map.of(
            "drop.fields", "customer.address.street",
            "null.fields", "customer.phone",
            "hash.fields", "customer.email,customer.id",
            "hash.key", KEY,
            "field.syntax.version", "V2");

    private final MaskFields<SinkRecord> xform = new MaskFields.Value<>();

    @AfterEach
    void tearDown() {
        xform.close();
    }

    private static String hmac(String text) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(KEY.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        return HexFormat.of().formatHex(mac.doFinal(text.getBytes(StandardCharsets.UTF_8)));
    }

    private static Struct order() {
        Struct address = new Struct(ADDRESS).put("street", "1 High St").put("zip", "LS1");
        Struct customer = new Struct(CUSTOMER).put("id", 17L).put("email", "a@example.com")
                .put("phone", "0113").put("address", address);
        return new Struct(ORDER).put("order_id", "o-1").put("customer", customer);
    }

    private static Map<String, Object> orderMap() {
        Map<String, Object> address = new LinkedHashMap<>(Map.of("street", "1 High St", "zip", "LS1"));
        Map<String, Object> customer = new LinkedHashMap<>(Map.of("id", 17L, "email", "a@example.com",
                "phone", "0113", "address", address));
        return new LinkedHashMap<>(Map.of("order_id", "o-1", "customer", customer));
    }

    // ---- schemaless ----

    @Test
    @SuppressWarnings("unchecked")
    void schemalessMasksNestedFieldsWithoutTouchingInput() throws Exception {
        xform.configure(CONFIG);
        Map<String, Object> input = orderMap();
        String before = input.toString();

        Map<String, Object> out = applySchemaless(xform, input);
        Map<String, Object> customer = (Map<String, Object>) out.get("customer");

        assertEquals(hmac("a@example.com"), customer.get("email"));
        assertEquals(hmac("17"), customer.get("id"));
        assertTrue(customer.containsKey("phone"));
        assertNull(customer.get("phone"));
        assertEquals(Map.of("zip", "LS1"), customer.get("address"));
        assertEquals("o-1", out.get("order_id"));
        assertEquals(before, input.toString(), "input must not be modified");
    }

    @Test
    void schemalessMissingFieldsAreLeftAlone() {
        xform.configure(CONFIG);
        Map<String, Object> input = new HashMap<>(Map.of("order_id", "o-2"));
        assertEquals(input, xform.apply(schemaless(input)).value());
    }

    @Test
    void schemalessWrongTypesFail() {
        xform.configure(CONFIG);
        assertThrows(DataException.class, () -> xform.apply(schemaless("x")));
        assertThrows(DataException.class, () -> xform.apply(schemaless(Map.of("customer", "not a map"))));
    }

    // ---- with schema ----

    @Test
    void structMasksNestedFieldsAndRewritesSchema() throws Exception {
        xform.configure(CONFIG);
        Struct input = order();

        SinkRecord out = xform.apply(value(ORDER, input));
        Schema customerSchema = out.valueSchema().field("customer").schema();
        Struct customer = ((Struct) out.value()).getStruct("customer");

        assertEquals(Schema.Type.STRING, customerSchema.field("id").schema().type());
        assertTrue(customerSchema.field("email").schema().isOptional());
        assertTrue(customerSchema.field("phone").schema().isOptional());
        assertNull(customerSchema.field("phone").schema().defaultValue(), "a nulled field must not read back a default");
        assertNull(customerSchema.field("address").schema().field("street"));

        assertEquals(hmac("17"), customer.get("id"));
        assertEquals(hmac("a@example.com"), customer.get("email"));
        assertNull(customer.get("phone"));
        assertEquals("LS1", customer.getStruct("address").get("zip"));
        ((Struct) out.value()).validate();
        assertEquals(order(), input, "input must not be modified");

        assertSame(out.valueSchema(), xform.apply(value(ORDER, order())).valueSchema());
    }

    @Test
    void hashIsKeyed() throws Exception {
        xform.configure(Map.of("hash.fields", "order_id", "hash.key", "other-key"));
        Struct out = (Struct) xform.apply(value(ORDER, order())).value();
        assertNotEquals(hmac("o-1"), out.get("order_id"));
        assertEquals(64, out.getString("order_id").length());
    }

    @Test
    void keyVariantMasksTheKey() {
        MaskFields<SinkRecord> keyXform = new MaskFields.Key<>();
        keyXform.configure(Map.of("drop.fields", "secret"));
        SinkRecord in = new SinkRecord("t", 0, null, Map.of("id", 1, "secret", "s"), null, "v", 1L);
        assertEquals(Map.of("id", 1), keyXform.apply(in).key());
        keyXform.close();
    }

    @Test
    void structWrongTypesFail() {
        xform.configure(Map.of("drop.fields", "order_id.deeper", "field.syntax.version", "V2"));
        assertThrows(DataException.class, () -> xform.apply(value(ORDER, order())));
        assertThrows(DataException.class, () -> xform.apply(value(Schema.STRING_SCHEMA, "x")));
    }

    // ---- field names containing dots ----

    private static final Schema DOTTED = SchemaBuilder.struct()
            .field("user.email", Schema.STRING_SCHEMA)
            .field("user", SchemaBuilder.struct().field("email", Schema.STRING_SCHEMA).build())
            .field("geo.ip", SchemaBuilder.struct().field("addr", Schema.STRING_SCHEMA)
                    .field("city", Schema.STRING_SCHEMA).build())
            .build();

    private static Struct dotted() {
        return new Struct(DOTTED).put("user.email", "top@example.com")
                .put("user", new Struct(DOTTED.field("user").schema()).put("email", "nested@example.com"))
                .put("geo.ip", new Struct(DOTTED.field("geo.ip").schema()).put("addr", "10.0.0.1").put("city", "Leeds"));
    }

    private static Map<String, Object> dottedMap() {
        Map<String, Object> map = new LinkedHashMap<>();
        map.put("user.email", "top@example.com");
        map.put("user", Map.of("email", "nested@example.com"));
        map.put("geo.ip", Map.of("addr", "10.0.0.1", "city", "Leeds"));
        return map;
    }

    @Test
    void v2WithBackticksReachesIntoAFieldWhoseNameHasDots() throws Exception {
        xform.configure(Map.of("hash.fields", "`geo.ip`.addr", "drop.fields", "`user.email`",
                "hash.key", KEY, "field.syntax.version", "V2"));

        Map<String, Object> out = applySchemaless(xform, dottedMap());
        assertEquals(Map.of("addr", hmac("10.0.0.1"), "city", "Leeds"), out.get("geo.ip"));
        assertFalse(out.containsKey("user.email"));
        assertEquals(Map.of("email", "nested@example.com"), out.get("user"));

        SinkRecord record = xform.apply(value(DOTTED, dotted()));
        Struct struct = (Struct) record.value();
        assertEquals(hmac("10.0.0.1"), struct.getStruct("geo.ip").get("addr"));
        assertEquals("Leeds", struct.getStruct("geo.ip").get("city"));
        assertNull(record.valueSchema().field("user.email"));
        assertEquals("nested@example.com", struct.getStruct("user").get("email"));
    }

    @Test
    void v1TreatsTheWholeSettingAsOneName() throws Exception {
        xform.configure(Map.of("hash.fields", "user.email", "hash.key", KEY));

        Map<String, Object> out = applySchemaless(xform, dottedMap());
        assertEquals(hmac("top@example.com"), out.get("user.email"));
        assertEquals(Map.of("email", "nested@example.com"), out.get("user"));

        Struct struct = (Struct) xform.apply(value(DOTTED, dotted())).value();
        assertEquals(hmac("top@example.com"), struct.get("user.email"));
        assertEquals("nested@example.com", struct.getStruct("user").get("email"));
    }

    // ---- config ----

    @Test
    void badConfigsAreRejected() {
        assertThrows(ConfigException.class, () -> xform.configure(Map.of()));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("hash.fields", "a")));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("hash.fields", "a", "hash.key", "")));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("drop.fields", "a", "null.fields", "a.b",
                "field.syntax.version", "V2")));
        assertThrows(ConfigException.class, () -> xform.configure(Map.of("drop.fields", "a,a")));
        ConfigException empty = assertThrows(ConfigException.class,
                () -> xform.configure(Map.of("drop.fields", "a..b", "field.syntax.version", "V2")));
        assertTrue(empty.getMessage().contains("drop.fields"), empty.getMessage());
        ConfigException open = assertThrows(ConfigException.class,
                () -> xform.configure(Map.of("null.fields", "x,`a.b", "field.syntax.version", "V2")));
        assertTrue(open.getMessage().contains("null.fields") && open.getMessage().contains("backtick"),
                open.getMessage());
        // Under V1 these are two different top-level names, and a name may hold two dots in a row.
        xform.configure(Map.of("drop.fields", "a", "null.fields", "a.b"));
        xform.configure(Map.of("drop.fields", "a..b"));

        assertValidateRejects(xform.config(), Map.of("drop.fields", "a,,b"), "drop.fields");
        assertValidateRejects(xform.config(), Map.of("drop.fields", "a", "field.syntax.version", "V3"),
                "field.syntax.version");
    }

    @Test
    void hashKeyIsAHiddenPassword() {
        ConfigDef.ConfigKey key = xform.config().configKeys().get("hash.key");
        assertEquals(ConfigDef.Type.PASSWORD, key.type);
        assertTrue(key.documentation.contains("${env:"));
        ConfigException e = assertThrows(ConfigException.class,
                () -> xform.configure(Map.of("hash.fields", "a", "hash.key", "")));
        assertFalse(e.getMessage().contains(KEY));
    }
}
