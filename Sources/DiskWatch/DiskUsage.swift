import Foundation
import Platform
import Synchronization

/// One reading of one filesystem (`statvfs`), as `df` would show it.
struct UsageSample: Sendable, Equatable {
    /// `st_dev` of the watched paths on this filesystem.
    var device: UInt64
    var mountPoint: String
    /// The watched paths that live on this filesystem.
    var paths: [String]
    /// The existing path that was statvfs'd (a watched path or its nearest existing ancestor).
    var probe: String
    var totalBytes: Int64
    /// Bytes in use (`f_blocks - f_bfree`).
    var usedBytes: Int64
    /// Bytes an unprivileged writer may still use (`f_bavail`).
    var availableBytes: Int64
    var totalInodes: Int64
    var usedInodes: Int64
    var availableInodes: Int64
    /// Seconds on the monotonic clock.
    var time: Double

    /// df's Use%: used / (used + available).
    var bytesPercent: Double {
        let denominator = usedBytes + availableBytes
        return denominator > 0 ? Double(usedBytes) * 100 / Double(denominator) : 0
    }

    /// nil on filesystems without an inode limit.
    var inodesPercent: Double? {
        let denominator = usedInodes + availableInodes
        return totalInodes > 0 && denominator > 0 ? Double(usedInodes) * 100 / Double(denominator) : nil
    }

    /// What the levels are judged on: bytes or inodes, whichever is fuller.
    var percent: Double { max(bytesPercent, inodesPercent ?? 0) }
}

/// Reads filesystem usage for a set of paths, one sample per filesystem.
enum UsageSampler {
    /// The nearest existing ancestor of `path` (a replica directory may not exist yet).
    static func existingAncestor(_ path: String) -> (path: String, stat: stat)? {
        var current = path
        while true {
            var st = stat()
            if stat(current, &st) == 0 { return (current, st) }
            guard errno == ENOENT || errno == ENOTDIR, current != "/" else { return nil }
            let parent = (current as NSString).deletingLastPathComponent
            current = parent.isEmpty ? "/" : parent
        }
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// statvfs of one path; nil with errno set when it fails.
    static func read(path: String, device: UInt64, mountPoint: String, paths: [String]) -> UsageSample? {
        // (path is the probe: it exists, or statvfs fails and the sample is nil.)
        var vfs = statvfs()
        guard statvfs(path, &vfs) == 0 else { return nil }
        let frsize = Int64(vfs.f_frsize == 0 ? vfs.f_bsize : vfs.f_frsize)
        let total = Int64(vfs.f_blocks) * frsize
        let used = (Int64(vfs.f_blocks) - Int64(vfs.f_bfree)) * frsize
        let available = Int64(vfs.f_bavail) * frsize
        let totalInodes = Int64(vfs.f_files)
        let usedInodes = max(0, Int64(vfs.f_files) - Int64(vfs.f_ffree))
        let availableInodes = Int64(vfs.f_favail)
        return UsageSample(
            device: device, mountPoint: mountPoint, paths: paths, probe: path, totalBytes: total, usedBytes: used,
            availableBytes: available, totalInodes: totalInodes, usedInodes: usedInodes,
            availableInodes: availableInodes, time: monotonicSeconds())
    }

    /// Samples every filesystem holding one of `paths` (deduplicated by `st_dev`).
    static func sample(paths: [String], mounts: MountTable) -> (samples: [UsageSample], failures: [(path: String, error: SystemError)]) {
        var byDevice: [UInt64: (path: String, paths: [String])] = [:]
        var order: [UInt64] = []
        var failures: [(String, SystemError)] = []
        for path in paths {
            guard let found = existingAncestor(path) else {
                failures.append((path, SystemError("stat", path: path)))
                continue
            }
            let device = UInt64(found.stat.st_dev)
            if byDevice[device] == nil {
                byDevice[device] = (found.path, [path])
                order.append(device)
            } else {
                byDevice[device]?.paths.append(path)
            }
        }
        var samples: [UsageSample] = []
        for device in order {
            guard let entry = byDevice[device] else { continue }
            let mountPoint = mounts.mountPoint(device: device, path: entry.path)
            if let s = read(path: entry.path, device: device, mountPoint: mountPoint, paths: entry.paths) {
                samples.append(s)
            } else {
                failures.append((entry.path, SystemError("statvfs", path: entry.path)))
            }
        }
        return (samples, failures)
    }
}

/// Mount points by device number, from `/proc/self/mountinfo`; re-read when
/// a device is not known yet (something was mounted).
final class MountTable: Sendable {
    private let cache = Mutex<[UInt64: String]>([:])

    func mountPoint(device: UInt64, path: String) -> String {
        // Device numbers of unmounted filesystems are reused: trust the
        // cache only while the path is still below the cached mount point.
        if let known = cache.withLock({ $0[device] }),
            known == "/" || path == known || path.hasPrefix(known + "/")
        {
            return known
        }
        let found = Self.lookup(device: device, path: path) ?? path
        cache.withLock { $0[device] = found }
        return found
    }

