import Foundation
import Testing
@testable import Platform
@testable import Replication

/// Replicas that were out of reach when guardian started (an unmounted disk
/// whose mount point answers "empty") must never get files of a new history
/// on top of the one they hold: every replica restores every committed row.
@Suite(.serialized) struct ReplicaHistoryTests {
    final class World: @unchecked Sendable {
        let dir: String
        let db: String
        /// A "disk" bind-mounted at `mountPoint` (replica A), and replica B.
        let disk: String
        let mountPoint: String
        let other: String
        var guardianProcess: ChildProcess?
        var mounted = false

        init(_ label: String) throws {
            dir = try TestSupport.makeTempDir(label)
            db = dir + "/app.db"
            disk = dir + "/disk"
            mountPoint = dir + "/a"
            other = dir + "/b"
            try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            let c = try SQLiteConnection(path: db, mode: .readWriteCreate)
            try c.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        }

        func mount() async throws {
            let r = try await run("/bin/mount", ["--bind", disk, mountPoint])
            #expect(r.status == 0, "\(r.stderr)")
            mounted = r.status == 0
        }

        func unmount() async throws {
            let r = try await run("/bin/umount", [mountPoint])
            #expect(r.status == 0, "\(r.stderr)")
            mounted = false
        }

        func start() throws {
            guardianProcess = try ChildProcess.start(
                TestSupport.guardianBinary, ["replicate", "--state-dir", dir + "/state", db, "file://" + mountPoint, "file://" + other])
        }

        func stop() async {
            guard let p = guardianProcess else { return }
            p.signal(SIGKILL)
            _ = await p.wait(timeout: .seconds(30))
            guardianProcess = nil
        }

        func write(_ range: ClosedRange<Int>) throws {
            let c = try SQLiteConnection(path: db, mode: .readWrite)
            for i in range { try c.query("INSERT INTO t(id, v) VALUES (?, ?)", [.integer(Int64(i)), .text("row-\(i)")]) }
        }

        /// Rows of a restore of `replica` (by guardian or litestream), or nil when it fails.
        func restoredRows(_ replica: String, litestream: Bool = false) async -> String? {
            let out = dir + "/probe-\(UUID().uuidString.prefix(8)).db"
            defer { unlink(out) }
            let r = litestream
                ? try? await run(TestSupport.venvBin + "/litestream", ["restore", "-o", out, "file://" + replica])
                : try? await guardian(["restore", "--integrity-check", "none", "-o", out, "file://" + replica])
            guard r?.status == 0 else { return nil }
            return try? await sqlite3(out, "SELECT count(*), sum(id) FROM t")
        }

        func waitForRows(_ replica: String, _ expected: String) async -> Bool {
            await TestSupport.waitUntil(timeout: .seconds(40)) { await self.restoredRows(replica) == expected }
        }

        deinit {
            guardianProcess?.signal(SIGKILL)
            if mounted { _ = umount2(mountPoint, Int32(MNT_DETACH)) }
            TestSupport.cleanup(dir)
        }
    }

    static func rows(_ db: String) async throws -> String { try await sqlite3(db, "SELECT count(*), sum(id) FROM t") }

