package io.conveyor.transforms;

import static io.conveyor.transforms.TestSupport.applySchemaless;
import static io.conveyor.transforms.TestSupport.assertValidateRejects;
import static io.conveyor.transforms.TestSupport.schemaless;
import static io.conveyor.transforms.TestSupport.value;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.Date;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.sink.SinkRecord;
import org.junit.jupiter.api.Test;

class InsertLandedAtTest {

    private static final Instant NOW = Instant.parse("2026-12-04T01:30:00.123Z");
    private static final Schema ROW = SchemaBuilder.struct().name("fulfilment.robots.Value")
            .field("robot_id", Schema.STRING_SCHEMA)
            .field("battery_pct", Schema.OPTIONAL_INT32_SCHEMA)
            .build();

    private static InsertLandedAt.Value<SinkRecord> xform(Map<String, String> config) {
        InsertLandedAt.Value<SinkRecord> xform = new InsertLandedAt.Value<>(Clock.fixed(NOW, ZoneOffset.UTC));
        xform.configure(config);
        return xform;
    }

    @Test
    void addsTheTimeToAStructAndKeepsEveryField() {
        Struct row = new Struct(ROW).put("robot_id", "R-7").put("battery_pct", 81);
        SinkRecord out = xform(Map.of()).apply(value(ROW, row));
        Struct landed = (Struct) out.value();
        assertEquals("R-7", landed.get("robot_id"));
        assertEquals(81, landed.get("battery_pct"));
        assertEquals(Date.from(NOW), landed.get("landed_at"));
        assertEquals(Timestamp.LOGICAL_NAME, out.valueSchema().field("landed_at").schema().name());
        assertEquals(List.of("robot_id", "battery_pct", "landed_at"),
                out.valueSchema().fields().stream().map(f -> f.name()).toList());
        assertEquals(ROW.name(), out.valueSchema().name());
        assertEquals("k1", out.key());
        assertEquals(42L, out.kafkaOffset());
    }

    @Test
    void derivesTheSchemaOncePerInputSchema() {
        InsertLandedAt.Value<SinkRecord> xform = xform(Map.of());
        Schema first = xform.apply(value(ROW, new Struct(ROW).put("robot_id", "a"))).valueSchema();
        Schema second = xform.apply(value(ROW, new Struct(ROW).put("robot_id", "b"))).valueSchema();
        assertSame(first, second);
    }

    @Test
    void addsTheTimeToASchemalessMapUnderAConfiguredName() {
        Map<String, Object> row = new HashMap<>(Map.of("robot_id", "R-7"));
        Map<String, Object> out = applySchemaless(xform(Map.of("field", "written_at")), row);
        assertEquals(Map.of("robot_id", "R-7", "written_at", Date.from(NOW)), out);
        assertEquals(Map.of("robot_id", "R-7"), row, "the input map is not changed");
    }

    @Test
    void tombstonesPassThrough() {
        SinkRecord tombstone = value(ROW, null);
        assertSame(tombstone, xform(Map.of()).apply(tombstone));
        SinkRecord schemalessTombstone = schemaless(null);
        assertSame(schemalessTombstone, xform(Map.of()).apply(schemalessTombstone));
    }

    @Test
    void refusesToOverwriteASourceColumnOfTheSameName() {
        Schema withLanded = SchemaBuilder.struct().field("landed_at", Schema.STRING_SCHEMA).build();
        DataException struct = assertThrows(DataException.class,
                () -> xform(Map.of()).apply(value(withLanded, new Struct(withLanded).put("landed_at", "x"))));
        assertTrue(struct.getMessage().contains("landed_at"), struct.getMessage());
        assertThrows(DataException.class,
                () -> xform(Map.of()).apply(schemaless(new HashMap<>(Map.of("landed_at", "x")))));
    }

    @Test
    void wrongTypesFailWithTheTypeFound() {
        DataException schemalessString = assertThrows(DataException.class,
                () -> xform(Map.of()).apply(schemaless("a string")));
        assertTrue(schemalessString.getMessage().contains("map"), schemalessString.getMessage());
        assertThrows(DataException.class,
                () -> xform(Map.of()).apply(value(Schema.STRING_SCHEMA, "a string")));
    }

    @Test
    void validateRejectsAnEmptyFieldName() {
        assertValidateRejects(InsertLandedAt.CONFIG_DEF, Map.of("field", ""), "field");
    }
}
