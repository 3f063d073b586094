import Foundation
import Testing
@testable import DiskWatch
@testable import Platform
@testable import Remediate
@testable import guardian

/// Issue 17: rotation that needs no space proportional to the log, and the
/// emergency truncate before the database meets a full disk — on real tmpfs.
@Suite(.serialized, .enabled(if: geteuid() == 0)) struct DiskLastResortTests {
    static func lines(_ from: Int, _ count: Int) -> String {
        (from..<(from + count)).map { "2026-12-04T05:00:00Z ERROR upstream refused request=\($0) pool=main\n" }.joined()
    }

    /// A 10 MB log on a 16 MB filesystem with 2 MB free: copytruncate with
    /// compress streams it into app.log.1.gz (the old code copied it whole
    /// first and failed with ENOSPC, "the log was left as it was").
    @Test func copytruncateWithCompressNeedsNoRoomForACopy() throws {
        let fs = try DiskKit.Tmpfs(size: "16m")
        defer { fs.unmount() }
        let log = fs.path + "/app.log"
        let text = Self.lines(1, 10_000_000 / 64)
        DiskKit.write(log, text)
        let usage = try #require(fs.usage)
        try DiskKit.fill(fs.path + "/filler", bytes: Int(usage.availableBytes) - (2 << 20))
        let rule = LogRotationConfig(paths: [log], rotate: 2, size: 4_000_000, compress: true, copyTruncate: true)
        let rotator = DiskKit.rotator([rule], state: nil)
        rotator.runScheduled()
        let events = rotator.takeEvents()
        #expect(!events.contains { $0.event == .logRotationFailed }, "\(events)")
        var st = stat()
        #expect(stat(log, &st) == 0 && st.st_size == 0)
        #expect(stat(log + ".1", &st) != 0, "no uncompressed copy")
        let r = try DiskKit.run(["/bin/sh", "-c", "gzip -dc '\(log).1.gz' | cksum"])
        let want = try { () throws -> String in
            let p = fs.root + "/expected"
            DiskKit.write(p, text)
            return String(decoding: try DiskKit.run(["/bin/sh", "-c", "cksum < '\(p)'"]).stdout, as: UTF8.self)
        }()
        #expect(String(decoding: r.stdout, as: UTF8.self) == want, "the .gz holds exactly the log")
        let rotated = try #require(events.first { $0.event == .logRotated })
        #expect(rotated.metadata["method"] == "copytruncate+gzip")
        #expect(rotated.metadata["bytes_copied"] == "\(text.utf8.count)")
    }

    /// The stored gzip member guardian appends for the last bytes is valid gzip.
    @Test func storedGzipMemberIsValidGzip() throws {
        let dir = try DiskKit.tempDir("gz")
        defer { DiskKit.remove(dir) }
        for data in [Array("".utf8), Array("one line\n".utf8), Array(Self.lines(1, 3000).utf8)] {
            let fd = open(dir + "/x.gz", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            try DurableFile.writeAll(fd: fd, GzipStored.member(data), path: dir + "/x.gz")
            close(fd)
            let r = try DiskKit.run(["/bin/sh", "-c", "gzip -t '\(dir)/x.gz' && gzip -dc '\(dir)/x.gz' | wc -c"])
            #expect(r.succeeded && String(decoding: r.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "\(data.count)", "\(r.summary)")
        }
    }

    /// The disk holding the database reaches emergency because of a log the
    /// schedule does not rotate yet, and copytruncate without compress cannot
    /// copy it (no room): guardian truncates that log keeping its
    /// tail from a line start, keeps the ballast (releasing it first would
    /// only feed the writer), alerts naming the log and the bytes dropped, and
    /// records it under the database.
    @Test(.timeLimit(.minutes(2)))
    func theFastestGrowingLogIsTruncatedToItsTailBeforeTheBallast() async throws {
        let fs = try DiskKit.Tmpfs(size: "16m")
        defer { fs.unmount() }
        let dir = try TestSupport.makeTempDir("last-resort")
        defer { TestSupport.cleanup(dir) }
        let rx = try await WebhookReceiver(key: "last-resort-key")
        defer { rx.stop() }
        mkdir(fs.path + "/data", 0o755)
        mkdir(fs.path + "/logs", 0o755)
        let db = fs.path + "/data/app.db"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        let log = fs.path + "/logs/app.log"
        let quiet = fs.path + "/logs/quiet.log"
        DiskKit.write(log, "")
        DiskKit.write(quiet, Self.lines(1, 20_000))
        let config = dir + "/guardian.yml"
        try TestSupport.write("""
            state-dir: \(dir)/state
            status:
              socket: \(dir)/guardian.sock
            dbs:
              - path: \(db)
            disk:
              interval: 200ms
              warn: 70%
              critical: 80%
              emergency: 90%
              ballast:
                path: \(fs.path)/ballast
                size: 1MiB
              logs:
                - paths: [\(fs.path)/logs/*.log]
                  frequency: daily
                  rotate: 2
                  copytruncate: true
                  emergency-truncate: keep 256KB
            alerts:
              - type: webhook
                url: \(rx.url("/hook"))
                secret: last-resort-key
            """, to: config)
        let child = try await startDaemon(config: config)
        defer { child.removeFiles(); child.signal(SIGKILL) }
        let ballastReady = await TestSupport.waitUntil(timeout: .seconds(15)) {
            var st = stat()
            return stat(fs.path + "/ballast", &st) == 0 && st.allocatedBytes >= 1 << 20
        }
        #expect(ballastReady, "\(child.stderr)")

        // The runaway: one burst takes app.log to 93 % of the filesystem.
        let usage = try #require(fs.usage)
        let total = usage.totalBytes
        let count = Int(Double(total) * 0.93 - Double(usage.usedBytes)) / 64 + 1
        DiskKit.append(log, Self.lines(1, count))
        let next = count + 1
        let lastLine = "request=\(next - 1) "
        let truncated = await TestSupport.waitUntil(timeout: .seconds(15)) {
            var st = stat()
            return stat(log, &st) == 0 && st.st_size <= 256 * 1024
        }
        #expect(truncated, "\(child.stderr.suffix(4000))")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.hasPrefix("2026-12-04T05:00:00Z ERROR"), "the tail starts at a line: \(child.stderr.suffix(5000))")
        #expect(text.contains(lastLine), "the newest lines are kept")
        // The quiet log was not the one truncated (a pressure rotation may
        // have copied it to quiet.log.1); the ballast is still there.
        var st = stat()
        let counted = try DiskKit.run(["/bin/sh", "-c", "{ cat '\(quiet)' '\(quiet).1' 2>/dev/null; gzip -dc '\(quiet).1.gz' 2>/dev/null; } | wc -c"])
        let quietBytes = Int64(String(decoding: counted.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(quietBytes == Int64(Self.lines(1, 20_000).utf8.count), "\(child.stderr.split(separator: "\n").filter { $0.contains("quiet") })")
        #expect(stat(fs.path + "/ballast", &st) == 0 && st.allocatedBytes >= 1 << 20, "the ballast was released")

        let alerted = await TestSupport.waitUntil(timeout: .seconds(10)) {
            rx.deliveries.contains { ($0.body["summary"] as? String)?.contains("log \(log) truncated") == true }
        }
        #expect(alerted, "\(rx.deliveries.map(\.body))")
        let alert = try #require(rx.deliveries.first { ($0.body["summary"] as? String)?.contains("log \(log) truncated") == true })
        let details = alert.body["details"] as? [String: Any] ?? [:]
        #expect(Int64(details["bytes_dropped"] as? String ?? "") ?? 0 > 8 << 20, "\(alert.body)")
        child.signal(SIGTERM)
        #expect(await child.wait(timeout: .seconds(20)) == 0)

        // The event log under the database says which log and how much; a post-mortem names it.
        let store = StateStore(stateDir: dir + "/state", readOnly: true)
        let events = try await store.events(database: db, limit: 100)
        let notes = events.map { Evidence.DiskNote(at: $0.at, level: $0.level, text: $0.detail) }
        #expect(events.contains { $0.kind == "disk-logEmergencyTruncated" && $0.detail.contains("log=\(log)") && $0.detail.contains("bytes_dropped=") }, "\(events.map(\.detail))")
        let evidence = Evidence(diskFreeBytes: 0, diskTotalBytes: total, diskEvents: notes, diskEmergencyAt: Date())
        #expect(evidence.diskFillingLog == log)
        #expect(RootCause.classify(evidence).explanation.contains("The log that filled the disk: \(log)."))
    }
}

/// `guardian doctor` (its disk checks): a database's filesystem must hold
/// the WAL growing to `max-wal-size` and its checkpoint — in free space now,
/// in what is left at the emergency level, and in the ballast.
@Suite(.serialized, .enabled(if: geteuid() == 0)) struct DiskHeadroomDoctorTests {
    @Test func doctorWarnsWhenTheDatabaseHasNoHeadroom() throws {
        let fs = try DiskKit.Tmpfs(size: "32m")
        defer { fs.unmount() }
        let db = fs.path + "/app.db"
        DiskKit.write(db, "")
        func checks(maxWAL: String) throws -> [DoctorReport.Check] {
            let config = try GuardianConfig.parse(text: """
                state-dir: /tmp/guardian-headroom-state
                dbs:
                  - path: \(db)
                    checkpoint-size: 512KiB
                    max-wal-size: \(maxWAL)
                disk:
                  warn: 70%
                  critical: 80%
                  emergency: 90%
                  ballast:
                    path: \(fs.path)/ballast
                    size: 8MiB
                """, file: "/etc/guardian/guardian.yml", environment: [:])
            #expect(config.diskWithHeadroom.databaseHeadroom == 2 * (Units.bytes(maxWAL) ?? 0))
            return DiskChecks.run(config).filter { $0.check == "disk.headroom" }
        }
        // 16 MiB of WAL + its checkpoint = 32 MiB: neither 3.2 MB at emergency nor an 8 MiB ballast hold it.
        let tight = try #require(try checks(maxWAL: "16MiB").first)
        #expect(tight.status == .warn, "\(tight)")
        #expect(tight.message.contains("left at the emergency level") && tight.message.contains("the ballast is 8"), "\(tight.message)")
        // 1 MiB of WAL fits everywhere.
        let fine = try #require(try checks(maxWAL: "1MiB").first)
        #expect(fine.status == .ok, "\(fine)")
    }
}