    @Test(.timeLimit(.minutes(3)))
    func aReplicaUnmountedAtStartUpKeepsItsHistoryAndGetsEveryRowBack() async throws {
        let w = try World("history-unmount")
        try await w.mount()
        // Session 1: both replicas hold rows 1...20.
        try w.start()
        try w.write(1...20)
        let first = try await Self.rows(w.db)
        #expect(await w.waitForRows(w.mountPoint, first), "\(w.guardianProcess?.stderr ?? "")")
        #expect(await w.waitForRows(w.other, first))
        await w.stop()

        // Session 2: replica B is away; replica A gets ahead (rows 21...60).
        try FileManager.default.moveItem(atPath: w.other, toPath: w.other + ".away")
        try w.start()
        try w.write(21...60)
        let second = try await Self.rows(w.db)
        #expect(await w.waitForRows(w.mountPoint, second), "\(w.guardianProcess?.stderr ?? "")")
        await w.stop()
        TestSupport.cleanup(w.other)
        try FileManager.default.moveItem(atPath: w.other + ".away", toPath: w.other)
        // The application checkpoints while guardian is down: no resume possible.
        _ = try SQLiteConnection(path: w.db, mode: .readWrite).checkpoint(.truncate)

        // Session 3: A's disk is not mounted (its mount point is an empty
        // directory); B answers with an older position.
        try await w.unmount()
        try w.start()
        try w.write(61...70)
        let third = try await Self.rows(w.db)
        #expect(await w.waitForRows(w.other, third), "\(w.guardianProcess?.stderr ?? "")")
        // The disk comes back while guardian runs.
        try await w.mount()
        try w.write(71...80)
        let expected = try await Self.rows(w.db)
        #expect(expected == "80|3240")
        let bDone = await w.waitForRows(w.other, expected)
        let bRows = await w.restoredRows(w.other) ?? "fails"
        #expect(bDone, "B: \(bRows) \(w.guardianProcess?.stderr ?? "")")
        let aDone = await w.waitForRows(w.mountPoint, expected)
        let aRows = await w.restoredRows(w.mountPoint) ?? "fails"
        #expect(aDone, "A: \(aRows) \(w.guardianProcess?.stderr ?? "")")
        await w.stop()
        // Litestream restores the same from each.
        #expect(await w.restoredRows(w.mountPoint, litestream: true) == expected)
        #expect(await w.restoredRows(w.other, litestream: true) == expected)
        // And the marker is in each replica's root, outside Litestream's layout.
        #expect(FileManager.default.fileExists(atPath: w.mountPoint + "/" + ReplicaHistory.markerName))
        #expect(FileManager.default.fileExists(atPath: w.other + "/" + ReplicaHistory.markerName))
    }

