import Foundation
import Synchronization
import Testing
@testable import DiskWatch
@testable import Platform

/// Rotation while a real writer process appends: count the lines written
/// against the lines found in the live log and every archive (.gz through
/// gzip -dc).
@Suite struct DiskNoLossTests {
    /// A log writer: `writer.py LOG PIDFILE LINES`. Each line is one write(2)
    /// with O_APPEND; SIGHUP makes it reopen the log by name.
    static let writer = """
        import os, signal, sys, time
        path, pidfile, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
        reopen = False
        def hup(signum, frame):
            global reopen
            reopen = True
        signal.signal(signal.SIGHUP, hup)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        for i in range(total):
            if reopen:
                reopen = False
                os.close(fd)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, b"line %08d %s\\n" % (i, b"x" * 56))
            if i % 20 == 0:
                time.sleep(0.001)
        os.close(fd)
        # Done; stay alive (ignoring SIGHUP) until the test has finished rotating.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        open(pidfile + ".done", "w").close()
        for _ in range(6000):
            if os.path.exists(pidfile + ".stop"):
                break
            time.sleep(0.01)
        """

    struct Count {
        var found: Set<Int> = []
        var duplicates = 0
        var damaged = 0
    }

    /// Every `line NNNNNNNN xxx…` in the log's files.
    static func count(dir: String, base: String) throws -> Count {
        var c = Count()
        for name in DiskKit.names(dir) where name.hasPrefix(base) {
            let bytes = try DiskKit.bigContent(dir + "/" + name)
            for line in bytes.split(separator: UInt8(ascii: "\n")) {
                let text = String(decoding: line, as: UTF8.self)
                let parts = text.split(separator: " ")
                guard parts.count == 3, parts[0] == "line", let n = Int(parts[1]), parts[2].count == 56 else {
                    c.damaged += 1
                    continue
                }
                if !c.found.insert(n).inserted { c.duplicates += 1 }
            }
        }
        return c
    }

    /// The writer process, as the test sees it.
    final class Writer: Sendable {
        let pid: String
        let pidFile: String
        let done: Task<ProcessOutcome, any Error>
        private let finished = Mutex(false)

        init(pid: String, pidFile: String, done: Task<ProcessOutcome, any Error>) {
            self.pid = pid
            self.pidFile = pidFile
            self.done = done
        }

        /// All lines are written (the process waits for `release()`).
        var isFinished: Bool { finished.withLock { $0 } || FileManager.default.fileExists(atPath: pidFile + ".done") }
        func markFinished() { finished.withLock { $0 = true } }
        /// Lets the writer exit.
        func release() { DiskKit.write(pidFile + ".stop", "") }
    }

    /// Starts the writer and waits until it runs.
    static func startWriter(dir: String, log: String, lines: Int) async throws -> Writer {
        let script = dir + "/writer.py"
        DiskKit.write(script, writer)
        let pidFile = dir + "/writer.pid"
        let flag = Mutex<Writer?>(nil)
        let done = Task {
            defer { flag.withLock { $0?.markFinished() } }
            return try await Subprocess.run(["python3", script, log, pidFile, "\(lines)"], timeout: .seconds(120))
        }
        let end = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < end {
            if let pid = try? String(contentsOfFile: pidFile, encoding: .utf8), !pid.isEmpty {
                let w = Writer(pid: pid, pidFile: pidFile, done: done)
                flag.withLock { $0 = w }
                return w
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        done.cancel()
        throw SystemError("writer did not start", path: script, code: ETIMEDOUT)
    }

    @Test func createAndPostrotateLoseNoLine() async throws {
        let dir = try DiskKit.tempDir("noloss")
        defer { DiskKit.remove(dir) }
        mkdir(dir + "/logs", 0o755)
        let log = dir + "/logs/app.log"
        let lines = 30_000
        let writer = try await Self.startWriter(dir: dir, log: log, lines: lines)
        let rule = LogRotationConfig(
            paths: [log], rotate: 10_000, size: 16 * 1024, compress: true, postRotate: ["kill", "-HUP", writer.pid])
        let box = RotatorBox(DiskKit.rotator([rule], state: dir + "/state.json"))
        var rotations = 0
        var postponed = 0
        while true {
            let finished = await BlockingPool.shared.run {
                box.rotator.runScheduled()
                return box.rotator.takeEvents()
            }
            rotations += finished.filter { $0.event == .logRotated }.count
            postponed += finished.filter { $0.event == .logCompressPostponed }.count
            #expect(!finished.contains { $0.level >= .error }, "\(finished)")
            if writer.isFinished { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        writer.release()
        let outcome = try await writer.done.value
        #expect(outcome.succeeded, "writer: \(outcome.summary)")
        // The writer is gone: the postponed archives compress now.
        let last = await BlockingPool.shared.run {
            box.rotator.retryPending()
            return box.rotator.takeEvents()
        }
        #expect(!last.contains { $0.level >= .error }, "\(last)")
        #expect(box.rotator.pendingCompress.isEmpty)

        let c = try Self.count(dir: dir + "/logs", base: "app.log")
        #expect(rotations >= 5, "the writer outran the test: only \(rotations) rotations")
        #expect(c.found.count == lines, "lost \(lines - c.found.count) of \(lines) lines over \(rotations) rotations")
        #expect(c.duplicates == 0)
        #expect(c.damaged == 0)
        let names = DiskKit.names(dir + "/logs")
        #expect(names.filter { $0.hasSuffix(".gz") }.count == rotations, "every archive compressed (postponed \(postponed) times meanwhile)")
        #expect(!names.contains { $0.hasSuffix(Compressor.tempSuffix) })
    }

    @Test func copytruncateLosesAtMostTheDocumentedWindow() async throws {
        let dir = try DiskKit.tempDir("noloss-ct")
        defer { DiskKit.remove(dir) }
        mkdir(dir + "/logs", 0o755)
        let log = dir + "/logs/app.log"
        let lines = 30_000
        let writer = try await Self.startWriter(dir: dir, log: log, lines: lines)
        let rule = LogRotationConfig(paths: [log], rotate: 10_000, size: 16 * 1024, compress: true, copyTruncate: true)
        let box = RotatorBox(DiskKit.rotator([rule], state: dir + "/state.json"))
        var rotations = 0
        while true {
            let events = await BlockingPool.shared.run {
                box.rotator.runScheduled()
                return box.rotator.takeEvents()
            }
            rotations += events.filter { $0.event == .logRotated }.count
            #expect(!events.contains { $0.level >= .error }, "\(events)")
            if writer.isFinished { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        writer.release()
        #expect(try await writer.done.value.succeeded)
        let c = try Self.count(dir: dir + "/logs", base: "app.log")
        let lost = lines - c.found.count
        #expect(rotations >= 5, "only \(rotations) rotations")
        #expect(c.duplicates == 0)
        // The window between the last read and the truncate: at most one
        // line (whole or torn) per rotation, in practice almost always none.
        #expect(lost + c.damaged <= rotations, "lost \(lost), damaged \(c.damaged) over \(rotations) rotations")
        print("copytruncate: \(rotations) rotations, \(lost) of \(lines) lines lost, \(c.damaged) damaged")
    }
}

/// Hands a rotator to the blocking pool; the test uses it from one thread at a time.
final class RotatorBox: @unchecked Sendable {
    let rotator: LogRotator
    init(_ rotator: LogRotator) { self.rotator = rotator }
}
