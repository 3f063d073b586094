import Foundation
import Logging
import Synchronization
import Testing
@testable import DiskWatch
@testable import Platform

/// Two copies of one fixture: the real logrotate works on `lr`, guardian on
/// `g` (the comparison suites add how they compare the two).
class LogrotateTwin {
    let root: String
    let lr: String
    let g: String

    /// `rootMode`: for fixtures other users must reach (`su`: logrotate works by path).
    init(_ label: String, rootMode: mode_t? = nil) throws {
        root = try DiskKit.tempDir(label)
        if let rootMode { chmod(root, rootMode) }
        lr = root + "/lr"
        g = root + "/g"
        mkdir(lr, 0o755)
        mkdir(g, 0o755)
    }

    deinit { DiskKit.remove(root) }

    func each(_ body: (String) throws -> Void) rethrows {
        try body(lr)
        try body(g)
    }

    var guardianState: String { root + "/guardian-state.json" }

    @discardableResult
    func logrotate(_ directives: String, pattern: String = "app.log", force: Bool = true) throws -> ProcessOutcome {
        try DiskKit.logrotate("\(lr)/\(pattern) {\n\(directives)\n}\n", in: root, force: force)
    }

    @discardableResult
    func guardian(_ rule: LogRotationConfig, pattern: String = "app.log", force: Bool = true, now: @escaping @Sendable () -> Date = { Date() }) -> LogRotator {
        var r = rule
        r.paths = ["\(g)/\(pattern)"]
        let rotator = DiskKit.rotator([r], state: guardianState, now: now)
        rotator.runScheduled(force: force)
        return rotator
    }
}

/// Helpers for the Disk*Tests suites: temp directories, real tmpfs mounts
/// (tests run as root), the real logrotate, file listings.
enum DiskKit {
    /// A fresh directory under /tmp, removed by `remove()`.
    static func tempDir(_ label: String = "disk") throws -> String {
        var template = Array("/tmp/guardian-\(label)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SystemError("mkdtemp", path: "/tmp") }
        return String(cString: p)
    }

    static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    static func run(_ argv: [String], stdin: Int32? = nil, timeout: Duration = .seconds(30)) throws -> ProcessOutcome {
        try Subprocess.runBlocking(argv, stdin: stdin, timeout: timeout)
    }

    /// `mount -t tmpfs -o size=SIZE[,nr_inodes=N] tmpfs DIR` in a unique temp dir.
    final class Tmpfs: @unchecked Sendable {
        let root: String
        let path: String

        init(size: String, inodes: Int? = nil) throws {
            root = try DiskKit.tempDir("tmpfs")
            path = root + "/mnt"
            mkdir(path, 0o755)
            // 0755 like /var/log: a world-writable log directory (tmpfs's
            // default 1777) is refused by rotation, as by logrotate.
            var options = "size=\(size),mode=0755"
            if let inodes { options += ",nr_inodes=\(inodes)" }
            let r = try DiskKit.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path])
            guard r.succeeded else {
                DiskKit.remove(root)
                throw SystemError("mount tmpfs (\(r.summary))", path: path, code: EPERM)
            }
        }

        func unmount() {
            _ = try? DiskKit.run(["umount", "-l", path])
            DiskKit.remove(root)
        }

        func remount(readOnly: Bool) throws {
            let r = try DiskKit.run(["mount", "-o", readOnly ? "remount,ro" : "remount,rw", path])
            guard r.succeeded else { throw SystemError("remount (\(r.summary))", path: path, code: EPERM) }
        }

