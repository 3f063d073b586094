import DiskWatch
import Foundation
@testable import Platform
import Replication
import Testing
@testable import Remediate
@testable import guardian

/// A strict parser of the Prometheus text format 0.0.4, as the tests judge
/// guardian's output: every line is `# HELP name text`, `# TYPE name type`
/// or a sample `name{label="value",...} value`; HELP and TYPE come once per
/// family, before its samples; a family's samples are contiguous; names,
/// label names and escapes are valid; the text ends with a newline.
struct Exposition {
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    var help: [String: String] = [:]
    var types: [String: String] = [:]
    var samples: [Sample] = []

    struct Invalid: Error, CustomStringConvertible {
        let line: Int
        let why: String
        var description: String { "line \(line): \(why)" }
    }

    static func isName(_ s: Substring, colons: Bool = true) -> Bool {
        guard let f = s.unicodeScalars.first else { return false }
        func start(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" || (colons && c == ":") }
        return start(f) && s.unicodeScalars.allSatisfy { start($0) || ("0"..."9").contains($0) }
    }

    init(parsing text: String) throws {
        guard text.hasSuffix("\n") else { throw Invalid(line: 0, why: "no final newline") }
        var current: String?
        var finished: Set<String> = []
        for (i, raw) in text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let n = i + 1
            let line = Substring(raw)
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let isHelp = line.hasPrefix("# HELP ")
                let rest = line.dropFirst(7)
                let name = rest.prefix { $0 != " " }
                guard Self.isName(name), rest.count > name.count else { throw Invalid(line: n, why: "bad metadata line \(line)") }
                let value = String(rest.dropFirst(name.count + 1))
                let key = String(name)
                if key != current {
                    guard !finished.contains(key) else { throw Invalid(line: n, why: "\(key) appears in two places") }
                    if let c = current { finished.insert(c) }
                    current = key
                }
                guard !samples.contains(where: { $0.name == key }) else { throw Invalid(line: n, why: "\(key): metadata after samples") }
                if isHelp {
                    guard help[key] == nil else { throw Invalid(line: n, why: "\(key): second HELP") }
                    // Only \\ and \n escapes are allowed in HELP.
                    var escaped = false
                    for c in value {
                        if escaped { guard c == "\\" || c == "n" else { throw Invalid(line: n, why: "bad HELP escape") }; escaped = false } else if c == "\\" { escaped = true }
                    }
                    guard !escaped else { throw Invalid(line: n, why: "HELP ends in a backslash") }
                    help[key] = value
                } else {
                    guard types[key] == nil else { throw Invalid(line: n, why: "\(key): second TYPE") }
                    guard ["counter", "gauge", "untyped", "histogram", "summary"].contains(value) else { throw Invalid(line: n, why: "bad type \(value)") }
                    types[key] = value
                }
                continue
            }
            guard !line.hasPrefix("#"), !line.isEmpty else { throw Invalid(line: n, why: "unexpected line \"\(line)\"") }
            // A sample.
            let name = line.prefix { $0 != "{" && $0 != " " }
            guard Self.isName(name) else { throw Invalid(line: n, why: "bad metric name in \(line)") }
            let key = String(name)
            guard key == current, help[key] != nil, types[key] != nil else {
                throw Invalid(line: n, why: "\(key): sample without HELP and TYPE right before, or outside its family")
            }
            var rest = line.dropFirst(name.count)
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let label = rest.prefix { $0 != "=" }
                    guard Self.isName(label, colons: false), !label.hasPrefix("__") else { throw Invalid(line: n, why: "bad label name \(label)") }
                    rest = rest.dropFirst(label.count)
                    guard rest.hasPrefix("=\"") else { throw Invalid(line: n, why: "label without =\"") }
                    rest = rest.dropFirst(2)
                    var value = ""
                    var closed = false
                    while let c = rest.first {
                        rest = rest.dropFirst()
                        if c == "\\" {
                            guard let e = rest.first else { break }
                            rest = rest.dropFirst()
                            switch e {
                            case "\\": value.append("\\")
                            case "\"": value.append("\"")
                            case "n": value.append("\n")
                            default: throw Invalid(line: n, why: "bad escape \\\(e)")
                            }
                        } else if c == "\"" {
                            closed = true
                            break
                        } else {
                            value.append(c)
                        }
                    }
                    guard closed else { throw Invalid(line: n, why: "unterminated label value") }
                    guard labels.updateValue(value, forKey: String(label)) == nil else { throw Invalid(line: n, why: "duplicate label \(label)") }
                    if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" { throw Invalid(line: n, why: "expected , or }") }
                }
                rest = rest.dropFirst()
            }
            guard rest.first == " " else { throw Invalid(line: n, why: "no space before the value") }
            let valueText = rest.dropFirst()
            let value: Double
            switch valueText {
            case "+Inf": value = .infinity
            case "-Inf": value = -.infinity
            case "NaN": value = .nan
            default:
                guard let v = Double(valueText), !valueText.contains(" ") else { throw Invalid(line: n, why: "bad value \(valueText)") }
                value = v
            }
            let sample = Sample(name: key, labels: labels, value: value)
            guard !samples.contains(where: { $0.name == key && $0.labels == labels }) else { throw Invalid(line: n, why: "duplicate series \(line)") }
            samples.append(sample)
        }
    }

    func values(_ name: String) -> [Sample] { samples.filter { $0.name == name } }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}