    /// The mount point whose `major:minor` is the device and which is the
    /// longest prefix of `path` (bind mounts share a device).
    static func lookup(device: UInt64, path: String) -> String? {
        guard let text = ProcFiles.text("/proc/self/mountinfo") else { return nil }
        // glibc's gnu_dev_major / gnu_dev_minor.
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & 0xffff_f000)
        let minor = (device & 0xff) | ((device >> 12) & 0xffff_ff00)
        let wanted = "\(major):\(minor)"
        var best: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count > 4, fields[2] == wanted else { continue }
            let mount = unescape(String(fields[4]))
            let prefix = mount == "/" ? "/" : mount + "/"
            guard path == mount || path.hasPrefix(prefix) else { continue }
            if best == nil || mount.count > (best?.count ?? 0) { best = mount }
        }
        return best
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 92, i + 3 < bytes.count,
                let v = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                out.append(v)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A short ring of samples of one filesystem and the time-to-full forecast
/// fitted to it.
struct UsageHistory: Sendable {
    struct Point: Sendable, Equatable {
        var time: Double
        var usedBytes: Double
        var usedInodes: Double
    }

    let capacity: Int
    private(set) var points: [Point] = []
    private var head = 0

    init(capacity: Int) {
        self.capacity = max(3, capacity)
        points.reserveCapacity(self.capacity)
    }

    mutating func append(_ p: Point) {
        if points.count < capacity {
            points.append(p)
        } else {
            points[head] = p
            head = (head + 1) % capacity
        }
    }

    mutating func append(_ s: UsageSample) {
        append(Point(time: s.time, usedBytes: Double(s.usedBytes), usedInodes: Double(s.usedInodes)))
    }

    /// Oldest first.
    var ordered: [Point] { Array(points[head...] + points[..<head]) }

    /// Least-squares slopes (per second) of used bytes and used inodes over
    /// the samples no older than `window` seconds; nil with fewer than three
    /// samples or no time between them.
    func slopes(window: Double) -> (bytes: Double, inodes: Double)? {
        let all = ordered
        guard let last = all.last else { return nil }
        let recent = all.filter { last.time - $0.time <= window }
        guard recent.count >= 3 else { return nil }
        let n = Double(recent.count)
        let meanT = recent.reduce(0) { $0 + $1.time } / n
        let meanB = recent.reduce(0) { $0 + $1.usedBytes } / n
        let meanI = recent.reduce(0) { $0 + $1.usedInodes } / n
        var stt = 0.0
        var stb = 0.0
        var sti = 0.0
        for p in recent {
            let dt = p.time - meanT
            stt += dt * dt
            stb += dt * (p.usedBytes - meanB)
            sti += dt * (p.usedInodes - meanI)
        }
        guard stt > 0 else { return nil }
        return (stb / stt, sti / stt)
    }

    /// Seconds until the filesystem is full at the recent growth rate (of
    /// bytes or inodes, whichever runs out first); nil when neither grows.
    func secondsToFull(availableBytes: Int64, availableInodes: Int64?, window: Double) -> Double? {
        guard let s = slopes(window: window) else { return nil }
        var best: Double?
        if s.bytes > 0 { best = Double(max(0, availableBytes)) / s.bytes }
        if let inodes = availableInodes, s.inodes > 0 {
            let t = Double(max(0, inodes)) / s.inodes
            best = min(best ?? t, t)
        }
        return best
    }
}

/// Usage levels. Ordered: normal < warn < critical < emergency.
public enum DiskLevel: String, Sendable, Codable, CaseIterable, Comparable {
    case normal, warn, critical, emergency

    var rank: Int {
        switch self {
        case .normal: 0
        case .warn: 1
        case .critical: 2
        case .emergency: 3
        }
    }

    public static func < (a: DiskLevel, b: DiskLevel) -> Bool { a.rank < b.rank }

    var below: DiskLevel {
        switch self {
        case .normal, .warn: .normal
        case .critical: .warn
        case .emergency: .critical
        }
    }
}

/// The thresholds with hysteresis: a level is entered when usage reaches its
/// threshold and left only when usage falls `hysteresis` points below it, so
/// a usage hovering at a threshold is one crossing, not a flapping series.
struct LevelPolicy: Sendable, Equatable {
    var warn: Double
    var critical: Double
    var emergency: Double
    var hysteresis: Double

    init(warn: Double, critical: Double, emergency: Double, hysteresis: Double) {
        self.warn = warn
        self.critical = critical
        self.emergency = emergency
        self.hysteresis = max(0, hysteresis)
    }

    init(_ c: DiskConfig) {
        self.init(warn: c.warn, critical: c.critical, emergency: c.emergency, hysteresis: c.hysteresis)
    }

    func threshold(_ level: DiskLevel) -> Double {
        switch level {
        case .normal: 0
        case .warn: warn
        case .critical: critical
        case .emergency: emergency
        }
    }

    /// The level after observing `percent` while at `current`.
    func next(from current: DiskLevel, percent: Double) -> DiskLevel {
        var reached = DiskLevel.normal
        for level in [DiskLevel.warn, .critical, .emergency] where percent >= threshold(level) { reached = level }
        if reached > current { return reached }
        var level = current
        while level > .normal, percent < threshold(level) - hysteresis { level = level.below }
        return level
    }
}
