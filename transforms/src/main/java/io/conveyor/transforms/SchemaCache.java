package io.conveyor.transforms;

import java.util.function.Function;

import org.apache.kafka.common.cache.Cache;
import org.apache.kafka.common.cache.LRUCache;
import org.apache.kafka.common.cache.SynchronizedCache;

/**
 * What a transform derives from an input schema (an output schema, a plan), kept for the schemas seen
 * most recently. Records of one topic nearly always share a schema, so the work is done once per schema
 * instead of once per record. Safe for concurrent use; a value that fails to derive is not cached.
 */
final class SchemaCache<K, V> {

    private final Cache<K, V> cache;

    SchemaCache(int maxSize) {
        cache = new SynchronizedCache<>(new LRUCache<>(maxSize));
    }

    /** The value cached for {@code key}, or {@code derive(key)}, cached, when there is none. */
    V get(K key, Function<K, V> derive) {
        V value = cache.get(key);
        if (value == null) {
            value = derive.apply(key);
            cache.put(key, value);
        }
        return value;
    }
}
