package io.conveyor.connect.jdbc;

import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;

import org.hibernate.SessionFactory;
import org.hibernate.dialect.Dialect;

import io.debezium.connector.jdbc.JdbcSinkConnectorConfig;
import io.debezium.connector.jdbc.JdbcSinkRecord;
import io.debezium.connector.jdbc.dialect.DatabaseDialect;
import io.debezium.connector.jdbc.dialect.DatabaseDialectProvider;
import io.debezium.connector.jdbc.dialect.GeneralDatabaseDialect;
import io.debezium.connector.jdbc.dialect.postgres.PostgresDatabaseDialect;
import io.debezium.connector.jdbc.relational.TableDescriptor;
import io.debezium.metadata.CollectionId;

/**
 * Debezium's PostgreSQL dialect, except that schema evolution adds columns with
 * {@code ALTER TABLE ... ADD COLUMN IF NOT EXISTS}.
 *
 * <p>Why: each sink task reads the table, finds the columns its record lacks and adds them in a
 * transaction of its own. Two tasks that see one new field at once both decide to add it; the
 * second ALTER waits for the first one's ACCESS EXCLUSIVE lock and then fails with
 * {@code column ... already exists}, which fails the task for good. With IF NOT EXISTS,
 * PostgreSQL checks for the column after it has taken the lock, against the committed catalog,
 * so the second ALTER becomes a no-op (a NOTICE) and the task reads the table again, as it
 * would have had it come second. This holds for any number of tasks and workers: the lock
 * serialises the ALTERs and each one after the first finds the column. A column added with
 * another type by a concurrent task is kept, exactly as if the tasks had run one after the
 * other.
 *
 * <p>How it is found: Debezium picks the first {@link DatabaseDialectProvider} on the plugin's
 * class loader that supports the Hibernate dialect ({@code DatabaseDialectResolver}, a
 * {@code ServiceLoader}). Connect lists a plugin directory's jars sorted by path, so this jar,
 * installed as {@code conveyor-jdbc-dialect.jar} beside {@code debezium-connector-jdbc-*.jar},
 * comes before Debezium's own provider. The worker logs
 * {@code Using dialect io.conveyor.connect.jdbc.ConcurrentPostgresDialect} when it is in use.
 *
 * <p>Everything else is Debezium's {@link PostgresDatabaseDialect}, unchanged (its constructor
 * is private, so it is wrapped, not extended): a {@link Proxy} hands every other call of the
 * {@link DatabaseDialect} interface, present or added in a later version, to it.
 */
public final class ConcurrentPostgresDialect {

    static final String IF_NOT_EXISTS = "IF NOT EXISTS";

    private ConcurrentPostgresDialect() {
    }

    /** Registered in META-INF/services; supports exactly what Debezium's PostgreSQL one does. */
    public static final class Provider implements DatabaseDialectProvider {
        private final DatabaseDialectProvider postgres = new PostgresDatabaseDialect.PostgresDatabaseDialectProvider();

        @Override
        public boolean supports(Dialect dialect) {
            return postgres.supports(dialect);
        }

        @Override
        public Class<?> name() {
            return ConcurrentPostgresDialect.class;
        }

        @Override
        public DatabaseDialect instantiate(JdbcSinkConnectorConfig config, SessionFactory sessionFactory) {
            return wrap(postgres.instantiate(config, sessionFactory));
        }
    }

    static DatabaseDialect wrap(DatabaseDialect postgres) {
        final Method qualifiedName;
        try {
            // Protected in GeneralDatabaseDialect: the one place the table's quoted, qualified
            // name is built, which the ALTER statement starts with.
            qualifiedName = GeneralDatabaseDialect.class.getDeclaredMethod("getQualifiedTableName", CollectionId.class);
            qualifiedName.setAccessible(true);
        }
        catch (NoSuchMethodException e) {
            throw new IllegalStateException("Debezium's GeneralDatabaseDialect has no getQualifiedTableName(CollectionId): "
                    + "this dialect does not fit the installed JDBC sink", e);
        }
        final InvocationHandler handler = (proxy, method, args) -> {
            switch (method.getName()) {
                case "getAlterTableStatement":
                    if (args != null && args.length == 3) {
                        @SuppressWarnings("unchecked")
                        Set<String> missing = (Set<String>) args[2];
                        String table = (String) qualifiedName.invoke(postgres, ((TableDescriptor) args[0]).getId());
                        return alterTableStatement(postgres, table, (TableDescriptor) args[0], (JdbcSinkRecord) args[1], missing);
                    }
                    break;
                case "toString":
                    if (args == null) {
                        return "ConcurrentPostgresDialect(" + postgres + ")";
                    }
                    break;
                case "hashCode":
                    if (args == null) {
                        return System.identityHashCode(proxy);
                    }
                    break;
                case "equals":
                    if (args != null && args.length == 1) {
                        return proxy == args[0];
                    }
                    break;
                default:
                    break;
            }
            try {
                return method.invoke(postgres, args);
            }
            catch (InvocationTargetException e) {
                throw e.getCause();
            }
        };
        return (DatabaseDialect) Proxy.newProxyInstance(ConcurrentPostgresDialect.class.getClassLoader(),
                new Class<?>[]{ DatabaseDialect.class }, handler);
    }

    /**
     * Debezium's statement, one column at a time, each column clause made IF NOT EXISTS, joined
     * into one ALTER as Debezium joins them (so all columns still arrive in one transaction).
     */
    static String alterTableStatement(DatabaseDialect postgres, String qualifiedTable, TableDescriptor table,
                                      JdbcSinkRecord record, Set<String> missingFields) {
        final String head = "ALTER TABLE " + qualifiedTable + " " + postgres.getAlterTablePrefix();
        final String columnPrefix = postgres.getAlterTableColumnPrefix();
        final String suffix = postgres.getAlterTableSuffix();
        final List<String> clauses = new ArrayList<>(missingFields.size());
        for (String field : missingFields) {
            String single = postgres.getAlterTableStatement(table, record, Collections.singleton(field));
            clauses.add(ifNotExists(single, head, columnPrefix, suffix));
        }
        return head + String.join(postgres.getAlterTableColumnDelimiter(), clauses) + suffix;
    }

    /**
     * The column clause of a one-column ALTER statement, {@code <head><columnPrefix> <column spec><suffix>},
     * as {@code <columnPrefix>IF NOT EXISTS <column spec>}. Refuses a statement of another shape
     * rather than guess where the clause starts (a later Debezium may build it differently).
     */
    static String ifNotExists(String single, String head, String columnPrefix, String suffix) {
        final String start = head + columnPrefix;
        if (!columnPrefix.strip().equalsIgnoreCase("ADD COLUMN") || !single.startsWith(start)
                || !single.endsWith(suffix) || single.length() < start.length() + suffix.length()) {
            throw new IllegalStateException("Cannot make this ALTER statement IF NOT EXISTS, its shape is not "
                    + "'" + start + "<column>" + suffix + "': " + single);
        }
        String spec = single.substring(start.length(), single.length() - suffix.length()).strip();
        if (spec.isEmpty()) {
            throw new IllegalStateException("ALTER statement without a column: " + single);
        }
        return columnPrefix.strip() + " " + IF_NOT_EXISTS + " " + spec;
    }
}
