import Foundation
import Logging
import Platform

/// The disk guardian's benchmark (`guardian disk-bench`, root only: it
/// mounts tmpfs filesystems under a temporary directory and unmounts them
/// afterwards).
///
/// 1. Cost of watching: `mounts` tmpfs filesystems with `logs` log files
///    between them, sampled every second (and the rotation schedule checked
///    every `rotateInterval`) for `seconds`; CPU time (getrusage) and the
///    growth of the resident set (VmRSS) of this process while it runs.
/// 2. Reaction: a filesystem just below a level is pushed over it; the time
///    from the end of that write to the first byte freed by guardian (statvfs
///    polled every 2 ms). Once for warn (rotate + gzip a 16 MB log), once for
///    emergency (the ballast).
public enum DiskBenchmark {
    public struct Options: Sendable {
        public var mounts = 10
        public var logs = 100
        public var seconds = 60
        public var trials = 3
        public var interval: Duration = .seconds(1)
        public init() {}
    }

    public struct Figures: Sendable, CustomStringConvertible {
        public var seconds: Double
        public var cpuSeconds: Double
        /// After the first 5 s (start-up and the first rotation pass over every log).
        public var steadySeconds: Double
        public var steadyCPUSeconds: Double
        public var rssBeforeKB: Int
        public var rssAfterKB: Int
        public var warnReactions: [Double]
        public var emergencyReactions: [Double]

        public var cpuPercentOfACore: Double { cpuSeconds / seconds * 100 }
        public var steadyCPUPercentOfACore: Double { steadyCPUSeconds / max(steadySeconds, 0.001) * 100 }
        public var extraMemoryMB: Double { Double(rssAfterKB - rssBeforeKB) / 1024 }

        public var description: String {
            func ms(_ v: [Double]) -> String { v.map { String(format: "%.0f ms", $0 * 1000) }.joined(separator: ", ") }
            return """
                watching: \(String(format: "%.1f", seconds)) s, CPU \(String(format: "%.3f", cpuSeconds)) s = \(String(format: "%.4f", cpuPercentOfACore)) % of a core, start-up included (target < 0.1 %)
                steady state (after the first 5 s): \(String(format: "%.4f", steadyCPUPercentOfACore)) % of a core
                memory: VmRSS \(rssBeforeKB) kB before, \(rssAfterKB) kB after = \(String(format: "%+.2f", extraMemoryMB)) MB (target < 10 MB)
                warn crossing → first byte freed (rotate + gzip 16 MB): \(ms(warnReactions)) (target ≤ 2000 ms)
                emergency crossing → first byte freed (ballast): \(ms(emergencyReactions)) (target ≤ 2000 ms)
                """
        }
    }

    struct BenchError: Error, CustomStringConvertible {
        let description: String
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return s(usage.ru_utime) + s(usage.ru_stime)
    }

    static func rssKB() -> Int {
        guard let text = ProcFiles.text("/proc/self/status") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return 0
    }

