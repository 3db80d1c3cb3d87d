package io.conveyor.transforms;

import static org.apache.kafka.connect.transforms.field.FieldSyntaxVersion.V1;
import static org.apache.kafka.connect.transforms.field.FieldSyntaxVersion.V2;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.transforms.field.FieldSyntaxVersion;
import org.apache.kafka.connect.transforms.field.SingleFieldPath;
import org.junit.jupiter.api.Test;

class FieldPathTest {

    private static final Schema ADDRESS = SchemaBuilder.struct().field("zip", Schema.STRING_SCHEMA).build();
    private static final Schema CUSTOMER = SchemaBuilder.struct()
            .field("id", Schema.STRING_SCHEMA).field("address", ADDRESS).build();
    private static final Schema ROOT = SchemaBuilder.struct().field("customer", CUSTOMER).build();

    private static FieldPath v2(String text) {
        return FieldPath.parse("k", text, V2);
    }

    @Test
    void v2SplitsOnDotsOutsideBackticks() {
        assertEquals(List.of("a", "b", "c"), v2("a.b.c").segments());
        assertEquals(List.of("a.b", "c"), v2("`a.b`.c").segments());
        assertEquals(List.of("x", "a.b"), v2("x.`a.b`").segments());
        assertEquals(List.of("a`b", "c"), v2("a`b.c").segments());
        // A backslash escapes only a backtick that would otherwise close the name (one before a dot).
        assertEquals(List.of("a`.b", "c"), v2("`a\\`.b`.c").segments());
        assertEquals(List.of("a.\\`b", "c"), v2("`a.\\`b`.c").segments());
    }

    @Test
    void v1IsOneNameWhateverItContains() {
        assertEquals(List.of("a.b.c"), FieldPath.parse("k", "a.b.c", V1).segments());
        assertEquals(List.of("`a`.b"), FieldPath.parse("k", "`a`.b", V1).segments());
        assertEquals(List.of("a..b"), FieldPath.parse("k", "a..b", V1).segments());
    }

    @Test
    void invalidPathsAreConfigExceptionsNamingTheKey() {
        for (String bad : List.of("a..b", ".a", "a.", "`a.b", "`a.b\\`")) {
            ConfigException e = assertThrows(ConfigException.class, () -> FieldPath.parse("my.key", bad, V2), bad);
            assertTrue(e.getMessage().contains("my.key"), e.getMessage());
        }
        assertTrue(assertThrows(ConfigException.class, () -> FieldPath.parse("k", "`a.b", V2))
                .getMessage().contains("backtick"));
        assertThrows(ConfigException.class, () -> FieldPath.parse("k", "", V1));
        assertThrows(ConfigException.class, () -> FieldPath.parse("k", "", V2));
    }