    /// The same with a real unreachable SFTP peer: sshd is down when guardian
    /// starts (replica A is ahead of B), and comes back while it runs.
    @Test(.timeLimit(.minutes(4)))
    func anSFTPReplicaUnreachableAtStartUpKeepsItsHistoryAndGetsEveryRowBack() async throws {
        try await SharedPeers.withSSH { ssh in
            let dir = try TestSupport.makeTempDir("history-sftp")
            defer { TestSupport.cleanup(dir) }
            let db = dir + "/app.db"
            let b = dir + "/b"
            let path = ssh.dataDir + "/history-\(UUID().uuidString.prefix(6))"
            let a = "sftp://\(ssh.user)@\(ssh.host):\(ssh.port)\(path)?key-path=\(ssh.clientKey)&known-hosts=\(ssh.knownHosts)"
            let setup = try SQLiteConnection(path: db, mode: .readWriteCreate)
            // Two rows a page: what each transaction changes is its own page.
            try setup.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, pad BLOB)")
            var process: ChildProcess?
            defer { process?.signal(SIGKILL) }
            func start() throws {
                process = try ChildProcess.start(TestSupport.guardianBinary, ["replicate", "--state-dir", dir + "/state", db, a, "file://" + b])
            }
            func stop() async {
                process?.signal(SIGKILL)
                _ = await process?.wait(timeout: .seconds(30))
                process = nil
            }
            func write(_ range: ClosedRange<Int>) throws {
                let c = try SQLiteConnection(path: db, mode: .readWrite)
                for i in range { try c.query("INSERT INTO t(id, v, pad) VALUES (?, ?, randomblob(1800))", [.integer(Int64(i)), .text("row-\(i)")]) }
            }
            func restored(_ url: String) async -> String? {
                let out = dir + "/probe-\(UUID().uuidString.prefix(8)).db"
                defer { unlink(out) }
                guard (try? await guardian(["restore", "--integrity-check", "none", "-o", out, url]))?.status == 0 else { return nil }
                return try? await sqlite3(out, "SELECT count(*), sum(id) FROM t")
            }
            func maxTXID(_ url: String) async -> UInt64 {
                let out = (try? await guardian(["ltx", "--json", url]))?.stdout ?? ""
                let files = (try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]]) ?? []
                return files.compactMap { ($0["max_txid"] as? String).flatMap { UInt64($0, radix: 16) } }.max() ?? 0
            }
            func waitFor(_ url: String, _ expected: String) async -> Bool {
                await TestSupport.waitUntil(timeout: .seconds(60)) { await restored(url) == expected }
            }
            try start()
            try write(1...20)
            let first = try await Self.rows(db)
            #expect(await waitFor(a, first), "\(process?.stderr ?? "")")
            #expect(await waitFor("file://" + b, first))
            await stop()
            // B away: A gets well ahead (ten transactions, each its own TXID).
            try FileManager.default.moveItem(atPath: b, toPath: b + ".away")
            try start()
            for k in 0..<10 {
                let before = await maxTXID(a)
                try write((21 + 4 * k)...(24 + 4 * k))
                #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { await maxTXID(a) > before })
            }
            let second = try await Self.rows(db)
            #expect(await waitFor(a, second), "\(process?.stderr ?? "")")
            await stop()
            TestSupport.cleanup(b)
            try FileManager.default.moveItem(atPath: b + ".away", toPath: b)
            _ = try SQLiteConnection(path: db, mode: .readWrite).checkpoint(.truncate)
            // sshd is down when guardian starts; B answers with an older position.
            await ssh.kill()
            try start()
            try write(61...70)
            let third = try await Self.rows(db)
            #expect(await waitFor("file://" + b, third), "\(process?.stderr ?? "")")
            try await ssh.restart()
            // A comes back ahead of the new numbering: its newest state must
            // become the database's at once (not its own, older history).
            let aBack = await waitFor(a, third)
            let aBackRows = await restored(a) ?? "fails"
            #expect(aBack, "A: \(aBackRows) \(process?.stderr ?? "")")
            try write(71...80)
            let expected = try await Self.rows(db)
            #expect(expected == "80|3240")
            let aDone = await waitFor(a, expected)
            let aRows = await restored(a) ?? "fails"
            #expect(aDone, "A: \(aRows) \(process?.stderr ?? "")")
            #expect(await waitFor("file://" + b, expected))
            await stop()
        }
    }
}

/// A database file replaced at its path under a running replicator: the
/// replica's newest state becomes the new file's content, never a mix.
@Suite(.serialized) struct DatabaseReplacedTests {
    @Test(.timeLimit(.minutes(2)))
    func aDatabaseRenamedOverTheLiveOneIsReplicatedExactly() async throws {
        let f = try await ReplicationTests.Fixture("replaced")
        try ReplicationTests.write(f.db, from: 1, count: 50)
        try f.startGuardian()
        let before = try await f.rows(f.db)
        let first = await TestSupport.waitUntil(timeout: .seconds(20)) {
            let out = f.dir + "/probe-\(UUID().uuidString.prefix(6)).db"
            defer { unlink(out) }
            guard (try? await guardian(["restore", "--integrity-check", "none", "-o", out, "file://" + f.replica]))?.status == 0 else { return false }
            return (try? await f.rows(out)) == before
        }
        #expect(first, "\(f.replicator?.stderr ?? "")")

        // Another database with other rows, built aside and renamed over the live one.
        let other = f.dir + "/new.db"
        do {
            let c = try SQLiteConnection(path: other, mode: .readWriteCreate)
            try c.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, pad BLOB)")
            for i in 1000..<1030 { try c.query("INSERT INTO t(id, v, pad) VALUES (?, ?, randomblob(3000))", [.integer(Int64(i)), .text("new-\(i)")]) }
        }
        unlink(f.db + "-wal")
        unlink(f.db + "-shm")
        #expect(rename(other, f.db) == 0)
        // The application goes on writing to the new file.
        try ReplicationTests.write(f.db, from: 2000, count: 5)
        let expected = try await f.rows(f.db)
        #expect(expected.hasPrefix("35|"), "\(expected)")
        let caughtUp = await TestSupport.waitUntil(timeout: .seconds(20)) {
            let out = f.dir + "/probe-\(UUID().uuidString.prefix(6)).db"
            defer { unlink(out) }
            guard (try? await guardian(["restore", "--integrity-check", "none", "-o", out, "file://" + f.replica]))?.status == 0 else { return false }
            return (try? await f.rows(out)) == expected
        }
        #expect(caughtUp, "\(f.replicator?.stderr ?? "")")
        #expect(await f.stopGuardian() == 0)
        let out = f.dir + "/final.db"
        let r = try await run(ReplicationTests.litestream, ["restore", "-o", out, "file://" + f.replica])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try await f.rows(out) == expected)
        #expect(try await sqlite3(out, "PRAGMA integrity_check") == "ok")
    }
}

