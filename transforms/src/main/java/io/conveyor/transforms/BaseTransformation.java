package io.conveyor.transforms;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.components.Versioned;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.transforms.Transformation;

/**
 * What every transform in this plugin answers the same way: the config definition it is built with, and
 * the plugin version Connect reports for it ({@link Versioned}: without it Connect's plugin listing says
 * "undefined"). Transforms that cache derived schemas override
 * {@link #close()} to let go of them.
 */
abstract class BaseTransformation<R extends ConnectRecord<R>> implements Transformation<R>, Versioned {

    private final ConfigDef configDef;

    BaseTransformation(ConfigDef configDef) {
        this.configDef = configDef;
    }

    @Override
    public ConfigDef config() {
        return configDef;
    }

    @Override
    public String version() {
        return PluginVersion.get();
    }

    @Override
    public void close() {
    }
}