@Suite struct MetricsTests {
    // MARK: - The exposition writer

    /// Through swift-metrics into swift-prometheus: escaping, help text,
    /// counters advanced by their growth (and started over when the count
    /// went down), series that disappear are removed, special values.
    @Test func pipelineRecordsAndRenders() throws {
        let pipeline = MetricsPipeline()
        func samples(total: Int64, withSecond: Bool) -> MetricSamples {
            var m = MetricSamples()
            m.family("guardian_test_info", .gauge, "A \\ backslash.") {
                $0.add([("db", "/data/we\"ird\\name\nx.db"), ("replica", "s3")], 1)
                if withSecond { $0.add([("db", "plain"), ("replica", "file")], 2.5) }
            }
            m.family("guardian_test_total", .counter, "Counts.") { $0.add([], total) }
            m.family("guardian_test_special", .gauge, "Special values.") {
                $0.add([("k", "inf")], Double.infinity)
                $0.add([("k", "tiny")], 0.000015)
                $0.add([("k", "none")], nil as Double?)
            }
            return m
        }
        let first = try Exposition(parsing: pipeline.render(samples(total: 12345678901, withSecond: true)))
        #expect(first.value("guardian_test_info", ["db": "/data/we\"ird\\name\nx.db", "replica": "s3"]) == 1)
        #expect(first.value("guardian_test_info", ["db": "plain", "replica": "file"]) == 2.5)
        #expect(first.value("guardian_test_total") == 12345678901)
        #expect(first.types["guardian_test_total"] == "counter" && first.types["guardian_test_info"] == "gauge")
        #expect(first.help["guardian_test_info"] == "A \\\\ backslash.")
        #expect(first.value("guardian_test_special", ["k": "inf"]) == .infinity)
        #expect(first.value("guardian_test_special", ["k": "tiny"]) == 0.000015)
        #expect(first.values("guardian_test_special").count == 2, "no sample for an unknown value")

        let second = try Exposition(parsing: pipeline.render(samples(total: 12345678950, withSecond: false)))
        #expect(second.value("guardian_test_total") == 12345678950)
        #expect(second.values("guardian_test_info").count == 1, "the series that went away is gone")
        let reset = try Exposition(parsing: pipeline.render(samples(total: 7, withSecond: false)))
        #expect(reset.value("guardian_test_total") == 7, "a count that went down starts over (a reload)")
    }

    @Test func namesAreChecked() {
        #expect(MetricSamples.isValidMetricName("guardian_replica_lag_seconds"))
        #expect(MetricSamples.isValidMetricName("a:b_c9"))
        #expect(!MetricSamples.isValidMetricName("9lives"))
        #expect(!MetricSamples.isValidMetricName("guardian-lag"))
        #expect(!MetricSamples.isValidMetricName(""))
        #expect(MetricSamples.isValidLabelName("db"))
        #expect(!MetricSamples.isValidLabelName("__name"))
        #expect(!MetricSamples.isValidLabelName("a:b"))
    }

    /// The strict parser rejects what it must (so a pass means something).
    @Test(arguments: [
        "guardian_x 1\n",  // no HELP/TYPE
        "# HELP guardian_x h\n# TYPE guardian_x gauge\nguardian_x{a=\"b} 1\n",  // unterminated
        "# HELP guardian_x h\n# TYPE guardian_x gauge\nguardian_x{a=\"\\t\"} 1\n",  // bad escape
        "# HELP guardian_x h\n# TYPE guardian_x gauge\nguardian_x 1\n# HELP guardian_y h\n# TYPE guardian_y gauge\nguardian_y 1\nguardian_x 2\n",  // split family
        "# HELP guardian_x h\n# TYPE guardian_x gauge\nguardian_x one\n",  // bad value
        "# HELP guardian_x h\n# TYPE guardian_x gauge\nguardian_x 1",  // no final newline
        "# HELP guardian_x h\n# TYPE guardian_x gauge\nguardian_x{a=\"1\",a=\"2\"} 1\n",  // duplicate label
    ])
    func strictParserRejects(text: String) {
        #expect(throws: Exposition.Invalid.self) { try Exposition(parsing: text) }
    }