/// Two guardian processes pointed at the same file replica: the second is
/// refused (it waits on the replica's writer lock and says so), the replica
/// keeps the first one's database only.
@Suite(.serialized) struct SecondWriterTests {
    @Test(.timeLimit(.minutes(2)))
    func aSecondProcessDoesNotWriteAFileReplicaTheFirstHolds() async throws {
        let f = try await ReplicationTests.Fixture("second-writer")
        try ReplicationTests.write(f.db, from: 1, count: 20)
        try f.startGuardian()
        let expected = try await f.rows(f.db)
        func restored() async -> String? {
            let out = f.dir + "/probe-\(UUID().uuidString.prefix(6)).db"
            defer { unlink(out) }
            guard (try? await guardian(["restore", "--integrity-check", "none", "-o", out, "file://" + f.replica]))?.status == 0 else { return nil }
            return try? await f.rows(out)
        }
        #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { await restored() == expected }, "\(f.replicator?.stderr ?? "")")

        // A second database replicated by a second process to the same replica.
        let otherDB = f.dir + "/other.db"
        let c = try SQLiteConnection(path: otherDB, mode: .readWriteCreate)
        try c.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, pad BLOB)")
        let second = try ChildProcess.start(TestSupport.guardianBinary, ["replicate", "--state-dir", f.dir + "/state2", otherDB, "file://" + f.replica])
        defer { second.signal(SIGKILL) }
        try ReplicationTests.write(otherDB, from: 500, count: 10)
        let refused = await TestSupport.waitUntil(timeout: .seconds(15)) { second.stderr.contains("is being written by another process") }
        #expect(refused, "\(second.stderr)")
        // The first process goes on; the replica holds its database only.
        try ReplicationTests.write(f.db, from: 21, count: 5)
        let now = try await f.rows(f.db)
        #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { await restored() == now }, "\(second.stderr)")
        let l1 = (try? FileManager.default.contentsOfDirectory(atPath: f.replica + "/ltx/0")) ?? []
        #expect(!l1.isEmpty)
        second.signal(SIGTERM)
        _ = await second.wait(timeout: .seconds(30))
    }

    /// Two processes (the first as another host, in its own UTS namespace)
    /// replicating to the same S3 replica on moto: the second sees the
    /// first one's live lease, says who holds it and writes nothing; once
    /// the first is killed and its lease has expired, the second takes
    /// over and the replica restores every committed row.
    @Test(.timeLimit(.minutes(3)))
    func aSecondProcessWaitsForTheFirstOnesLeaseOnAnS3ReplicaThenTakesOver() async throws {
        try await SharedPeers.withMoto { moto in
            let dir = try TestSupport.makeTempDir("lease-s3")
            defer { TestSupport.cleanup(dir) }
            let bucket = "lease-\(UUID().uuidString.prefix(8).lowercased())"
            try await moto.createBucket(bucket)
            let url = "s3://\(bucket)/db?endpoint=\(moto.endpoint)&region=us-east-1"
            let creds = ["AWS_ACCESS_KEY_ID": moto.accessKeyID, "AWS_SECRET_ACCESS_KEY": moto.secretAccessKey]
            let env = creds.merging(["GUARDIAN_TEST_LEASE_INTERVAL": "1", "GUARDIAN_LOG_TARGET": "stderr"]) { $1 }
            let db = dir + "/app.db"
            try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
            func write(_ range: ClosedRange<Int>) throws {
                let c = try SQLiteConnection(path: db, mode: .readWrite)
                for i in range { try c.query("INSERT INTO t(id, v) VALUES (?, ?)", [.integer(Int64(i)), .text("row-\(i)")]) }
            }
            func restored() async -> String? {
                let out = dir + "/probe-\(UUID().uuidString.prefix(8)).db"
                defer { unlink(out) }
                guard (try? await guardian(["restore", "--integrity-check", "none", "-o", out, url], environment: creds))?.status == 0 else { return nil }
                return try? await sqlite3(out, "SELECT count(*), sum(id) FROM t")
            }
            func ltxKeys() async throws -> Set<String> {
                Set(try await moto.listKeys(bucket: bucket, prefix: "db/").keys.filter { !$0.hasSuffix(ReplicaHistory.markerName) })
            }
            try write(1...20)
            let first = try ChildProcess.start(
                "/usr/bin/unshare",
                ["--uts", "--", "/bin/sh", "-c", "hostname peer-a && exec \"$0\" \"$@\"", TestSupport.guardianBinary,
                 "replicate", "--state-dir", dir + "/state1", db, url],
                environment: env)
            defer { first.signal(SIGKILL) }
            let rows1 = try await sqlite3(db, "SELECT count(*), sum(id) FROM t")
            #expect(await TestSupport.waitUntil(timeout: .seconds(30)) { await restored() == rows1 }, "\(first.stderr)")
            let before = try await ltxKeys()
            #expect(!before.isEmpty)

            // The second process is refused, names the first, and writes nothing.
            let second = try ChildProcess.start(TestSupport.guardianBinary, ["replicate", "--state-dir", dir + "/state2", db, url], environment: env)
            defer { second.signal(SIGKILL) }
            let refusal = "is being written by peer-a pid \(first.pid)"
            // Refused for longer than a lease runs (3 s + 2 s margin at a 1 s
            // interval) while the first commits nothing: it renews on a timer.
            let refused = await TestSupport.waitUntil(timeout: .seconds(30)) { second.stderr.components(separatedBy: refusal).count > 9 }
            #expect(refused, "\(second.stderr.suffix(3000))")
            #expect(second.stderr.contains("guardian waits until its lease expires at"))
            #expect(try await ltxKeys() == before, "the second process wrote to the replica")
            #expect(!first.stderr.contains("is written by another process too"), "\(first.stderr.suffix(2000))")

            // The first is killed: its lease expires, the second takes over.
            first.signal(SIGKILL)
            _ = await first.wait(timeout: .seconds(10))
            try write(21...30)
            let expected = try await sqlite3(db, "SELECT count(*), sum(id) FROM t")
            #expect(expected == "30|465")
            let tookOver = await TestSupport.waitUntil(timeout: .seconds(40)) { await restored() == expected }
            #expect(tookOver, "\(second.stderr.suffix(3000))")
            second.signal(SIGTERM)
            #expect(await second.wait(timeout: .seconds(30)) == 0)
            if FileManager.default.isExecutableFile(atPath: RestoreInteropTests.litestream) {
                let out = dir + "/ls.db"
                let ls = try await run(RestoreInteropTests.litestream, ["restore", "-o", out, url], environment: creds.merging(["AWS_CA_BUNDLE": ""]) { $1 })
                #expect(ls.status == 0, "\(ls.stderr)")
                #expect(try await sqlite3(out, "SELECT count(*), sum(id) FROM t") == expected)
            }
        }
    }

    /// Another writer that got past the lock (another host over NFS): its
    /// history marker replaces guardian's, and guardian stops writing there.
    @Test(.timeLimit(.minutes(2)))
    func aReplicaWhoseMarkerAnotherWriterReplacedIsNoLongerWritten() async throws {
        let f = try await ReplicationTests.Fixture("foreign-marker")
        try ReplicationTests.write(f.db, from: 1, count: 5)
        try f.startGuardian()
        let marker = f.replica + "/" + ReplicaHistory.markerName
        // Until the first image is stored the marker is the discovery's lease
        // (no history yet): guardian labels the replica after that, and a
        // marker swapped in before would just be overwritten by the label.
        #expect(await TestSupport.waitUntil(timeout: .seconds(20)) {
            guard f.replicaTXID() >= 1, let data = FileManager.default.contents(atPath: marker),
                let m = try? JSONDecoder().decode(ReplicaHistory.Marker.self, from: data)
            else { return false }
            return !m.history.isEmpty
        })
        // Another writer's marker, put in place atomically under a name of its own
        // (guardian renews its lease on the same file meanwhile).
        let foreign = f.replica + "/.foreign-marker"
        try TestSupport.write(#"{"history":"someone-else","writer":"other-host pid 1","written":"2026-01-01T00:00:00Z"}"#, to: foreign)
        #expect(rename(foreign, marker) == 0)
        let before = f.replicaTXID()
        try ReplicationTests.write(f.db, from: 6, count: 3)
        let refused = await TestSupport.waitUntil(timeout: .seconds(20)) { f.replicator?.stderr.contains("is written by another process too") == true }
        #expect(refused, "\(f.replicator?.stderr ?? "")")
        #expect(f.replicaTXID() == before, "guardian went on writing the replica")
        #expect(f.replicator?.stderr.contains("other-host pid 1") == true)
    }
}

