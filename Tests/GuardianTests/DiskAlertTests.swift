import Foundation
import Testing
@testable import DiskWatch
@testable import Platform
@testable import Remediate
@testable import guardian

/// The disk guardian's events reach the team: `guardian run` on a real small
/// filesystem filled for real, alerts delivered to a real loopback receiver
/// (HMAC checked), and the events kept in guardian's state database under the
/// database they concern, for a later post-mortem.
@Suite(.serialized) struct DiskAlertTests {
    @Test(.timeLimit(.minutes(2)))
    func diskLevelsAreAlertedAndResolvedThroughTheSharedAlerter() async throws {
        let fs = try DiskKit.Tmpfs(size: "16m")
        defer { fs.unmount() }
        let dir = try TestSupport.makeTempDir("disk-alert")
        defer { TestSupport.cleanup(dir) }
        let rx = try await WebhookReceiver(key: "disk-hook-key")
        defer { rx.stop() }
        mkdir(fs.path + "/data", 0o755)
        let db = fs.path + "/data/app.db"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        let config = dir + "/guardian.yml"
        try TestSupport.write("""
            state-dir: \(dir)/state
            status:
              socket: \(dir)/guardian.sock
            dbs:
              - path: \(db)
                monitor-interval: 100ms
            disk:
              interval: 100ms
              warn: 60%
              critical: 75%
              emergency: 95%
            alerts:
              - type: webhook
                url: \(rx.url("/hook"))
                secret: disk-hook-key
            """, to: config)
        let child = try await startDaemon(config: config)
        defer { child.removeFiles(); child.signal(SIGKILL) }

        // Something fills the filesystem to ~80 %: warn and critical.
        let usage = try #require(fs.usage)
        try DiskKit.fill(fs.path + "/filler", bytes: Int(Double(usage.totalBytes) * 0.80) - Int(usage.usedBytes))
        let key = "/host/disk-level-\(fs.path)"
        let triggered = await TestSupport.waitUntil(timeout: .seconds(15)) {
            rx.deliveries.contains { ($0.body["dedup_key"] as? String)?.hasSuffix(key) == true && $0.body["severity"] as? String == "critical" }
        }
        #expect(triggered, "no critical disk alert: \(rx.deliveries.map(\.body)); \(child.stderr)")
        let trigger = try #require(rx.deliveries.last { ($0.body["dedup_key"] as? String)?.hasSuffix(key) == true })
        #expect(trigger.sigOK == true)
        #expect(trigger.body["action"] as? String == "trigger")
        #expect((trigger.body["summary"] as? String)?.contains("Disk \(fs.path) reached level") == true)
        // The alert names the database that lives there.
        let details = trigger.body["details"] as? [String: Any] ?? [:]
        #expect(details["databases"] as? String == db, "\(trigger.body)")

        // Space returns: one resolve for the same key.
        unlink(fs.path + "/filler")
        let resolved = await TestSupport.waitUntil(timeout: .seconds(15)) {
            rx.deliveries.contains { ($0.body["dedup_key"] as? String)?.hasSuffix(key) == true && $0.body["action"] as? String == "resolve" }
        }
        #expect(resolved, "no resolve: \(rx.deliveries.map(\.body))")
        child.signal(SIGTERM)
        #expect(await child.wait(timeout: .seconds(20)) == 0, "\(child.stderr)")
        let forKey = rx.deliveries.filter { ($0.body["dedup_key"] as? String)?.hasSuffix(key) == true }
        #expect(forKey.filter { $0.body["action"] as? String == "resolve" }.count == 1)
        #expect(forKey.allSatisfy { $0.sigOK == true })
        print("disk alerts: \(forKey.map { "\($0.body["action"] ?? "") \($0.body["severity"] ?? "")" })")
        // The secret never reaches the logs.
        #expect(!child.stderr.contains("disk-hook-key"))

        // The event log holds the level changes under the database.
        let store = StateStore(stateDir: dir + "/state", readOnly: true)
        let events = try await store.events(database: db, limit: 50)
        let levels = events.filter { $0.kind == "disk-diskLevelChanged" }.map(\.detail)
        #expect(levels.contains { $0.contains("to=critical") } && levels.contains { $0.contains("to=normal") }, "\(events)")
    }

    @Test func rulesMapEventsToTriggersAndResolves() {
        let up = DiskEvent(.diskLevelChanged, ["mount": "/data", "from": "normal", "to": "warn", "used_percent": "81.00", "available_bytes": "1000"])
        #expect(DiskAlertRules.actions(for: up) == [.trigger(kind: "disk-level-/data", severity: .warning, summary: "Disk /data reached level warn (81.00 % used, 1.0 kB free)")])
        let crit = DiskEvent(.diskLevelChanged, ["mount": "/data", "from": "warn", "to": "emergency"])
        #expect(DiskAlertRules.actions(for: crit).first.map { if case .trigger(_, .critical, _) = $0 { true } else { false } } == true)
        // Falling from critical to warn raises nothing new: the critical alert stays until normal.
        #expect(DiskAlertRules.actions(for: DiskEvent(.diskLevelChanged, ["mount": "/data", "from": "critical", "to": "warn"])).isEmpty)
        let normal = DiskAlertRules.actions(for: DiskEvent(.diskLevelChanged, ["mount": "/data", "from": "warn", "to": "normal"]))
        #expect(normal.map { if case .resolve(let k, _) = $0 { k } else { "" } } == ["disk-level-/data", "disk-forecast-/data", "disk-cleanup-/data", "disk-log-truncated-/data"])
        #expect(DiskAlertRules.actions(for: DiskEvent(.ballastReleased, ["mount": "/data", "path": "/data/ballast"])).count == 1)
        #expect(DiskAlertRules.actions(for: DiskEvent(.ballastRecreated, ["path": "/data/ballast"])) == [.resolve(kind: "disk-ballast-/data/ballast", summary: "Emergency ballast /data/ballast recreated")])
        #expect(DiskAlertRules.actions(for: DiskEvent(.logRotated, ["path": "/var/log/x"])).isEmpty)
    }

