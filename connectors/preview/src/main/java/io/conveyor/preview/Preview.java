package io.conveyor.preview;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigTransformer;
import org.apache.kafka.common.config.provider.ConfigProvider;
import org.apache.kafka.common.config.provider.EnvVarConfigProvider;
import org.apache.kafka.common.config.provider.FileConfigProvider;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.header.ConnectHeaders;
import org.apache.kafka.connect.header.Headers;
import org.apache.kafka.connect.runtime.ConnectMetrics;
import org.apache.kafka.connect.runtime.ConnectorConfig;
import org.apache.kafka.connect.runtime.SinkConnectorConfig;
import org.apache.kafka.connect.runtime.TransformationChain;
import org.apache.kafka.connect.runtime.TransformationStage;
import org.apache.kafka.connect.runtime.WorkerConfig;
import org.apache.kafka.connect.runtime.distributed.DistributedConfig;
import org.apache.kafka.connect.runtime.errors.ErrorHandlingMetrics;
import org.apache.kafka.connect.runtime.errors.ErrorReporter;
import org.apache.kafka.connect.runtime.errors.ProcessingContext;
import org.apache.kafka.connect.runtime.errors.RetryWithToleranceOperator;
import org.apache.kafka.connect.runtime.errors.Stage;
import org.apache.kafka.connect.runtime.isolation.LoaderSwap;
import org.apache.kafka.connect.runtime.isolation.PluginUtils;
import org.apache.kafka.connect.runtime.isolation.Plugins;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.storage.Converter;
import org.apache.kafka.connect.storage.HeaderConverter;
import org.apache.kafka.connect.util.ConnectorTaskId;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;
import java.util.regex.Pattern;

/**
 * What a sink connector would do with real records, without writing anywhere.
 *
 * <p>The connector's converters, header converter, predicates and transforms are built the way
 * {@code Worker.startTask} builds them (the connector's class loader, {@code Plugins} over the
 * worker's plugin path, {@code ConnectorConfig.transformationStages}), and each record goes
 * through {@code WorkerSinkTask.convertAndTransformRecord}'s steps with a real
 * {@link RetryWithToleranceOperator} under the connector's {@code errors.*} settings. Its only
 * error reporter records what Connect's dead-letter reporter would have written in its
 * {@code __connect.errors.*} headers.
 *
 * <p>Prints one JSON object per record (input, outcome, table, columns, row or dead letter) and a
 * last line {@code {"summary": ...}}. Exit codes: 0 done, 2 bad arguments or connector config,
 * 3 Kafka or the input unreadable.
 */
public final class Preview {

    static final int OK = 0;
    static final int BAD_CONFIG = 2;
    static final int SOURCE_FAILED = 3;

    private static final ObjectMapper JSON = new ObjectMapper();

    private Preview() {
    }