        var usage: UsageSample? {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            return UsageSampler.read(path: path, device: UInt64(st.st_dev), mountPoint: path, paths: [path])
        }
    }

    static func write(_ path: String, _ text: String, mode: mode_t = 0o644) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        if fd >= 0 {
            try? DurableFile.writeAll(fd: fd, Array(text.utf8), path: path)
            close(fd)
        }
    }

    static func append(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if fd >= 0 {
            try? DurableFile.writeAll(fd: fd, Array(text.utf8), path: path)
            close(fd)
        }
    }

    /// Writes `bytes` bytes of incompressible data.
    static func fill(_ path: String, bytes: Int) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        defer { close(fd) }
        let random = open("/dev/urandom", O_RDONLY)
        defer { close(random) }
        var remaining = bytes
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while remaining > 0 {
            let n = chunk.withUnsafeMutableBytes { read(random, $0.baseAddress, min(remaining, $0.count)) }
            guard n > 0 else { throw SystemError("read", path: "/dev/urandom") }
            try DurableFile.writeAll(fd: fd, Array(chunk[0..<n]), path: path)
            remaining -= n
        }
    }

    static func setMTime(_ path: String, daysAgo: Double) {
        let t = Date().timeIntervalSince1970 - daysAgo * 86400
        var times = [timespec(tv_sec: Int(t), tv_nsec: 0), timespec(tv_sec: Int(t), tv_nsec: 0)]
        utimensat(AT_FDCWD, path, &times, 0)
    }

    static func names(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    /// The content of a file; `.gz` files through `gzip -dc`.
    static func content(_ path: String) throws -> String {
        if path.hasSuffix(".gz") {
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else { throw SystemError("open", path: path) }
            defer { close(fd) }
            let r = try run(["gzip", "-dc"], stdin: fd)
            guard r.succeeded else { throw SystemError("gzip -dc (\(r.summary))", path: path, code: EIO) }
            // The helper keeps 64 KiB; use the big variant for big files.
            return String(decoding: r.stdout, as: UTF8.self)
        }
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Decompressed content of any size (gzip -dc into a temp file).
    static func bigContent(_ path: String) throws -> [UInt8] {
        guard path.hasSuffix(".gz") else {
            return Array(FileManager.default.contents(atPath: path) ?? Data())
        }
        let out = path + ".decompressed-for-test"
        let inFD = open(path, O_RDONLY)
        let outFD = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer {
            close(inFD)
            close(outFD)
            unlink(out)
        }
        let r = try Subprocess.runBlocking(["gzip", "-dc"], stdin: inFD, stdout: outFD, timeout: .seconds(60))
        guard r.succeeded else { throw SystemError("gzip -dc (\(r.summary))", path: path, code: EIO) }
        return Array(FileManager.default.contents(atPath: out) ?? Data())
    }

    /// Runs the real logrotate on `conf` (text) with its own state file.
    @discardableResult
    static func logrotate(_ conf: String, in dir: String, force: Bool) throws -> ProcessOutcome {
        let confPath = dir + "/logrotate.conf"
        write(confPath, conf, mode: 0o644)
        chmod(confPath, 0o644)
        var argv = ["logrotate", "-s", dir + "/logrotate.state"]
        if force { argv.append("-f") }
        argv.append(confPath)
        return try run(argv)
    }

    static func rotator(_ rules: [LogRotationConfig], state: String?, protected: [String] = [], now: @escaping @Sendable () -> Date = { Date() }) -> LogRotator {
        var options = LogRotator.Options()
        options.statePath = state
        options.now = now
        options.quietPeriod = .milliseconds(100)
        return LogRotator(rules: rules, protected: ProtectedFiles(protected), options: options)
    }

    /// A logger that keeps nothing (events are checked through onEvent).
    static var quietLogger: Logger {
        var l = Logger(label: "guardian.test.disk", factory: { _ in SwiftLogNoOpLogHandler() })
        l.logLevel = .critical
        return l
    }
}

/// Collects events and statuses from a running DiskWatchService.
final class DiskRecorder: Sendable {
    private let state = Mutex<(events: [DiskEvent], statuses: [[MountStatus]])>(([], []))

    var events: [DiskEvent] { state.withLock { $0.events } }
    var statuses: [[MountStatus]] { state.withLock { $0.statuses } }

    func record(_ e: DiskEvent) { state.withLock { $0.events.append(e) } }
    func record(_ s: [MountStatus]) { state.withLock { $0.statuses.append(s) } }

    func events(_ kind: GuardianEvent) -> [DiskEvent] { events.filter { $0.event == kind } }

    /// Waits (polling) until `condition` holds or `timeout` passes.
    func wait(timeout: Duration, _ condition: @Sendable (DiskRecorder) -> Bool) async -> Bool {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if condition(self) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition(self)
    }
}

extension DiskWatchService {
    /// A service for tests: its own disk thread, events and statuses recorded.
    static func forTest(
        _ config: DiskConfig, protected: [String] = [], watch: [String] = [], stateDir: String, recorder: DiskRecorder
    ) -> DiskWatchService {
        DiskWatchService(
            config: config, protectedPaths: protected, extraWatchPaths: watch, stateDir: stateDir,
            logger: DiskKit.quietLogger, executor: ThreadExecutor(name: "guardian-disk-test"),
            onStatus: { recorder.record($0) }, onEvent: { recorder.record($0) })
    }
}

@Suite struct DiskTestKitTests {
    @Test func tmpfsMountsAndReportsUsage() throws {
        let fs = try DiskKit.Tmpfs(size: "4m")
        defer { fs.unmount() }
        let before = try #require(fs.usage)
        try DiskKit.fill(fs.path + "/blob", bytes: 2 << 20)
        let after = try #require(fs.usage)
        #expect(before.totalBytes == 4 << 20)
        #expect(after.usedBytes - before.usedBytes >= 2 << 20)
        #expect(after.bytesPercent > 45 && after.bytesPercent < 60)
    }
}