    @Test func anEmergencyBeforeDetectionMakesTheCauseADiskFullAndShowsInTheTimeline() {
        let at = Date(timeIntervalSince1970: 1_764_000_000)
        let notes = [
            Evidence.DiskNote(at: at, level: "warning", text: "disk usage level changed from=normal mount=/data to=warn"),
            Evidence.DiskNote(at: at.addingTimeInterval(30), level: "critical", text: "disk usage level changed from=warn mount=/data to=emergency"),
        ]
        let e = Evidence(diskFreeBytes: 900 << 20, diskTotalBytes: 10 << 30, diskEvents: notes, diskEmergencyAt: at.addingTimeInterval(30))
        let (cause, text) = RootCause.classify(e)
        #expect(cause == .diskFull)
        #expect(text.contains("the disk guardian reported the emergency level at"))
        var r = IncidentRecord(
            id: 7, database: "/data/app.db", host: "h", mode: "auto", detectedAt: at.addingTimeInterval(60), confirmedAt: at.addingTimeInterval(61),
            suspicion: Suspicion(source: .quickCheck, detail: "quick_check", at: at.addingTimeInterval(60)), confirmation: ["x"], evidence: e,
            checkIntervalSeconds: 1)
        r.closedAt = at.addingTimeInterval(90)
        let md = PostMortem.render(r)
        let timeline = md.components(separatedBy: "### Timeline").last?.components(separatedBy: "### Root Cause").first ?? ""
        #expect(timeline.contains("disk guard (warning): disk usage level changed from=normal mount=/data to=warn"))
        #expect(timeline.contains("disk guard (critical)"))
        // Records stored before these fields existed still decode.
        let old = #"{"checkpointStarved":false,"checkLines":[]}"#
        #expect((try? JSONDecoder().decode(Evidence.self, from: Data(old.utf8))) != nil)
    }
}

/// Replication lag reaches the team through the same alerter: a file
/// replica on a real filesystem remounted read-only keeps failing → one
/// trigger; writable again → it catches up → one resolve.
@Suite(.serialized) struct LagAlertTests {
    @Test(.enabled(if: geteuid() == 0), .timeLimit(.minutes(2)))
    func aFailingReplicaIsAlertedAndResolvedWhenItCatchesUp() async throws {
        let fs = try DiskKit.Tmpfs(size: "32m")
        defer { fs.unmount() }
        let dir = try TestSupport.makeTempDir("lag-alert")
        defer { TestSupport.cleanup(dir) }
        let rx = try await WebhookReceiver(key: "lag-key")
        defer { rx.stop() }
        let db = dir + "/app.db"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        let config = dir + "/guardian.yml"
        try TestSupport.write("""
            state-dir: \(dir)/state
            status:
              socket: \(dir)/guardian.sock
            dbs:
              - path: \(db)
                monitor-interval: 100ms
                remediate: alert-only
                lag-alert: 2s
                replicas:
                  - name: local
                    url: file://\(fs.path)/replica
            alerts:
              - type: webhook
                url: \(rx.url("/hook"))
                secret: lag-key
            """, to: config)
        let child = try await startDaemon(config: config, until: "\"state\" : \"Syncing\"")
        defer { child.removeFiles(); child.signal(SIGKILL) }

        try fs.remount(readOnly: true)
        try await sqlite3(db, "INSERT INTO t VALUES (2);")
        let key = "/\(db)/replication-lag-local"
        let triggered = await TestSupport.waitUntil(timeout: .seconds(30)) {
            rx.deliveries.contains { ($0.body["dedup_key"] as? String)?.hasSuffix(key) == true && $0.body["action"] as? String == "trigger" }
        }
        #expect(triggered, "no lag alert: \(rx.deliveries.map(\.body))")
        try fs.remount(readOnly: false)
        let resolved = await TestSupport.waitUntil(timeout: .seconds(30)) {
            rx.deliveries.contains { ($0.body["dedup_key"] as? String)?.hasSuffix(key) == true && $0.body["action"] as? String == "resolve" }
        }
        #expect(resolved, "no resolve: \(rx.deliveries.map(\.body))")
        child.signal(SIGTERM)
        #expect(await child.wait(timeout: .seconds(20)) == 0, "\(child.stderr)")
        let forKey = rx.deliveries.filter { ($0.body["dedup_key"] as? String)?.hasSuffix(key) == true }
        #expect(forKey.map { $0.body["action"] as? String ?? "" } == ["trigger", "resolve"], "\(forKey.map(\.body))")
        #expect(forKey.allSatisfy { $0.sigOK == true })
        // Every row reached the replica once it was writable again.
        let restored = dir + "/restored.db"
        let r = try await guardian(["restore", "-o", restored, "file://\(fs.path)/replica"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await sqlite3(restored, "SELECT count(*) FROM t") == "2")
    }
}