    static func mountTmpfs(_ path: String, size: String) throws {
        mkdir(path, 0o755)
        let r = try Subprocess.runBlocking(["mount", "-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path], timeout: .seconds(10))
        guard r.succeeded else { throw BenchError(description: "mount tmpfs on \(path): \(r.summary) (run as root)") }
    }

    static func unmount(_ path: String) {
        _ = try? Subprocess.runBlocking(["umount", "-l", path], timeout: .seconds(10))
    }

    static func usedBytes(_ path: String) -> Int64 {
        var vfs = statvfs()
        guard statvfs(path, &vfs) == 0 else { return 0 }
        return (Int64(vfs.f_blocks) - Int64(vfs.f_bfree)) * Int64(vfs.f_frsize)
    }

    static func write(_ path: String, bytes: Int, text: Bool) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        defer { close(fd) }
        var chunk: [UInt8]
        if text {
            chunk = Array(String(repeating: "2026-11-25T08:00:00Z info request served path=/api/items status=200 ms=12\n", count: 8192).utf8)
        } else {
            chunk = [UInt8](repeating: 0, count: 1 << 20)
            let random = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
            _ = chunk.withUnsafeMutableBytes { read(random, $0.baseAddress, $0.count) }
            close(random)
        }
        var left = bytes
        while left > 0 {
            let n = min(left, chunk.count)
            try DurableFile.writeAll(fd: fd, Array(chunk[0..<n]), path: path)
            left -= n
        }
    }

    /// Runs both parts; `progress` gets a line now and then.
    public static func run(_ options: Options, progress: @escaping @Sendable (String) -> Void) async throws -> Figures {
        var root = Array("/tmp/guardian-disk-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&root) else { throw SystemError("mkdtemp", path: "/tmp") }
        let dir = String(cString: made)
        var mounted: [String] = []
        defer {
            for m in mounted { unmount(m) }
            try? FileManager.default.removeItem(atPath: dir)
        }
        // Events are not what is measured: they go nowhere.
        let logger = Logger(label: "guardian.disk-bench", factory: { _ in SwiftLogNoOpLogHandler() })

        // Part 1: the cost of watching.
        var rules: [LogRotationConfig] = []
        for m in 0..<options.mounts {
            let path = "\(dir)/m\(m)"
            try await BlockingPool.shared.run { try mountTmpfs(path, size: "64m") }
            mounted.append(path)
            rules.append(LogRotationConfig(paths: ["\(path)/*.log"], rotate: 3, size: 50 << 20, compress: true, missingOK: true))
        }
        for i in 0..<options.logs {
            let path = "\(dir)/m\(i % max(1, options.mounts))/app\(i).log"
            try write(path, bytes: 4096, text: true)
        }
        let state = dir + "/state"
        let config = DiskConfig(interval: options.interval, logs: rules)
        progress("watching \(options.mounts) tmpfs mounts and \(options.logs) logs for \(options.seconds) s at \(Units.formatDuration(options.interval)) …")
        let service = DiskWatchService(
            config: config, protectedPaths: [], extraWatchPaths: [], stateDir: state, logger: logger,
            onStatus: { _ in }, onEvent: { _ in })
        // Let the process settle (threads, allocator) before the baseline.
        try await Task.sleep(for: .milliseconds(500))
        let rssBefore = rssKB()
        let cpuBefore = cpuSeconds()
        let started = ContinuousClock.now
        let watcher = Task { try await service.run() }
        let warmup = min(5, max(0, options.seconds - 1))
        try await Task.sleep(for: .seconds(warmup))
        let cpuWarm = cpuSeconds()
        let warmAt = ContinuousClock.now
        try await Task.sleep(for: .seconds(options.seconds - warmup))
        let cpuAfter = cpuSeconds()
        let elapsed = (ContinuousClock.now - started).seconds
        let steady = (ContinuousClock.now - warmAt).seconds
        let rssAfter = rssKB()
        watcher.cancel()
        _ = try? await watcher.value

        // Part 2: reaction to a crossing.
        let react = dir + "/react"
        try await BlockingPool.shared.run { try mountTmpfs(react, size: "64m") }
        mounted.append(react)
        var warnTimes: [Double] = []
        var emergencyTimes: [Double] = []
        for trial in 0..<options.trials {
            progress("reaction trial \(trial + 1)/\(options.trials) …")
            warnTimes.append(try await reaction(dir: react, state: state + "-r\(trial)", level: .warn, logger: logger, interval: options.interval))
            emergencyTimes.append(try await reaction(dir: react, state: state + "-e\(trial)", level: .emergency, logger: logger, interval: options.interval))
        }
        return Figures(
            seconds: elapsed, cpuSeconds: cpuAfter - cpuBefore, steadySeconds: steady, steadyCPUSeconds: cpuAfter - cpuWarm, rssBeforeKB: rssBefore, rssAfterKB: rssAfter,
            warnReactions: warnTimes, emergencyReactions: emergencyTimes)
    }

    /// Seconds from pushing `dir` over `level` to the first freed byte.
    static func reaction(dir: String, state: String, level: DiskLevel, logger: Logger, interval: Duration) async throws -> Double {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            try? FileManager.default.removeItem(atPath: "\(dir)/\(name)")
        }
        let total = Int64(64 << 20)
        var config = DiskConfig(interval: interval, warn: 80, critical: 90, emergency: 95, hysteresis: 2, rotateInterval: .seconds(3600))
        if level == .warn {
            try write(dir + "/app.log", bytes: 16 << 20, text: true)
            config.logs = [LogRotationConfig(paths: [dir + "/app.log"], rotate: 3, size: 1 << 30, compress: true)]
        } else {
            config.ballast = BallastConfig(path: dir + "/ballast", size: 4 << 20)
        }
        // Just below warn; with a ballast, low enough for it to be created (below warn - hysteresis).
        let start = level == .warn ? config.warn - 1.5 : config.warn - 5
        let below = Int64(Double(total) * start / 100) - usedBytes(dir) - (level == .warn ? 0 : 4 << 20)
        try write(dir + "/base", bytes: Int(max(0, below)), text: false)
        let service = DiskWatchService(
            config: config, protectedPaths: [], extraWatchPaths: [dir], stateDir: state, logger: logger,
            onStatus: { _ in }, onEvent: { _ in })
        let watcher = Task { try await service.run() }
        defer { watcher.cancel() }
        // Wait until the ballast exists (emergency) and two samples were taken.
        try await Task.sleep(for: interval * 2 + .milliseconds(200))
        if level == .emergency {
            var st = stat()
            guard stat(dir + "/ballast", &st) == 0 else { throw BenchError(description: "the ballast was not created") }
        }
        let target = Double(total) * (level == .warn ? 81 : 96) / 100
        let push = Int(target) - Int(usedBytes(dir))
        try write(dir + "/push", bytes: max(push, 1 << 20), text: false)
        let crossed = ContinuousClock.now
        let peak = usedBytes(dir)
        let limit = crossed + .seconds(30)
        let freedAt: ContinuousClock.Instant = await BlockingPool.shared.run {
            while ContinuousClock.now < limit {
                if usedBytes(dir) < peak { return ContinuousClock.now }
                usleep(2_000)
            }
            return limit
        }
        watcher.cancel()
        _ = try? await watcher.value
        guard freedAt < limit else { throw BenchError(description: "nothing was freed within 30 s at \(level)") }
        return (freedAt - crossed).seconds
    }
}