/// The lease a history marker records, judged from its own fields.
@Suite struct ReplicaLeaseTests {
    static func marker(writerID: String = "other-writer", host: String = "peer-b", pid: Int32 = 4242, renewed: Date, lease: Double = 90, released: Bool? = nil) -> [UInt8] {
        let m = ReplicaHistory.Marker(
            history: "h1", writer: "\(host) pid \(pid)", written: Timestamps.iso8601(renewed), writerID: writerID, host: host, pid: pid,
            renewed: Timestamps.iso8601(renewed), leaseSeconds: lease, released: released)
        return Array((try? JSONEncoder().encode(m)) ?? Data())
    }

    @Test func anotherWritersRecentLeaseIsLiveUntilItExpiresPlusTheSkewMargin() throws {
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let margin = ReplicaHistory.skewMargin.seconds
        let live = ReplicaHistory.liveForeignLease(Self.marker(renewed: now.addingTimeInterval(-30)), destination: "s3://b/db", now: now)
        let message = try #require(live)
        #expect(message.contains("replica s3://b/db is being written by peer-b pid 4242 (renewed at"))
        #expect(message.contains("guardian waits until its lease expires at \(Timestamps.iso8601(now.addingTimeInterval(60)))"))
        // Clocks that disagree: expired by the writer's clock, still within the margin.
        #expect(ReplicaHistory.liveForeignLease(Self.marker(renewed: now.addingTimeInterval(-90 - margin / 2)), destination: "d", now: now) != nil)
        #expect(ReplicaHistory.liveForeignLease(Self.marker(renewed: now.addingTimeInterval(-91 - margin)), destination: "d", now: now) == nil)
        // A lease renewed "in the future" (the writer's clock is ahead) is live.
        #expect(ReplicaHistory.liveForeignLease(Self.marker(renewed: now.addingTimeInterval(600)), destination: "d", now: now) != nil)
    }