    public static void main(String[] argv) {
        PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true,
                StandardCharsets.UTF_8);
        int code;
        try {
            code = run(Args.parse(argv), out);
        } catch (UsageException e) {
            out.println(error("usage", e.getMessage()));
            code = BAD_CONFIG;
        }
        out.flush();
        System.exit(code);
    }

    static int run(Args args, PrintStream out) {
        Map<String, String> workerProps;
        Map<String, String> connProps;
        String name;
        try {
            workerProps = loadProperties(args.workerConfig);
            if (args.bootstrap != null) {
                workerProps.put("bootstrap.servers", args.bootstrap);
            }
            JsonNode doc = JSON.readTree(readAll(args.connector));
            JsonNode config = doc.path("config");
            if (!config.isObject()) {
                throw new UsageException("the connector file has no \"config\" object");
            }
            name = doc.path("name").asText(config.path("name").asText("preview"));
            connProps = new LinkedHashMap<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = config.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                connProps.put(e.getKey(), e.getValue().asText());
            }
            connProps.put("name", name);
            connProps.putAll(args.overrides);
        } catch (IOException | UsageException e) {
            out.println(error("config", e.getMessage()));
            return BAD_CONFIG;
        }

        Pipeline pipeline;
        try {
            pipeline = Pipeline.build(name, workerProps, resolveProviders(workerProps, connProps));
        } catch (RuntimeException e) {
            out.println(error("config", describe(e)));
            return BAD_CONFIG;
        }

        List<ConsumerRecord<byte[], byte[]>> records;
        try {
            records = args.input != null ? readInput(args.input)
                    : readKafka(args, workerProps, pipeline.connProps);
        } catch (IOException | RuntimeException e) {
            out.println(error("source", describe(e)));
            return SOURCE_FAILED;
        }

        Map<String, Integer> outcomes = new LinkedHashMap<>();
        for (ConsumerRecord<byte[], byte[]> record : records) {
            ObjectNode result = pipeline.preview(record);
            outcomes.merge(result.get("outcome").asText(), 1, Integer::sum);
            out.println(result.toString());
        }
        ObjectNode summary = JsonNodeFactory.instance.objectNode();
        ObjectNode body = summary.putObject("summary");
        body.put("connector", name);
        body.put("records", records.size());
        body.set("outcomes", JSON.valueToTree(outcomes));
        body.put("transforms", pipeline.chainDescription);
        out.println(summary.toString());
        pipeline.close();
        return OK;
    }

    // -- configuration --------------------------------------------------------------------

    static Map<String, String> loadProperties(Path path) throws IOException {
        Properties p = new Properties();
        try (InputStream in = new FileInputStream(path.toFile())) {
            p.load(in);
        }
        Map<String, String> m = new LinkedHashMap<>();
        for (String k : p.stringPropertyNames()) {
            m.put(k, p.getProperty(k));
        }
        return m;
    }

    /** ${env:NAME} and ${file:path:key} resolved as the worker resolves them. */
    static Map<String, String> resolveProviders(Map<String, String> worker, Map<String, String> conn) {
        Map<String, ConfigProvider> providers = new HashMap<>();
        EnvVarConfigProvider env = new EnvVarConfigProvider();
        env.configure(Map.of());
        providers.put("env", env);
        FileConfigProvider file = new FileConfigProvider();
        file.configure(Map.of());
        providers.put("file", file);
        return new HashMap<>(new ConfigTransformer(providers).transform(conn).data());
    }

    private static String readAll(String source) throws IOException {
        if ("-".equals(source)) {
            return new String(System.in.readAllBytes(), StandardCharsets.UTF_8);
        }
        return Files.readString(Path.of(source), StandardCharsets.UTF_8);
    }

    // -- records --------------------------------------------------------------------------

    /** Records saved by an earlier preview (its "input" objects, one JSON object a line). */
    static List<ConsumerRecord<byte[], byte[]>> readInput(String source) throws IOException {
        List<ConsumerRecord<byte[], byte[]>> records = new ArrayList<>();
        for (String line : readAll(source).split("\n")) {
            if (line.isBlank()) {
                continue;
            }
            JsonNode n = JSON.readTree(line);
            if (n.has("summary") || n.has("error")) {
                continue;
            }
            JsonNode in = n.has("input") ? n.get("input") : n;
            RecordHeaders headers = new RecordHeaders();
            for (JsonNode h : in.path("headers")) {
                headers.add(h.path("key").asText(), decode(h.get("value_b64")));
            }
            byte[] key = decode(in.get("key_b64"));
            byte[] value = decode(in.get("value_b64"));
            records.add(new ConsumerRecord<>(in.path("topic").asText(), in.path("partition").asInt(),
                    in.path("offset").asLong(), in.path("timestamp").asLong(-1),
                    TimestampType.forName(in.path("timestamp_type").asText("CreateTime")),
                    key == null ? -1 : key.length, value == null ? -1 : value.length, key, value,
                    headers, java.util.Optional.empty()));
        }
        return records;
    }

    private static byte[] decode(JsonNode n) {
        return n == null || n.isNull() ? null : Base64.getDecoder().decode(n.asText());
    }

    static Map<String, Object> consumerConfig(Map<String, String> worker, Map<String, String> conn) {
        Map<String, Object> c = new HashMap<>();
        for (Map.Entry<String, String> e : worker.entrySet()) {
            String k = e.getKey();
            if (k.equals("bootstrap.servers") || k.startsWith("security.") || k.startsWith("sasl.")
                    || k.startsWith("ssl.")) {
                c.put(k, e.getValue());
            } else if (k.startsWith("consumer.")) {
                c.put(k.substring("consumer.".length()), e.getValue());
            }
        }
        for (Map.Entry<String, String> e : conn.entrySet()) {
            if (e.getKey().startsWith(ConnectorConfig.CONNECTOR_CLIENT_CONSUMER_OVERRIDES_PREFIX)) {
                c.put(e.getKey().substring(ConnectorConfig.CONNECTOR_CLIENT_CONSUMER_OVERRIDES_PREFIX.length()),
                        e.getValue());
            }
        }
        // The preview reads; it never joins the sink's group or commits anything.
        c.remove("group.id");
        c.remove("group.instance.id");
        c.put("enable.auto.commit", "false");
        c.put("client.id", "conveyor-preview");
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        return c;
    }

    static List<ConsumerRecord<byte[], byte[]>> readKafka(Args args, Map<String, String> worker,
                                                        Map<String, String> conn) {
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerConfig(worker, conn))) {
            Duration timeout = Duration.ofMillis(args.timeoutMs);
            List<TopicPartition> partitions = new ArrayList<>();
            Map<String, List<PartitionInfo>> all = consumer.listTopics(timeout);
            String regex = conn.getOrDefault(SinkConnectorConfig.TOPICS_REGEX_CONFIG, "");
            List<String> listed = new ArrayList<>();
            for (String t : conn.getOrDefault(SinkConnectorConfig.TOPICS_CONFIG, "").split(",")) {
                if (!t.isBlank()) {
                    listed.add(t.trim());
                }
            }
            Pattern pattern = regex.isEmpty() ? null : Pattern.compile(regex);
            for (Map.Entry<String, List<PartitionInfo>> e : all.entrySet()) {
                String topic = e.getKey();
                boolean read = listed.contains(topic) || (pattern != null && pattern.matcher(topic).matches());
                if (!read || (args.topic != null && !args.topic.equals(topic))) {
                    continue;
                }
                for (PartitionInfo p : e.getValue()) {
                    if (args.partition == null || args.partition == p.partition()) {
                        partitions.add(new TopicPartition(topic, p.partition()));
                    }
                }
            }
            if (partitions.isEmpty()) {
                throw new IllegalStateException("no partition to read: the connector's topics"
                        + (args.topic != null ? " do not include " + args.topic : " match no topic yet"));
            }
            consumer.assign(partitions);
            Map<TopicPartition, Long> begin = consumer.beginningOffsets(partitions, timeout);
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions, timeout);
            Map<TopicPartition, Long> start = new HashMap<>();
            if (args.sinceMs != null) {
                Map<TopicPartition, Long> query = new HashMap<>();
                partitions.forEach(tp -> query.put(tp, args.sinceMs));
                Map<TopicPartition, OffsetAndTimestamp> found = consumer.offsetsForTimes(query, timeout);
                for (TopicPartition tp : partitions) {
                    OffsetAndTimestamp o = found.get(tp);
                    start.put(tp, o == null ? end.get(tp) : o.offset());
                }
            } else {
                for (TopicPartition tp : partitions) {
                    long b = begin.get(tp);
                    long e = end.get(tp);
                    long s = switch (args.from) {
                        case "earliest" -> b;
                        case "latest" -> Math.max(b, e - args.records);
                        default -> Math.min(Math.max(b, Long.parseLong(args.from)), e);
                    };
                    start.put(tp, s);
                }
            }
            List<TopicPartition> pending = new ArrayList<>();
            for (TopicPartition tp : partitions) {
                if (start.get(tp) < end.get(tp)) {
                    consumer.seek(tp, start.get(tp));
                    pending.add(tp);
                }
            }
            consumer.assign(pending);
            List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
            Map<TopicPartition, Integer> perPartition = new HashMap<>();
            long deadline = System.currentTimeMillis() + args.timeoutMs;
            while (!pending.isEmpty() && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    if (r.offset() < end.get(tp) && perPartition.getOrDefault(tp, 0) < args.records) {
                        got.add(r);
                        perPartition.merge(tp, 1, Integer::sum);
                    }
                }
                List<TopicPartition> done = new ArrayList<>();
                for (TopicPartition tp : pending) {
                    if (consumer.position(tp) >= end.get(tp) || perPartition.getOrDefault(tp, 0) >= args.records) {
                        done.add(tp);
                    }
                }
                if (!done.isEmpty()) {
                    pending.removeAll(done);
                    consumer.assign(pending);
                }
            }
            got.sort(Comparator.comparingLong((ConsumerRecord<byte[], byte[]> r) -> r.timestamp())
                    .thenComparing(ConsumerRecord::topic)
                    .thenComparingInt(ConsumerRecord::partition)
                    .thenComparingLong(ConsumerRecord::offset));
            if (got.size() > args.records) {
                got = "latest".equals(args.from)
                        ? new ArrayList<>(got.subList(got.size() - args.records, got.size()))
                        : new ArrayList<>(got.subList(0, args.records));
            }
            return got;
        }
    }

    // -- the worker's pipeline --------------------------------------------------------------

    /** What Connect's DLQ reporter would write: the context of the first failure. */
    static final class Capture implements ErrorReporter<ConsumerRecord<byte[], byte[]>> {
        Stage stage;
        Class<?> executingClass;
        Throwable error;

        @Override
        public java.util.concurrent.Future<org.apache.kafka.clients.producer.RecordMetadata> report(
                ProcessingContext<ConsumerRecord<byte[], byte[]>> context) {
            if (error == null) {
                stage = context.stage();
                executingClass = context.executingClass();
                error = context.error();
            }
            return CompletableFuture.completedFuture(null);
        }

        void reset() {
            stage = null;
            executingClass = null;
            error = null;
        }
    }

    static final class Pipeline implements AutoCloseable {
        final Plugins plugins;
        final ClassLoader loader;
        final Map<String, String> connProps;
        final Converter keyConverter;
        final Converter valueConverter;
        final HeaderConverter headerConverter;
        final TransformationChain<ConsumerRecord<byte[], byte[]>, SinkRecord> chain;
        final RetryWithToleranceOperator<ConsumerRecord<byte[], byte[]>> operator;
        final Capture capture = new Capture();
        final ConnectMetrics metrics;
        final String chainDescription;
        final Rows rows;

        private Pipeline(Plugins plugins, ClassLoader loader, Map<String, String> connProps, Converter key,
                         Converter value, HeaderConverter header,
                         TransformationChain<ConsumerRecord<byte[], byte[]>, SinkRecord> chain,
                         RetryWithToleranceOperator<ConsumerRecord<byte[], byte[]>> operator,
                         ConnectMetrics metrics, Rows rows) {
            this.plugins = plugins;
            this.loader = loader;
            this.connProps = connProps;
            this.keyConverter = key;
            this.valueConverter = value;
            this.headerConverter = header;
            this.chain = chain;
            this.operator = operator;
            this.metrics = metrics;
            this.chainDescription = chain.toString();
            this.rows = rows;
            operator.reporters(List.of(capture));
        }

        /** As {@code Worker.startTask} and its sink task builder do it. */
        static Pipeline build(String name, Map<String, String> workerProps, Map<String, String> connProps) {
            workerProps.putIfAbsent("group.id", "conveyor-preview");
            DistributedConfig workerConfig = new DistributedConfig(workerProps);
            Plugins plugins = new Plugins(workerProps);
            ConnectorTaskId id = new ConnectorTaskId(name, 0);
            ConnectMetrics metrics = new ConnectMetrics("conveyor-preview", workerConfig, Time.SYSTEM, "preview");
            ClassLoader loader;
            try {
                loader = plugins.connectorLoader(connProps.get(ConnectorConfig.CONNECTOR_CLASS_CONFIG),
                        PluginUtils.connectorVersionRequirement(connProps.get(ConnectorConfig.CONNECTOR_VERSION)));
            } catch (Exception e) {
                throw new IllegalArgumentException("connector.class: " + describe(e), e);
            }
            try (LoaderSwap swap = plugins.withClassLoader(loader)) {
                SinkConnectorConfig config = new SinkConnectorConfig(plugins, connProps);
                Converter key = plugins.newConverter(config, ConnectorConfig.KEY_CONVERTER_CLASS_CONFIG,
                        ConnectorConfig.KEY_CONVERTER_VERSION_CONFIG);
                Converter value = plugins.newConverter(config, WorkerConfig.VALUE_CONVERTER_CLASS_CONFIG,
                        ConnectorConfig.VALUE_CONVERTER_VERSION_CONFIG);
                HeaderConverter header = plugins.newHeaderConverter(config,
                        ConnectorConfig.HEADER_CONVERTER_CLASS_CONFIG, ConnectorConfig.HEADER_CONVERTER_VERSION_CONFIG);
                if (key == null) {
                    key = plugins.newConverter(workerConfig, WorkerConfig.KEY_CONVERTER_CLASS_CONFIG,
                            WorkerConfig.KEY_CONVERTER_VERSION);
                }
                if (value == null) {
                    value = plugins.newConverter(workerConfig, WorkerConfig.VALUE_CONVERTER_CLASS_CONFIG,
                            WorkerConfig.VALUE_CONVERTER_VERSION);
                }
                if (header == null) {
                    header = plugins.newHeaderConverter(workerConfig, WorkerConfig.HEADER_CONVERTER_CLASS_CONFIG,
                            WorkerConfig.HEADER_CONVERTER_VERSION);
                }
                RetryWithToleranceOperator<ConsumerRecord<byte[], byte[]>> operator =
                        new RetryWithToleranceOperator<>(config.errorRetryTimeout(), config.errorMaxDelayInMillis(),
                                config.errorToleranceType(), Time.SYSTEM, new ErrorHandlingMetrics(id, metrics));
                List<TransformationStage<SinkRecord>> stages = config.transformationStages(plugins, id, metrics);
                TransformationChain<ConsumerRecord<byte[], byte[]>, SinkRecord> chain =
                        new TransformationChain<>(stages, operator);
                return new Pipeline(plugins, loader, connProps, key, value, header, chain, operator, metrics,
                        new Rows(connProps));
            }
        }

        ObjectNode preview(ConsumerRecord<byte[], byte[]> msg) {
            ObjectNode result = JsonNodeFactory.instance.objectNode();
            result.set("input", Render.input(msg));
            capture.reset();
            ProcessingContext<ConsumerRecord<byte[], byte[]>> context = new ProcessingContext<>(msg);
            try (LoaderSwap swap = plugins.withClassLoader(loader)) {
                SinkRecord out = convertAndTransform(context, msg, result);
                if (context.failed()) {
                    result.put("outcome", "dead_letter");
                    result.set("dead_letter", deadLetter());
                } else if (out == null) {
                    result.put("outcome", "filtered");
                } else {
                    result.put("outcome", "row");
                    rows.describe(out, result);
                }
            } catch (RuntimeException e) {
                // Not tolerated (errors.tolerance=none, or an error Connect never tolerates): the task fails.
                result.put("outcome", "task_failure");
                ObjectNode failure = capture.error != null ? deadLetter() : JsonNodeFactory.instance.objectNode();
                failure.put("task_error", describe(e));
                result.set("task_failure", failure);
            }
            return result;
        }

        /** {@code WorkerSinkTask.convertAndTransformRecord}, step by step. */
        private SinkRecord convertAndTransform(ProcessingContext<ConsumerRecord<byte[], byte[]>> context,
                                               ConsumerRecord<byte[], byte[]> msg, ObjectNode result) {
            SchemaAndValue key = operator.execute(context,
                    () -> keyConverter.toConnectData(msg.topic(), msg.headers(), msg.key()),
                    Stage.KEY_CONVERTER, keyConverter.getClass());
            SchemaAndValue value = operator.execute(context,
                    () -> valueConverter.toConnectData(msg.topic(), msg.headers(), msg.value()),
                    Stage.VALUE_CONVERTER, valueConverter.getClass());
            Headers headers = operator.execute(context, () -> convertHeaders(msg), Stage.HEADER_CONVERTER,
                    headerConverter.getClass());
            if (context.failed()) {
                return null;
            }
            ObjectNode converted = result.putObject("converted");
            converted.set("key", Render.value(key.schema(), key.value()));
            converted.set("value", Render.value(value.schema(), value.value()));
            Long timestamp = msg.timestamp() < 0 ? null : msg.timestamp();
            SinkRecord record = new SinkRecord(msg.topic(), msg.partition(), key.schema(), key.value(),
                    value.schema(), value.value(), msg.offset(), timestamp, msg.timestampType(), headers);
            return chain.apply(context, record);
        }

        private Headers convertHeaders(ConsumerRecord<byte[], byte[]> msg) {
            Headers result = new ConnectHeaders();
            for (org.apache.kafka.common.header.Header h : msg.headers()) {
                result.add(h.key(), headerConverter.toConnectHeader(msg.topic(), h.key(), h.value()));
            }
            return result;
        }

        private ObjectNode deadLetter() {
            // The values of DeadLetterQueueReporter's __connect.errors.* headers.
            ObjectNode dl = JsonNodeFactory.instance.objectNode();
            dl.put("stage", capture.stage == null ? null : capture.stage.name());
            dl.put("class_name", capture.executingClass == null ? null : capture.executingClass.getName());
            dl.put("exception_class_name", capture.error == null ? null : capture.error.getClass().getName());
            dl.put("exception_message", capture.error == null ? null : capture.error.getMessage());
            dl.put("topic", connProps.getOrDefault(SinkConnectorConfig.DLQ_TOPIC_NAME_CONFIG, ""));
            return dl;
        }

        @Override
        public void close() {
            chain.close();
            operator.close();
            metrics.stop();
        }
    }

    // -- small helpers --------------------------------------------------------------------

    static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (sb.length() > 0) {
                sb.append(": ");
            }
            sb.append(t.getClass().getSimpleName());
            if (t.getMessage() != null) {
                sb.append(" (").append(t.getMessage()).append(')');
            }
            if (t.getCause() == t) {
                break;
            }
        }
        return sb.toString();
    }

    static String error(String kind, String message) {
        ObjectNode n = JsonNodeFactory.instance.objectNode();
        ObjectNode e = n.putObject("error");
        e.put("kind", kind);
        e.put("message", message);
        return n.toString();
    }

    static final class UsageException extends RuntimeException {
        UsageException(String message) {
            super(message);
        }
    }

    /** Command-line arguments; every one documented by the Python front end's --help. */
    static final class Args {
        String connector = "-";
        Path workerConfig = Path.of("/opt/connect/config/connect-distributed.properties");
        String bootstrap;
        int records = 10;
        String topic;
        Integer partition;
        String from = "earliest";
        Long sinceMs;
        String input;
        long timeoutMs = 20_000;
        final Map<String, String> overrides = new LinkedHashMap<>();

        static Args parse(String[] argv) {
            Args a = new Args();
            for (int i = 0; i < argv.length; i++) {
                String flag = argv[i];
                if (i + 1 >= argv.length) {
                    throw new UsageException(flag + " needs a value");
                }
                String v = argv[++i];
                try {
                    switch (flag) {
                        case "--connector" -> a.connector = v;
                        case "--worker-config" -> a.workerConfig = Path.of(v);
                        case "--bootstrap" -> a.bootstrap = v;
                        case "--records" -> a.records = Integer.parseInt(v);
                        case "--topic" -> a.topic = v;
                        case "--partition" -> a.partition = Integer.parseInt(v);
                        case "--from" -> {
                            if (!v.equals("earliest") && !v.equals("latest")) {
                                Long.parseLong(v);
                            }
                            a.from = v;
                        }
                        case "--since-ms" -> a.sinceMs = Long.parseLong(v);
                        case "--input" -> a.input = v;
                        case "--timeout-ms" -> a.timeoutMs = Long.parseLong(v);
                        case "--set" -> {
                            int eq = v.indexOf('=');
                            if (eq <= 0) {
                                throw new UsageException("--set needs KEY=VALUE, got " + v);
                            }
                            a.overrides.put(v.substring(0, eq), v.substring(eq + 1));
                        }
                        default -> throw new UsageException("unknown option " + flag);
                    }
                } catch (NumberFormatException e) {
                    throw new UsageException(flag + " needs a number, got " + v);
                }
            }
            if (a.records < 1) {
                throw new UsageException("--records must be at least 1");
            }
            return a;
        }
    }
}
