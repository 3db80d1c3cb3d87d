package io.conveyor.transforms;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.transforms.Transformation;

/**
 * What every transform in this plugin answers the same way: the config definition it is built with, and
 * the plugin version Connect reports for it. Transforms that cache derived schemas override
 * {@link #close()} to let go of them.
 */
abstract class BaseTransformation<R extends ConnectRecord<R>> implements Transformation<R> {

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