    @Test func aMarkerNobodyRenewsExpiresByThisHostsClockWhateverItsStampsClaim() {
        let now = Date()
        let margin = ReplicaHistory.skewMargin.seconds
        // Renewed "ten years from now" with a lease of a year: live when first
        // seen, still live while it was unchanged for less than the lease
        // guardian honours (capped), expired once unchanged for longer.
        let hostile = Self.marker(renewed: now.addingTimeInterval(10 * 365 * 86400), lease: 365 * 86400)
        let cap = ReplicaHistory.maxLease.seconds
        #expect(ReplicaHistory.liveForeignLease(hostile, destination: "d", now: now) != nil)
        #expect(ReplicaHistory.liveForeignLease(hostile, destination: "d", now: now, unchangedFor: .seconds(cap + margin - 1)) != nil)
        #expect(ReplicaHistory.liveForeignLease(hostile, destination: "d", now: now, unchangedFor: .seconds(cap + margin + 1)) == nil)
        // An ordinary 90 s lease is expired after 90 s + margin unchanged, even if its stamp says "just renewed".
        let ordinary = Self.marker(renewed: now, lease: 90)
        #expect(ReplicaHistory.liveForeignLease(ordinary, destination: "d", now: now, unchangedFor: .seconds(89)) != nil)
        #expect(ReplicaHistory.liveForeignLease(ordinary, destination: "d", now: now, unchangedFor: .seconds(91 + margin)) == nil)
    }

