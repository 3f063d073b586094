import Foundation
import Platform

/// Something wrong or risky in the `disk:` section, found before anything
/// is touched. Errors mean that part is not used (the rest still runs);
/// warnings are logged and the setting is used.
public struct DiskConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var message: String
    public var isError: Bool

    public var description: String { "\(isError ? "error" : "warning"): disk.\(key): \(message)" }

    var event: DiskEvent {
        DiskEvent(.diskConfigProblem, level: isError ? .error : .warning, ["key": "disk.\(key)", "problem": message])
    }
}

extension DiskConfig {
    /// Checks what parsing cannot: paths against the databases
    /// (`protectedPaths`), users and groups, programs, the ballast's room.
    public func problems(protectedPaths: [String]) -> [DiskConfigProblem] {
        var out: [DiskConfigProblem] = []
        func error(_ key: String, _ message: String) { out.append(DiskConfigProblem(key: key, message: message, isError: true)) }
        func warning(_ key: String, _ message: String) { out.append(DiskConfigProblem(key: key, message: message, isError: false)) }
        let protected = ProtectedFiles(protectedPaths)

        if !(warn < critical && critical < emergency) {
            error("warn", "levels must rise: warn \(warn)% < critical \(critical)% < emergency \(emergency)%")
        }
        for (i, log) in logs.enumerated() {
            for (j, pattern) in log.paths.enumerated() {
                let key = "logs[\(i)].paths[\(j)]"
                if !pattern.hasPrefix("/") { error(key, "\"\(pattern)\" must be an absolute path or glob") }
                if pattern.split(separator: "/").contains("..") {
                    error(key, "\"\(pattern)\" must not contain .. (it would reach outside the configured directory)")
                }
                for db in protected.paths.sorted() where fnmatch(pattern, db, FNM_PATHNAME) == 0 {
                    error(key, "\"\(pattern)\" matches the database file \(db); database files are never rotated (they are skipped)")
                }
            }
            if let owner = log.createOwner, Accounts.uid(owner) == nil { error("logs[\(i)].create", "no such user \"\(owner)\"") }
            if let group = log.createGroup, Accounts.gid(group) == nil { error("logs[\(i)].create", "no such group \"\(group)\"") }
            let scripts: [(String, LogRotationConfig.RotationScript?)] = [
                ("prerotate", log.preRotate), ("postrotate", log.postRotate), ("firstaction", log.firstAction), ("lastaction", log.lastAction),
            ]
            for case (let key, .argv(let argv)?) in scripts {
                if let program = argv.first, !Self.findProgram(program) {
                    warning("logs[\(i)].\(key)", "\"\(program)\" is not an executable file (nor found in PATH); a list is run without a shell (a string is run by /bin/sh -c)")
                }
            }
            if log.compress, log.compressCommand == nil, !Compressor.gzipAvailable { error("logs[\(i)].compress", "gzip is not installed (apt install gzip)") }
            if let cmd = log.compressCommand, !Self.findProgram(cmd) {
                error("logs[\(i)].compresscmd", "\"\(cmd)\" is not an executable file (nor found in PATH)")
            }
            if log.suUser != nil {
                do { _ = try LogRotator.suCredentials(log) } catch let e { error("logs[\(i)].su", "\(e)") }
            }
            if log.delayCompress, !log.compress { warning("logs[\(i)].delaycompress", "has no effect without compress") }
            if let format = log.dateFormat {
                if let problem = LogRotationConfig.dateFormatProblem(format) { error("logs[\(i)].dateformat", "\"\(format)\" \(problem)") }
                if !log.dateExt { warning("logs[\(i)].dateformat", "has no effect without dateext") }
            }
            if let owner = log.createOldDir?.owner, Accounts.uid(owner) == nil { error("logs[\(i)].createolddir", "no such user \"\(owner)\"") }
            if let group = log.createOldDir?.group, Accounts.gid(group) == nil { error("logs[\(i)].createolddir", "no such group \"\(group)\"") }
            if log.rotate < -1 { error("logs[\(i)].rotate", "must be -1 (keep every archive) or more") }
            if log.start < 0 { error("logs[\(i)].start", "must be 0 or more") }
            if !log.copyTruncate, !log.copy, log.create, log.postRotate == nil {
                warning("logs[\(i)].postrotate", "without a postrotate command to make the writer reopen its log, it keeps writing into the archive; add one (e.g. [systemctl, kill, -s, HUP, app.service]) or use copytruncate")
            }
        }
        for (i, rule) in cleanup.enumerated() {
            let key = "cleanup[\(i)].path"
            let normal = ProtectedFiles.normalize(rule.path)
            if normal == "/" {
                error(key, "refusing to clean up below /; name the directory that holds disposable files")
            } else if protected.contains(path: normal, stat: nil) {
                error(key, "\(rule.path) is a database file")
            } else if protected.anyInside(normal) {
                warning(key, "\(rule.path) holds a database; its files (and -wal, -shm) are never deleted")
            }
        }
        if let ballast {
            let dir = (ballast.path as NSString).deletingLastPathComponent
            var st = stat()
            if ballast.size <= 0 {
                error("ballast.size", "must be more than 0 bytes")
            }
            if protected.contains(path: ballast.path, stat: nil) {
                error("ballast.path", "\(ballast.path) is a database file")
            } else if stat(dir.isEmpty ? "/" : dir, &st) != 0 {
                error("ballast.path", "the directory \(dir) does not exist")
            } else {
                var vfs = statvfs()
                if statvfs(dir.isEmpty ? "/" : dir, &vfs) == 0 {
                    let total = Int64(vfs.f_blocks) * Int64(vfs.f_frsize)
                    if ballast.size >= total {
                        error("ballast.size", "\(Units.formatBytes(ballast.size)) is larger than the whole filesystem (\(Units.formatBytes(total)))")
                    }
                }
                let devices = protectedPaths.compactMap { p -> UInt64? in
                    UsageSampler.existingAncestor(p).map { UInt64($0.stat.st_dev) }
                }
                if !devices.isEmpty, !devices.contains(UInt64(st.st_dev)) {
                    warning("ballast.path", "\(ballast.path) is not on a database's filesystem; releasing it will not give the database room")
                }
            }
        }
        return out
    }