    /// Every family from a document with one of everything, checked value by value.
    @Test func metricsFromAStatusDocument() throws {
        let db = "/data/app \"main\".db"
        let doc = StatusDocument(
            version: "9.9.9", pid: 42, startedAt: "2026-11-25T10:00:00.500Z", uptimeSeconds: 60, config: "/etc/g.yml", state: "ready",
            databases: [DatabaseStatus(
                path: db, state: "open", pageSize: 4096, dbSize: 81920, walSize: 4152, txid: "00000000000004d2",
                lastCommit: "2026-11-25T10:00:59.250Z",
                checkpoint: CheckpointStatus(mode: "PASSIVE", busy: false, logFrames: 10, checkpointedFrames: 8, at: "2026-11-25T10:00:58.000Z"),
                checkpointResults: CheckpointCounts(ok: 7, busy: 2, failed: 1),
                replicas: [
                    ReplicaStatus(name: "local", type: "file", destination: "file:///b", state: "Syncing", position: "00000000000004d2", lagMs: 0, lastSync: "2026-11-25T10:00:59.300Z", requests: 40, bytes: 123456, errors: 0),
                    ReplicaStatus(name: "offsite", type: "s3", destination: "s3://b/p", state: "Failing", position: "00000000000004c0", lagMs: 12500, lastSync: nil, error: "connection refused", consecutiveFailures: 3, requests: 5, bytes: 999, errors: 7),
                ])],
            disk: [MountStatus(
                mountPoint: "/data", paths: [db], totalBytes: 1000, usedBytes: 820, availableBytes: 180, usedPercent: 82, inodesPercent: 10,
                forecastSecondsToFull: nil, level: .warn, ballast: BallastStatus(path: "/data/.ballast", sizeBytes: 100, state: "present"),
                lastRotation: nil, inodesTotal: 100, inodesUsed: 10, inodesAvailable: 90)],
            health: [HealthStatus(
                path: db, mode: "auto", state: "remediating", checkpoint: nil, integrity: IntegrityHealth(state: "corrupt"),
                openIncidents: [], lastIncident: nil, updatedAt: "2026-11-25T10:01:00.000Z", incidentsOpened: 3)])
        let e = try Exposition(parsing: GuardianMetrics.render(doc))
        let d = ["db": db]
        let local = ["db": db, "replica": "local", "type": "file"], offsite = ["db": db, "replica": "offsite", "type": "s3"]
        #expect(e.value("guardian_build_info", ["version": "9.9.9"]) == 1)
        #expect(e.value("guardian_process_start_time_seconds") == Timestamps.parse("2026-11-25T10:00:00.500Z")?.timeIntervalSince1970)
        #expect(e.value("guardian_state", ["state": "ready"]) == 1 && e.value("guardian_state", ["state": "starting"]) == 0)
        #expect(e.value("guardian_database_state", d.merging(["state": "open"]) { $1 }) == 1)
        #expect(e.values("guardian_database_state").filter { $0.value == 1 }.count == 1)
        #expect(e.value("guardian_database_txid", d) == 1234)
        #expect(e.value("guardian_database_size_bytes", d) == 81920)
        #expect(e.value("guardian_wal_size_bytes", d) == 4152)
        #expect(e.value("guardian_last_commit_timestamp_seconds", d) == Timestamps.parse("2026-11-25T10:00:59.250Z")?.timeIntervalSince1970)
        #expect(e.value("guardian_checkpoints_total", d.merging(["result": "ok"]) { $1 }) == 7)
        #expect(e.value("guardian_checkpoints_total", d.merging(["result": "busy"]) { $1 }) == 2)
        #expect(e.value("guardian_checkpoints_total", d.merging(["result": "failed"]) { $1 }) == 1)
        #expect(e.value("guardian_replica_state", local.merging(["state": "Syncing"]) { $1 }) == 1)
        #expect(e.value("guardian_replica_state", offsite.merging(["state": "Failing"]) { $1 }) == 1)
        #expect(e.value("guardian_replica_state", offsite.merging(["state": "Syncing"]) { $1 }) == 0)
        #expect(e.value("guardian_replica_lag_seconds", offsite) == 12.5)
        #expect(e.value("guardian_replica_txid", local) == 1234 && e.value("guardian_replica_txid", offsite) == 0x4c0)
        #expect(e.value("guardian_replica_last_sync_timestamp_seconds", offsite) == nil)
        #expect(e.value("guardian_replica_bytes_total", local) == 123456)
        #expect(e.value("guardian_replica_requests_total", offsite) == 5)
        #expect(e.value("guardian_replica_errors_total", offsite) == 7)
        #expect(e.value("guardian_replica_consecutive_failures", offsite) == 3)
        #expect(e.value("guardian_health_state", d.merging(["state": "remediating"]) { $1 }) == 1)
        #expect(e.value("guardian_integrity_state", d.merging(["state": "corrupt"]) { $1 }) == 1)
        #expect(e.value("guardian_incidents_open", d) == 0)
        #expect(e.value("guardian_incidents_opened_total", d) == 3)
        #expect(e.values("guardian_wal_health").isEmpty, "no checkpoint health yet: no sample")
        let m = ["mount": "/data"]
        #expect(e.value("guardian_disk_size_bytes", m) == 1000)
        #expect(e.value("guardian_disk_used_bytes", m) == 820)
        #expect(e.value("guardian_disk_available_bytes", m) == 180)
        #expect(e.value("guardian_disk_used_ratio", m) == 820.0 / 1000)
        #expect(e.value("guardian_disk_inodes", m) == 100 && e.value("guardian_disk_inodes_used", m) == 10 && e.value("guardian_disk_inodes_available", m) == 90)
        #expect(e.value("guardian_disk_inodes_used_ratio", m) == 0.1)
        #expect(e.value("guardian_disk_level", ["mount": "/data", "level": "warn"]) == 1)
        #expect(e.value("guardian_disk_level", ["mount": "/data", "level": "normal"]) == 0)
        #expect(e.value("guardian_disk_time_to_full_seconds", m) == .infinity)
        #expect(e.value("guardian_disk_ballast_present", m) == 1)
        // Counters are named *_total; every family has HELP and TYPE.
        for (name, type) in e.types {
            #expect((type == "counter") == name.hasSuffix("_total"), "\(name) is a \(type)")
            #expect(name.hasPrefix("guardian_"))
            #expect(!(e.help[name] ?? "").isEmpty)
        }
    }

