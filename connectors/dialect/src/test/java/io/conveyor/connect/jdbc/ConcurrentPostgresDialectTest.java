package io.conveyor.connect.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

import org.junit.jupiter.api.Test;

import io.debezium.connector.jdbc.dialect.DatabaseDialectProvider;

class ConcurrentPostgresDialectTest {

    // What Debezium 3.6's PostgreSQL dialect builds for one column: "ALTER TABLE t " + "" +
    // "ADD COLUMN " + " " + spec + "".
    private static final String HEAD = "ALTER TABLE \"public\".\"snowplow_page_view\" ";

    @Test
    void addsIfNotExistsToTheColumnClause() {
        String single = HEAD + "ADD COLUMN  contexts_com_acme_cart_1 TEXT NULL";
        assertEquals("ADD COLUMN IF NOT EXISTS contexts_com_acme_cart_1 TEXT NULL",
                ConcurrentPostgresDialect.ifNotExists(single, HEAD, "ADD COLUMN ", ""));
    }

    @Test
    void keepsDefaultsThatLookLikeSql() {
        String single = HEAD + "ADD COLUMN  note TEXT DEFAULT ', ADD COLUMN x' NULL";
        assertEquals("ADD COLUMN IF NOT EXISTS note TEXT DEFAULT ', ADD COLUMN x' NULL",
                ConcurrentPostgresDialect.ifNotExists(single, HEAD, "ADD COLUMN ", ""));
    }

    @Test
    void refusesAStatementOfAnotherShape() {
        assertThrows(IllegalStateException.class, () -> ConcurrentPostgresDialect.ifNotExists(
                "ALTER TABLE other ADD COLUMN  a TEXT NULL", HEAD, "ADD COLUMN ", ""));
        assertThrows(IllegalStateException.class, () -> ConcurrentPostgresDialect.ifNotExists(
                HEAD + "ADD (a TEXT NULL)", HEAD, "ADD (", ")"));
        assertThrows(IllegalStateException.class, () -> ConcurrentPostgresDialect.ifNotExists(
                HEAD + "ADD COLUMN  ", HEAD, "ADD COLUMN ", ""));
    }

    @Test
    void isRegisteredAsADialectProvider() throws Exception {
        String resource = "META-INF/services/" + DatabaseDialectProvider.class.getName();
        try (InputStream in = getClass().getClassLoader().getResourceAsStream(resource)) {
            assertEquals(ConcurrentPostgresDialect.Provider.class.getName(),
                    new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8)).readLine().strip());
        }
    }
}
