package io.conveyor.transforms;

import java.util.List;
import java.util.Map;

import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.transforms.util.SchemaUtil;

/** Schema and Struct helpers shared by the transforms. */
final class Schemas {

    private Schemas() {
    }

    /** A struct builder carrying the name, version, doc, parameters and optionality of {@code schema}. */
    static SchemaBuilder structLike(Schema schema) {
        SchemaBuilder builder = SchemaUtil.copySchemaBasics(schema, SchemaBuilder.struct());
        if (schema.isOptional()) {
            builder.optional();
        }
        return builder;
    }

    /**
     * An optional copy of {@code schema} without its default. Always a new instance, even when the input is
     * already optional: {@link #project} treats a changed instance as "do not copy the old value".
     * The default is dropped because Struct.get returns the default for a null, which would hide the null.
     */
    static Schema optional(Schema schema) {
        SchemaBuilder builder;
        switch (schema.type()) {
            case STRUCT:
                builder = SchemaUtil.copySchemaBasics(schema, SchemaBuilder.struct());
                for (Field field : schema.fields()) {
                    builder.field(field.name(), field.schema());
                }
                break;
            case ARRAY:
                builder = SchemaUtil.copySchemaBasics(schema, SchemaBuilder.array(schema.valueSchema()));
                break;
            case MAP:
                builder = SchemaUtil.copySchemaBasics(schema,
                        SchemaBuilder.map(schema.keySchema(), schema.valueSchema()));
                break;
            default:
                builder = SchemaUtil.copySchemaBasics(schema, SchemaBuilder.type(schema.type()));
        }
        return builder.optional().build();
    }

    /**
     * Copies {@code in} into a new Struct of schema {@code out}, matching fields by name. Where a field's
     * schema in {@code out} is the very instance found in {@code in}, the value is shared; where it is a
     * different struct schema the nested Struct is projected the same way; any other changed field is left
     * null for the caller to fill. Fields only in {@code out} are left null too.
     */
    static Struct project(Struct in, Schema out) {
        Struct result = new Struct(out);
        Schema inSchema = in.schema();
        for (Field field : out.fields()) {
            Field inField = inSchema.field(field.name());
            if (inField == null) {
                continue;
            }
            Object value = in.getWithoutDefault(field.name());
            if (field.schema() == inField.schema()) {
                result.put(field, value);
            } else if (value instanceof Struct && field.schema().type() == Schema.Type.STRUCT) {
                result.put(field, project((Struct) value, field.schema()));
            }
        }
        return result;
    }

    static boolean isContainer(Schema schema) {
        Schema.Type type = schema.type();
        return type == Schema.Type.STRUCT || type == Schema.Type.MAP || type == Schema.Type.ARRAY;
    }

    /** A short description of what was found, for error messages; never the value itself. */
    static String describe(Object found) {
        if (found == null) {
            return "null";
        }
        if (found instanceof Schema.Type) {
            return "schema type " + found;
        }
        if (found instanceof Struct) {
            return "a struct";
        }
        if (found instanceof Map) {
            return "a map";
        }
        if (found instanceof List) {
            return "a list";
        }
        if (found instanceof String) {
            return "a string";
        }
        return "a value of type " + found.getClass().getSimpleName();
    }
}