    @Test func drillMetricsFromAStatusDocument() throws {
        let db = "/data/app.db"
        func drill(_ replica: String, _ result: String, rows: Int64?, duration: Double) -> DrillSummary {
            DrillSummary(
                id: 1, database: db, replica: replica, destination: "file:///b", startedAt: "2026-11-25T03:00:00.000Z", result: result,
                reason: nil, failure: nil, txid: nil, restoredTimestamp: nil, bytes: nil, rows: rows, integrity: "ok",
                durationSeconds: duration, trigger: "schedule", queries: [])
        }
        var doc = StatusDocument(
            version: "1", pid: 1, startedAt: "2026-11-25T00:00:00.000Z", uptimeSeconds: 1, config: "/c", state: "ready", databases: [])
        doc.drills = [DrillStatus(
            path: db, schedule: "every 7d", nextAt: "2026-12-02T03:00:00.000Z", running: false, last: nil,
            replicas: [drill("local", "PASSED", rows: 150_000, duration: 8.5), drill("s3", "FAILED", rows: nil, duration: 0.25)])]
        let e = try Exposition(parsing: GuardianMetrics.render(doc))
        #expect(e.value("guardian_drill_last_success", ["db": db, "replica": "local"]) == 1)
        #expect(e.value("guardian_drill_last_success", ["db": db, "replica": "s3"]) == 0)
        #expect(e.value("guardian_drill_last_duration_seconds", ["db": db, "replica": "local"]) == 8.5)
        #expect(e.value("guardian_drill_last_rows", ["db": db, "replica": "local"]) == 150_000)
        #expect(e.value("guardian_drill_last_rows", ["db": db, "replica": "s3"]) == nil)
        #expect(e.value("guardian_drill_last_timestamp_seconds", ["db": db, "replica": "s3"]) == Timestamps.parse("2026-11-25T03:00:00.000Z")?.timeIntervalSince1970)
        #expect(e.value("guardian_drill_running", ["db": db]) == 0)
        #expect(e.value("guardian_drill_next_timestamp_seconds", ["db": db]) == Timestamps.parse("2026-12-02T03:00:00.000Z")?.timeIntervalSince1970)
    }

    // MARK: - The accept loop

    /// The listener shared with the status socket: hands over connections,
    /// stops, closes its descriptor (the port can be bound again at once).
    @Test(.timeLimit(.minutes(1)), arguments: ["127.0.0.1", "[::1]"])
    func listenerAcceptsStopsAndFreesThePort(host: String) async throws {
        let port = TestSupport.freePort()
        let address = try LoopbackAddress.parse("\(host):\(port)")
        let listener = SocketListener(listening: try address.listen(), threadName: "test-accept")
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let client = try await BlockingPool.shared.run { () throws -> Int32 in
            let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
            let rc: Int32
            if address.isIPv6 {
                var a = sockaddr_in6()
                a.sin6_family = sa_family_t(AF_INET6)
                a.sin6_port = in_port_t(UInt16(port).bigEndian)
                _ = inet_pton(AF_INET6, "::1", &a.sin6_addr)
                rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            } else {
                var a = sockaddr_in()
                a.sin_family = sa_family_t(AF_INET)
                a.sin_port = in_port_t(UInt16(port).bigEndian)
                a.sin_addr.s_addr = inet_addr("127.0.0.1")
                rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            }
            guard rc == 0 else { throw SystemError("connect", path: "\(address)") }
            return fd
        }
        var iterator = listener.connections.makeAsyncIterator()
        let accepted = await iterator.next()
        #expect(accepted != nil)
        if let accepted {
            try SocketListener.sendAll(fd: accepted, Array("hello".utf8), peer: "test")
            var buffer = [UInt8](repeating: 0, count: 8)
            #expect(read(client, &buffer, 8) == 5)
            close(accepted)
        }
        close(client)
        listener.stop()
        await listener.closed()
        #expect(await iterator.next() == nil, "the stream ends once the listener is closed")
        // A reloaded daemon binds the same address again.
        let again = try address.listen()
        close(again)
    }