    /**
     * Our steps (used for updates) must be the steps Kafka reads along. A nested map built from our steps
     * holds one value at one path; Kafka finds it only if it parsed the same steps.
     */
    @Test
    void stepsAgreeWithKafkasParserOnArbitraryPaths() {
        Random random = new Random(821);
        char[] alphabet = {'a', 'b', '.', '`', '\\'};
        int checked = 0;
        for (int n = 0; n < 20_000; n++) {
            StringBuilder text = new StringBuilder();
            int length = 1 + random.nextInt(9);
            for (int i = 0; i < length; i++) {
                text.append(alphabet[random.nextInt(alphabet.length)]);
            }
            String path = text.toString();
            List<String> steps;
            try {
                steps = FieldPath.splitV2(path);
            } catch (ConfigException e) {
                assertThrows(ConfigException.class, () -> new SingleFieldPath(path, V2), path);
                continue;
            }
            SingleFieldPath kafka = new SingleFieldPath(path, V2);
            Object marker = new Object();
            Object nested = marker;
            for (int i = steps.size() - 1; i >= 0; i--) {
                Map<String, Object> parent = new HashMap<>();
                parent.put(steps.get(i), nested);
                nested = parent;
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> root = (Map<String, Object>) nested;
            assertSame(marker, kafka.valueFrom(root), path + " -> " + steps);
            checked++;
        }
        assertTrue(checked > 5_000, "too few parseable paths: " + checked);
    }

    @Test
    void overlapMeansEqualOrAncestor() {
        assertTrue(v2("a").overlaps(v2("a.b")));
        assertTrue(v2("a.b").overlaps(v2("a.b")));
        assertTrue(v2("`a.b`").overlaps(v2("`a.b`.c")));
        assertFalse(v2("a.b").overlaps(v2("a.c")));
        assertFalse(v2("ab").overlaps(v2("a")));
        assertFalse(v2("`a.b`").overlaps(v2("a.b")));
        assertFalse(FieldPath.parse("k", "a", V1).overlaps(FieldPath.parse("k", "a.b", V1)));
    }

    @Test
    void getsNestedValuesFromMapsAndStructs() {
        Map<String, Object> map = Map.of("customer", Map.of("address", Map.of("zip", "123")));
        assertEquals("123", v2("customer.address.zip").get(map));
        assertNull(v2("customer.missing.zip").get(map));
        assertNull(FieldPath.parse("k", "customer.address.zip", V1).get(map));

        Struct struct = new Struct(ROOT).put("customer", new Struct(CUSTOMER).put("id", "c1")
                .put("address", new Struct(ADDRESS).put("zip", "123")));
        assertEquals("123", v2("customer.address.zip").get(struct));
        assertNull(v2("customer.nope").get(struct));
        assertEquals(Schema.Type.STRING, v2("customer.address.zip").field(ROOT).schema().type());
    }

    @Test
    void namesWithDotsNeedBackticksInV2AndNothingInV1() {
        Map<String, Object> map = Map.of("geo.location", Map.of("lat", 51.5), "a", Map.of("b", 1));
        assertEquals(51.5, v2("`geo.location`.lat").get(map));
        assertNull(v2("geo.location.lat").get(map));
        assertEquals(Map.of("lat", 51.5), FieldPath.parse("k", "geo.location", V1).get(map));
        assertNull(FieldPath.parse("k", "a.b", V1).get(map));
    }

    @Test
    void walkingThroughAScalarIsADataException() {
        DataException e = assertThrows(DataException.class,
                () -> v2("customer.id.x").get(Map.of("customer", Map.of("id", "c1"))));
        assertTrue(e.getMessage().contains("'customer.id.x'"), e.getMessage());
        assertThrows(DataException.class, () -> v2("customer.id.x").field(ROOT));
        Map<String, Object> root = Map.of("customer", Map.of("id", "c1"));
        assertThrows(DataException.class, () -> v2("customer.id.x").update(root, old -> null));
    }

    @Test
    void updateCopiesOnlyThePathAndLeavesTheInputAlone() {
        Map<String, Object> inner = new HashMap<>(Map.of("zip", "123", "city", "Leeds"));
        Map<String, Object> other = new HashMap<>(Map.of("x", 1));
        Map<String, Object> root = new HashMap<>(Map.of("address", inner, "other", other));

        Map<String, Object> updated = v2("address.zip").update(root, old -> FieldPath.REMOVE);

        assertEquals(Map.of("city", "Leeds"), updated.get("address"));
        assertSame(other, updated.get("other"));
        assertEquals("123", inner.get("zip"));
        assertSame(root, v2("nope.zip").update(root, old -> "x"));
        assertEquals(Map.of("zip", "123", "city", "Leeds"),
                v2("`address.zip`").update(root, old -> FieldPath.REMOVE).get("address"));
        assertEquals(Map.of("city", "Leeds"), v2("address.zip").updateBelowFirst(inner, old -> FieldPath.REMOVE));
    }

    @Test
    void updateSchemaRebuildsOnlyThePath() {
        Schema updated = v2("customer.address.zip").updateSchema(ROOT, old -> null);
        assertTrue(updated.field("customer").schema().field("address").schema().fields().isEmpty());
        assertSame(CUSTOMER.field("id").schema(), updated.field("customer").schema().field("id").schema());
        assertSame(ROOT, v2("customer.nope").updateSchema(ROOT, old -> null));
    }

    @Test
    void everyTransformThatTakesPathsOffersKafkasSyntaxSetting() {
        List<ConfigDef> defs = List.of(new EnvelopeUnwrap.Value<SinkRecord>().config(),
                new RouteByField.Value<SinkRecord>().config(), new MaskFields.Value<SinkRecord>().config(),
                new SnowplowEventToRow.Value<SinkRecord>().config());
        for (ConfigDef def : defs) {
            ConfigDef.ConfigKey key = def.configKeys().get(FieldSyntaxVersion.FIELD_SYNTAX_VERSION_CONFIG);
            assertEquals("V1", key.defaultValue);
            assertEquals(FieldSyntaxVersion.FIELD_SYNTAX_VERSION_DOC, key.documentation);
            key.validator.ensureValid(key.name, "v2");
            assertThrows(ConfigException.class, () -> key.validator.ensureValid(key.name, "V3"));
        }
    }

    @Test
    void everyVersionKafkaKnowsIsHandled() {
        for (FieldSyntaxVersion version : FieldSyntaxVersion.values()) {
            assertEquals(List.of("a"), FieldPath.parse("k", "a", version).segments());
        }
    }
}