    static func findProgram(_ program: String) -> Bool {
        if program.contains("/") { return access(program, X_OK) == 0 }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").contains { access("\($0)/\(program)", X_OK) == 0 }
    }

    /// The paths whose filesystems are watched: the configured ones, the
    /// extra ones (databases, replica directories), the ballast's directory,
    /// the fixed directory part of each log pattern and each cleanup path.
    func watchPaths(extra: [String]) -> [String] {
        var out: [String] = []
        var seen: Set<String> = []
        func add(_ p: String) {
            guard !p.isEmpty, seen.insert(p).inserted else { return }
            out.append(p)
        }
        for p in paths { add(p) }
        for p in extra { add(p) }
        if let b = ballast { add((b.path as NSString).deletingLastPathComponent) }
        for log in logs {
            for pattern in log.paths { add(Self.fixedDirectory(of: pattern)) }
        }
        for rule in cleanup { add(rule.path) }
        return out
    }

    /// `/var/log/app/*.log` → `/var/log/app`; `/srv/*/logs/x.log` → `/srv`.
    static func fixedDirectory(of pattern: String) -> String {
        var parts: [Substring] = []
        for part in pattern.split(separator: "/") {
            if part.contains(where: { "*?[".contains($0) }) { break }
            parts.append(part)
        }
        let joined = "/" + parts.joined(separator: "/")
        if parts.count == pattern.split(separator: "/").count {
            let dir = (joined as NSString).deletingLastPathComponent
            return dir.isEmpty ? "/" : dir
        }
        return joined
    }
}