    /// A renewal restamps the previous marker's bytes: exactly what the
    /// JSON encoder would write at the new time, history and writer kept.
    @Test func aRestampedMarkerIsWhatTheEncoderWouldWrite() throws {
        let t1 = Date(timeIntervalSince1970: 1_796_000_000.123), t2 = Date(timeIntervalSince1970: 1_796_000_031.607)
        let first = ReplicaHistory.encode(id: "h-restamp", now: t1)
        let again = try #require(ReplicaHistory.restamp(first, at: t2))
        #expect(again == ReplicaHistory.encode(id: "h-restamp", now: t2))
        #expect(ReplicaHistory.isOurs(again, history: "h-restamp"))
        #expect(DurableFile.differOnlyInDigits(first, again), "a renewal changes digits only: it may be written in place")
        #expect(ReplicaHistory.restamp(Array(#"{"history":"h"}"#.utf8)) == nil)
    }

    @Test func releasedOwnOldStyleAndGoneLocalLeasesAreFree() {
        let now = Date()
        #expect(ReplicaHistory.liveForeignLease(Self.marker(renewed: now, released: true), destination: "d", now: now) == nil)
        #expect(ReplicaHistory.liveForeignLease(Self.marker(writerID: ReplicaHistory.writerID, renewed: now), destination: "d", now: now) == nil)
        let old = Array(#"{"history":"h0","writer":"x pid 1","written":"2026-01-01T00:00:00Z"}"#.utf8)
        #expect(ReplicaHistory.liveForeignLease(old, destination: "d", now: now) == nil)
        // A pid of this host that no longer runs: free at once; one that runs: live.
        var gone: Int32 = 4_000_000
        while kill(gone, 0) == 0 || errno != ESRCH { gone += 1 }
        #expect(ReplicaHistory.liveForeignLease(Self.marker(host: ReplicaHistory.hostName(), pid: gone, renewed: now), destination: "d", now: now) == nil)
        #expect(ReplicaHistory.liveForeignLease(Self.marker(host: ReplicaHistory.hostName(), pid: getppid(), renewed: now), destination: "d", now: now) != nil)
        // The marker this process writes carries its lease.
        let own = ReplicaHistory.encode(id: "h2")
        #expect(ReplicaHistory.isOwnLease(own) && ReplicaHistory.isOurs(own, history: "h2"))
        #expect(!ReplicaHistory.isOurs(Self.marker(renewed: now), history: "h1"))
    }
}
