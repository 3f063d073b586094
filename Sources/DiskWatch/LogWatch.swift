import Foundation
import Platform

/// What the sampling loop looks at besides statvfs, every interval: the
/// size of every configured log (a glob and an lstat each), to rotate a log
/// as soon as it passes its `size`/`maxsize` and to know which log grows
/// fastest when the last resort is needed.
enum LogWatch {
    struct Entry: Sendable {
        var path: String
        var rule: Int
        var device: UInt64
        var inode: UInt64
        var size: Int64
    }

    /// The live logs of every rule (not archives, not symbolic links, not protected files).
    static func scan(_ rules: [LogRotationConfig], protected: ProtectedFiles) -> [Entry] {
        var out: [Entry] = []
        var seen: Set<String> = []
        for (index, rule) in rules.enumerated() {
            for pattern in rule.paths where !pattern.split(separator: "/").contains("..") {
                guard let matches = try? LogRotator.glob(pattern) else { continue }
                let names = Set(matches)
                for path in matches where !seen.contains(path) {
                    let name = (path as NSString).lastPathComponent
                    let dir = (path as NSString).deletingLastPathComponent
                    if CompressProgram.knownExtensions.contains(where: { name.hasSuffix($0) }) || name.hasSuffix(Compressor.tempMarker) { continue }
                    if names.contains(where: { other in
                        other != path && (other as NSString).deletingLastPathComponent == dir
                            && ArchiveNaming(log: (other as NSString).lastPathComponent, rule: rule).parse(name) != nil
                    }) { continue }
                    var st = stat()
                    guard lstat(path, &st) == 0, st.isRegular, !protected.contains(path: path, stat: st) else { continue }
                    seen.insert(path)
                    out.append(Entry(path: path, rule: index, device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size)))
                }
            }
        }
        return out
    }

    /// The size at which a rule's log rotates whatever its schedule:
    /// above `maxsize`, at `size` (or logrotate's default 1 MiB with neither
    /// size nor frequency). nil for a purely time-based rule.
    static func sizeThreshold(_ rule: LogRotationConfig) -> Int64? {
        var limits: [Int64] = []
        if let maxSize = rule.maxSize { limits.append(maxSize + 1) }
        if let size = rule.size {
            limits.append(size)
        } else if rule.frequency == nil {
            limits.append(1024 * 1024)
        }
        return limits.min().map { max(1, $0) }
    }

    /// The devices the databases live on.
    static func databaseDevices(_ protected: ProtectedFiles) -> Set<UInt64> {
        var out: Set<UInt64> = []
        for path in protected.paths {
            var st = stat()
            if stat((path as NSString).deletingLastPathComponent, &st) == 0 { out.insert(UInt64(st.st_dev)) }
        }
        return out
    }

    /// Growth per log between two scans, in bytes per second (a rotated or
    /// truncated log counts its new size as growth).
    struct Growth {
        private var last: [String: (inode: UInt64, size: Int64, at: ContinuousClock.Instant)] = [:]
        private(set) var rates: [String: Double] = [:]

        mutating func update(_ entries: [Entry], at now: ContinuousClock.Instant) {
            var next: [String: (inode: UInt64, size: Int64, at: ContinuousClock.Instant)] = [:]
            var rates: [String: Double] = [:]
            for e in entries {
                if let prev = last[e.path] {
                    let dt = max((now - prev.at).seconds, 0.001)
                    let grown = prev.inode == e.inode && e.size >= prev.size ? e.size - prev.size : e.size
                    // Smoothed a little: one quiet interval does not hide a runaway.
                    rates[e.path] = max(Double(grown) / dt, (self.rates[e.path] ?? 0) / 2)
                }
                next[e.path] = (e.inode, e.size, now)
            }
            last = next
            self.rates = rates
        }
    }

    /// The last resort: truncates, keeping its tail, the fastest-growing
    /// log on `device` that allows it (`emergency-truncate`), the biggest
    /// when none is seen growing; only while `needed()` (usage still at the
    /// emergency level). Returns the events (one
    /// `logEmergencyTruncated` naming the log and the bytes dropped), empty
    /// when there was nothing to truncate.
    static func emergencyTruncate(
        rules: [LogRotationConfig], protected: ProtectedFiles, device: UInt64, mount: String, rates: [String: Double],
        databaseDevices: Set<UInt64>, reason: String, needed: () -> Bool
    ) -> [DiskEvent] {
        let onDatabaseFS = databaseDevices.contains(device)
        let candidates = scan(rules, protected: protected).compactMap { e -> (Entry, Int64)? in
            guard e.device == device, let keep = rules[e.rule].emergencyTruncate.keep(onDatabaseFilesystem: onDatabaseFS), e.size > keep else { return nil }
            return (e, keep)
        }.sorted { a, b in
            let (ra, rb) = (rates[a.0.path] ?? 0, rates[b.0.path] ?? 0)
            return ra != rb ? ra > rb : a.0.size > b.0.size
        }
        var events: [DiskEvent] = []
        for (entry, keep) in candidates {
            // Another truncate (the loop's or the ladder's) may have just made room.
            guard needed() else { return events }
            let dirPath = (entry.path as NSString).deletingLastPathComponent
            let name = (entry.path as NSString).lastPathComponent
            do {
                let dir = try SafeDirectory(dirPath.isEmpty ? "/" : dirPath)
                guard let st = dir.lstat(name), st.isRegular, !protected.contains(path: entry.path, stat: st) else { continue }
                guard let t = try LogTruncation.truncateKeepingTail(dir: dir, name: name, keep: keep) else { continue }
                events.append(DiskEvent(.logEmergencyTruncated, level: .critical, [
                    "mount": mount, "log": entry.path, "bytes_dropped": "\(t.dropped)", "bytes_kept": "\(t.kept)",
                    "size_before": "\(t.sizeBefore)", "bytes_freed": "\(t.dropped)",
                    "growth_bytes_per_second": String(format: "%.0f", rates[entry.path] ?? 0), "reason": reason,
                ]))
                return events
            } catch {
                events.append(DiskEvent(.logRotationFailed, level: .error, ["log": entry.path, "error": "emergency truncate: \(error)"]))
            }
        }
        return events
    }
}
