import Foundation
import Platform
import Testing
@testable import guardian

/// `guardian status --json` checked field by field against a running daemon:
/// a database on a tmpfs at the disk `warn` level, a file replica that keeps
/// up, and an S3 replica whose moto server is killed mid-test (Failing).
@Suite(.serialized) struct StatusDocumentTests {
    static func txid(_ hex: String?) -> UInt64? { hex.flatMap { $0.count == 16 ? UInt64($0, radix: 16) : nil } }

    static func isTimestamp(_ s: String?, notBefore: Date = Date(timeIntervalSinceNow: -600)) -> Bool {
        guard let s, let d = Timestamps.parse(s) else { return false }
        return d >= notBefore && d <= Date().addingTimeInterval(5)
    }

    /// Sum of the sizes of every LTX file under a file replica.
    static func replicaBytes(_ dir: String) -> Int64 {
        var total: Int64 = 0
        let e = FileManager.default.enumerator(atPath: dir)
        while let name = e?.nextObject() as? String {
            guard name.hasSuffix(".ltx"), let a = try? FileManager.default.attributesOfItem(atPath: dir + "/" + name) else { continue }
            total += (a[.size] as? Int64) ?? Int64((a[.size] as? Int) ?? 0)
        }
        return total
    }

    @Test(.timeLimit(.minutes(3)))
    func everyFieldOfARunningDaemon() async throws {
        let d = try await OperatorDaemon(s3: true, metrics: false)
        do {
            try await check(d)
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }

    private func replica(_ doc: [String: Any], _ name: String) -> [String: Any] {
        doc.list("databases").first?.list("replicas").first { $0.string("name") == name } ?? [:]
    }

    private func check(_ d: OperatorDaemon) async throws {
        let startedBefore = Date()
        try d.start()
        // Ready, both replicas caught up, the disk sampled, integrity checked once.
        let first = try await d.waitForStatus { doc in
            guard doc.string("state") == "ready", let db = doc.list("databases").first, let t = db.string("txid") else { return false }
            let replicas = db.list("replicas")
            return replicas.count == 2 && replicas.allSatisfy { $0.string("state") == "Syncing" && $0.string("position") == t }
                && doc.list("disk").contains { $0.string("mount_point") == d.fs.path }
                && doc.list("health").first?.dict("integrity")?.string("state") == "ok"
        }
        let t0 = try #require(Self.txid(first?.list("databases").first?.string("txid")), "never ready: \(d.stderr)")

        // Five transactions: guardian's position and both replicas' move by five.
        try await d.write(5)
        let synced = try await d.waitForStatus { doc in
            guard let db = doc.list("databases").first, Self.txid(db.string("txid")) == t0 + 5 else { return false }
            return db.list("replicas").allSatisfy { Self.txid($0.string("position")) == t0 + 5 && $0.int("lag_ms") == 0 }
                && (db.dict("checkpoint_results").map { ($0.int("ok") ?? 0) + ($0.int("busy") ?? 0) } ?? 0) > 0
        }
        let now = try await d.status()
        let doc = try #require(synced, "replicas did not catch up: \(String(describing: now))\n\(d.stderr)")

        // The daemon.
        #expect(doc.string("version") == GuardianVersion.string)
        #expect(doc.int("pid") == Int(d.child?.pid ?? 0))
        #expect(Self.isTimestamp(doc.string("started_at"), notBefore: startedBefore.addingTimeInterval(-1)))
        #expect((doc.double("uptime_seconds") ?? -1) > 0 && (doc.double("uptime_seconds") ?? 999) < 180)
        #expect(doc.string("config") == d.config)
        #expect(doc.string("state") == "ready")

        // The database.
        let db = try #require(doc.list("databases").first)
        #expect(doc.list("databases").count == 1)
        #expect(db.string("path") == d.db)
        #expect(db.string("state") == "open")
        #expect(db.isNull("error"))
        let pageSize = try #require(db.int("page_size"))
        #expect(pageSize == 4096)
        let dbSize = try #require(db.int("db_size"))
        #expect(dbSize > 0 && dbSize % pageSize == 0)
        let walSize = try #require(db.int("wal_size"))
        // Empty, or a header plus whole frames (24-byte frame header + page).
        #expect(walSize == 0 || (walSize - 32) % (pageSize + 24) == 0, "wal_size \(walSize)")
        #expect(Self.txid(db.string("txid")) == t0 + 5)
        #expect(Self.isTimestamp(db.string("last_commit"), notBefore: startedBefore))
        let checkpoint = try #require(db.dict("checkpoint"), "checkpoint-size 16KB: guardian must have checkpointed")
        #expect(["PASSIVE", "forced"].contains(checkpoint.string("mode") ?? ""))
        #expect(checkpoint.bool("busy") != nil)
        #expect((checkpoint.int("log_frames") ?? -1) >= (checkpoint.int("checkpointed_frames") ?? 0))
        #expect(Self.isTimestamp(checkpoint.string("at"), notBefore: startedBefore))
        let results = try #require(db.dict("checkpoint_results"))
        #expect(results.int("failed") == 0)
        #expect((results.int("ok") ?? 0) + (results.int("busy") ?? 0) >= 1)

        // The replicas, in configuration order.
        let replicas = db.list("replicas")
        #expect(replicas.map { $0.string("name") ?? "" } == ["local", "offsite"])
        let local = replicas[0], offsite = replicas[1]
        #expect(local.string("type") == "file")
        #expect(local.string("destination") == "file://" + d.replicaDir)
        #expect(offsite.string("type") == "s3")
        #expect(offsite.string("destination") == "s3://ops/app")
        for r in replicas {
            #expect(r.string("state") == "Syncing")
            #expect(Self.txid(r.string("position")) == t0 + 5)
            #expect(r.int("lag_ms") == 0)
            #expect(Self.isTimestamp(r.string("last_sync"), notBefore: startedBefore))
            #expect(r.isNull("error"))
            #expect(r.int("consecutive_failures") == 0)
            #expect(r.int("errors") == 0)
            #expect((r.int("requests") ?? 0) >= 6, "at least one write per transaction: \(r)")
        }
        // Bytes stored = the LTX files on the file replica (no compaction within 1h).
        #expect(Int64(local.int("bytes") ?? -1) == Self.replicaBytes(d.replicaDir))
        #expect((offsite.int("bytes") ?? 0) > 0)

        // Remediation's view.
        let health = try #require(doc.list("health").first)
        #expect(doc.list("health").count == 1)
        #expect(health.string("path") == d.db)
        #expect(health.string("mode") == "alert-only", "no unit or commands configured")
        #expect(health.string("state") == "healthy")
        #expect(Self.isTimestamp(health.string("updated_at"), notBefore: startedBefore))
        #expect(health.list("open_incidents").isEmpty)
        #expect(health.isNull("last_incident"))
        #expect(health.int("incidents_opened") == 0)
        let integrity = try #require(health.dict("integrity"))
        #expect(integrity.string("state") == "ok")
        #expect(Self.isTimestamp(integrity.string("last_check_at"), notBefore: startedBefore))
        #expect((integrity.int("last_check_ms") ?? -1) >= 0)
        #expect(integrity.bool("per_table") == false)
        #expect(integrity.string("files") == "ok")
        let wal = try #require(health.dict("checkpoint"))
        #expect(wal.string("level") == "ok")
        #expect(wal.bool("starved") == false)
        #expect((wal.int("wal_size") ?? -1) >= 0)
        #expect((wal.int("db_size") ?? 0) > 0)
        #expect((wal.int("free_bytes") ?? 0) > 1 << 20)
        #expect((wal["reasons"] as? [Any])?.isEmpty == true)

        // The database's filesystem: the tmpfs, at warn.
        let mount = try #require(doc.list("disk").first { $0.string("mount_point") == d.fs.path })
        var vfs = statvfs()
        #expect(statvfs(d.fs.path, &vfs) == 0)
        let frsize = Int(vfs.f_frsize)
        #expect(mount.int("total_bytes") == Int(vfs.f_blocks) * frsize)
        #expect((mount["paths"] as? [String] ?? []).contains(d.db))
        let used = try #require(mount.int("used_bytes")), available = try #require(mount.int("available_bytes"))
        #expect(abs(used - (Int(vfs.f_blocks) - Int(vfs.f_bfree)) * frsize) < 1 << 20)
        #expect(used + available <= Int(vfs.f_blocks) * frsize)
        let percent = try #require(mount.double("used_percent"))
        #expect(abs(percent - Double(used) * 100 / Double(used + available)) < 0.01)
        #expect(percent > 50 && percent < 90)
        #expect(mount.string("level") == "warn")
        #expect(mount.int("inodes_total") == Int(vfs.f_files))
        #expect((mount.int("inodes_used") ?? 0) >= 3, "filler, data/, app.db at least")
        #expect((mount.int("inodes_used") ?? 0) + (mount.int("inodes_available") ?? 0) <= Int(vfs.f_files))
        #expect((mount.double("inodes_percent") ?? -1) >= 0)
        #expect(mount.isNull("forecast_seconds_to_full") || (mount.double("forecast_seconds_to_full") ?? -1) > 0)
        #expect(mount.isNull("ballast"))

        // The S3 server goes away: the next transactions reach only the file replica.
        let lastOffsiteSync = offsite.string("last_sync")
        await d.moto?.kill()
        try await d.write(2)
        let failing = try await d.waitForStatus { doc in
            let r = replica(doc, "offsite")
            return r.string("state") == "Failing" && Self.txid(replica(doc, "local").string("position")) == t0 + 7
        }
        let afterNow = try await d.status()
        let after = try #require(failing, "the S3 replica never failed: \(String(describing: afterNow))")
        let bad = replica(after, "offsite")
        #expect(Self.txid(bad.string("position")) == t0 + 5, "the position only moves when a file is stored")
        #expect((bad.int("lag_ms") ?? 0) > 0)
        #expect(bad.string("last_sync") == lastOffsiteSync)
        #expect(!(bad.string("error") ?? "").isEmpty)
        #expect((bad.int("consecutive_failures") ?? 0) >= 1)
        #expect((bad.int("errors") ?? 0) >= (bad.int("consecutive_failures") ?? 0))
        let good = replica(after, "local")
        #expect(good.string("state") == "Syncing" && good.int("lag_ms") == 0)

        // The readable form shows the same, in the seed's replica-table format.
        let table = try await guardian(["status", "--socket", d.socket, "--color", "never"])
        #expect(table.status == 0)
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("  [Syncing] \(d.db) -> file  Destination: file://\(d.replicaDir) | Lag: 0ms | Last: ") }, "\(table.stdout)")
        #expect(lines.contains { $0.hasPrefix("  [Failing] \(d.db) -> s3  Destination: s3://ops/app | Lag: ") && $0.contains("ms | Last: ") }, "\(table.stdout)")
        #expect(lines.contains { $0.hasPrefix("  disk \(d.fs.path)  used ") && $0.hasSuffix("[warn]") }, "\(table.stdout)")
        #expect(lines.contains { $0.hasPrefix("  integrity ok  checked ") }, "\(table.stdout)")
        #expect(lines.contains { $0.hasPrefix("  WAL ") && $0.contains("checkpoints ok ") }, "\(table.stdout)")
        #expect(!table.stdout.contains("\u{1B}"))

        // The secret never leaves the configuration file.
        let json = try await guardian(["status", "--socket", d.socket, "--json"])
        #expect(!json.stdout.contains(d.secret) && !table.stdout.contains(d.secret) && !d.stderr.contains(d.secret))
    }
}
