package io.conveyor.transforms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.junit.jupiter.api.Test;

class FieldPathTest {

    private static final Schema ADDRESS = SchemaBuilder.struct().field("zip", Schema.STRING_SCHEMA).build();
    private static final Schema CUSTOMER = SchemaBuilder.struct()
            .field("id", Schema.STRING_SCHEMA).field("address", ADDRESS).build();
    private static final Schema ROOT = SchemaBuilder.struct().field("customer", CUSTOMER).build();

    @Test
    void parsesSegmentsAndRejectsEmptyOnes() {
        assertEquals(List.of("a", "b", "c"), FieldPath.parse("a.b.c").segments());
        assertEquals("b.c", FieldPath.parse("a.b.c").tail().toString());
        assertThrows(IllegalArgumentException.class, () -> FieldPath.parse("a..b"));
        assertThrows(IllegalArgumentException.class, () -> FieldPath.parse(".a"));
        assertThrows(IllegalArgumentException.class, () -> FieldPath.parse(" "));
    }

    @Test
    void overlapMeansEqualOrAncestor() {
        assertTrue(FieldPath.parse("a").overlaps(FieldPath.parse("a.b")));
        assertTrue(FieldPath.parse("a.b").overlaps(FieldPath.parse("a.b")));
        assertFalse(FieldPath.parse("a.b").overlaps(FieldPath.parse("a.c")));
        assertFalse(FieldPath.parse("ab").overlaps(FieldPath.parse("a")));
    }

    @Test
    void getsNestedValuesFromMapsAndStructs() {
        Map<String, Object> map = Map.of("customer", Map.of("address", Map.of("zip", "123")));
        assertEquals("123", FieldPath.parse("customer.address.zip").get(map));
        assertNull(FieldPath.parse("customer.missing.zip").get(map));

        Struct struct = new Struct(ROOT).put("customer", new Struct(CUSTOMER).put("id", "c1")
                .put("address", new Struct(ADDRESS).put("zip", "123")));
        assertEquals("123", FieldPath.parse("customer.address.zip").get(struct));
        assertNull(FieldPath.parse("customer.nope").get(struct));
        assertEquals(Schema.Type.STRING, FieldPath.parse("customer.address.zip").field(ROOT).schema().type());
    }

    @Test
    void walkingThroughAScalarIsADataException() {
        DataException e = assertThrows(DataException.class,
                () -> FieldPath.parse("customer.id.x").get(Map.of("customer", Map.of("id", "c1"))));
        assertTrue(e.getMessage().contains("'customer.id'"), e.getMessage());
        assertThrows(DataException.class, () -> FieldPath.parse("customer.id.x").field(ROOT));
    }

    @Test
    void updateCopiesOnlyThePathAndLeavesTheInputAlone() {
        Map<String, Object> inner = new HashMap<>(Map.of("zip", "123", "city", "Leeds"));
        Map<String, Object> other = new HashMap<>(Map.of("x", 1));
        Map<String, Object> root = new HashMap<>(Map.of("address", inner, "other", other));

        Map<String, Object> updated = FieldPath.parse("address.zip").update(root, old -> FieldPath.REMOVE);

        assertEquals(Map.of("city", "Leeds"), updated.get("address"));
        assertSame(other, updated.get("other"));
        assertEquals("123", inner.get("zip"));
        assertSame(root, FieldPath.parse("nope.zip").update(root, old -> "x"));
    }

    @Test
    void updateSchemaRebuildsOnlyThePath() {
        Schema updated = FieldPath.parse("customer.address.zip").updateSchema(ROOT, old -> null);
        assertTrue(updated.field("customer").schema().field("address").schema().fields().isEmpty());
        assertSame(CUSTOMER.field("id").schema(), updated.field("customer").schema().field("id").schema());
        assertSame(ROOT, FieldPath.parse("customer.nope").updateSchema(ROOT, old -> null));
    }
}
