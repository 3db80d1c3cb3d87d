package io.conveyor.transforms;

/** The version Connect reports for each transform, taken from the jar manifest written by the build. */
final class PluginVersion {

    private static final String VERSION = resolve();

    private PluginVersion() {
    }

    static String get() {
        return VERSION;
    }

    private static String resolve() {
        String version = PluginVersion.class.getPackage().getImplementationVersion();
        // Unpackaged classes (tests, IDE runs) have no manifest.
        return version == null ? "unknown" : version;
    }
}