    // MARK: - HTTP request parsing

    @Test func requestHeads() throws {
        func parse(_ s: String) -> Result<HTTPRequestHead, HTTPRequestProblem> { HTTPServing.parseHead(Array(s.utf8)) }
        #expect(try parse("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*").get().path == "/metrics")
        #expect(try parse("HEAD /metrics?name[]=x HTTP/1.0").get() == HTTPRequestHead(method: "HEAD", target: "/metrics?name[]=x", path: "/metrics", version: "HTTP/1.0"))
        #expect(try parse("\r\nGET http://127.0.0.1:9464/metrics HTTP/1.1\nHost: y").get().path == "/metrics")
        #expect(try parse("POST /other HTTP/1.1").get().path == "/other")
        for bad in ["GET /metrics", "GET  /metrics HTTP/1.1", "GET /metrics HTTP/2.0", "G(T /metrics HTTP/1.1", "GET /metrics HTTP/1.1\r\n folded: x", "GET /metrics HTTP/1.1\r\nno colon", ""] {
            guard case .failure(.malformed) = parse(bad) else {
                Issue.record("accepted \(bad.debugDescription)")
                continue
            }
        }
        #expect(HTTPServing.headEnd(Array("GET / HTTP/1.1\r\nA: b\r\n\r\nbody".utf8)) == 20)
        #expect(HTTPServing.headEnd(Array("GET / HTTP/1.1\n\n".utf8)) == 14)
        #expect(HTTPServing.headEnd(Array("GET / HTTP/1.1\r\nA: b\r\n".utf8)) == nil)
    }

    // MARK: - Configuration

    @Test(arguments: [
        ("127.0.0.1:9464", "127.0.0.1:9464"),
        ("127.1.2.3:80", "127.1.2.3:80"),
        ("localhost:9100", "127.0.0.1:9100"),
        ("[::1]:9464", "[::1]:9464"),
        ("on", "127.0.0.1:9464"),
        ("true", "127.0.0.1:9464"),
    ])
    func goodMetricsAddresses(value: String, canonical: String) throws {
        // Quoted: unquoted, YAML reads [::1]:9464 as a list.
        let c = try GuardianConfig.parse(text: "status:\n  metrics: \"\(value)\"\n", file: "g.yml", environment: [:])
        #expect(c.status.metrics == canonical)
        #expect(try LoopbackAddress.parse(canonical).description == canonical)
    }

    @Test func metricsAreOffByDefault() throws {
        #expect(try GuardianConfig.parse(text: "status:\n  socket: /run/g.sock\n", file: "g.yml", environment: [:]).status.metrics == nil)
        #expect(try GuardianConfig.parse(text: "status:\n  metrics: off\n", file: "g.yml", environment: [:]).status.metrics == nil)
        #expect(try GuardianConfig.parse(text: "dbs: []\n", file: "g.yml", environment: [:]).status.metrics == nil)
    }

    static let notLoopback = "is not a loopback address: the metrics endpoint has no authentication, so guardian listens on 127.0.0.1 or [::1] only (put a reverse proxy with TLS and authentication in front to publish it)"
    static let malformed = "must be HOST:PORT with a loopback host and a port 1-65535, e.g. 127.0.0.1:9464 or [::1]:9464"

    @Test(arguments: [
        ("0.0.0.0:9464", notLoopback),
        ("192.168.1.10:9464", notLoopback),
        ("10.0.0.1:9464", notLoopback),
        ("[::]:9464", notLoopback),
        ("[2001:db8::1]:9464", notLoopback),
        ("example.com:9464", notLoopback),
        ("128.0.0.1:9464", notLoopback),
        ("127.0.0.1", malformed),
        ("127.0.0.1:0", malformed),
        ("127.0.0.1:70000", malformed),
        (":9464", malformed),
        ("::1:9464", malformed),
        ("127.0.0.1:http", malformed),
    ])
    func badMetricsAddresses(value: String, why: String) {
        let text = "state-dir: /var/lib/g\nstatus:\n  socket: /run/g.sock\n  metrics: \"\(value)\"\n"
        #expect(throws: ConfigError.self) { try GuardianConfig.parse(text: text, file: "g.yml", environment: [:]) }
        do {
            _ = try GuardianConfig.parse(text: text, file: "g.yml", environment: [:])
        } catch {
            #expect("\(error)" == "g.yml:4: status.metrics: \"\(value)\" \(why)")
        }
    }

