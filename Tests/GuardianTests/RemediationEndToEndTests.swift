import Foundation
import Logging
import Platform
import Replication
import Testing

@testable import Remediate

/// A real little production: an app process that serves "requests" (insert +
/// read) against a WAL database, started and stopped through scripts that
/// record their argv; a real replica written by Litestream 0.5.17
/// (`litestream replicate`); a real webhook receiver; guardian's state
/// database. Everything lives in one temp directory.
final class RemediationWorld: @unchecked Sendable {
    static let app = #"""
    import os, signal, sqlite3, sys, time
    db, d = sys.argv[1], sys.argv[2]
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__(0, True))
    log = open(d + "/app.log", "a", buffering=1)
    log.write("start %d %.3f\n" % (os.getpid(), time.time()))
    conn = sqlite3.connect(db, isolation_level=None, timeout=5)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, body TEXT NOT NULL, at REAL NOT NULL)")
    ready = False
    # A test that died without stopping the app removes its directory (or not): leave then too.
    while not stop[0] and os.path.isdir(d + "/data"):
        try:
            t = time.time()
            cur = conn.execute("INSERT INTO items(body, at) VALUES (?, ?)", ("r" * 100, t))
            log.write("commit %d %.6f\n" % (cur.lastrowid, t))
            conn.execute("SELECT count(*), max(id) FROM items").fetchone()
            log.write("ok %d %.3f\n" % (cur.lastrowid, time.time()))
            if not ready:
                with open(d + "/app.ready.tmp", "w") as f:
                    f.write(str(os.getpid()))
                os.rename(d + "/app.ready.tmp", d + "/app.ready")
                ready = True
        except sqlite3.DatabaseError as e:
            log.write("error %.3f %s\n" % (time.time(), e))
        time.sleep(0.005)
    conn.close()
    log.write("stopped %.3f\n" % time.time())
    """#

    static let start = #"""
    #!/bin/sh
    # start.sh DIR DB: records its argv, launches the app in the background.
    echo "start $*" >> "$1/commands.log"
    rm -f "$1/app.ready"
    setsid /usr/bin/python3 "$1/app.py" "$2" "$1" >> "$1/app.out" 2>&1 < /dev/null &
    echo $! > "$1/app.pid"
    """#

    static let stop = #"""
    #!/bin/sh
    # stop.sh DIR: records its argv, stops the app (TERM, then KILL after 5 s).
    echo "stop $*" >> "$1/commands.log"
    pid=$(cat "$1/app.pid" 2>/dev/null) || exit 0
    kill -TERM "$pid" 2>/dev/null || exit 0
    # Gone, or a zombie waiting for PID 1 to reap it.
    alive() { [ -e "/proc/$pid" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]; }
    i=0
    while alive; do
      i=$((i + 1)); [ $i -gt 100 ] && kill -KILL "$pid"
      sleep 0.05
    done
    exit 0
    """#

    static let status = #"""
    #!/bin/sh
    # status.sh DIR: 0 when the app process runs and has served a request.
    pid=$(cat "$1/app.pid" 2>/dev/null) || exit 3
    [ -e "/proc/$pid" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ] || exit 3
    [ "$(cat "$1/app.ready" 2>/dev/null)" = "$pid" ] || exit 3
    exit 0
    """#

    let dir: String
    let db: String
    let replica: String
    let stateDir: String
    private(set) var litestream: ChildProcess?
    var receiver: WebhookReceiver?
    let log = RecordingLog()

    /// A database of `rows` rows of `rowSize` bytes, made before the app starts
    /// (so the data sits in the database file, where corruption will hit it).
    /// The data directory is a tmpfs of this size (a real small disk), if set.
    let tmpfsSize: String?

    init(label: String = "e2e", rows: Int = 20_000, rowSize: Int = 200, tmpfsSize: String? = nil) throws {
        dir = try TestSupport.makeTempDir(label)
        db = dir + "/data/app.db"
        replica = dir + "/replica"
        stateDir = dir + "/state"
        self.tmpfsSize = tmpfsSize
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        if let tmpfsSize {
            let r = try CommandRunner.runBlocking(["/bin/mount", "-t", "tmpfs", "-o", "size=\(tmpfsSize)", "tmpfs", dir + "/data"], timeout: .seconds(10))
            guard r.succeeded else { throw TestFailure("mount tmpfs: \(r.summary)") }
        }
        try TestSupport.write(Self.app, to: dir + "/app.py")
        try TestSupport.write(Self.start, to: dir + "/start.sh")
        try TestSupport.write(Self.stop, to: dir + "/stop.sh")
        try TestSupport.write(Self.status, to: dir + "/status.sh")
        let c = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try c.execute("PRAGMA journal_mode=WAL")
        try c.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT NOT NULL, at REAL NOT NULL)")
        try c.execute("""
            WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < \(rows))
            INSERT INTO items(body, at) SELECT hex(randomblob(\(max(1, rowSize / 2)))), 0 FROM n
            """)
        try c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    }

    var startCommand: [String] { ["/bin/sh", dir + "/start.sh", dir, db] }
    var stopCommand: [String] { ["/bin/sh", dir + "/stop.sh", dir] }
    var statusCommand: [String] { ["/bin/sh", dir + "/status.sh", dir] }

    func config(mode: RemediationMode = .auto, verify: [String] = ["SELECT count(*) FROM items"]) -> RemediationConfig {
        RemediationConfig(
            mode: mode, stopCommand: stopCommand, startCommand: startCommand, statusCommand: statusCommand,
            stopTimeout: .seconds(15), startTimeout: .seconds(15), integrityInterval: .milliseconds(250), integrityBudget: .seconds(5),
            confirmBudget: .seconds(60), checkpointInterval: .milliseconds(200), cooldown: .seconds(600), verifyQueries: verify)
    }

    /// Starts the app as an operator would (same script guardian uses).
    func startApp() async throws {
        let r = try await CommandRunner.run(startCommand, timeout: .seconds(10))
        guard r.succeeded else { throw TestFailure("start.sh: \(r.summary)") }
        let ready = await TestSupport.waitUntil(timeout: .seconds(15)) { await self.appIsUp() }
        guard ready else { throw TestFailure("app did not start: \((try? String(contentsOfFile: dir + "/app.out", encoding: .utf8)) ?? "")") }
    }

    func appIsUp() async -> Bool {
        (try? await CommandRunner.run(statusCommand, timeout: .seconds(5)))?.succeeded ?? false
    }

    func stopApp() async {
        _ = try? await CommandRunner.run(stopCommand, timeout: .seconds(15))
    }

    /// `litestream replicate` to a file replica, syncing every 100 ms.
    func startReplication(timeout: Duration = .seconds(20)) async throws {
        let conf = dir + "/litestream.yml"
        try TestSupport.write("""
            dbs:
              - path: \(db)
                monitor-interval: 100ms
                replicas:
                  - type: file
                    path: \(replica)
                    sync-interval: 100ms
            """, to: conf)
        litestream = try ChildProcess.start(TestSupport.venvBin + "/litestream", ["replicate", "-config", conf])
        // Litestream writes its first snapshot (level 9) about a second in,
        // from the database file: wait until it is complete, so the damage
        // comes after (a snapshot read from a damaged file carries the damage).
        let child = litestream
        let ok = await TestSupport.waitUntil(timeout: timeout) {
            ((try? FileManager.default.contentsOfDirectory(atPath: self.replica + "/ltx/0")) ?? []).count >= 3
                && ((child?.stdout ?? "") + (child?.stderr ?? "")).contains("snapshot complete")
        }
        guard ok else { throw TestFailure("litestream did not replicate: \(litestream?.stderr ?? "")") }
    }

    /// SIGTERM (Litestream makes a last sync), SIGKILL after 2 s.
    func stopReplication() async {
        guard let l = litestream else { return }
        l.signal(SIGTERM)
        await l.wait(timeout: .seconds(2))
        l.removeFiles()
        litestream = nil
    }

    /// Rows the app committed (`commit ID TIME` lines).
    var committed: [(id: Int64, at: Double)] { logLines("commit") }

    /// Requests the app served: the insert and the read both worked (`ok ID TIME`).
    var served: [(id: Int64, at: Double)] { logLines("ok") }

    private func logLines(_ kind: String) -> [(id: Int64, at: Double)] {
        ((try? String(contentsOfFile: dir + "/app.log", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { line in
            let p = line.split(separator: " ")
            guard p.count == 3, p[0] == kind, let id = Int64(p[1]), let at = Double(p[2]) else { return nil }
            return (id, at)
        }
    }

    var failedRequests: [Double] {
        ((try? String(contentsOfFile: dir + "/app.log", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { line in
            let p = line.split(separator: " ")
            guard p.count >= 2, p[0] == "error" else { return nil }
            return Double(p[1])
        }
    }

    var commands: [String] {
        ((try? String(contentsOfFile: dir + "/commands.log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func service(
        config: RemediationConfig, alerts: [AlertConfig] = [], source: (any RestoreSource)? = nil,
        app: (any AppController)? = nil, retry: Alerter.RetryPolicy = AlertDeliveryTests.fast,
        onStatus: @escaping @Sendable (HealthStatus) async -> Void = { _ in }
    ) -> (RemediationService, StateStore) {
        let store = StateStore(stateDir: stateDir)
        let alerter = Alerter(destinations: alerts, transport: HTTPAlertTransport(), store: store, logger: log.logger(), host: "test-host", retry: retry)
        let replicas = [ReplicaConfig(name: "file", target: .file(path: replica))]
        let hooks = RemediationHooks(pause: { _ in await self.stopReplication() })
        let svc = RemediationService(
            database: db, config: config, store: store, alerter: alerter, ownsAlerter: true,
            app: app ?? RemediationService.appController(for: config), source: source ?? ReplicaRestoreSource(replicas: replicas),
            hooks: hooks, logger: log.logger(), onStatus: onStatus)
        return (svc, store)
    }

    func cleanup() async {
        await stopApp()
        await stopReplication()
        receiver?.stop()
        if tmpfsSize != nil { _ = try? await CommandRunner.run(["/bin/umount", "-l", dir + "/data"], timeout: .seconds(10)) }
        // GUARDIAN_KEEP_TEST_DIRS=1 keeps the directory for a post-mortem of the test itself.
        if ProcessInfo.processInfo.environment["GUARDIAN_KEEP_TEST_DIRS"] == nil { TestSupport.cleanup(dir) }
    }
}

/// Status documents published by a service, newest last.
actor StatusLog {
    private(set) var all: [HealthStatus] = []
    func add(_ s: HealthStatus) { all.append(s) }
    var last: HealthStatus? { all.last }
}

/// The timeline, for failure messages.
func describe(_ r: IncidentRecord?) -> String {
    guard let r else { return "no incident" }
    return "\(r.outcome.rawValue) \(r.escalation ?? "")\n" + r.steps.map { "  \($0.step) [\($0.outcome.rawValue)]: \($0.detail)" }.joined(separator: "\n")
}

/// Makes a world, runs `body`, and always cleans up (stops the app, Litestream, the receiver).
func withWorld(rows: Int, tmpfsSize: String? = nil, _ body: (RemediationWorld) async throws -> Void) async throws {
    let w = try RemediationWorld(rows: rows, tmpfsSize: tmpfsSize)
    do {
        try await body(w)
    } catch {
        await w.cleanup()
        throw error
    }
    await w.cleanup()
}

/// Runs `svc` until `condition` holds (or the timeout), then stops it.
func runService(_ svc: RemediationService, timeout: Duration = .seconds(90), until condition: @escaping () async -> Bool) async -> Bool {
    let task = Task { try await svc.run() }
    let ok = await TestSupport.waitUntil(timeout: timeout, condition)
    task.cancel()
    _ = await task.result
    return ok
}

@Suite(.serialized) struct RemediationEndToEndTests {
    @Test func corruptPagesWhileTheAppRunsAreRepairedEndToEnd() async throws {
        try await withWorld(rows: 20_000) { w in
            // The app's database belongs to its own user, with its own mode.
            #expect(chown(w.db, 4242, 4243) == 0)
            #expect(chmod(w.db, 0o640) == 0)
            w.receiver = try await WebhookReceiver(key: "hook-key")
            try await w.startApp()
            try await w.startReplication()
            try await Task.sleep(for: .milliseconds(500))

            let alerts = [AlertConfig(kind: .webhook, url: Secret(w.receiver?.url("/hook") ?? ""), key: Secret("hook-key"))]
            let (svc, store) = w.service(config: w.config(), alerts: alerts)
            let corruptedAt = Date()
            let pages = try Damage.overwritePages(w.db, count: 6)
            let done = await runService(svc) {
                (try? await store.incidents().first)?.outcome == .resolvedAutomatically && (w.receiver?.deliveries.count ?? 0) >= 2
            }
            let incident = try #require(try await store.incidents().first, "no incident recorded (pages \(pages))")
            #expect(done, "incident ended as \(incident.outcome): \(incident.escalation ?? "-")")
            #expect(incident.outcome == .resolvedAutomatically)
            #expect(incident.steps.map(\.step) == [
                IncidentStepName.detected, IncidentStepName.confirmed, IncidentStepName.alert, IncidentStepName.stopApp,
                IncidentStepName.release, IncidentStepName.quarantine, IncidentStepName.plan, IncidentStepName.restore, IncidentStepName.verify,
                IncidentStepName.swap, IncidentStepName.startApp, IncidentStepName.resolved,
            ])
            #expect(incident.suspicion.source == .quickCheck || incident.suspicion.source == .sqliteError)
            #expect(incident.cause == .unknown, "pages overwritten with no disk or I/O trouble")

            // The app is back, serving on a verified database with the original owner and mode.
            #expect(await w.appIsUp())
            let live = try SQLiteConnection(path: w.db, mode: .readOnly)
            #expect(try live.scalar("PRAGMA integrity_check") == .text("ok"))
            let own = try #require(FileOwnership.of(w.db))
            #expect(own.uid == 4242 && own.gid == 4243 && own.mode & 0o777 == 0o640)
            #expect(w.commands.filter { $0.hasPrefix("stop") } == ["stop \(w.dir)"])
            #expect(w.commands.filter { $0.hasPrefix("start") }.count == 2, "the operator's start and guardian's")

            // The damaged files are kept in quarantine, untouched.
            let qdir = try #require(incident.quarantineDir)
            #expect(qdir.hasPrefix(w.dir + "/data/guardian-quarantine/"))
            for f in incident.quarantined {
                let size = try #require(FileManager.default.attributesOfItem(atPath: f.quarantined)[.size] as? Int64)
                #expect(size == f.size)
            }
            #expect(incident.quarantined.map { ($0.original as NSString).lastPathComponent }.contains("app.db"))
            let (verdict, _) = IntegrityChecker.confirm(path: qdir + "/app.db", budget: .seconds(30))
            if case .ok = verdict { Issue.record("the quarantined copy is not the damaged one") }

            // Data: everything up to the restored TXID is there; loss is measured.
            let restoredRows = try #require(incident.restoredTXID)
            #expect(restoredRows > 0)
            // (The app writes the same insert time into the row and its log line.)
            let t = corruptedAt.timeIntervalSince1970
            let committedBefore = Int64(w.committed.filter { $0.at <= t }.count)
            let newDB = try SQLiteConnection(path: w.db, mode: .readOnly)
            let kept = try newDB.scalar("SELECT count(*) FROM items WHERE at > 0 AND at <= ?", [.real(t)])?.int64 ?? 0
            let lostBeforeCorruption = committedBefore - kept
            #expect(lostBeforeCorruption >= 0)
            #expect(lostBeforeCorruption <= 400, "rows committed before the corruption but not restored: \(lostBeforeCorruption)")

            // Alerts: a warning while repairing, the resolve at the end, signed.
            let d = w.receiver?.deliveries ?? []
            #expect(d.map { $0.body["action"] as? String ?? "" } == ["trigger", "resolve"])
            #expect(d.first?.body["severity"] as? String == "warning")
            #expect(d.allSatisfy { $0.sigOK == true })
            #expect(d.first?.body["dedup_key"] as? String == "guardian/test-host/\(w.db)/incident-\(incident.id)")

            // The post-mortem carries the measured figures.
            let pm = PostMortem.render(incident)
            #expect(pm.contains("Downtime (measured RTO):"))
            #expect(pm.contains("Resolved automatically by guardian"))
            #expect(incident.downtime != nil)
            #expect(incident.appStoppedFor.map { $0 < .seconds(20) } == true)
        }
    }

    /// While the app runs, page 1 keeps being rewritten from the WAL, so a
    /// damaged header heals at the next checkpoint (and guardian must not
    /// act on it). It sticks once the WAL is gone: here the app and the
    /// replicator were stopped cleanly (their last close checkpointed and
    /// removed the WAL), then the header was destroyed; the app cannot start.
    @Test func destroyedHeaderIsDetectedAtOnceAndRepaired() async throws {
        try await withWorld(rows: 5_000) { w in
            try await w.startApp()
            try await w.startReplication()
            try await Task.sleep(for: .milliseconds(300))
            await w.stopApp()
            await w.stopReplication()
            // Litestream keeps the -wal file; empty it so no copy of page 1 remains.
            try SQLiteConnection(path: w.db).execute("PRAGMA wal_checkpoint(TRUNCATE)")
            #expect(((try? FileManager.default.attributesOfItem(atPath: w.db + "-wal")[.size] as? Int) ?? 0) == 0)
            try Damage.destroyHeader(w.db)
            _ = try await CommandRunner.run(w.startCommand, timeout: .seconds(10))
            #expect(await TestSupport.waitUntil(timeout: .seconds(10)) {
                ((try? String(contentsOfFile: w.dir + "/app.out", encoding: .utf8)) ?? "").contains("file is not a database")
            }, "the app cannot start on it")
            var config = w.config()
            config.integrityInterval = .seconds(3600)  // only the header probe can find it
            let (svc, store) = w.service(config: config)
            let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .resolvedAutomatically }
            let incident = try #require(try await store.incidents().first)
            #expect(done, "\(describe(incident))")
            #expect(incident.suspicion.source == .header)
            #expect(incident.cause == .headerOverwritten)
            #expect(FileProbe.read(path: w.db).problems.isEmpty)
            #expect(await w.appIsUp())
        }
    }

    @Test func truncatedWALIsDetectedAndRepaired() async throws {
        try await withWorld(rows: 5_000) { w in
            try await w.startApp()
            try await w.startReplication()
            try await Task.sleep(for: .milliseconds(500))
            let (svc, store) = w.service(config: w.config())
            let wal = w.db + "-wal"
            let size = try #require(FileManager.default.attributesOfItem(atPath: wal)[.size] as? Int)
            #expect(size > 100_000)
            #expect(truncate(wal, off_t(size / 2 + 100)) == 0)
            let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .resolvedAutomatically }
            let incident = try #require(try await store.incidents().first)
            #expect(done, "\(describe(incident))")
            #expect(incident.cause == .walDamaged, "\(incident.causeExplanation)")
            let live = try SQLiteConnection(path: w.db, mode: .readOnly)
            #expect(try live.scalar("PRAGMA integrity_check") == .text("ok"))
        }
    }

    @Test func alertOnlyModeTouchesNothingAndResolvesWhenAnOperatorRepairs() async throws {
        try await withWorld(rows: 5_000) { w in
            w.receiver = try await WebhookReceiver()
            try await w.startApp()
            let good = w.dir + "/good.db"
            let backup = try SQLiteConnection(path: w.db)
            try backup.execute("VACUUM INTO '\(good)'")
            let alerts = [AlertConfig(kind: .webhook, url: Secret(w.receiver?.url("/hook") ?? ""))]
            let (svc, store) = w.service(config: w.config(mode: .alertOnly), alerts: alerts)
            try Damage.overwritePages(w.db, count: 5)
            let task = Task { try await svc.run() }
            defer { task.cancel() }
            let opened = await TestSupport.waitUntil(timeout: .seconds(60)) { (try? await store.incidents().first)?.phase == .awaitingOperator }
            #expect(opened)
            #expect(w.commands == ["start \(w.dir) \(w.db)"], "the app was not touched")
            #expect(!FileManager.default.fileExists(atPath: w.dir + "/data/guardian-quarantine"))
            #expect(await w.receiver?.waitFor(1) == true)
            #expect(w.receiver?.deliveries.first?.body["severity"] as? String == "critical")
            #expect(await svc.status().state == "awaiting-operator")

            // The operator repairs it by hand.
            await w.stopApp()
            for s in ["-wal", "-shm"] { unlink(w.db + s) }
            #expect(rename(good, w.db) == 0)
            let resolved = await TestSupport.waitUntil(timeout: .seconds(60)) { (try? await store.incidents().first)?.outcome == .resolvedByOperator }
            #expect(resolved)
            #expect(await w.receiver?.waitFor(2) == true)
            #expect(w.receiver?.deliveries.map { $0.body["action"] as? String ?? "" } == ["trigger", "resolve"])
        }
    }

    /// The damage reached the replica: a snapshot was taken from the already
    /// damaged file. The latest restore point fails verification; guardian
    /// rejects it and restores the point just before that snapshot.
    @Test func damagedLatestSnapshotFallsBackToAnEarlierPoint() async throws {
        try await withWorld(rows: 5_000) { w in
            try await w.startApp()
            try await w.startReplication()
            try await Task.sleep(for: .milliseconds(300))
            await w.stopReplication()
            try Damage.overwritePages(w.db, count: 6)
            // A snapshot forced now reads the damaged pages into the replica.
            let snap = try await CommandRunner.run(
                [TestSupport.venvBin + "/litestream", "replicate", "-config", w.dir + "/litestream.yml", "-once", "-force-snapshot"], timeout: .seconds(60))
            #expect(snap.succeeded, "\(snap.summary)")
            let (svc, store) = w.service(config: w.config())
            let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .resolvedAutomatically }
            let incident = try #require(try await store.incidents().first)
            #expect(done, "\(describe(incident))")
            #expect(incident.restoreAttempts >= 2, "\(describe(incident))")
            #expect(incident.steps.contains { $0.step == IncidentStepName.discard })
            #expect(incident.restoredFrom?.contains("earlier point") == true)
            let live = try SQLiteConnection(path: w.db, mode: .readOnly)
            #expect(try live.scalar("PRAGMA integrity_check") == .text("ok"))
            #expect(PostMortem.render(incident).contains("Restore points tried: \(incident.restoreAttempts)"))
        }
    }

    /// Another part of guardian (the replicator) hits SQLITE_CORRUPT on its
    /// own reads and reports it: that alone starts the incident.
    @Test func corruptionReportedByAnotherModuleStartsTheIncident() async throws {
        try await withWorld(rows: 5_000) { w in
            try await w.startApp()
            try await w.startReplication()
            var config = w.config()
            config.integrityInterval = .seconds(3600)
            config.checkpointInterval = .seconds(3600)
            let (svc, store) = w.service(config: config)
            let task = Task { try await svc.run() }
            try await Task.sleep(for: .milliseconds(300))
            try Damage.overwritePages(w.db, count: 20)
            var seen: SQLiteError?
            do {
                _ = try SQLiteConnection(path: w.db, mode: .readOnly).query("SELECT sum(length(body)) FROM items")
            } catch let e as SQLiteError {
                seen = e
            }
            let e = try #require(seen, "reading the damaged table did not fail")
            #expect(e.isCorrupt)
            await svc.report(sqliteError: e)
            let done = await TestSupport.waitUntil(timeout: .seconds(60)) { (try? await store.incidents().first)?.outcome == .resolvedAutomatically }
            task.cancel()
            _ = await task.result
            let incident = try #require(try await store.incidents().first)
            #expect(done, "\(describe(incident))")
            #expect(incident.suspicion.source == .sqliteError)
        }
    }

    /// guardian died in the middle of an incident: on restart it does not
    /// resume steps it cannot vouch for; it escalates, and resolves alerts
    /// left triggered whose condition no longer holds. Here the database is
    /// healthy, so the next full check closes the incident.
    @Test func anIncidentInterruptedByARestartIsEscalatedThenClosed() async throws {
        try await withWorld(rows: 1_000) { w in
            w.receiver = try await WebhookReceiver()
            let seed = StateStore(stateDir: w.stateDir)
            var r = RemediationPostMortemTests.sampleRecord(resolved: false)
            r = IncidentRecord(
                id: 0, database: w.db, host: "test-host", mode: "auto", detectedAt: Date(), confirmedAt: Date(), suspicion: r.suspicion,
                confirmation: r.confirmation, evidence: Evidence(), checkIntervalSeconds: 1)
            r.phase = .restoring
            let id = try await seed.createIncident(r)
            try await seed.setAlertActive(.init(key: "guardian/test-host/\(w.db)/incident-\(id)", database: w.db, severity: .warning, summary: "repairing", triggeredAt: Date()))
            try await seed.setAlertActive(.init(key: "guardian/test-host/\(w.db)/wal-size", database: w.db, severity: .warning, summary: "WAL big", triggeredAt: Date()))
            await seed.close()

            let alerts = [AlertConfig(kind: .webhook, url: Secret(w.receiver?.url("/hook") ?? ""))]
            let (svc, store) = w.service(config: w.config(), alerts: alerts)
            let closed = await runService(svc) {
                (try? await store.incident(id: id))?.outcome == .resolvedByOperator && (w.receiver?.deliveries.count ?? 0) >= 3
            }
            let after = try #require(try await store.incident(id: id))
            #expect(closed, "\(describe(after))")
            #expect(after.steps.contains { $0.step == IncidentStepName.escalated && $0.detail.contains("guardian restarted while the incident was in phase restoring") })
            let d = (w.receiver?.deliveries ?? []).map { "\($0.body["action"] as? String ?? "") \(AlertPayloads.kind(of: $0.body["dedup_key"] as? String ?? "")) \($0.body["severity"] as? String ?? "")" }
            #expect(Set(d) == ["resolve wal-size warning", "trigger incident-\(id) critical", "resolve incident-\(id) critical"], "\(d)")
        }
    }

    // MARK: - Bad input: the incident ends in a clear escalation, nothing is lost.

    @Test func emptyReplicaEscalatesAndKeepsTheQuarantinedFiles() async throws {
        try await withWorld(rows: 5_000) { w in
            w.receiver = try await WebhookReceiver()
            try await w.startApp()
            try FileManager.default.createDirectory(atPath: w.replica, withIntermediateDirectories: true)  // exists, holds nothing
            let alerts = [AlertConfig(kind: .webhook, url: Secret(w.receiver?.url("/hook") ?? ""))]
            let (svc, store) = w.service(config: w.config(), alerts: alerts)
            try Damage.overwritePages(w.db, count: 5)
            let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .escalated && (w.receiver?.deliveries.count ?? 0) >= 2 }
            #expect(done)
            let incident = try #require(try await store.incidents().first)
            #expect(incident.escalation?.contains("no replica has a restore point") == true)
            #expect(incident.escalation?.contains("empty") == true)
            let files = incident.quarantined
            #expect(!files.isEmpty)
            for f in files { #expect(FileManager.default.fileExists(atPath: f.quarantined), "\(f.quarantined) was deleted") }
            #expect(!FileManager.default.fileExists(atPath: w.db), "no empty database was put in place")
            let d = w.receiver?.deliveries ?? []
            #expect(d.last?.body["severity"] as? String == "critical")
            #expect((d.last?.body["summary"] as? String)?.contains("could not repair") == true)
            #expect(PostMortem.render(incident).contains("mv \(files[0].quarantined) \(files[0].original)"))
        }
    }

    @Test func corruptReplicaEscalatesAfterBoundedAttempts() async throws {
        try await withWorld(rows: 5_000) { w in
            try await w.startApp()
            try await w.startReplication()
            await w.stopReplication()
            // Damage every LTX file of the replica.
            for level in (try? FileManager.default.contentsOfDirectory(atPath: w.replica + "/ltx")) ?? [] {
                for f in (try? FileManager.default.contentsOfDirectory(atPath: w.replica + "/ltx/" + level)) ?? [] {
                    let p = w.replica + "/ltx/\(level)/\(f)"
                    let size = (try? FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? 0
                    try Data((0..<size).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: p))
                }
            }
            let (svc, store) = w.service(config: w.config())
            try Damage.overwritePages(w.db, count: 5)
            let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .escalated }
            #expect(done)
            let incident = try #require(try await store.incidents().first)
            #expect(incident.escalation?.contains("none verified") == true || incident.escalation?.contains("no replica") == true, "\(incident.escalation ?? "")")
            #expect(incident.restoreAttempts <= 3)
            for f in incident.quarantined { #expect(FileManager.default.fileExists(atPath: f.quarantined)) }
            // No restored temp copy is left behind.
            let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: w.dir + "/data"))?.filter { $0.contains("guardian-restore") } ?? []
            #expect(leftovers.isEmpty, "\(leftovers)")
        }
    }

    @Test func unitThatDoesNotExistEscalatesWithoutMovingAnything() async throws {
        try await withWorld(rows: 3_000) { w in
            // A real D-Bus daemon on which no systemd answers.
            let busDir = try TestSupport.makeTempDir("bus")
            defer { TestSupport.cleanup(busDir) }
            try TestSupport.write("""
                <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
                <busconfig><type>custom</type><listen>unix:path=\(busDir)/bus</listen><auth>EXTERNAL</auth>
                <policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>
                """, to: busDir + "/bus.conf")
            let bus = try ChildProcess.start("/usr/bin/dbus-daemon", ["--config-file=\(busDir)/bus.conf", "--nofork"])
            defer { bus.signal(SIGTERM) }
            #expect(await TestSupport.waitUntil(timeout: .seconds(10)) { FileManager.default.fileExists(atPath: busDir + "/bus") })
            var config = w.config()
            config.stopCommand = []
            config.startCommand = []
            config.statusCommand = []
            config.unit = "no-such-app-\(UUID().uuidString.prefix(6)).service"
            config.systemdBusAddress = "unix:path=\(busDir)/bus"
            let (svc, store) = w.service(config: config)
            try Damage.overwritePages(w.db, count: 5)
            let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .escalated }
            #expect(done)
            let incident = try #require(try await store.incidents().first)
            #expect(incident.escalation?.contains("the app could not be stopped") == true)
            #expect(incident.escalation?.contains("org.freedesktop.systemd1") == true, "\(incident.escalation ?? "")")
            #expect(FileManager.default.fileExists(atPath: w.db), "nothing was moved")
            #expect(incident.quarantined.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: w.dir + "/data/guardian-quarantine"))
        }
    }

    /// A real full disk: the database lives on a 24 MB tmpfs that a runaway
    /// log fills. guardian sees SQLITE_FULL on its checkpoint and alerts, but
    /// raises no false alarm on the healthy database (a checkpoint stopped
    /// short, a frame cut by ENOSPC: integrity_check says ok, and the same
    /// observation is not suspected again). When the database is then found
    /// damaged, the root cause is classified as disk full; with no room to
    /// restore into, the incident escalates before the app is stopped:
    /// nothing is moved and the app keeps running.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func diskFullOnASmallTmpfs() async throws {
        try await withWorld(rows: 20_000, tmpfsSize: "24m") { w in
            w.receiver = try await WebhookReceiver()
            try await w.startApp()
            try await w.startReplication()
            let alerts = [AlertConfig(kind: .webhook, url: Secret(w.receiver?.url("/hook") ?? ""))]
            let statuses = StatusLog()
            var config = w.config()
            config.roomWait = .seconds(2)
            let (svc, store) = w.service(config: config, alerts: alerts) { await statuses.add($0) }
            let task = Task { try await svc.run() }
            // The runaway log.
            let fd = open(w.dir + "/data/app.log", O_WRONLY | O_CREAT, 0o644)
            let chunk = [UInt8](repeating: 0x41, count: 1 << 20)
            while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
            #expect(errno == ENOSPC)
            close(fd)
            let fullSeen = await TestSupport.waitUntil(timeout: .seconds(30)) {
                await statuses.last?.checkpoint?.reasons.contains { $0.contains("SQLITE_FULL") } == true
            }
            #expect(fullSeen, "guardian did not see the full disk")
            #expect(await w.receiver?.waitFor(1) == true)
            let keys = (w.receiver?.deliveries ?? []).compactMap { $0.body["dedup_key"] as? String }
            #expect(keys.contains { $0.hasSuffix("/db-disk-full") || $0.hasSuffix("/sqlite-full") }, "\(keys)")
            #expect(await statuses.last?.checkpoint?.level == "critical")
            #expect(await statuses.last?.checkpoint?.freeBytes.map { $0 < 1 << 20 } == true)
            // The app keeps committing (and failing) on the full disk for a while: no false alarm.
            try await Task.sleep(for: .seconds(3))
            #expect(try await store.incidents().isEmpty, "a healthy database on a full disk is not an incident")
            #expect(await statuses.last?.integrity.state != "corrupt")
            let files = await statuses.last?.integrity.files
            #expect(files == "ok", "\(files ?? "-")")
            let suspicions = try await store.events(database: w.db, limit: 500).filter { $0.kind == "suspicion" }
            #expect(suspicions.count <= 2, "the same harmless observation is checked once: \(suspicions.map(\.detail))")

            try Damage.overwritePages(w.db, count: 5)
            let ended = await TestSupport.waitUntil(timeout: .seconds(90)) { (try? await store.incidents().first)?.outcome == .escalated }
            task.cancel()
            _ = await task.result
            let incident = try #require(try await store.incidents().first)
            #expect(ended, "\(describe(incident))")
            #expect(incident.cause == .diskFull)
            #expect(incident.causeExplanation.contains("ran out of space"))
            #expect(incident.escalation?.contains("no room to restore") == true, "\(incident.escalation ?? "")")
            #expect(incident.quarantined.isEmpty, "nothing was moved")
            #expect(FileManager.default.fileExists(atPath: w.db))
            #expect(await w.appIsUp(), "the app was left running")
            #expect(w.commands.allSatisfy { !$0.hasPrefix("stop") }, "\(w.commands)")
            let pm = PostMortem.render(incident)
            #expect(pm.contains("**Disk full.**"))
            #expect(pm.contains("[TODO] Rotate and compress the application's logs"))
        }
    }

    @Test func refusingWebhookDoesNotHoldUpTheRepair() async throws {
        try await withWorld(rows: 5_000) { w in
            try await w.startApp()
            try await w.startReplication()
            let dead = TestSupport.freePort()
            let alerts = [AlertConfig(kind: .slack, url: Secret("http://127.0.0.1:\(dead)/services/SECRETPART"))]
            let slow = Alerter.RetryPolicy(attempts: 5, firstDelay: .seconds(1), maxDelay: .seconds(4), timeout: .seconds(2))
            let (svc, store) = w.service(config: w.config(), alerts: alerts, retry: slow)
            try Damage.overwritePages(w.db, count: 5)
            let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .resolvedAutomatically }
            #expect(done)
            #expect(!w.log.text.contains("SECRETPART"))
        }
    }
}

/// A real systemd as PID 1 of a throwaway container (systemd-nspawn, the
/// host's /usr read-only, everything else volatile). Its system bus is
/// reached from the host through /proc/<pid>/root.
final class NspawnSystemd: @unchecked Sendable {
    static var available: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-nspawn")
            && FileManager.default.fileExists(atPath: "/lib/systemd/system/dbus.socket")
    }

    let dir: String
    let nspawn: ChildProcess
    let pid: Int32

    /// Boots the container; `bind` is a host directory made visible at the same path inside.
    init(bind: String? = nil) async throws {
        dir = try TestSupport.makeTempDir("nspawn")
        try FileManager.default.createDirectory(atPath: dir + "/root/usr", withIntermediateDirectories: true)
        let m = try await CommandRunner.run(["/bin/mount", "--bind", "-o", "ro", "/usr", dir + "/root/usr"], timeout: .seconds(10))
        guard m.succeeded else { throw TestFailure("bind /usr: \(m.summary)") }
        let machine = "gtest-\(UUID().uuidString.prefix(8).lowercased())"
        var args = ["-D", dir + "/root", "--machine=\(machine)", "--volatile=yes", "--register=no", "--keep-unit", "-b", "--console=pipe"]
        if let bind { args.append("--bind=\(bind)") }
        nspawn = try ChildProcess.start("/usr/bin/systemd-nspawn", args)
        let parent = nspawn.pid
        var found: Int32 = 0
        let booted = await TestSupport.waitUntil(timeout: .seconds(60)) {
            // nspawn's first children are short-lived helpers; the container's
            // init is the child named systemd.
            let kids = (try? String(contentsOfFile: "/proc/\(parent)/task/\(parent)/children", encoding: .utf8)) ?? ""
            found = kids.split(separator: " ").compactMap { Int32($0) }.first {
                (try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8))?.hasPrefix("systemd") == true
            } ?? 0
            return found != 0 && FileManager.default.fileExists(atPath: "/proc/\(found)/root/run/dbus/system_bus_socket")
        }
        pid = found
        guard booted else {
            let status = nspawn.process.isRunning ? "running" : "exited \(nspawn.process.terminationStatus)"
            let log = nspawn.stdout + nspawn.stderr
            await Self.teardown(nspawn, dir)
            throw TestFailure("container did not boot (systemd-nspawn \(status), init \(found)): \(log.suffix(2000))")
        }
    }

    var busAddress: String { "unix:path=/proc/\(pid)/root/run/dbus/system_bus_socket" }

    /// Writes a unit into the container's /run/systemd/system and reloads systemd.
    func install(unit name: String, _ text: String) async throws {
        try TestSupport.write(text, to: "/proc/\(pid)/root/run/systemd/system/\(name)")
        let r = try await CommandRunner.run(["/usr/bin/nsenter", "-t", "\(pid)", "-a", "systemctl", "daemon-reload"], timeout: .seconds(30))
        guard r.succeeded else { throw TestFailure("daemon-reload: \(r.summary)") }
    }

    func activeState(_ unit: String) async -> String {
        (try? await CommandRunner.run(["/usr/bin/nsenter", "-t", "\(pid)", "-a", "systemctl", "is-active", unit], timeout: .seconds(10)))?.output ?? "?"
    }

    func shutdown() async { await Self.teardown(nspawn, dir) }

    static func teardown(_ nspawn: ChildProcess, _ dir: String) async {
        nspawn.signal(SIGTERM)  // nspawn asks the container's systemd to power off
        if await nspawn.wait(timeout: .seconds(20)) == nil { nspawn.signal(SIGKILL) }
        nspawn.removeFiles()
        _ = try? await CommandRunner.run(["/bin/umount", dir + "/root/usr"], timeout: .seconds(10))
        TestSupport.cleanup(dir)
    }
}

@Suite(.serialized, .enabled(if: NspawnSystemd.available, "needs root and systemd-nspawn"))
struct RemediationSystemdTests {
    @Test func unitsAreStoppedAndStartedThroughSystemdsBus() async throws {
        let box = try await NspawnSystemd()
        do {
            try await box.install(unit: "gtest-app.service", "[Service]\nExecStart=/usr/bin/sleep infinity\n")
            try await box.install(unit: "gtest-broken.service", "[Service]\nExecStart=/usr/bin/false\n")
            let app = SystemdUnitController(unit: "gtest-app.service", busAddress: box.busAddress)
            _ = try await app.start(timeout: .seconds(20))
            #expect(await box.activeState("gtest-app.service") == "active")
            try await app.stop(timeout: .seconds(20))
            #expect(await box.activeState("gtest-app.service") == "inactive")
            _ = try await app.start(timeout: .seconds(20))
            #expect(await box.activeState("gtest-app.service") == "active")

            await #expect {
                try await SystemdUnitController(unit: "gtest-nothing.service", busAddress: box.busAddress).stop(timeout: .seconds(5))
            } throws: { e in
                "\(e)".contains("gtest-nothing.service does not exist or cannot be used (LoadState=not-found)")
            }
            await #expect {
                _ = try await SystemdUnitController(unit: "gtest-broken.service", busAddress: box.busAddress).start(timeout: .seconds(20))
            } throws: { e in
                "\(e)".contains("gtest-broken.service") && "\(e)".contains("Result=exit-code")
            }
        } catch {
            await box.shutdown()
            throw error
        }
        await box.shutdown()
    }

    /// The whole incident with the app run by a real systemd: guardian stops
    /// and starts its unit over D-Bus.
    @Test func incidentWithTheAppUnderSystemd() async throws {
        try await withWorld(rows: 5_000) { w in
            let box = try await NspawnSystemd(bind: w.dir)
            do {
                try await box.install(unit: "gtest-db-app.service", """
                    [Service]
                    ExecStart=/usr/bin/python3 \(w.dir)/app.py \(w.db) \(w.dir)
                    """)
                var config = w.config()
                config.stopCommand = []
                config.startCommand = []
                config.statusCommand = []
                config.unit = "gtest-db-app.service"
                config.systemdBusAddress = box.busAddress
                let app = SystemdUnitController(unit: "gtest-db-app.service", busAddress: box.busAddress)
                _ = try await app.start(timeout: .seconds(20))
                #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { !w.served.isEmpty })
                try await w.startReplication()
                let (svc, store) = w.service(config: config)
                try Damage.overwritePages(w.db, count: 6)
                let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .resolvedAutomatically }
                let incident = try #require(try await store.incidents().first)
                #expect(done, "\(describe(incident))")
                #expect(incident.steps.first { $0.step == IncidentStepName.stopApp }?.detail == "systemd unit gtest-db-app.service")
                #expect(!incident.steps.contains { $0.step == IncidentStepName.alert }, "no destination, no alert step")
                #expect(await box.activeState("gtest-db-app.service") == "active")
                let restartedAt = incident.steps.last { $0.step == IncidentStepName.startApp }?.at.timeIntervalSince1970 ?? 0
                #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { w.served.contains { $0.at > restartedAt } }, "the app serves again")
                _ = try? await app.stop(timeout: .seconds(20))
            } catch {
                await box.shutdown()
                throw error
            }
            await box.shutdown()
        }
    }
}
