import DiskWatch
import Foundation
@testable import Platform
@testable import Remediate
@testable import Replication
import Testing
@testable import guardian

/// Directory entries (`dir:` + `pattern:` + `recursive:` + `watch:`, Litestream
/// 0.5's keys): real directories of real WAL databases, a real daemon, the
/// real Litestream restoring from guardian's directory replica.
@Suite(.serialized) struct DirectoryReplicationTests {
    // MARK: configuration

    static let env = ["HOME": "/root"]

    static func parse(_ text: String) throws -> GuardianConfig {
        try GuardianConfig.parse(text: text, file: "g.yml", environment: env)
    }

    static func error(_ text: String) -> String? {
        do {
            _ = try parse(text)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func directoryEntryKeysAreCheckedWithTheirLine() {
        #expect(Self.error("dbs:\n  - dir: /data\n    path: /data/a.db\n")?.contains("exclude each other") == true)
        #expect(Self.error("dbs:\n  - dir: /data\n    replica: {path: /b}\n")?.contains("needs pattern:") == true)
        #expect(Self.error("dbs:\n  - path: /data/a.db\n    watch: true\n")?.contains("g.yml:3: dbs[0].watch: only applies to a directory entry") == true)
        #expect(Self.error("dbs:\n  - dir: /data\n    pattern: \"[a-z\"\n")?.contains("not a valid glob") == true)
        #expect(Self.error("dbs:\n  - dir: /data\n    pattern: \"*.db\"\n    unit: \"app@{tenant}.service\"\n")?.contains("{tenant} is not a placeholder") == true)
        #expect(Self.error("dbs:\n  - path: /data/a.db\n    replica: {path: /b}\n    drill: {sample: 3}\n")?.contains("only applies to a directory entry") == true)
        #expect(Self.error("dbs:\n  - dir: /data\n    pattern: \"*.db\"\n  - dir: /data\n    pattern: \"*.sqlite\"\n")?.contains("listed twice") == true)
    }

    /// Each database's replica path is the entry's plus the database's path
    /// relative to `dir` (file, S3 and SFTP, as Litestream derives it), and the
    /// remediation templates get `{name}` / `{path}`.
    @Test func eachDatabaseGetsItsOwnReplicaPathAndUnit() throws {
        let c = try Self.parse("""
            dbs:
              - dir: /data/tenants
                pattern: "*.db"
                recursive: true
                watch: true
                unit: "app@{name}.service"
                drill: {interval: 1d, sample: 3}
                replicas:
                  - url: file:///backups/tenants
                  - type: s3
                    bucket: b
                    path: tenants
                    access-key-id: k
                    secret-access-key: s
                  - type: sftp
                    host: h:2222
                    user: u
                    path: /srv/tenants
                    key-path: /k
                    known-hosts: /kh
            """)
        #expect(c.dbs.isEmpty)
        let entry = try #require(c.directories.first)
        #expect(entry.spec == DirectorySpec(dir: "/data/tenants", pattern: "*.db", recursive: true, watch: true))
        #expect(entry.drillSample == 3)
        #expect(entry.covers("/data/tenants/eu/acme corp.db"))
        #expect(!entry.covers("/data/tenants/eu/acme.db-wal"))
        #expect(!entry.covers("/data/tenants/.acme.db.guardian-restore-1-1"))
        #expect(!entry.covers("/data/other/acme.db"))
        let db = entry.database(at: "/data/tenants/eu/acme corp.db")
        #expect(db.path == "/data/tenants/eu/acme corp.db")
        let targets = db.replication.replicas.map(\.target)
        #expect(targets[0] == .file(path: "/backups/tenants/eu/acme corp.db"))
        guard case .s3(let s3) = targets[1], case .sftp(let sftp) = targets[2] else {
            Issue.record("replica types changed: \(targets)")
            return
        }
        #expect(s3.path == "tenants/eu/acme corp.db")
        #expect(sftp.path == "/srv/tenants/eu/acme corp.db")
        #expect(db.remediation.unit == "app@eu-acme\\x20corp.service")
        #expect(c.database(at: "/data/tenants/x.db")?.replication.replicas.first?.target == .file(path: "/backups/tenants/x.db"))
        let flat = try Self.parse("dbs:\n  - dir: /d\n    pattern: \"*.db\"\n    start-command: [/bin/start, \"{name}\", \"{path}\"]\n    stop-command: [/bin/stop, \"{name}\"]\n")
        let sub = try #require(flat.directories.first)
        #expect(!sub.covers("/d/eu/a.db"), "not recursive: subdirectories are not covered")
        #expect(sub.database(at: "/d/a.db").remediation.startCommand == ["/bin/start", "a", "/d/a.db"])
    }

    /// A rotating sample: never drilled first, then the oldest drill.
    @Test func drillsTakeTheDatabasesDrilledLongestAgo() {
        let t = Date(timeIntervalSince1970: 1_000_000)
        let dbs = ["/d/a.db", "/d/b.db", "/d/c.db", "/d/d.db"]
        let last = ["/d/a.db": t.addingTimeInterval(30), "/d/b.db": t, "/d/d.db": t.addingTimeInterval(10)]
        #expect(DirectoryDrills.pick(dbs, last: last, count: 2) == ["/d/c.db", "/d/b.db"])
        #expect(DirectoryDrills.pick(dbs, last: last, count: 10) == ["/d/c.db", "/d/b.db", "/d/d.db", "/d/a.db"])
    }

    /// What a file matching the pattern is, from its header and size.
    @Test func candidatesAreClassifiedByTheirHeader() async throws {
        let dir = try TestSupport.makeTempDir("dir-classify")
        defer { TestSupport.cleanup(dir) }
        try Damage.makeDatabase(dir + "/wal.db", rows: 500)
        try await sqlite3(dir + "/wal.db", "PRAGMA wal_checkpoint(TRUNCATE)")
        #expect(DirectoryScan.classify(dir + "/wal.db") == .database)
        try await sqlite3(dir + "/journal.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        #expect(DirectoryScan.classify(dir + "/journal.db") == .rollbackJournal)
        try TestSupport.write("", to: dir + "/empty.db")
        #expect(DirectoryScan.classify(dir + "/empty.db") == .notYet)
        try TestSupport.write("hello", to: dir + "/short.db")
        #expect(DirectoryScan.classify(dir + "/short.db") == .notSQLite)
        // Half copied in: the header counts more pages than the file has yet.
        let whole = try Data(contentsOf: URL(fileURLWithPath: dir + "/wal.db"))
        #expect(whole.count > 3 * 4096)
        try whole.prefix(2 * 4096).write(to: URL(fileURLWithPath: dir + "/copying.db"))
        #expect(DirectoryScan.classify(dir + "/copying.db") == .notYet)
        #expect(DirectoryScan.classify(dir + "/missing.db") == .notYet)
    }

    // MARK: status with many databases

    static func manyDatabases(_ n: Int, bad: Set<Int>) -> StatusDocument {
        let dbs = (0..<n).map { i -> DatabaseStatus in
            let path = String(format: "/data/t/t%03d.db", i)
            if bad.contains(i) { return DatabaseStatus(path: path, state: "missing", error: "no such file") }
            return DatabaseStatus(
                path: path, state: "open", txid: "0000000000000001",
                replicas: [ReplicaStatus(name: "file", type: "file", destination: "file:///b", state: "Syncing")])
        }
        return StatusDocument(
            version: "1", pid: 1, startedAt: "2026-11-25T00:00:00.000Z", uptimeSeconds: 1, config: "/c", state: "ready", databases: dbs,
            directories: [DirectoryStatus(
                dir: "/data/t", pattern: "*.db", recursive: false, watch: true, databases: n,
                skipped: [.init(path: "/data/t/notes.db", reason: "not an SQLite database")])])
    }

    @Test func statusSummarisesAndListsTheUnhealthyFirst() {
        let doc = Self.manyDatabases(50, bad: [7, 42])
        let text = StatusTable.render(doc, color: false)
        #expect(text.contains("databases 50: 48 open, 2 missing"))
        #expect(text.contains("2 need a look (listed first)"))
        #expect(text.contains("directory /data/t (*.db, watch): 50 databases, 1 files skipped"))
        #expect(text.contains("skipped /data/t/notes.db: not an SQLite database"))
        let first = text.range(of: "/data/t/t007.db")?.lowerBound
        let second = text.range(of: "/data/t/t042.db")?.lowerBound
        let healthy = text.range(of: "/data/t/t000.db")?.lowerBound
        #expect(first != nil && second != nil && healthy != nil)
        if let first, let second, let healthy { #expect(first < second && second < healthy) }
        #expect(text.contains("... 28 more healthy databases"))
        #expect(!text.contains("/data/t/t049.db"))
        // A directory entry that found nothing (yet) says so.
        var empty = Self.manyDatabases(0, bad: [])
        empty.directories[0].databases = 0
        #expect(StatusTable.render(empty, color: false).contains("no databases found in the directory entries yet"))
        // A few databases: every one in full, no "more" line.
        let small = StatusTable.render(Self.manyDatabases(3, bad: []), color: false)
        #expect(small.contains("databases 3: 3 open") && small.contains("all healthy") && !small.contains("more healthy"))
        #expect(small.contains("[Syncing] /data/t/t002.db -> file"))
        // Many in trouble: the first 20 in full, the rest one line each.
        let lost = StatusTable.render(Self.manyDatabases(50, bad: Set(0..<25)), color: false)
        #expect(lost.components(separatedBy: "no replicas configured").count - 1 == 20)
        #expect(lost.contains("  [missing]  /data/t/t024.db  no such file\n"))
        let one = StatusOverview.filter(doc, pattern: "t04*.db")
        #expect(one.databases.map(\.path) == (40...49).map { String(format: "/data/t/t%03d.db", $0) })
        #expect(StatusOverview.filter(doc, pattern: "/data/t/t007.db").databases.count == 1)
    }

    /// 10,000 databases, with health and a filesystem listing them all, half
    /// of them in trouble: the table is built in linear time.
    @Test func tenThousandDatabasesRenderQuickly() {
        var doc = Self.manyDatabases(10_000, bad: Set(stride(from: 0, to: 10_000, by: 2)))
        doc.health = doc.databases.map { HealthStatus(path: $0.path, mode: "alert-only", state: "healthy", checkpoint: nil, integrity: IntegrityHealth(state: "ok"), openIncidents: [], lastIncident: nil, updatedAt: "2026-11-25T00:00:00.000Z") }
        doc.disk = [MountStatus(
            mountPoint: "/data", paths: doc.databases.map(\.path), totalBytes: 100, usedBytes: 10, availableBytes: 90, usedPercent: 10, inodesPercent: nil, forecastSecondsToFull: nil,
            level: .normal, ballast: nil, lastRotation: nil)]
        let start = ContinuousClock.now
        let text = StatusTable.render(doc, color: false)
        let took = ContinuousClock.now - start
        #expect(text.contains("databases 10000: 5000 missing, 5000 open"))
        #expect(took < .seconds(3), "rendering took \(took)")
    }

    // MARK: the daemon

    /// A data directory, a file replica and a daemon on a directory entry.
    final class Fixture: @unchecked Sendable {
        let dir: String
        let data: String
        let replica: String
        let config: String
        let socket: String
        let metricsPort = TestSupport.freePort()
        var child: ChildProcess?

        init(_ label: String) throws {
            dir = try TestSupport.makeTempDir(label)
            data = dir + "/data"
            replica = dir + "/replica"
            config = dir + "/guardian.yml"
            socket = dir + "/guardian.sock"
            mkdir(data, 0o755)
        }

        /// guardian's own keys, then `entry` (a `dbs:` list) unchanged.
        func write(entry: String) throws {
            try TestSupport.write("state-dir: \(dir)/state\nstatus:\n  socket: \(socket)\n  metrics: 127.0.0.1:\(metricsPort)\n" + entry, to: config)
        }

        /// The plainest `dir:` entry: every `*.db` in `data`, a file replica each.
        func writeDirectoryEntry() throws {
            try write(entry: "dbs:\n  - dir: \(data)\n    pattern: \"*.db\"\n    replica:\n      type: file\n      path: \(replica)\n")
        }

        func start() async throws { child = try await startDaemon(config: config) }

        func status() async throws -> [String: Any] {
            let r = try await guardian(["status", "--socket", socket, "--json"])
            guard r.status == 0 else { throw TestFailure("no status: \(r.stderr)") }
            return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
        }

        /// The databases of the status document by path.
        func databases() async throws -> [String: [String: Any]] {
            var out: [String: [String: Any]] = [:]
            for db in try await status().list("databases") { if let p = db.string("path") { out[p] = db } }
            return out
        }

        func waitFor(_ what: String, timeout: Duration = .seconds(15), _ condition: ([String: [String: Any]]) -> Bool) async throws {
            var last: [String: [String: Any]] = [:]
            let ok = try await TestSupport.waitUntil(timeout: timeout) {
                last = try await databases()
                return condition(last)
            }
            if !ok { throw TestFailure("\(what); databases: \(last.keys.sorted()); log: \(child?.stderr.suffix(3000) ?? "")") }
        }

        /// LTX files of the replica of `rel` (L0).
        func replicaFiles(_ rel: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "\(replica)/\(rel)/ltx/0")) ?? []).filter { $0.hasSuffix(".ltx") }
        }

        /// Runs `body` with a fresh fixture, then stops the daemon and removes everything.
        static func with(_ label: String, _ body: (Fixture) async throws -> Void) async throws {
            let f = try Fixture(label)
            do {
                try await body(f)
            } catch {
                await f.stop()
                throw error
            }
            await f.stop()
        }

        /// The Prometheus exposition the daemon serves.
        func metrics() async throws -> String {
            let r = try await HTTPClient.shared.perform(HTTPRequest(
                method: "GET", url: "http://127.0.0.1:\(metricsPort)/metrics", body: .none, connectTimeout: .seconds(2), timeout: .seconds(10)))
            return String(decoding: r.body, as: UTF8.self)
        }

        func stop() async {
            if let child {
                child.signal(SIGTERM)
                await child.wait(timeout: .seconds(25))
                child.removeFiles()
            }
            TestSupport.cleanup(dir)
        }
    }

    static func makeWAL(_ path: String, rows: Int = 3) async throws {
        try await sqlite3(path, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); "
            + (0..<rows).map { "INSERT INTO t(v) VALUES ('row \($0)');" }.joined())
    }

