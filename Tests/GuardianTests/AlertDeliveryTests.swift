import Foundation
import Logging
import Platform
import Testing

@testable import Remediate

/// A real HTTP receiver on 127.0.0.1 (Python's http.server), started by the
/// test: it records every delivery as a JSON line, checks the HMAC of signed
/// ones itself, and can be told to fail the first N requests.
final class WebhookReceiver: @unchecked Sendable {
    static let script = #"""
    import hashlib, hmac, json, os, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    port_file, log_file, key, fail_first, fail_status = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    lock = threading.Lock()
    count = [0]
    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            sig = self.headers.get("X-Guardian-Signature")
            sig_ok = None
            if sig is not None:
                want = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
                sig_ok = hmac.compare_digest(want, sig)
            with lock:
                count[0] += 1
                n = count[0]
            status = fail_status if n <= fail_first else (202 if self.path.startswith("/pd") else 200)
            rec = {"n": n, "path": self.path, "status": status, "sig_ok": sig_ok,
                   "headers": {k.lower(): v for k, v in self.headers.items()}, "body": json.loads(body or b"null")}
            with lock, open(log_file, "a") as f:
                f.write(json.dumps(rec) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *a):
            pass
    def orphan_watch(parent=os.getppid()):
        # Leave with the test process, even if it dies without stopping us.
        import time
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=orphan_watch, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()
    """#

    let dir: String
    let child: ChildProcess
    let port: Int

    init(key: String = "", failFirst: Int = 0, failStatus: Int = 500) async throws {
        dir = try TestSupport.makeTempDir("hook")
        try TestSupport.write(Self.script, to: dir + "/receiver.py")
        child = try ChildProcess.start("/usr/bin/python3", [dir + "/receiver.py", dir + "/port", dir + "/log.jsonl", key, "\(failFirst)", "\(failStatus)"])
        let path = dir + "/port"
        guard await TestSupport.waitUntil(timeout: .seconds(10), { FileManager.default.fileExists(atPath: path) }),
            let p = Int((try? String(contentsOfFile: path, encoding: .utf8)) ?? "")
        else {
            child.signal(SIGKILL)
            throw TestFailure("webhook receiver did not start: \(child.stderr)")
        }
        port = p
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    struct Delivery {
        let n: Int
        let path: String
        let status: Int
        let sigOK: Bool?
        let headers: [String: String]
        let body: [String: Any]
    }

    var deliveries: [Delivery] {
        let text = (try? String(contentsOfFile: dir + "/log.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return Delivery(
                n: o["n"] as? Int ?? 0, path: o["path"] as? String ?? "", status: o["status"] as? Int ?? 0, sigOK: o["sig_ok"] as? Bool,
                headers: o["headers"] as? [String: String] ?? [:], body: o["body"] as? [String: Any] ?? [:])
        }
    }

    func waitFor(_ count: Int, timeout: Duration = .seconds(15)) async -> Bool {
        await TestSupport.waitUntil(timeout: timeout) { deliveries.count >= count }
    }

    func stop() {
        child.signal(SIGKILL)
        child.removeFiles()
        TestSupport.cleanup(dir)
    }
}

/// Collects log lines (message + metadata) to check what reaches the logs.
final class RecordingLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    var text: String { lock.withLock { lines.joined(separator: "\n") } }
    func append(_ s: String) { lock.withLock { lines.append(s) } }

    func logger() -> Logger {
        Logger(label: "test") { _ in Handler(sink: self) }
    }

    struct Handler: LogHandler {
        let sink: RecordingLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let meta = (event.metadata ?? [:]).merging(metadata) { a, _ in a }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            sink.append("\(event.level) \(event.message) \(meta.joined(separator: " "))")
        }
    }
}

@Suite(.serialized) struct AlertDeliveryTests {
    static let fast = Alerter.RetryPolicy(attempts: 4, firstDelay: .milliseconds(50), maxDelay: .milliseconds(200), timeout: .seconds(3))

    /// Runs `body` with an alerter delivering in the background.
    func withAlerter(
        _ destinations: [AlertConfig], store: StateStore? = nil, log: RecordingLog = RecordingLog(), retry: Alerter.RetryPolicy = fast,
        _ body: (Alerter) async throws -> Void
    ) async throws {
        let alerter = Alerter(destinations: destinations, transport: HTTPAlertTransport(), store: store, logger: log.logger(), host: "web-1", retry: retry)
        let runner = Task { await alerter.run() }
        defer { runner.cancel() }
        try await body(alerter)
        await alerter.waitUntilIdle()
    }

    @Test func slackPagerDutyAndSignedWebhookTriggerThenResolve() async throws {
        let rx = try await WebhookReceiver(key: "s3cr3t-hmac-key")
        defer { rx.stop() }
        let dests = [
            AlertConfig(kind: .slack, url: Secret(rx.url("/slack/T000/B000/XXXX"))),
            AlertConfig(kind: .pagerduty, url: Secret(rx.url("/pd/v2/enqueue")), key: Secret("R0UTINGKEY")),
            AlertConfig(kind: .webhook, url: Secret(rx.url("/hook")), key: Secret("s3cr3t-hmac-key")),
        ]
        try await withAlerter(dests) { a in
            let key = a.key(database: "/data/app.db", kind: "incident-4")
            #expect(key == "guardian/web-1//data/app.db/incident-4")
            #expect(await a.trigger(key: key, severity: .critical, summary: "corruption in /data/app.db", database: "/data/app.db", incident: 4, details: ["cause": "disk full"]))
            #expect(await rx.waitFor(3))
            #expect(await a.resolve(key: key, summary: "restored"))
        }
        #expect(await rx.waitFor(6))
        let all = rx.deliveries
        let slack = all.filter { $0.path.hasPrefix("/slack") }
        let pd = all.filter { $0.path.hasPrefix("/pd") }
        let hook = all.filter { $0.path == "/hook" }
        #expect(slack.count == 2 && pd.count == 2 && hook.count == 2)

        #expect((slack[0].body["text"] as? String)?.contains("[CRITICAL] corruption in /data/app.db") == true)
        #expect((slack[1].body["text"] as? String)?.contains("[RESOLVED] restored") == true)
        #expect(slack[0].headers["content-type"] == "application/json")

        #expect(pd[0].body["event_action"] as? String == "trigger")
        #expect(pd[1].body["event_action"] as? String == "resolve")
        #expect(pd[0].body["routing_key"] as? String == "R0UTINGKEY")
        #expect(pd[0].body["dedup_key"] as? String == pd[1].body["dedup_key"] as? String, "stable dedup_key")
        let payload = pd[0].body["payload"] as? [String: Any]
        #expect(payload?["severity"] as? String == "critical")
        #expect(payload?["source"] as? String == "web-1")
        #expect(payload?["component"] as? String == "/data/app.db")
        #expect(pd[1].body["payload"] == nil)

        for h in hook {
            #expect(h.sigOK == true, "receiver verified X-Guardian-Signature")
            #expect(h.headers["x-guardian-signature"]?.hasPrefix("sha256=") == true)
            #expect(h.body["dedup_key"] as? String == "guardian/web-1//data/app.db/incident-4")
        }
        #expect(hook.map { $0.headers["x-guardian-event"] ?? "" } == ["trigger", "resolve"])
        #expect(hook[0].body["incident"] as? Int == 4)
        #expect(hook[0].headers["x-guardian-delivery"] != hook[1].headers["x-guardian-delivery"])
    }

    @Test func wrongKeyFailsTheReceiversCheck() async throws {
        let rx = try await WebhookReceiver(key: "the-right-key")
        defer { rx.stop() }
        try await withAlerter([AlertConfig(kind: .webhook, url: Secret(rx.url("/hook")), key: Secret("a-wrong-key"))]) { a in
            await a.trigger(key: "k", severity: .critical, summary: "x", database: nil)
        }
        #expect(await rx.waitFor(1))
        #expect(rx.deliveries.first?.sigOK == false)
    }

    @Test func duplicatesAreSuppressedUpgradesSentAndResolvesOnlyFollowTriggers() async throws {
        let rx = try await WebhookReceiver()
        defer { rx.stop() }
        try await withAlerter([AlertConfig(kind: .webhook, url: Secret(rx.url("/hook")), minSeverity: "info")]) { a in
            #expect(await a.resolve(key: "never-triggered") == false)
            #expect(await a.trigger(key: "wal", severity: .warning, summary: "WAL 70 MB", database: "/d"))
            #expect(await a.trigger(key: "wal", severity: .warning, summary: "WAL 71 MB", database: "/d") == false)
            #expect(await a.trigger(key: "wal", severity: .critical, summary: "WAL 300 MB", database: "/d"))
            #expect(await a.trigger(key: "wal", severity: .warning, summary: "WAL 200 MB", database: "/d") == false)
            #expect(await a.resolve(key: "wal"))
            #expect(await a.resolve(key: "wal") == false)
        }
        #expect(await rx.waitFor(3))
        try await Task.sleep(for: .milliseconds(300))
        let d = rx.deliveries
        #expect(d.map { $0.body["action"] as? String ?? "" } == ["trigger", "trigger", "resolve"])
        #expect(d.map { $0.body["severity"] as? String ?? "" } == ["warning", "critical", "critical"])
    }

    @Test func transientFailuresAreRetriedWithBackoff() async throws {
        let dir = try TestSupport.makeTempDir("alert-state")
        defer { TestSupport.cleanup(dir) }
        let store = StateStore(stateDir: dir)
        let rx = try await WebhookReceiver(failFirst: 2, failStatus: 503)
        defer { rx.stop() }
        try await withAlerter([AlertConfig(kind: .slack, url: Secret(rx.url("/slack/x")))], store: store) { a in
            await a.trigger(key: "k", severity: .critical, summary: "x", database: nil)
        }
        #expect(rx.deliveries.map(\.status) == [503, 503, 200])
        let rec = try await store.deliveries()
        #expect(rec.first?.status == "delivered")
        #expect(rec.first?.attempts == 3)
    }

    @Test func clientErrorsAreNotRetried() async throws {
        let rx = try await WebhookReceiver(failFirst: 10, failStatus: 400)
        defer { rx.stop() }
        try await withAlerter([AlertConfig(kind: .pagerduty, url: Secret(rx.url("/pd/v2/enqueue")), key: Secret("bad"))]) { a in
            await a.trigger(key: "k", severity: .critical, summary: "x", database: nil)
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(rx.deliveries.count == 1)
    }

    @Test func refusingURLFailsCleanlyWithoutLeakingSecretsAndOthersStillGetIt() async throws {
        let dir = try TestSupport.makeTempDir("alert-state")
        defer { TestSupport.cleanup(dir) }
        let store = StateStore(stateDir: dir)
        let rx = try await WebhookReceiver()
        defer { rx.stop() }
        let dead = TestSupport.freePort()  // nothing listens: connection refused
        let log = RecordingLog()
        let secretPath = "/services/T0SECRET/B0SECRET/zzTOPSECRETzz"
        try await withAlerter(
            [
                AlertConfig(kind: .slack, url: Secret("http://127.0.0.1:\(dead)\(secretPath)")),
                AlertConfig(kind: .webhook, url: Secret(rx.url("/hook")), key: Secret("hmac-KEY-never-logged")),
            ], store: store, log: log
        ) { a in
            await a.trigger(key: "k", severity: .critical, summary: "x", database: nil)
        }
        #expect(rx.deliveries.count == 1, "a dead destination does not hold up the others")
        let failed = try await store.deliveries().first { $0.destination == "slack#0" }
        #expect(failed?.status == "failed")
        #expect(failed?.attempts == Self.fast.attempts)
        let logged = log.text
        #expect(logged.contains("alert delivery failed"))
        #expect(logged.contains("destination=slack#0"))
        for secret in ["T0SECRET", "zzTOPSECRETzz", "hmac-KEY-never-logged"] {
            #expect(!logged.contains(secret), "\(secret) leaked into the log")
            #expect(!(failed?.detail.contains(secret) ?? true))
        }
    }

    @Test func triggeredAlertsSurviveARestartSoTheResolveStillGoesOut() async throws {
        let dir = try TestSupport.makeTempDir("alert-state")
        defer { TestSupport.cleanup(dir) }
        let rx = try await WebhookReceiver()
        defer { rx.stop() }
        let dest = [AlertConfig(kind: .webhook, url: Secret(rx.url("/hook")))]
        try await withAlerter(dest, store: StateStore(stateDir: dir)) { a in
            await a.trigger(key: "guardian/web-1//d/incident-1", severity: .critical, summary: "x", database: "/d")
        }
        // A new process: a fresh alerter on the same state database.
        try await withAlerter(dest, store: StateStore(stateDir: dir)) { a in
            #expect(await a.triggeredKeys(database: "/d") == ["guardian/web-1//d/incident-1"])
            #expect(await a.trigger(key: "guardian/web-1//d/incident-1", severity: .critical, summary: "x", database: "/d") == false)
            #expect(await a.resolve(key: "guardian/web-1//d/incident-1"))
        }
        #expect(rx.deliveries.map { $0.headers["x-guardian-event"] ?? "" } == ["trigger", "resolve"])
    }

    /// The daemon and `guardian drill` share the state database: what one
    /// resolves, the other triggers again (not deduplicated away), and a
    /// resolve is never sent twice.
    @Test func twoProcessesOnOneStateDatabaseAgreeOnWhatIsTriggered() async throws {
        let dir = try TestSupport.makeTempDir("alert-state2")
        defer { TestSupport.cleanup(dir) }
        let rx = try await WebhookReceiver()
        defer { rx.stop() }
        let dest = [AlertConfig(kind: .webhook, url: Secret(rx.url("/hook")))]
        let key = "guardian/web-1//d/drill-s3"
        let daemon = Alerter(destinations: dest, transport: HTTPAlertTransport(), store: StateStore(stateDir: dir), logger: RecordingLog().logger(), host: "web-1", retry: Self.fast)
        let runner = Task { await daemon.run() }
        defer { runner.cancel() }
        #expect(await daemon.trigger(key: key, severity: .critical, summary: "drill failed", database: "/d"))
        await daemon.waitUntilIdle()
        // The CLI, another process, resolves it.
        try await withAlerter(dest, store: StateStore(stateDir: dir)) { cli in
            #expect(await cli.resolve(key: key))
        }
        // The daemon's next failing drill is a new trigger, its later pass one resolve.
        #expect(await daemon.trigger(key: key, severity: .critical, summary: "drill failed again", database: "/d"))
        #expect(await daemon.resolve(key: key))
        #expect(await daemon.resolve(key: key) == false)
        await daemon.waitUntilIdle()
        // The CLI triggers; the daemon's resolve finds it.
        try await withAlerter(dest, store: StateStore(stateDir: dir)) { cli in
            #expect(await cli.trigger(key: key, severity: .critical, summary: "cli drill failed", database: "/d"))
        }
        #expect(await daemon.resolve(key: key))
        await daemon.waitUntilIdle()
        #expect(rx.deliveries.map { $0.headers["x-guardian-event"] ?? "" } == ["trigger", "resolve", "trigger", "resolve", "trigger", "resolve"])
    }

    @Test func minimumSeverityFiltersPerDestination() async throws {
        let rx = try await WebhookReceiver()
        defer { rx.stop() }
        try await withAlerter([
            AlertConfig(kind: .webhook, url: Secret(rx.url("/pager")), minSeverity: "critical"),
            AlertConfig(kind: .webhook, url: Secret(rx.url("/chat")), minSeverity: "warning"),
        ]) { a in
            await a.trigger(key: "w", severity: .warning, summary: "warn", database: nil)
            await a.resolve(key: "w")
            await a.trigger(key: "c", severity: .critical, summary: "crit", database: nil)
        }
        try await Task.sleep(for: .milliseconds(200))
        let d = rx.deliveries
        #expect(d.filter { $0.path == "/pager" }.map { $0.body["dedup_key"] as? String ?? "" } == ["c"])
        #expect(d.filter { $0.path == "/chat" }.count == 3)
    }
}
