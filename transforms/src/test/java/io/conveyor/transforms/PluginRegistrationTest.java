package io.conveyor.transforms;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ServiceLoader;
import java.util.Set;
import java.util.TreeSet;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.components.Versioned;
import org.apache.kafka.connect.transforms.Transformation;
import org.junit.jupiter.api.Test;

/** What a Connect worker's plugin scan relies on: service registration, public no-arg constructors, docs. */
class PluginRegistrationTest {

    private static final Set<String> EXPECTED = Set.of(
            "io.conveyor.transforms.EnvelopeUnwrap$Value",
            "io.conveyor.transforms.RouteByField$Key",
            "io.conveyor.transforms.RouteByField$Value",
            "io.conveyor.transforms.MaskFields$Key",
            "io.conveyor.transforms.MaskFields$Value",
            "io.conveyor.transforms.SnowplowEventToRow$Value",
            "io.conveyor.transforms.InsertLandedAt$Value");

    @Test
    @SuppressWarnings("rawtypes")
    void everyTransformIsRegisteredAndDocumented() {
        Set<String> found = new TreeSet<>();
        for (Transformation transformation : ServiceLoader.load(Transformation.class)) {
            String name = transformation.getClass().getName();
            if (!name.startsWith("io.conveyor.")) {
                continue;
            }
            found.add(name);
            // Connect's plugin listing reports a version only for Versioned plugins ("undefined" otherwise).
            assertTrue(transformation instanceof Versioned, name + " should implement Versioned");
            assertNotNull(transformation.version());
            ConfigDef def = transformation.config();
            assertFalse(def.configKeys().isEmpty(), name);
            for (ConfigDef.ConfigKey key : def.configKeys().values()) {
                assertTrue(key.documentation != null && !key.documentation.isBlank(), name + " " + key.name);
                assertNotNull(key.importance, name + " " + key.name);
                assertTrue(key.hasDefault(), name + " " + key.name + " should have a default");
            }
        }
        assertEquals(new TreeSet<>(EXPECTED), found);
    }
}