    @Test func checkConfigRefusesAPublicMetricsAddress() async throws {
        let dir = try TestSupport.makeTempDir("metrics-cfg")
        defer { TestSupport.cleanup(dir) }
        let file = dir + "/g.yml"
        try TestSupport.write("status:\n  socket: \(dir)/g.sock\n  metrics: 0.0.0.0:9464\n", to: file)
        let r = try await guardian(["check-config", "--config", file])
        #expect(r.status == 2)
        #expect(r.stderr == "guardian: \(file):3: status.metrics: \"0.0.0.0:9464\" \(Self.notLoopback)\n")
        // guardian run refuses it the same way, before doing anything.
        let run = try await guardian(["run", "--config", file, "--log-target", "stderr"], timeout: .seconds(20))
        #expect(run.status == 2)
        #expect(run.stderr.contains("status.metrics: \"0.0.0.0:9464\" is not a loopback address"))
    }

    // MARK: - Against a running daemon

    static func get(_ url: String, method: String = "GET") async throws -> HTTPResponse {
        try await HTTPClient.shared.perform(HTTPRequest(method: method, url: url, body: method == "POST" ? .bytes(Array("x=1".utf8)) : .none, connectTimeout: .seconds(2), timeout: .seconds(10)))
    }

    /// Scrapes over real HTTP (libcurl) and checks the values against the
    /// status document of the same daemon; wrong paths and methods.
    @Test(.timeLimit(.minutes(3)))
    func scrapeMatchesTheStatusDocument() async throws {
        let d = try await OperatorDaemon(s3: true, metrics: true)
        do {
            try await scrape(d)
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }

    private func scrape(_ d: OperatorDaemon) async throws {
        try d.start()
        try await d.write(3)
        // Settled: both replicas at guardian's position, the disk sampled.
        _ = try await d.waitForStatus { doc in
            guard doc.string("state") == "ready", let db = doc.list("databases").first, let t = db.string("txid") else { return false }
            return db.list("replicas").allSatisfy { $0.string("position") == t } && !doc.list("disk").isEmpty
                && doc.list("health").first?.dict("integrity")?.string("state") == "ok"
        }
        await d.moto?.kill()
        try await d.write(4)
        let settled = try await d.waitForStatus { doc in
            guard let db = doc.list("databases").first, let t = db.string("txid") else { return false }
            let r = db.list("replicas")
            return r.first?.string("position") == t && r.last?.string("state") == "Failing"
        }
        let doc = try #require(settled, "never settled: \(d.stderr)")

        let response = try await Self.get(d.metricsURL + "/metrics")
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(Int(response.header("Content-Length") ?? "") == response.body.count)
        let text = String(decoding: response.body, as: UTF8.self)
        let e = try Exposition(parsing: text)
        // The real parser and linter of the format.
        let file = d.dir + "/scrape.txt"
        try TestSupport.write(text, to: file)
        let lint = try await run("/bin/sh", ["-c", "\(ContribTests.promtool) check metrics < \(file)"])
        #expect(lint.status == 0, "promtool check metrics: \(lint.stdout)\(lint.stderr)")

        let db = try #require(doc.list("databases").first)
        let path = d.db
        let t = try #require(db.string("txid").flatMap { UInt64($0, radix: 16) })
        #expect(e.value("guardian_database_txid", ["db": path]) == Double(t))
        #expect(e.value("guardian_database_state", ["db": path, "state": "open"]) == 1)
        #expect(e.value("guardian_build_info", ["version": GuardianVersion.string]) == 1)
        #expect(e.value("guardian_state", ["state": "ready"]) == 1)
        let started = try #require(doc.string("started_at").flatMap(Timestamps.parse))
        #expect(e.value("guardian_process_start_time_seconds") == started.timeIntervalSince1970)
        #expect(e.value("guardian_database_size_bytes", ["db": path]).map { Int($0) } == db.int("db_size"))
        let results = try #require(db.dict("checkpoint_results"))
        #expect(e.value("guardian_checkpoints_total", ["db": path, "result": "ok"]).map { Int($0) } == results.int("ok"))
        #expect(e.value("guardian_checkpoints_total", ["db": path, "result": "busy"]).map { Int($0) } == results.int("busy"))

        for r in db.list("replicas") {
            let labels = ["db": path, "replica": r.string("name") ?? "", "type": r.string("type") ?? ""]
            let position = try #require(r.string("position").flatMap { UInt64($0, radix: 16) })
            #expect(e.value("guardian_replica_txid", labels) == Double(position))
            #expect(e.value("guardian_replica_state", labels.merging(["state": r.string("state") ?? ""]) { $1 }) == 1)
            #expect(e.value("guardian_replica_bytes_total", labels).map { Int($0) } == r.int("bytes"))
            #expect(e.value("guardian_replica_requests_total", labels).map { Int($0) } == r.int("requests"))
            #expect(e.value("guardian_replica_last_sync_timestamp_seconds", labels) == r.string("last_sync").flatMap(Timestamps.parse)?.timeIntervalSince1970)
        }
        let local = ["db": path, "replica": "local", "type": "file"], offsite = ["db": path, "replica": "offsite", "type": "s3"]
        #expect(e.value("guardian_replica_txid", local) == Double(t))
        #expect(e.value("guardian_replica_lag_seconds", local) == 0)
        #expect((e.value("guardian_replica_txid", offsite) ?? .infinity) < Double(t))
        #expect(e.value("guardian_replica_state", offsite.merging(["state": "Failing"]) { $1 }) == 1)
        #expect((e.value("guardian_replica_lag_seconds", offsite) ?? 0) > 0)
        #expect((e.value("guardian_replica_errors_total", offsite) ?? 0) >= 1)
        #expect(e.value("guardian_integrity_state", ["db": path, "state": "ok"]) == 1)
        #expect(e.value("guardian_incidents_open", ["db": path]) == 0)

        let mount = try #require(doc.list("disk").first { $0.string("mount_point") == d.fs.path })
        let m = ["mount": d.fs.path]
        #expect(e.value("guardian_disk_size_bytes", m).map { Int($0) } == mount.int("total_bytes"))
        #expect(e.value("guardian_disk_inodes", m).map { Int($0) } == mount.int("inodes_total"))
        #expect(e.value("guardian_disk_level", ["mount": d.fs.path, "level": "warn"]) == 1)
        let used = try #require(e.value("guardian_disk_used_bytes", m))
        #expect(abs(used - Double(mount.int("used_bytes") ?? 0)) < Double(1 << 20))
        #expect(e.value("guardian_disk_time_to_full_seconds", m) != nil)
        #expect(!text.contains(d.secret))

        // HEAD: the same headers, no body.
        let head = try await Self.get(d.metricsURL + "/metrics", method: "HEAD")
        #expect(head.status == 200 && head.body.isEmpty)
        #expect(head.header("Content-Type") == GuardianMetrics.contentType)
        #expect((Int(head.header("Content-Length") ?? "") ?? 0) > 1000)
        // Only /metrics exists; only GET and HEAD.
        #expect(try await Self.get(d.metricsURL + "/").status == 404)
        #expect(try await Self.get(d.metricsURL + "/metricsx").status == 404)
        #expect(try await Self.get(d.metricsURL + "/status").status == 404)
        let post = try await Self.get(d.metricsURL + "/metrics", method: "POST")
        #expect(post.status == 405 && post.header("Allow") == "GET, HEAD")

        // Clients that connect and say nothing do not hold up a scrape.
        var idle: [Int32] = []
        for _ in 0..<3 { idle.append(try Self.connect(d.metricsPort ?? 0)) }
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try await Self.get(d.metricsURL + "/metrics").status == 200)
        #expect(clock.now - start < .seconds(1), "a scrape waited for idle connections")
        // A request head beyond the limit is refused, not read forever.
        let big = try Self.connect(d.metricsPort ?? 0)
        let reply = try await BlockingPool.shared.run { () throws -> String in
            try SocketListener.sendAll(fd: big, Array(("GET /metrics HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 20000) + "\r\n\r\n").utf8), peer: "test")
            var buffer = [UInt8](repeating: 0, count: 256)
            let n = read(big, &buffer, buffer.count)
            return String(decoding: buffer.prefix(max(0, n)), as: UTF8.self)
        }
        #expect(reply.hasPrefix("HTTP/1.1 431 "), "\(reply)")
        for fd in idle + [big] { close(fd) }
        // DNS rebinding: a page at attacker.example (resolving to 127.0.0.1)
        // is refused; localhost and loopback addresses are served.
        for (host, status) in [("attacker.example:\(d.metricsPort ?? 0)", "421"), ("localhost:\(d.metricsPort ?? 0)", "200"), ("127.0.0.1", "200")] {
            let fd = try Self.connect(d.metricsPort ?? 0)
            let answer = try await BlockingPool.shared.run { () throws -> String in
                try SocketListener.sendAll(fd: fd, Array("GET /metrics HTTP/1.1\r\nHost: \(host)\r\n\r\n".utf8), peer: "test")
                var buffer = [UInt8](repeating: 0, count: 64)
                let n = read(fd, &buffer, buffer.count)
                return String(decoding: buffer.prefix(max(0, n)), as: UTF8.self)
            }
            close(fd)
            #expect(answer.hasPrefix("HTTP/1.1 \(status) "), "Host \(host): \(answer)")
        }
    }

    @Test func onlyLoopbackHostsAreServed() throws {
        let address = try LoopbackAddress.parse("127.0.0.1:9464")
        for ok in [nil, "localhost", "LOCALHOST:9464", "127.0.0.1:9464", "127.1.2.3", "[::1]:9464", "localhost."] {
            #expect(MetricsService.isAllowedHost(ok, address: address), "\(ok ?? "nil")")
        }
        for bad in ["attacker.example", "attacker.example:9464", "10.0.0.1", "[::2]", "localhost.attacker.example", "", "[::1"] {
            #expect(!MetricsService.isAllowedHost(bad, address: address), "\(bad)")
        }
        #expect(try HTTPServing.parseHead(Array("GET /metrics HTTP/1.1\r\nhost: a.example:1".utf8)).get().host == "a.example:1")
        guard case .failure(.malformed) = HTTPServing.parseHead(Array("GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b".utf8)) else {
            Issue.record("two Host headers must be refused")
            return
        }
    }

    static func connect(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else {
            close(fd)
            throw SystemError("connect", path: "127.0.0.1:\(port)")
        }
        return fd
    }

    /// More clients than the endpoint serves at once send their request,
    /// then a byte every 150 ms for seconds: each is answered (200, or 503
    /// beyond the limit) and let go after the drain deadline, not when it
    /// stops sending; a scrape made while they still trickle succeeds.
    @Test(.timeLimit(.minutes(3)))
    func tricklingClientsAreLetGo() async throws {
        let d = try await OperatorDaemon(s3: false, metrics: true)
        do {
            try await trickle(d)
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }

    private func trickle(_ d: OperatorDaemon) async throws {
        try d.start()
        let up = await TestSupport.waitUntil(timeout: .seconds(20)) { (try? await Self.get(d.metricsURL + "/metrics"))?.status == 200 }
        #expect(up, "\(d.stderr)")
        // (That scrape's connection is done and its slot free.)
        try await Task.sleep(for: .milliseconds(500))
        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        for _ in 0..<(MetricsService.maxConcurrent + MetricsService.maxRefusing) { clients.append(try Self.connect(d.metricsPort ?? 0)) }
        let fds = clients
        let trickler = Task { await BlockingPool.shared.run { Self.trickle(fds, for: .seconds(7)) } }
        try await Task.sleep(for: .seconds(4))
        let scrape = try await Self.get(d.metricsURL + "/metrics")
        #expect(scrape.status == 200, "a scrape while slow clients trickle")
        let results = await trickler.value
        #expect(results.filter { $0.status == "200" }.count == MetricsService.maxConcurrent, "\(results)")
        #expect(results.filter { $0.status == "503" }.count == MetricsService.maxRefusing, "\(results)")
        for r in results {
            let closed = try #require(r.closedAfter, "a trickling client was held for 7 s: \(results)")
            #expect(closed < .milliseconds(3500), "\(results)")
        }
    }

    struct Trickled: Sendable, CustomStringConvertible {
        /// The status code of the reply, "" if none came.
        var status = ""
        var head: [UInt8] = []
        /// When the server's end was gone (its kernel answered a byte with a reset).
        var closedAfter: Duration?
        var description: String { "\(status.isEmpty ? "no reply" : status) closed \(closedAfter.map { "\($0)" } ?? "never")" }
    }

    /// Sends each client a request, then one byte every 150 ms until its
    /// server end is closed or `length` is over; reads what comes. Blocking.
    static func trickle(_ fds: [Int32], for length: Duration) -> [Trickled] {
        let start = ContinuousClock.now
        var results = Array(repeating: Trickled(), count: fds.count)
        let request = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        for fd in fds { _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now - start < length {
            for (i, fd) in fds.enumerated() where results[i].closedAfter == nil {
                var gone = false
                while true {
                    let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                    if n > 0 {
                        if results[i].head.count < 12 { results[i].head += buffer.prefix(min(n, 12 - results[i].head.count)) }
                        continue
                    }
                    // 0: the server's FIN after its reply; its end may still be open (draining).
                    if n < 0 && errno != EAGAIN && errno != EINTR { gone = true }
                    break
                }
                if !gone && send(fd, "x", 1, Int32(MSG_NOSIGNAL)) < 0 { gone = true }
                if gone { results[i].closedAfter = ContinuousClock.now - start }
            }
            usleep(150_000)
        }
        for i in results.indices {
            let head = String(decoding: results[i].head, as: UTF8.self)
            if head.hasPrefix("HTTP/1.1 ") { results[i].status = String(head.dropFirst(9).prefix(3)) }
        }
        return results
    }

    /// A taken port: guardian runs on, says why once, and serves the
    /// metrics as soon as the port is free again.
    @Test(.timeLimit(.minutes(2)))
    func aTakenPortIsRetried() async throws {
        let d = try await OperatorDaemon(s3: false, metrics: true)
        let port = d.metricsPort ?? 0
        let squatter = try LoopbackAddress.parse("127.0.0.1:\(port)").listen()
        do {
            try d.start()
            let ready = try await d.waitForStatus { $0.string("state") == "ready" }
            #expect(ready != nil, "guardian must run without its metrics endpoint: \(d.stderr)")
            #expect(await TestSupport.waitUntil { d.stderr.contains("metrics endpoint failed") }, "\(d.stderr)")
            #expect(d.stderr.contains("address=127.0.0.1:\(port)") && d.stderr.contains("Address already in use"))
            close(squatter)
            let served = await TestSupport.waitUntil(timeout: .seconds(15)) {
                (try? await Self.get(d.metricsURL + "/metrics"))?.status == 200
            }
            #expect(served, "\(d.stderr)")
            #expect(d.stderr.components(separatedBy: "metrics endpoint failed").count == 2, "logged once")
        } catch {
            close(squatter)
            await d.stop()
            throw error
        }
        await d.stop()
    }
}
