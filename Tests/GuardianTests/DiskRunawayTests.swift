import Foundation
import Synchronization
import Testing
@testable import DiskWatch
@testable import Platform
@testable import Remediate
@testable import guardian

/// Issue 17, the seed's incident replayed: a 64 MB tmpfs holds the app's WAL
/// database and `logs/app.log`; the app commits a 1 kB row every 10 ms
/// (busy_timeout like a real app) while a runaway logger appends ordinary
/// error lines; `guardian run` watches it configured as a user would
/// (`disk: {interval: 1s, warn: 70%, critical: 80%, emergency: 90%, ballast:
/// 8MiB, logs: [{paths: [logs/*.log], rotate: 2, size: 4MB, compress: true,
/// copytruncate: true}]}`). No commit may fail, the filesystem is never full
/// (sampled every 2 ms), the database is intact with every acknowledged row,
/// every byte the runaway wrote is in an archive, still in the log, or
/// counted as dropped by an emergency truncate, and alerts reach a real
/// loopback receiver.
///
/// The runaway runs 15 s at 10 MB/s (the incident ran 55 s: 15 s already
/// writes more than twice the filesystem) and 35 s at 1 MB/s with 34 MiB of
/// other data on the filesystem (without guardian both fill it: see
/// benchmarks/runaway).
@Suite(.serialized, .enabled(if: geteuid() == 0)) struct DiskRunawayTests {
    struct Figures {
        var commits = 0
        var failedCommits = 0
        var firstFailure: String?
        var minAvailable = Int64.max
        var peakPercent = 0.0
        var logBytesWritten: Int64 = 0
        var logWriteFailures = 0
    }

    /// Every 10 ms: one 1 kB row in its own transaction; the ids acknowledged.
    final class AppWriter: @unchecked Sendable {
        let state = Mutex<(figures: Figures, acked: [Int64], stop: Bool)>((Figures(), [], false))
        var thread: Thread?

        func start(db: String) {
            let t = Thread { [self] in
                guard let conn = try? SQLiteConnection(path: db, busyTimeout: .seconds(5)) else {
                    state.withLock { $0.figures.failedCommits += 1; $0.figures.firstFailure = "open failed" }
                    return
                }
                let payload = String(repeating: "x", count: 1000)
                var id: Int64 = 0
                while !state.withLock({ $0.stop }) {
                    id += 1
                    do {
                        _ = try conn.query("INSERT INTO t(id, payload) VALUES (?, ?)", [.integer(id), .text(payload)])
                        state.withLock { $0.figures.commits += 1; $0.acked.append(id) }
                    } catch {
                        state.withLock {
                            $0.figures.failedCommits += 1
                            if $0.figures.firstFailure == nil { $0.figures.firstFailure = "\(error)" }
                        }
                    }
                    usleep(10_000)
                }
            }
            thread = t
            t.start()
        }
    }

    final class Box<T: Sendable>: Sendable {
        let m: Mutex<T>
        init(_ v: T) { m = Mutex(v) }
        func withLock<R>(_ body: (inout T) -> R) -> R { m.withLock { body(&$0) } }
    }

    /// Appends numbered error lines at `rate` bytes per second (O_APPEND, like a logger).
    static func runaway(path: String, rate: Int, seconds: Double, written: Box<(bytes: Int64, failures: Int, lines: Int)>) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let start = ContinuousClock.now
        var seq = 0
        var due: Double = 0
        var sent: Int64 = 0
        while (ContinuousClock.now - start).seconds < seconds {
            due = (ContinuousClock.now - start).seconds * Double(rate)
            var chunk = ""
            while Double(sent) + Double(chunk.utf8.count) < due {
                seq += 1
                chunk += "2026-12-04T05:00:00.000Z ERROR upstream connection refused (retrying) request=\(seq) pool=main attempt=3\n"
            }
            if !chunk.isEmpty {
                let bytes = Array(chunk.utf8)
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n == bytes.count {
                    sent += Int64(n)
                    written.withLock { $0.bytes += Int64(n) }
                } else {
                    // ENOSPC: the logger loses its lines, as a real one would.
                    sent += Int64(bytes.count)
                    written.withLock { $0.failures += 1 }
                }
            }
            usleep(5_000)
        }
        written.withLock { $0.lines = seq }
    }

    func scenario(rate: Int, seconds: Double, otherData: Int) async throws {
        let fs = try DiskKit.Tmpfs(size: "64m")
        defer { fs.unmount() }
        let dir = try TestSupport.makeTempDir("runaway")
        defer { TestSupport.cleanup(dir) }
        let rx = try await WebhookReceiver(key: "runaway-key")
        defer { rx.stop() }
        mkdir(fs.path + "/data", 0o755)
        mkdir(fs.path + "/logs", 0o755)
        let db = fs.path + "/data/app.db"
        let log = fs.path + "/logs/app.log"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT);")
        DiskKit.write(log, "")
        if otherData > 0 { try DiskKit.fill(fs.path + "/data/other.bin", bytes: otherData) }
        let config = dir + "/guardian.yml"
        try TestSupport.write("""
            state-dir: \(dir)/state
            status:
              socket: \(dir)/guardian.sock
            dbs:
              - path: \(db)
            disk:
              interval: 1s
              warn: 70%
              critical: 80%
              emergency: 90%
              ballast:
                path: \(fs.path)/ballast
                size: 8MiB
              logs:
                - paths: [\(fs.path)/logs/*.log]
                  rotate: 2
                  size: 4MB
                  compress: true
                  copytruncate: true
            alerts:
              - type: webhook
                url: \(rx.url("/hook"))
                secret: runaway-key
            """, to: config)
        let child = try await startDaemon(config: config)
        defer { child.removeFiles(); child.signal(SIGKILL) }
        // The ballast is in place before the runaway starts.
        let ballastReady = await TestSupport.waitUntil(timeout: .seconds(15)) {
            var st = stat()
            return stat(fs.path + "/ballast", &st) == 0 && st.allocatedBytes >= 8 << 20
        }
        #expect(ballastReady, "\(child.stderr)")

        // The filesystem sampled every 2 ms.
        let sampling = Box<(min: Int64, peak: Double, stop: Bool)>((Int64.max, 0, false))
        let sampler = Thread {
            while !sampling.withLock({ $0.stop }) {
                var s = statvfs()
                if statvfs(fs.path, &s) == 0 {
                    let avail = Int64(s.f_bavail) * Int64(s.f_frsize)
                    let used = Int64(s.f_blocks - s.f_bfree) * Int64(s.f_frsize)
                    let pct = Double(used) / Double(max(used + avail, 1)) * 100
                    sampling.withLock { $0.min = min($0.min, avail); $0.peak = max($0.peak, pct) }
                }
                usleep(2_000)
            }
        }
        sampler.start()
        let app = AppWriter()
        app.start(db: db)
        let written = Box<(bytes: Int64, failures: Int, lines: Int)>((0, 0, 0))
        await BlockingPool.shared.run { Self.runaway(path: log, rate: rate, seconds: seconds, written: written) }
        // The app keeps committing a moment after the runaway stopped.
        try await Task.sleep(for: .seconds(2))
        app.state.withLock { $0.stop = true }
        let settled = await TestSupport.waitUntil(timeout: .seconds(10)) { app.thread?.isFinished ?? true }
        #expect(settled)
        sampling.withLock { $0.stop = true }
        child.signal(SIGTERM)
        #expect(await child.wait(timeout: .seconds(20)) == 0, "\(child.stderr)")

        let (figures, acked) = app.state.withLock { ($0.figures, $0.acked) }
        let (minAvailable, peak) = sampling.withLock { ($0.min, $0.peak) }
        let w = written.withLock { $0 }
        let stderr = child.stderr

        // The database never met a full disk.
        #expect(figures.failedCommits == 0, "\(figures.failedCommits) of \(figures.commits + figures.failedCommits) commits failed: \(figures.firstFailure ?? "")")
        #expect(figures.commits > Int(seconds * 50), "\(figures.commits) commits")
        #expect(minAvailable > 0, "the filesystem reached 100 %")
        #expect(try await sqlite3(db, "PRAGMA integrity_check;") == "ok")
        let ids = Set(try await sqlite3(db, "SELECT id FROM t;").split(separator: "\n").compactMap { Int64($0) })
        #expect(acked.allSatisfy { ids.contains($0) }, "acknowledged rows are missing")

        // Every byte of log: copied into an archive, still in the log, or reported dropped.
        func sum(_ event: String, _ key: String) -> Int64 {
            stderr.split(separator: "\n").filter { $0.contains(event) }.reduce(Int64(0)) { total, line in
                guard let r = line.range(of: "\(key)=") ?? line.range(of: "\"\(key)\":\"") ?? line.range(of: "\(key): ") else { return total }
                let digits = line[r.upperBound...].drop { $0 == "\"" }.prefix { $0.isNumber }
                return total + (Int64(digits) ?? 0)
            }
        }
        let copied = sum("log file rotated", "bytes_copied")
        let dropped = sum("log truncated to its tail", "bytes_dropped")
        var st = stat()
        let remaining = stat(log, &st) == 0 ? Int64(st.st_size) : 0
        let unaccounted = w.bytes - (copied + dropped + remaining)
        print("runaway \(rate / 1_000_000) MB/s for \(Int(seconds)) s: commits \(figures.commits), failed \(figures.failedCommits), peak \(String(format: "%.1f", peak)) %, min free \(minAvailable) B, log written \(w.bytes) B (\(w.failures) failed writes), archived \(copied) B, dropped \(dropped) B, in the log \(remaining) B, unaccounted \(unaccounted) B")
        #expect(w.failures == 0, "the logger itself met a full disk \(w.failures) times")
        #expect(copied > 0, "\(stderr.suffix(3000))")
        // The copytruncate window (two system calls per rotation) is all that may be missing.
        #expect(unaccounted >= 0 && unaccounted < 64 * 1024, "\(unaccounted) bytes of log unaccounted")

        // The archives kept are valid gzip, and hold consecutive lines.
        let archives = ((try? FileManager.default.contentsOfDirectory(atPath: fs.path + "/logs")) ?? []).filter { $0.hasSuffix(".gz") }.sorted()
        #expect(!archives.isEmpty)
        for a in archives {
            let r = try await run("/bin/sh", ["-c", "gzip -dc '\(fs.path)/logs/\(a)' | sed -n 's/.*request=\\([0-9]*\\) .*/\\1/p' | awk 'NR>1 && $1!=p+1 {gap++} {p=$1} END {print NR, gap+0}'"])
            let parts = r.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            #expect(r.status == 0 && parts.count == 2 && parts[0] > 0 && parts[1] == 0, "\(a): \(r.stdout) \(r.stderr)")
        }

        // Dropped lines were alerted, naming the log.
        if dropped > 0 {
            let alerted = await TestSupport.waitUntil(timeout: .seconds(5)) {
                rx.deliveries.contains { ($0.body["summary"] as? String)?.contains(log) == true }
            }
            #expect(alerted, "\(rx.deliveries.map(\.body))")
        }
        // The team heard of the runaway (the forecast, a level, or a truncate).
        #expect(!rx.deliveries.isEmpty, "no alert delivered")
        #expect(rx.deliveries.allSatisfy { $0.sigOK == true })
        print("alerts: \(rx.deliveries.compactMap { $0.body["summary"] as? String })")
        // The event log under the database names the log that grows.
        let store = StateStore(stateDir: dir + "/state", readOnly: true)
        let events = try await store.events(database: db, limit: 200)
        #expect(events.contains { $0.detail.contains(log) }, "\(events.map(\.detail))")
    }

    @Test(.timeLimit(.minutes(2)))
    func aTenMegabytePerSecondRunawayNeverFillsTheDatabasesDisk() async throws {
        try await scenario(rate: 10_000_000, seconds: 15, otherData: 0)
    }

    @Test(.timeLimit(.minutes(2)))
    func aOneMegabytePerSecondRunawayOnAFullerDiskNeverFillsIt() async throws {
        try await scenario(rate: 1_000_000, seconds: 35, otherData: 34 << 20)
    }
}