    /// Discovery at start-up (recursive), the files that are not replicated
    /// and why, and a rollback-journal database switched to WAL while
    /// guardian runs; the status summary and `--db`.
    @Test func discoversWALDatabasesAndSkipsTheRestWithAWarning() async throws {
        try await Fixture.with("dir-discover") { f in
            mkdir(f.data + "/eu", 0o755)
            try await Self.makeWAL(f.data + "/a.db")
            try await Self.makeWAL(f.data + "/b.db")
            try await Self.makeWAL(f.data + "/eu/c.db")
            try TestSupport.write("these are notes, not a database at all\n", to: f.data + "/notes.db")
            try await sqlite3(f.data + "/legacy.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            try TestSupport.write("not matched\n", to: f.data + "/readme.txt")
            try f.write(entry: """
                dbs:
                  - dir: \(f.data)
                    pattern: "*.db"
                    recursive: true
                    watch: true
                    monitor-interval: 200ms
                    replica:
                      type: file
                      path: \(f.replica)

                """)
            try await f.start()
            let a = f.data + "/a.db", b = f.data + "/b.db", c = f.data + "/eu/c.db"
            try await f.waitFor("the three WAL databases open and syncing") { dbs in
                [a, b, c].allSatisfy { p in
                    dbs[p]?.string("state") == "open" && dbs[p]?.list("replicas").first?.string("state") == "Syncing"
                }
            }
            let doc = try await f.status()
            #expect(Set(doc.list("databases").compactMap { $0.string("path") }) == [a, b, c])
            let skipped = doc.list("directories").first?.list("skipped") ?? []
            #expect(skipped.compactMap { $0.string("path") } == [f.data + "/legacy.db", f.data + "/notes.db"])
            #expect(skipped.first?.string("reason")?.contains("PRAGMA journal_mode=WAL") == true)
            #expect(skipped.last?.string("reason")?.contains("not an SQLite database") == true)
            let log = f.child?.stderr ?? ""
            #expect(log.contains(GuardianEvent.directoryFileSkipped.message) && log.contains("legacy.db") && log.contains("notes.db"))
            // Litestream's layout: the replica path plus the path relative to dir.
            #expect(!f.replicaFiles("a.db").isEmpty)
            #expect(!f.replicaFiles("eu/c.db").isEmpty)
            #expect(!FileManager.default.fileExists(atPath: f.replica + "/notes.db"))
            #expect(!FileManager.default.fileExists(atPath: f.replica + "/legacy.db"))

            // The fix the warning names: the database is picked up at its next write.
            try await sqlite3(f.data + "/legacy.db", "PRAGMA journal_mode=WAL; INSERT INTO t VALUES (2);")
            try await f.waitFor("legacy.db replicated once in WAL mode") { $0[f.data + "/legacy.db"]?.string("state") == "open" }
            #expect((try await f.status()).list("directories").first?.list("skipped").map { $0.string("path") } == [f.data + "/notes.db"])

            // recursive + watch: a subdirectory created while running is watched
            // too; one renamed moves its databases to their new paths.
            mkdir(f.data + "/us", 0o755)
            try await Self.makeWAL(f.data + "/us/d.db")
            try await f.waitFor("us/d.db in a new subdirectory replicated") { $0[f.data + "/us/d.db"]?.string("state") == "open" }
            #expect(await TestSupport.waitUntil(timeout: .seconds(5)) { !f.replicaFiles("us/d.db").isEmpty })
            #expect(rename(f.data + "/us", f.data + "/us-old") == 0)
            try await f.waitFor("us/d.db followed to us-old/d.db") { $0[f.data + "/us-old/d.db"]?.string("state") == "open" && $0[f.data + "/us/d.db"] == nil }
            let text = try await guardian(["status", "--socket", f.socket, "--color", "never"])
            #expect(text.stdout.contains("databases 5: 5 open"))
            #expect(text.stdout.contains("directory \(f.data) (*.db, recursive, watch): 5 databases, 1 files skipped"))
            let filtered = try await guardian(["status", "--socket", f.socket, "--db", "*/eu/*"])
            #expect(filtered.stdout.contains(c) && !filtered.stdout.contains(a))
            let json = try await guardian(["status", "--socket", f.socket, "--json", "--db", "b.db"])
            let one = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect(one?.list("databases").compactMap { $0.string("path") } == [b])
        }
    }

    /// With `watch: true`: a database created while guardian runs is on its
    /// replica within a second of its first commit; one deleted stops
    /// replicating and its replica stays; one renamed continues under its
    /// new name (with a replica of its own) and restores.
    /// A directory of databases without a unit template: the "alerted, not
    /// repaired" warning is said for the first five databases, not once per
    /// database (a thousand lines at a thousand tenants).
    @Test func withoutAUnitTheWarningIsSaidForAFewDatabasesNotEach() async throws {
        try await Fixture.with("dir-limited") { f in
            let paths = (0..<8).map { f.data + "/t\($0).db" }
            for p in paths { try await Self.makeWAL(p) }
            try f.writeDirectoryEntry()
            try await f.start()
            try await f.waitFor("the eight databases open") { dbs in paths.allSatisfy { dbs[$0]?.string("state") == "open" } }
            let log = f.child?.stderr ?? ""
            let said = log.components(separatedBy: GuardianEvent.remediationLimited.message).count - 1
            #expect(said == 5, "\(said) warnings: \(log.suffix(3000))")
        }
    }

    /// More databases than the open-file limit has room for: guardian
    /// replicates as many as fit, says of the others why they wait (and
    /// what to raise), and keeps running (when descriptors ran out at
    /// 10,000 databases, libdispatch crashed the process). A limit of 512
    /// leaves (512 − 256) / 8 = 32 slots.
    @Test(.timeLimit(.minutes(2))) func databasesBeyondTheOpenFileLimitWaitAndSaySo() async throws {
        try await Fixture.with("dir-nofile") { f in
            let template = f.dir + "/template.db"
            try await Self.makeWAL(template)
            let paths = (0..<40).map { f.data + String(format: "/t%02d.db", $0) }
            for p in paths { try FileManager.default.copyItem(atPath: template, toPath: p) }
            try f.writeDirectoryEntry()
            f.child = try await startDaemon(config: f.config, launcher: ["/usr/bin/prlimit", "--nofile=512:512"])
            try await f.waitFor("32 open, 8 waiting", timeout: .seconds(30)) { dbs in
                let open = paths.filter { dbs[$0]?.string("state") == "open" }.count
                let waiting = paths.filter { dbs[$0]?.string("error")?.contains("open-file limit (512) leaves room for 32 databases") == true }.count
                return open == 32 && waiting == 8
            }
            #expect(paths.filter { !f.replicaFiles(($0 as NSString).lastPathComponent).isEmpty }.count == 32)
            let log = f.child?.stderr ?? ""
            #expect(log.components(separatedBy: "raise LimitNOFILE").count - 1 == 5, "\(log.suffix(2000))")
            // Still running, still answering.
            try await Task.sleep(for: .seconds(2))
            #expect(kill(f.child?.pid ?? 0, 0) == 0)
            #expect(try await f.status().string("state") == "ready")
        }
    }

    @Test func followsCreationDeletionAndRename() async throws {
        try await Fixture.with("dir-follow") { f in
            try await Self.makeWAL(f.data + "/a.db")
            try f.write(entry: """
                dbs:
                  - dir: \(f.data)
                    pattern: "*.db"
                    watch: true
                    replicas:
                      - url: file://\(f.replica)

                """)
            try await f.start()
            try await f.waitFor("a.db open") { $0[f.data + "/a.db"]?.string("state") == "open" }

            // Created while running: on the replica within a second of its first commit.
            let fresh = f.data + "/new.db"
            try await Self.makeWAL(fresh, rows: 5)
            let committed = ContinuousClock.now
            let onReplica = await TestSupport.waitUntil(timeout: .seconds(5)) { !f.replicaFiles("new.db").isEmpty }
            let took = ContinuousClock.now - committed
            #expect(onReplica)
            #expect(took < .seconds(1), "new.db reached its replica \(took) after its first commit")
            try await f.waitFor("new.db in the status") { $0[fresh]?.string("state") == "open" }
            // Every per-database feature: health (checkpoints, integrity) and metrics.
            let health = try await TestSupport.waitUntil(timeout: .seconds(10)) {
                try await f.status().list("health").contains { $0.string("path") == fresh && $0.string("mode") == "alert-only" }
            }
            #expect(health, "remediation publishes the health of a database found while running")
            #expect(try await f.metrics().contains("db=\"\(fresh)\""))

            // Deleted: gone from the status, its replica kept.
            let keptA = f.replicaFiles("a.db")
            #expect(!keptA.isEmpty)
            for suffix in ["", "-wal", "-shm"] { unlink(f.data + "/a.db" + suffix) }
            try await f.waitFor("a.db no longer replicated") { $0[f.data + "/a.db"] == nil }
            #expect(Set(f.replicaFiles("a.db")).isSuperset(of: keptA))
            // Nothing of it stays open (a deleted tenant's space is given back).
            if let pid = f.child?.pid {
                let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
                let open = fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
                #expect(!open.contains { $0.hasPrefix(f.data + "/a.db") }, "\(open.filter { $0.contains("/a.db") })")
            }
            #expect(f.child?.stderr.contains(GuardianEvent.directoryDatabaseRemoved.message) == true)
            #expect(try await !f.metrics().contains("db=\"\(f.data)/a.db\""), "no stale series of a removed database")
            #expect(try await !f.status().list("health").contains { $0.string("path") == f.data + "/a.db" })

            // Renamed (with its WAL, as an application renames a closed database).
            try await sqlite3(fresh, "INSERT INTO t(v) VALUES ('before rename');")
            let renamed = f.data + "/renamed.db"
            #expect(rename(fresh, renamed) == 0)
            _ = rename(fresh + "-wal", renamed + "-wal")
            unlink(fresh + "-shm")
            try await f.waitFor("renamed.db replicated instead of new.db") { $0[renamed]?.string("state") == "open" && $0[fresh] == nil }
            try await sqlite3(renamed, "INSERT INTO t(v) VALUES ('after rename');")
            let want = try await sqlite3(renamed, "SELECT count(*), max(v) FROM t WHERE v LIKE 'after%' OR 1")
            let restored = f.dir + "/restored.db"
            let ok = try await TestSupport.waitUntil(timeout: .seconds(10)) {
                unlink(restored)
                let r = try await guardian(["restore", "-o", restored, "file://\(f.replica)/renamed.db"])
                guard r.status == 0 else { return false }
                return try await sqlite3(restored, "SELECT count(*), max(v) FROM t WHERE v LIKE 'after%' OR 1") == want
            }
            #expect(ok, "the renamed database restores from its own replica with every row")
            #expect(!f.replicaFiles("new.db").isEmpty, "the old name's replica is kept")
        }
    }

    /// Remediation of a database a directory entry found: corrupt pages are
    /// found by the integrity check, the app is stopped and started through
    /// the entry's command templates (`{name}` filled in), the files are
    /// quarantined and a restored copy swapped in — and the database stays
    /// replicated through it (moving it away is not taken for a deletion).
    @Test func discoveredDatabasesAreRepairedThroughTheirTemplates() async throws {
        try await Fixture.with("dir-repair") { f in
            let db = f.data + "/acme.db"
            try Damage.makeDatabase(db, rows: 3000)
            try await sqlite3(db, "PRAGMA wal_checkpoint(TRUNCATE)")
            let log = f.dir + "/app.log"
            try f.write(entry: """
                dbs:
                  - dir: \(f.data)
                    pattern: "*.db"
                    watch: true
                    integrity-interval: 1s
                    health-interval: 500ms
                    cooldown: 1s
                    stop-command: [/bin/sh, -c, "echo stop {name} >> \(log)"]
                    start-command: [/bin/sh, -c, "echo start {name} >> \(log)"]
                    replica: {path: \(f.replica)}

                """)
            try await f.start()
            try await f.waitFor("acme.db open") { $0[db]?.string("state") == "open" }
            #expect(await TestSupport.waitUntil(timeout: .seconds(10)) { !f.replicaFiles("acme.db").isEmpty })
            try Damage.overwritePages(db, count: 6)
            var last: [String: Any] = [:]
            let repaired = try await TestSupport.waitUntil(timeout: .seconds(60)) {
                last = try await f.status()
                let h = last.list("health").first { $0.string("path") == db }
                return h?.dict("last_incident")?.string("outcome") == "resolved-automatically"
            }
            #expect(repaired, "\(last.list("health")); log: \(f.child?.stderr.suffix(4000) ?? "")")
            let app = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(app.contains("stop acme\n") && app.contains("start acme\n"), "app log: \(app)")
            try await f.waitFor("acme.db replicated after the repair") { $0[db]?.string("state") == "open" }
            #expect(f.child?.stderr.contains(GuardianEvent.directoryDatabaseRemoved.message) == false, "the swap is not a deletion")
            #expect(try await sqlite3(db, "PRAGMA integrity_check") == "ok")
        }
    }

    /// Scheduled drills of a directory entry take a rotating sample: the first
    /// run drills `sample` databases (never drilled, by path), the next one
    /// the one left and then the one drilled longest ago. In process, with
    /// the daemon's own wiring and real restores from the file replicas.
    @Test func drillsRotateThroughTheDirectory() async throws {
        try await Fixture.with("dir-drills") { f in
            for n in ["a", "b", "c"] { try await Self.makeWAL(f.data + "/\(n).db") }
            let config = try Self.parse("""
                state-dir: \(f.dir)/state
                dbs:
                  - dir: \(f.data)
                    pattern: "*.db"
                    remediate: off
                    drill: {interval: 1s, sample: 2, scratch-dir: \(f.dir)/scratch}
                    replica: {path: \(f.replica)}
                """)
            let entry = try #require(config.directories.first)
            let drill = try #require(entry.template.drill)
            let logger = RecordingLog().logger()
            let board = StatusBoard(configPath: "g.yml", databasePaths: [])
            let alerter = Alerter(destinations: [], transport: HTTPAlertTransport(), store: nil, logger: logger)
            let wiring = DatabaseWiring(
                stateDir: config.stateDir, alerts: [], alerter: alerter, store: StateStore(stateDir: config.stateDir), board: board,
                control: ReplicationControl(), logger: logger)
            let discovery = await DirectoryDiscovery.scan(entry, configured: [], logger: logger)
            #expect(discovery.databases == ["a", "b", "c"].map { f.data + "/\($0).db" })
            let registry = DirectoryRegistry(entry: entry, configured: [], wiring: wiring, skipped: [:])
            for p in discovery.databases { await registry.start(p) }
            #expect(await TestSupport.waitUntil(timeout: .seconds(10)) { ["a", "b", "c"].allSatisfy { !f.replicaFiles("\($0).db").isEmpty } })

            let drills = DirectoryDrills(
                entry: entry, config: drill, registry: registry,
                timing: DrillService.Timing(tick: .milliseconds(50), catchUp: .milliseconds(100), timeZone: .current))
            let task = Task { await drills.run() }
            let store = StateStore(stateDir: config.stateDir)
            var rows: [DrillResult] = []
            let rotated = try await TestSupport.waitUntil(timeout: .seconds(30)) {
                rows = try await store.drills(limit: 100).reversed()
                return Set(rows.map(\.database)).count == 3
            }
            task.cancel()
            await registry.cancelAll()
            await registry.waitForAll()
            #expect(rotated, "drilled: \(rows.map(\.database))")
            #expect(rows.prefix(2).map(\.database) == [f.data + "/a.db", f.data + "/b.db"], "the first run drills the sample only")
            #expect(rows.count >= 3 && rows[2].database == f.data + "/c.db", "the next run starts with the database never drilled")
            let reasons = rows.map { $0.reason ?? "" }
            #expect(rows.allSatisfy { $0.passed }, "\(reasons)")
        }
    }

    /// A Litestream 0.5 `dir:` entry, as Litestream's documentation writes
    /// it: `guardian check-config` accepts the file unchanged, `guardian run`
    /// replicates with it (guardian's state-dir and socket prepended), and
    /// the real `litestream restore` restores a database from the replica.
    @Test func litestreamDirEntryWorksUnchangedAndLitestreamRestores() async throws {
        try await Fixture.with("dir-litestream") { f in
            mkdir(f.data + "/eu", 0o755)
            try await Self.makeWAL(f.data + "/t1.db")
            try await Self.makeWAL(f.data + "/eu/t2.db", rows: 40)
            let litestream = """
                dbs:
                  - dir: \(f.data)
                    pattern: "*.db"
                    recursive: true
                    watch: true
                    replica:
                      type: file
                      path: \(f.replica)

                """
            try TestSupport.write(litestream, to: f.dir + "/litestream.yml")
            let check = try await guardian(["check-config", "--config", f.dir + "/litestream.yml"])
            #expect(check.status == 0, "\(check.stderr)")
            #expect(check.stdout.contains("- dir: \"\(f.data)\"") && check.stdout.contains("pattern: \"*.db\"") && check.stdout.contains("watch: true"))
            try f.write(entry: litestream)
            try await f.start()
            let t2 = f.data + "/eu/t2.db"
            try await f.waitFor("both databases open") { dbs in
                [f.data + "/t1.db", t2].allSatisfy { dbs[$0]?.string("state") == "open" }
            }
            try await sqlite3(t2, "INSERT INTO t(v) VALUES ('latest');")
            let want = try await sqlite3(t2, "SELECT count(*), group_concat(v) FROM t")
            let out = f.dir + "/from-litestream.db"
            var last = ""
            let ok = try await TestSupport.waitUntil(timeout: .seconds(10)) {
                unlink(out)
                let r = try await run(TestSupport.venvBin + "/litestream", ["restore", "-o", out, "file://\(f.replica)/eu/t2.db"])
                last = r.stderr
                guard r.status == 0 else { return false }
                return try await sqlite3(out, "SELECT count(*), group_concat(v) FROM t") == want
            }
            #expect(ok, "litestream restore: \(last)")
            #expect(try await sqlite3(out, "PRAGMA integrity_check") == "ok")
        }
    }
}
