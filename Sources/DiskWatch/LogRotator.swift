import Foundation
import Logging
import Platform
import Synchronization

/// logrotate-grade rotation of the configured logs.
///
/// Semantics follow logrotate 3.21 (checked against the real binary in the
/// tests): `rotate N` keeps N archives (`name.1` newest; `rotate 0` keeps
/// none); `size` rotates at or above the size regardless of time and takes
/// precedence over a frequency; with neither, logrotate's default applies
/// (size 1 MiB); `hourly/daily/weekly/monthly` compare the calendar with the
/// last rotation (a log seen for the first time is not rotated, its time is
/// recorded); `minsize` holds back a time-based rotation below the size;
/// `maxsize` rotates above the size whatever the schedule; `maxage` deletes
/// archives whose mtime is older (only when the log rotates, like logrotate;
/// guardian compares exact durations where logrotate counts whole days);
/// `notifempty` never rotates an empty log; `missingok` silences a pattern
/// that matches nothing; `dateext` names archives `name-YYYYMMDD`
/// (`-YYYYMMDDHH` when hourly) and refuses a second rotation on the same day,
/// like logrotate (under disk pressure it adds the time, `-YYYYMMDDHHMMSS`);
/// `compress` gzips archives, `delaycompress` leaves the newest one plain
/// (with `dateext`, only dated archives are compressed; old numbered ones are
/// left as they are, and archives of both namings are ordered by age); old
/// archives are deleted only once postrotate succeeded (a failing one keeps
/// them and stops the rule before compression); a file in the way of a
/// `.gz` is moved aside as `NAME-YYYYMMDDHH.backup`; a log with other hard
/// links is skipped unless `allowhardlink`; a log in a directory writable by
/// all or by a non-root group is refused (logrotate's check without `su`);
/// copies keep holes and ACLs. Archive names follow the rule's `start`,
/// `extension` and `dateformat` (+ `dateyesterday`; dated archives are
/// ordered by the date they stand for), in `olddir` when set (created with
/// `createolddir`; on another filesystem only with `copy`/`copytruncate`);
/// `rotate -1` keeps every archive; `minage` holds back a time-based
/// rotation of a recently written log; `copy` copies and leaves the log as
/// it was (see `ArchiveNaming`).
///
/// Scripts (`firstaction`, `prerotate`, `postrotate`, `lastaction`) run in
/// logrotate's order with its failure semantics (see `rotateRule`), once
/// per rule (`sharedscripts`, guardian's default) or per log; a YAML list
/// is an argv without a shell, a string shell text with logrotate's
/// arguments. `compresscmd` replaces gzip (`CompressProgram`); `su` runs a
/// rule's file work with the user's filesystem credentials on this thread
/// (`ThreadCredentials`).
///
/// Differences, on purpose: with `sharedscripts`, postrotate runs even when
/// one log of the rule failed to rotate (the others' writers must reopen;
/// logrotate skips it); a pattern never rotates a file that is an archive of another match (no
/// `app.log.1.1`); an archive is compressed only once no process holds it
/// open (else it is postponed and retried), so the writer's last lines reach
/// the `.gz`; symbolic links are never rotated, followed or compressed.
///
/// No line is lost: with `create`, the log is renamed (the writer keeps
/// appending to the same inode, now the archive) and a new one created; the
/// postrotate command then tells the writer to reopen (e.g.
/// `["systemctl", "kill", "-s", "HUP", "app.service"]`), and the archive is
/// compressed only after the writer let go of it. With `copytruncate` the
/// log is copied, fsynced, then the few bytes appended meanwhile are copied
/// and the file truncated at once: lines written between that last read and
/// the truncate (a window of two system calls, microseconds) are lost, and
/// the writer must open the log with O_APPEND. Prefer `create` + postrotate.
/// With `compress` (and no `delaycompress`, or under disk pressure) the
/// copy is streamed through gzip straight into the `.gz`: a rotation never
/// needs free space for an uncompressed copy of the log (see `LogTruncation`).
///
/// Not thread-safe: one pass at a time (the disk thread, or the CLI).
final class LogRotator {
    struct Options {
        var dryRun = false
        /// Where the rotation state lives; nil keeps it in memory only.
        var statePath: String?
        /// When open files cannot be inspected, an archive counts as closed
        /// once it has not changed for this long.
        var quietPeriod: Duration = .seconds(5)
        var now: @Sendable () -> Date = { Date() }
        var stop = StopSignal()
    }

    let rules: [LogRotationConfig]
    let protected: ProtectedFiles
    let options: Options

    private(set) var events: [DiskEvent] = []
    private(set) var actions: [RotationAction] = []
    private var state = RotationState()
    private var stateLoaded = false
    private var stateDirty = false
    private var stateProblemReported = false
    private var saveProblemReported = false
    private var noMatchReported: Set<String> = []
    private var refusedReported: Set<String> = []
    /// Logs with archives waiting to be compressed (their writer still had them open).
    private(set) var pendingCompress: Set<String> = []
    /// Newest rotation per device (`st_dev` of the log).
    private(set) var lastRotation: [UInt64: Date] = [:]
    /// Files open in any process, per device: one /proc scan serves every
    /// archive compressed until the next rotation (which may hand a file to a
    /// writer) or the next pass.
    private var openFiles: [UInt64: (ids: Set<FileID>, complete: Bool)] = [:]

    init(rules: [LogRotationConfig], protected: ProtectedFiles, options: Options = Options()) {
        self.rules = rules
        self.protected = protected
        self.options = options
    }

    func takeEvents() -> [DiskEvent] {
        defer { events.removeAll() }
        return events
    }

    func takeActions() -> [RotationAction] {
        defer { actions.removeAll() }
        return actions
    }

    private var dryRun: Bool { options.dryRun }

    // MARK: - Passes

    /// Rotates every log whose criteria say so (or every log with `force`),
    /// then retries postponed compressions.
    func runScheduled(force: Bool = false) {
        beginPass()
        defer { endPass() }
        var seen: Set<String> = []
        for (index, rule) in rules.enumerated() {
            if options.stop.isStopped { return }
            let logs = expand(index, seen: &seen)
            var due: [(log: LogFile, reason: String)] = []
            for log in logs {
                if let reason = decide(rule: rule, log: log, force: force) { due.append((log, reason)) }
            }
            rotateRule(rule, due: due, trigger: force ? .force : .schedule)
        }
        retryPendingLocked()
    }

    /// Disk pressure: rotates, now, every log on `device` of at least
    /// `minBytes` (and not empty). Returns how many were rotated.
    @discardableResult
    func rotateForPressure(device: UInt64, minBytes: Int64) -> Int {
        beginPass()
        defer { endPass() }
        var seen: Set<String> = []
        var count = 0
        for (index, rule) in rules.enumerated() {
            if options.stop.isStopped { break }
            let due = expand(index, seen: &seen, reportMissing: false)
                .filter { UInt64($0.stat.st_dev) == device && Int64($0.stat.st_size) >= max(1, minBytes) }
                .map { (log: $0, reason: "disk pressure") }
            count += rotateRule(rule, due: due, trigger: .pressure)
        }
        return count
    }

    /// Disk pressure: compresses every uncompressed archive of the logs on
    /// `device` (delaycompress notwithstanding) that no writer holds open.
    /// Returns the bytes freed.
    @discardableResult
    func compressForPressure(device: UInt64) -> Int64 {
        beginPass()
        defer { endPass() }
        var seen: Set<String> = []
        var freed: Int64 = 0
        for (index, rule) in rules.enumerated() {
            for log in expand(index, seen: &seen, reportMissing: false) where UInt64(log.stat.st_dev) == device {
                if options.stop.isStopped { return freed }
                freed += asRuleUser(rule, path: log.path) {
                    compressArchives(of: log, rule: rule, keepNewestPlain: false, ofRuleOnly: false)
                } ?? 0
            }
        }
        return freed
    }

    /// Deletes archives beyond `rotate N` or older than `maxage` of the logs
    /// on `device` (normally already gone at rotation; left over after a
    /// configuration change or a failed pass). Returns the bytes freed.
    @discardableResult
    func deleteBeyondPolicy(device: UInt64) -> Int64 {
        beginPass()
        defer { endPass() }
        var seen: Set<String> = []
        var freed: Int64 = 0
        let now = options.now()
        for (index, rule) in rules.enumerated() {
            for log in expand(index, seen: &seen, reportMissing: false) where UInt64(log.stat.st_dev) == device {
                let archives = Archive.list(log.naming, in: log.archiveDir)
                for a in archives where isBeyondPolicy(a, among: archives, rule: rule, now: now) {
                    freed += delete(a.name, in: log.archiveDir, reason: "beyond policy", expected: a.stat)
                }
            }
        }
        return freed
    }

    /// The archives the emergency step may delete, oldest first: every
    /// archive of the logs on `device` except the newest of each log.
    func emergencyArchives(device: UInt64) -> [(dir: SafeDirectory, name: String, stat: stat)] {
        beginPass()
        defer { endPass() }
        var seen: Set<String> = []
        var out: [(SafeDirectory, String, stat)] = []
        for (index, _) in rules.enumerated() {
            for log in expand(index, seen: &seen, reportMissing: false) where UInt64(log.stat.st_dev) == device {
                let archives = Archive.list(log.naming, in: log.archiveDir).sorted(by: Archive.newestFirst)
                for a in archives.dropFirst() { out.append((log.archiveDir, a.name, a.stat)) }
            }
        }
        return out.sorted { $0.2.modificationDate < $1.2.modificationDate }
    }

    /// Deletes one archive found by `emergencyArchives`.
    func deleteArchive(_ name: String, in dir: SafeDirectory, expected: stat, reason: String) -> Int64 {
        delete(name, in: dir, reason: reason, expected: expected)
    }

    /// Compresses the archives whose compression was postponed because a
    /// writer still held them.
    func retryPending() {
        guard !pendingCompress.isEmpty else { return }
        beginPass()
        defer { endPass() }
        retryPendingLocked()
    }

    private func retryPendingLocked() {
        guard !pendingCompress.isEmpty else { return }
        var seen: Set<String> = []
        for (index, rule) in rules.enumerated() {
            for log in expand(index, seen: &seen, reportMissing: false) where pendingCompress.contains(log.path) {
                pendingCompress.remove(log.path)
                _ = asRuleUser(rule, path: log.path) { compressArchives(of: log, rule: rule, keepNewestPlain: rule.delayCompress) }
            }
        }
    }

    // MARK: - State

    private func isOpen(_ id: FileID) -> OpenFileCheck.Answer {
        let snapshot = openFiles[id.device] ?? {
            // /proc/PID/fd is root's to read: under `su`, look as guardian.
            let taken = (try? suActive.map { su in try ThreadCredentials.with(su.original) { OpenFileCheck.snapshot(device: id.device) } })
                ?? OpenFileCheck.snapshot(device: id.device)
            openFiles[id.device] = taken
            return taken
        }()
        if snapshot.ids.contains(id) { return .open }
        return snapshot.complete ? .closed : .unknown
    }

    private func beginPass() {
        openFiles.removeAll()
        guard let path = options.statePath else { return }
        // Changes the last pass could not save stay in memory (and are saved
        // again at the end of this one) rather than being lost to a reload.
        if stateDirty, !dryRun { return }
        do {
            state = try RotationState.load(from: path)
            stateProblemReported = false
        } catch {
            if !stateLoaded { state = RotationState() }
            if !stateProblemReported {
                events.append(DiskEvent(.rotationStateFailed, level: .warning, ["path": path, "error": "\(error)"]))
                stateProblemReported = true
            }
        }
        stateLoaded = true
        stateDirty = false
    }

    private func endPass() {
        guard stateDirty, !dryRun, let path = options.statePath else { return }
        do {
            try state.save(to: path)
            stateDirty = false
            saveProblemReported = false
        } catch {
            if !saveProblemReported {
                events.append(DiskEvent(.rotationStateFailed, level: .warning, ["path": path, "error": "\(error)"]))
                saveProblemReported = true
            }
        }
    }

    /// Last rotation per device for the logs currently known to the state.
    func lastRotationsFromState() -> [UInt64: Date] {
        beginPass()
        var seen: Set<String> = []
        for (index, _) in rules.enumerated() {
            for log in expand(index, seen: &seen, reportMissing: false) {
                guard let entry = state.logs[log.path] else { continue }
                let device = UInt64(log.stat.st_dev)
                if lastRotation[device].map({ $0 < entry.date }) ?? true { lastRotation[device] = entry.date }
            }
        }
        return lastRotation
    }

    // MARK: - Finding the logs

    struct LogFile {
        var dir: SafeDirectory
        var name: String
        var path: String
        var stat: stat
        /// Where its archives are: `olddir`, or `dir`.
        var archiveDir: SafeDirectory
        var naming: ArchiveNaming
    }

    private func refuse(_ path: String, reason: String) {
        actions.append(RotationAction(kind: .refuse, path: path, detail: "(\(reason))", dryRun: dryRun))
        if refusedReported.insert(path + "\u{0}" + reason).inserted {
            events.append(DiskEvent(.diskPathRefused, level: .error, ["path": path, "reason": reason]))
        }
    }

    /// The live logs of rule `index`: glob matches that are regular files,
    /// not archives of another match, not protected, not symbolic links.
    func expand(_ index: Int, seen: inout Set<String>, reportMissing: Bool = true) -> [LogFile] {
        let rule = rules[index]
        let exts = CompressProgram(rule).recognised
        var dirs: [String: SafeDirectory] = [:]
        var oldDirs: [String: SafeDirectory] = [:]
        var out: [LogFile] = []
        for pattern in rule.paths {
            if pattern.split(separator: "/").contains("..") {
                refuse(pattern, reason: "a log pattern must not contain .. components")
                continue
            }
            let matches: [String]
            do {
                matches = try Self.glob(pattern)
            } catch {
                events.append(DiskEvent(.logRotationFailed, level: .error, ["pattern": pattern, "error": "\(error)"]))
                continue
            }
            if matches.isEmpty {
                if reportMissing, !rule.missingOK {
                    actions.append(RotationAction(kind: .skip, path: pattern, detail: "(matches no file; add missingok if that is expected)", dryRun: dryRun))
                    if noMatchReported.insert(pattern).inserted {
                        events.append(DiskEvent(.logGlobNoMatch, level: .warning, ["pattern": pattern]))
                    }
                }
                continue
            }
            noMatchReported.remove(pattern)
            let names = Set(matches)
            for path in matches {
                let dirPath = (path as NSString).deletingLastPathComponent
                let name = (path as NSString).lastPathComponent
                if exts.contains(where: { name.hasSuffix($0) }) || name.hasSuffix(Compressor.tempMarker) { continue }
                // An archive of another match (app.log.1 next to app.log) is not a log.
                if names.contains(where: { other in
                    other != path && (other as NSString).deletingLastPathComponent == dirPath
                        && ArchiveNaming(log: (other as NSString).lastPathComponent, rule: rule).parse(name) != nil
                }) { continue }
                guard !seen.contains(path) else { continue }
                if let link = Self.linkedComponent(of: dirPath, pattern: pattern) {
                    refuse(path, reason: "reached through the symbolic link \(link) (matched by a wildcard); rotation never follows one")
                    continue
                }
                let dir: SafeDirectory
                if let d = dirs[dirPath] {
                    dir = d
                } else {
                    do {
                        dir = try SafeDirectory(dirPath.isEmpty ? "/" : dirPath)
                    } catch {
                        events.append(DiskEvent(.logRotationFailed, level: .error, ["log": path, "error": "\(error)"]))
                        continue
                    }
                    dirs[dirPath] = dir
                }
                guard let st = dir.lstat(name) else { continue }
                if st.isSymlink {
                    refuse(path, reason: "a symbolic link; rotating it could reach outside the configured paths")
                    continue
                }
                // A wildcard matching a directory (an olddir beside the logs, say) is no log; logrotate skips it too.
                if st.isDirectory { continue }
                guard st.isRegular else {
                    refuse(path, reason: "not a regular file")
                    continue
                }
                if protected.contains(path: path, stat: st) {
                    refuse(path, reason: "a database file; guardian never touches it")
                    continue
                }
                if rule.suUser == nil, let insecure = Self.insecureDirectory(dir) {
                    refuse(path, reason: "its directory \(dir.path) is \(insecure); like logrotate without `su`, guardian does not rotate there as root (set `su: USER GROUP` to rotate as the directory's user, or `su: root root` to accept that)")
                    continue
                }
                if st.st_nlink > 1, !rule.allowHardLink {
                    actions.append(RotationAction(kind: .skip, path: path, detail: "(it has \(st.st_nlink) hard links; set allowhardlink to rotate it)", dryRun: dryRun))
                    if refusedReported.insert(path + "\u{0}hardlinks").inserted {
                        events.append(DiskEvent(.logRotationSkipped, level: .warning, ["log": path, "links": "\(st.st_nlink)"]))
                    }
                    continue
                }
                guard let archiveDir = archiveDirectory(rule: rule, logPath: path, dir: dir, cache: &oldDirs) else { continue }
                seen.insert(path)
                out.append(LogFile(dir: dir, name: name, path: path, stat: st, archiveDir: archiveDir, naming: ArchiveNaming(log: name, rule: rule)))
            }
        }
        return out
    }

    /// The directory of a log's archives: its own, or `olddir` (absolute, or
    /// relative to the log's directory), created with `createolddir` when
    /// missing, like logrotate 3.21: without it a missing olddir is an
    /// error, and so is one on another filesystem unless the log is copied
    /// (`copy`, `copytruncate`). nil (reported): the log is not rotated.
    private func archiveDirectory(rule: LogRotationConfig, logPath: String, dir: SafeDirectory, cache: inout [String: SafeDirectory]) -> SafeDirectory? {
        guard let oldDir = rule.oldDir else { return dir }
        let path = oldDir.hasPrefix("/") ? oldDir : dir.child(oldDir)
        func problem(_ message: String) -> SafeDirectory? {
            actions.append(RotationAction(kind: .fail, path: logPath, detail: "(\(message); nothing was changed)", dryRun: dryRun))
            if refusedReported.insert(logPath + "\u{0}olddir\u{0}" + message).inserted {
                events.append(DiskEvent(.logRotationFailed, level: .error, ["log": logPath, "olddir": path, "error": message]))
            }
            return nil
        }
        let archiveDir: SafeDirectory
        if let cached = cache[path] {
            archiveDir = cached
        } else {
            var st = stat()
            if fstatat(AT_FDCWD, path, &st, 0) != 0 {  // following links, like logrotate
                let code = errno
                guard code == ENOENT, let creation = rule.createOldDir else {
                    return problem("olddir \(path): \(String(cString: strerror(code)))\(code == ENOENT ? " (set createolddir to create it)" : "")")
                }
                actions.append(RotationAction(
                    kind: .create, path: path,
                    detail: String(format: "(directory, mode %04o)", creation.mode.map { Int($0) } ?? 0o755), dryRun: dryRun))
                if dryRun {
                    actions.append(RotationAction(kind: .skip, path: logPath, detail: "(its olddir is created first)", dryRun: true))
                    return nil
                }
                if let error = Self.makeDirectories(path, creation) { return problem("createolddir \(path): \(error)") }
            }
            do { archiveDir = try SafeDirectory(path) } catch { return problem("olddir: \(error)") }
            cache[path] = archiveDir
        }
        var logDir = stat()
        var old = stat()
        guard fstat(dir.fd, &logDir) == 0, fstat(archiveDir.fd, &old) == 0, old.isDirectory else {
            return problem("olddir \(path) is not a directory")
        }
        if logDir.st_dev != old.st_dev, !rule.copy, !rule.copyTruncate {
            return problem("olddir \(path) is on another filesystem than the log; logrotate allows that only with copy or copytruncate")
        }
        return archiveDir
    }

    /// logrotate's mkpath for `createolddir`: every missing directory of
    /// `path` is made with the given mode, owner and group (guardian's
    /// default mode is 0755; logrotate's, without one, is 07777).
    static func makeDirectories(_ path: String, _ creation: LogRotationConfig.FileCreation) -> String? {
        let mode = mode_t(creation.mode ?? 0o755)
        var uid = uid_t.max
        var gid = gid_t.max
        if let owner = creation.owner {
            guard let id = Accounts.uid(owner) else { return "no such user \(owner)" }
            uid = id
        }
        if let group = creation.group {
            guard let id = Accounts.gid(group) else { return "no such group \(group)" }
            gid = id
        }
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) == 0 {
                let fd = open(current, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { return "\(SystemError("open", path: current))" }
                defer { close(fd) }
                if fchown(fd, uid, gid) != 0 { return "\(SystemError("chown", path: current))" }
                if fchmod(fd, mode) != 0 { return "\(SystemError("chmod", path: current))" }
            } else if errno == EEXIST {
                var st = stat()
                guard fstatat(AT_FDCWD, current, &st, 0) == 0, st.isDirectory else { return "\(current) exists and is not a directory" }
            } else {
                return "\(SystemError("mkdir", path: current))"
            }
        }
        return nil
    }

    /// Why rotating in `dir` as root is unsafe (logrotate 3.21's check: a
    /// directory writable by all, or by a group other than root, lets its
    /// users swap the files root renames and creates), or nil.
    static func insecureDirectory(_ dir: SafeDirectory) -> String? {
        guard geteuid() == 0 else { return nil }
        var st = stat()
        guard fstat(dir.fd, &st) == 0 else { return nil }
        if st.st_mode & S_IWOTH != 0 { return "world-writable" }
        if st.st_mode & S_IWGRP != 0, st.st_gid != 0 { return "writable by group \(st.st_gid), which is not root" }
        return nil
    }

    /// The first directory of a match, below the pattern's fixed part (the
    /// components the configuration names without wildcards), that is a
    /// symbolic link (or is gone); nil when there is none. glob(3) follows
    /// links where a wildcard matches a directory: `/srv/*/logs/*.log`
    /// must not reach `/srv/link -> /etc`.
    static func linkedComponent(of dirPath: String, pattern: String) -> String? {
        let fixedCount = DiskConfig.fixedDirectory(of: pattern).split(separator: "/").count
        let parts = dirPath.split(separator: "/")
        guard parts.count > fixedCount else { return nil }
        var current = "/" + parts[0..<fixedCount].joined(separator: "/")
        for part in parts[fixedCount...] {
            current = current.hasSuffix("/") ? current + part : current + "/" + part
            var st = stat()
            if Glibc.lstat(current, &st) != 0 || st.isSymlink { return current }
        }
        return nil
    }

    static func glob(_ pattern: String) throws -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        let rc = Glibc.glob(pattern, 0, nil, &g)
        if rc == GLOB_NOMATCH { return [] }
        guard rc == 0 else { throw SystemError("glob", path: pattern, code: rc == GLOB_ABORTED ? EACCES : EIO) }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            if let p = g.gl_pathv[i] { out.append(String(cString: p)) }
        }
        return out
    }

    // MARK: - Deciding

    /// logrotate's findNeedRotating: the reason to rotate, or nil.
    func decide(rule: LogRotationConfig, log: LogFile, force: Bool) -> String? {
        let size = Int64(log.stat.st_size)
        let now = options.now()
        let known = state.logs[log.path]
        if known == nil {
            // First sight: remember now, so that a daily log waits a day.
            state.logs[log.path] = RotationState.Entry(now)
            stateDirty = true
        }
        var reason: String?
        if force {
            reason = "forced"
        } else if let maxSize = rule.maxSize, size > maxSize {
            reason = "maxsize"
        } else if rule.size != nil || rule.frequency == nil {
            let threshold = rule.size ?? 1024 * 1024
            reason = size >= threshold ? "size" : nil
        } else if let frequency = rule.frequency, let last = known?.date {
            if last.timeIntervalSince(now) > 25 * 3600 {
                reason = "last rotation is in the future"
            } else if Self.isDue(frequency, last: last, now: now) {
                reason = frequency.rawValue
                // logrotate's minage: only on this path (not forced, not
                // maxsize, not size): a log changed within minage waits.
                if let minAge = rule.minAge, minAge.seconds >= now.timeIntervalSince(log.stat.modificationDate) { reason = nil }
            }
            if reason != nil, let minSize = rule.minSize, size < minSize { reason = nil }
        }
        if reason != nil, rule.notIfEmpty, size == 0 { reason = nil }
        return reason
    }

    // MARK: - Rotating

    struct Rotated {
        var log: LogFile
        /// The archive's name in the log's directory.
        var archive: String
        /// The archive's name before compression (logrotate's finalName, a
        /// non-shared postrotate's `$2`).
        var finalName: String
        /// Old archives to delete once postrotate succeeded.
        var dispose: [Disposal] = []
    }

    struct Disposal {
        var name: String
        var stat: stat
        var reason: String
    }

    private func fail(_ path: String, _ message: String, _ extra: [String: String] = [:]) {
        actions.append(RotationAction(kind: .fail, path: path, detail: "(\(message))", dryRun: dryRun))
        var meta = extra
        meta["log"] = path
        meta["error"] = message
        events.append(DiskEvent(.logRotationFailed, level: .error, meta))
    }

    private func exists(_ name: String, in dir: SafeDirectory) -> Bool { dir.lstat(name) != nil }

    /// Rotates one log: prune, shift, move (or copy and truncate), create.
    func rotate(_ log: LogFile, rule: LogRotationConfig, trigger: RotationTrigger, reason: String) -> Rotated? {
        let dir = log.archiveDir
        let naming = log.naming
        for d in log.dir === dir ? [dir] : [log.dir, dir] {
            if let problem = d.writeProblem() {
                fail(log.path, "its directory cannot be written: \(problem); nothing was changed")
                return nil
            }
        }
        let now = options.now()
        let program = CompressProgram(rule)
        let exts = program.recognised
        var archives = Archive.list(naming, in: dir)

        // Archives to delete once postrotate succeeded (logrotate deletes the
        // oldest only after its scripts ran; a failing script keeps them).
        var dispose: [Disposal] = []
        if let maxAge = rule.maxAge {
            for a in archives where now.timeIntervalSince(a.stat.modificationDate) > maxAge.seconds {
                dispose.append(Disposal(name: a.name, stat: a.stat, reason: "maxage"))
            }
            archives.removeAll { now.timeIntervalSince($0.stat.modificationDate) > maxAge.seconds }
        }

        let finalName: String
        if rule.dateExt {
            var name = naming.dated(naming.format.stamp(now, yesterday: rule.dateYesterday))
            if exists(name, in: dir) || exts.contains(where: { exists(name + $0, in: dir) }) {
                guard trigger == .pressure, !naming.format.isCustom else {
                    fail(log.path, "destination \(dir.child(name)) already exists; skipping rotation (dateext makes one archive name per \(rule.dateFormat == nil ? (rule.frequency == .hourly ? "hour" : "day") : "date format value"))")
                    return nil
                }
                name = naming.dated(Self.dateStamp(now, format: "-%Y%m%d%H%M%S"))
                if exists(name, in: dir) || exts.contains(where: { exists(name + $0, in: dir) }) {
                    fail(log.path, "destination \(dir.child(name)) already exists; skipping rotation")
                    return nil
                }
            }
            // Keep the newest rotate-1 archives; the new one makes rotate.
            let dated = archives.filter { if case .dated = $0.kind { return true } else { return false } }
                .sorted(by: Archive.newestFirst)
            // rotate -1: every archive is kept (maxage aside).
            for a in rule.rotate < 0 ? [] : dated.dropFirst(max(rule.rotate - 1, 0)) {
                dispose.append(Disposal(name: a.name, stat: a.stat, reason: "rotate \(rule.rotate)"))
            }
            finalName = name
        } else {
            // Archive numbers run from `start` (logrotate's default 1).
            // rotate -1 keeps every archive: all are shifted, none disposed
            // (logrotate 3.21 shifts one too few with start 0 and overwrites
            // the oldest; guardian keeps it).
            let first = rule.start
            let numbers = Archive.list(naming, in: dir).compactMap { a -> Int? in
                if case .numbered(let i, _) = a.kind, i >= first { return i }
                return nil
            }
            let keep = rule.rotate < 0 ? (numbers.max().map { $0 - first + 1 } ?? 0) : max(rule.rotate, 1)
            let last = first + keep - 1
            // Beyond `keep` already (left by a failed postrotate or a smaller
            // `rotate`): logrotate's shift overwrites them.
            for a in Archive.list(naming, in: dir) where rule.rotate >= 0 {
                if case .numbered(let i, _) = a.kind, i > last {
                    dispose.removeAll { $0.name == a.name }
                    _ = delete(a.name, in: dir, reason: "rotate \(rule.rotate)", expected: a.stat)
                }
            }
            // Shift `last` too: it becomes last+1, deleted after postrotate
            // (compressed with any recognised extension: `compresscmd` may have changed).
            for i in stride(from: last, through: first, by: -1) {
                for suffix in [""] + exts {
                    let from = naming.numbered(i) + suffix
                    guard let st = dir.lstat(from), st.isRegular else { continue }
                    let to = naming.numbered(i + 1) + suffix
                    if !dryRun {
                        do { try dir.rename(from, to) } catch {
                            fail(log.path, "\(error)")
                            return nil
                        }
                    }
                    if i == last, rule.rotate >= 0 {
                        dispose.removeAll { $0.name == from }
                        dispose.append(Disposal(name: dryRun ? from : to, stat: st, reason: "rotate \(rule.rotate)"))
                    } else if let d = dispose.firstIndex(where: { $0.name == from }) {
                        // maxage: follow the archive to its new name.
                        if !dryRun { dispose[d].name = to }
                    }
                }
            }
            finalName = naming.numbered(first)
        }

        let size = Int64(log.stat.st_size)
        // copytruncate + compress streams the log into the .gz: the space it
        // needs is the .gz's, not a full copy of the log (delaycompress keeps
        // the newest archive plain, except under disk pressure).
        // `copy` (without copytruncate) copies and leaves the log untouched.
        let copies = rule.copy || rule.copyTruncate
        let truncates = rule.copyTruncate
        // Only with the built-in gzip, whose output can be extended by a
        // stored member; another `compresscmd` copies, truncates, then
        // compresses the copy (logrotate's order; it needs the copy's space).
        let streamed = copies && rule.compress && rule.rotate != 0 && (!rule.delayCompress || trigger == .pressure)
            && program.isBuiltInGzip
        var archiveName = finalName
        var extra: [String: String] = [:]
        if streamed {
            archiveName = finalName + ".gz"
            if exists(archiveName, in: dir) {
                fail(log.path, "destination \(dir.child(archiveName)) already exists; skipping rotation")
                return nil
            }
            actions.append(RotationAction(kind: truncates ? .truncate : .copy, path: log.path, detail: "-> \(dir.child(archiveName))", dryRun: dryRun))
            if !dryRun {
                do {
                    let r = try LogTruncation.copyTruncateCompressed(
                        dir: log.dir, name: log.name, into: dir, to: archiveName, truncate: truncates, stop: options.stop, runAs: suActive?.user)
                    extra = ["bytes_copied": "\(r.copied)", "bytes_after": "\(r.compressed)"]
                } catch {
                    fail(log.path, "\(truncates ? "copytruncate" : "copy"): \(error); the log was left as it was")
                    return nil
                }
            }
        } else if copies {
            actions.append(RotationAction(kind: truncates ? .truncate : .copy, path: log.path, detail: "-> \(dir.child(finalName))", dryRun: dryRun))
            if !dryRun {
                do { try Self.copyTruncate(dir: log.dir, name: log.name, into: dir, to: finalName, truncate: truncates) } catch {
                    fail(log.path, "\(truncates ? "copytruncate" : "copy"): \(error); the log was left as it was")
                    return nil
                }
            }
        } else {
            actions.append(RotationAction(kind: .rotate, path: log.path, detail: "-> \(dir.child(finalName))", dryRun: dryRun))
            if !dryRun {
                do { try log.dir.rename(log.name, into: dir, finalName) } catch {
                    fail(log.path, "\(error)")
                    return nil
                }
            }
            if rule.create { createLog(log, rule: rule, archive: finalName) }
        }
        if !dryRun {
            dir.sync()
            if log.dir !== dir { log.dir.sync() }
        }
        openFiles.removeAll()
        state.logs[log.path] = RotationState.Entry(now)
        stateDirty = true
        let device = UInt64(log.stat.st_dev)
        if lastRotation[device].map({ $0 < now }) ?? true { lastRotation[device] = now }
        if !dryRun {
            events.append(DiskEvent(.logRotated, [
                "log": log.path, "archive": dir.child(archiveName), "size_bytes": "\(size)",
                "reason": reason, "trigger": trigger.rawValue,
                "method": (truncates ? "copytruncate" : rule.copy ? "copy" : "create") + (streamed ? "+gzip" : ""),
            ].merging(extra) { $1 }))
        }
        return Rotated(log: log, archive: archiveName, finalName: finalName, dispose: dispose)
    }

    /// `archive`: the old log, now renamed, whose ACL the new one gets.
    private func createLog(_ log: LogFile, rule: LogRotationConfig, archive: String) {
        let mode = rule.createMode.map { mode_t($0) } ?? (log.stat.st_mode & 0o7777)
        var uid = log.stat.st_uid
        var gid = log.stat.st_gid
        if let owner = rule.createOwner {
            if let id = Accounts.uid(owner) { uid = id } else { fail(log.path, "create: no such user \(owner); keeping the old owner") }
        }
        if let group = rule.createGroup {
            if let id = Accounts.gid(group) { gid = id } else { fail(log.path, "create: no such group \(group); keeping the old group") }
        }
        actions.append(RotationAction(kind: .create, path: log.path, detail: String(format: "(mode %04o, uid %d, gid %d)", mode, uid, gid), dryRun: dryRun))
        guard !dryRun else { return }
        do {
            let fd = try log.dir.createExclusive(log.name, mode: mode)
            defer { close(fd) }
            // Like logrotate, only root sets the owner: under `su USER` the
            // new log is the user's.
            if ThreadCredentials.current.uid == 0, fchown(fd, uid, gid) != 0 { fail(log.path, "\(SystemError("chown", path: log.path))") }
            if fchmod(fd, mode) != 0 { fail(log.path, "\(SystemError("chmod", path: log.path))") }
            if let (old, _) = try? log.archiveDir.openRegular(archive, flags: O_RDONLY) {
                defer { close(old) }
                if let e = FileACL.copy(from: old, to: fd, path: log.path) { fail(log.path, "create: \(e)") }
            }
        } catch let e as SystemError where e.code == EEXIST {
            // The writer already created a new log itself; keep it.
        } catch {
            fail(log.path, "create: \(error)")
        }
    }

    /// lseek(2) whences from <unistd.h> that Glibc does not export without _GNU_SOURCE.
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    /// Copies the log into `to` and truncates it, leaving the smallest
    /// window: bulk copy and fsync first, then copy what was appended
    /// meanwhile and truncate immediately.
    /// With `into`, the copy goes there (`olddir`); without `truncate`
    /// (logrotate's `copy`) the log is only read.
    static func copyTruncate(dir logDir: SafeDirectory, name: String, into: SafeDirectory? = nil, to: String, truncate: Bool = true) throws {
        let dir = into ?? logDir
        let (src, st) = try logDir.openRegular(name, flags: truncate ? O_RDWR : O_RDONLY)
        defer { close(src) }
        // Never interleaved with an emergency truncate of the same log.
        _ = flock(src, LOCK_EX)
        let dst = try dir.createExclusive(to, mode: st.st_mode & 0o777)
        var ok = false
        defer {
            close(dst)
            if !ok { try? dir.unlink(to) }
        }
        if ThreadCredentials.current.uid == 0 { _ = fchown(dst, st.st_uid, st.st_gid) }
        _ = fchmod(dst, st.st_mode & 0o7777)
        FileACL.copy(from: src, to: dst, path: dir.child(to))
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var copied: off_t = 0
        // Only the data: holes of a sparse log stay holes in the archive
        // (SEEK_DATA/SEEK_HOLE), like logrotate, instead of taking disk space.
        func drain() throws {
            while true {
                var data = lseek(src, copied, Self.seekData)
                if data < 0, errno == ENXIO {
                    // No data at or after `copied`: the end, or a hole at the
                    // end (which still counts in the size), unless the writer
                    // appended meanwhile.
                    var now = stat()
                    guard fstat(src, &now) == 0, now.st_size > copied else { break }
                    if lseek(src, copied, Self.seekData) >= 0 { continue }
                    copied = now.st_size
                    break
                }
                if data < 0 { data = copied }  // SEEK_DATA unsupported: copy everything
                var hole = lseek(src, data, Self.seekHole)
                if hole < 0 { hole = off_t.max }
                guard lseek(dst, data, SEEK_SET) >= 0 else { throw SystemError("seek", path: dir.child(to)) }
                var at = data
                while at < hole {
                    let want = Int(Swift.min(off_t(buffer.count), hole - at))
                    let n = buffer.withUnsafeMutableBytes { pread(src, $0.baseAddress, want, at) }
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw SystemError("read", path: logDir.child(name))
                    }
                    if n == 0 { break }
                    try DurableFile.writeAll(fd: dst, Array(buffer[0..<n]), path: dir.child(to))
                    at += off_t(n)
                }
                copied = at
                if at < hole { break }  // end of file
            }
            guard ftruncate(dst, copied) == 0 else { throw SystemError("truncate", path: dir.child(to)) }
        }
        try drain()
        guard fsync(dst) == 0 else { throw SystemError("fsync", path: dir.child(to)) }
        // The window: what the writer appended since, then truncate at once.
        try drain()
        if truncate {
            guard ftruncate(src, 0) == 0 else { throw SystemError("truncate", path: logDir.child(name)) }
        }
        ok = true
        _ = fsync(dst)
    }

    /// One rule's due logs, in logrotate 3.21's order (rotateLogSet):
    /// firstaction (once, if any log is due; failing, nothing of the rule
    /// rotates); with `sharedscripts` prerotate once (failing, nothing
    /// rotates), every log, postrotate once, then compression and the
    /// disposal of old archives; without, prerotate, rotation, postrotate,
    /// compression per log (a failing prerotate skips that log, a failing
    /// postrotate keeps that log's old archives); lastaction last (failing:
    /// an error). Scripts run as guardian, the file work as the `su` user.
    /// Returns how many logs were rotated.
    @discardableResult
    private func rotateRule(_ rule: LogRotationConfig, due: [(log: LogFile, reason: String)], trigger: RotationTrigger) -> Int {
        guard !due.isEmpty else { return 0 }
        // As logrotate passes them: the text before `{`, its space included.
        let patterns = rule.scriptPattern ?? (rule.paths.joined(separator: " ") + " ")
        func skipAll(_ why: String) {
            for d in due { actions.append(RotationAction(kind: .skip, path: d.log.path, detail: "(\(why))", dryRun: dryRun)) }
        }
        if let su = rule.suUser {
            do { _ = try Self.suCredentials(rule) } catch {
                for d in due { fail(d.log.path, "su \(su): \(error); nothing was changed") }
                return 0
            }
        }
        if let first = rule.firstAction, !runScript(first, kind: .firstaction, arguments: [patterns], rule: rule) {
            skipAll("firstaction failed: nothing of the rule was rotated")
            return 0
        }
        var count = 0
        if rule.sharedScripts {
            if let pre = rule.preRotate, !runScript(pre, kind: .prerotate, arguments: [patterns], rule: rule) {
                skipAll("prerotate failed: nothing of the rule was rotated")
            } else {
                var rotated: [Rotated] = []
                for d in due {
                    if options.stop.isStopped { break }
                    if let r = asRuleUser(rule, path: d.log.path, { rotate(d.log, rule: rule, trigger: trigger, reason: d.reason) }) ?? nil {
                        rotated.append(r)
                    }
                }
                count = rotated.count
                finish(rule: rule, rotated: rotated, arguments: [patterns])
            }
        } else {
            for d in due {
                if options.stop.isStopped { break }
                if let pre = rule.preRotate, !runScript(pre, kind: .prerotate, arguments: [d.log.path], rule: rule) {
                    actions.append(RotationAction(kind: .skip, path: d.log.path, detail: "(prerotate failed: not rotated)", dryRun: dryRun))
                    continue
                }
                guard let r = asRuleUser(rule, path: d.log.path, { rotate(d.log, rule: rule, trigger: trigger, reason: d.reason) }) ?? nil else { continue }
                count += 1
                finish(rule: rule, rotated: [r], arguments: [d.log.path, r.log.dir.child(r.finalName)])
            }
        }
        if let last = rule.lastAction { _ = runScript(last, kind: .lastaction, arguments: [patterns], rule: rule) }
        return count
    }

    /// Runs one of a rule's scripts (as guardian, with the rule's timeout;
    /// a shell script gets `arguments` as $1, $2). Returns whether it
    /// succeeded; a failure is an error event.
    private func runScript(_ script: LogRotationConfig.RotationScript, kind: RotationAction.Kind, arguments: [String], rule: LogRotationConfig) -> Bool {
        let summary = script.summary
        var detail = ""
        if case .shell = script { detail = "(" + arguments.map(\.debugDescription).joined(separator: " ") + ")" }
        actions.append(RotationAction(kind: kind, path: summary, detail: detail, dryRun: dryRun))
        guard !dryRun else { return true }
        var problem: String?
        do {
            let outcome = try Subprocess.runBlocking(script.argv(arguments: arguments), timeout: rule.postRotateTimeout, handle: options.stop.child)
            if !outcome.succeeded { problem = outcome.summary }
        } catch {
            problem = "\(error)"
        }
        guard let problem else { return true }
        var meta = ["command": summary, "error": problem, "timeout_ms": "\(rule.postRotateTimeout.milliseconds)"]
        if kind == .postrotate {
            events.append(DiskEvent(.postRotateFailed, level: .error, meta))
        } else {
            meta["script"] = kind.rawValue
            meta["pattern"] = rule.paths.joined(separator: " ")
            events.append(DiskEvent(.rotationScriptFailed, level: .error, meta))
        }
        return false
    }

    /// The `su` user and group of a rule (nil without `su`, or for root:root,
    /// guardian's own). The group defaults to the user's primary group.
    static func suCredentials(_ rule: LogRotationConfig) throws -> ThreadCredentials? {
        guard let user = rule.suUser else { return nil }
        guard let uid = Accounts.uid(user) else { throw SystemError("no such user \(user)", path: "", code: ENOENT) }
        let gid: gid_t
        if let group = rule.suGroup {
            guard let g = Accounts.gid(group) else { throw SystemError("no such group \(group)", path: "", code: ENOENT) }
            gid = g
        } else {
            guard let g = Accounts.primaryGroup(uid) else { throw SystemError("no primary group for user \(user)", path: "", code: ENOENT) }
            gid = g
        }
        let creds = ThreadCredentials(uid: uid, gid: gid)
        return creds == ThreadCredentials(uid: 0, gid: 0) ? nil : creds
    }

    /// While a rule's file work runs as its `su` user: that user and the
    /// thread's own credentials.
    private var suActive: (user: ThreadCredentials, original: ThreadCredentials)?

    /// Runs `body` with the thread's filesystem credentials switched to the
    /// rule's `su` user (on this thread only, restored before returning;
    /// see `ThreadCredentials`), or as it is without `su`. nil (after an
    /// error naming `path`) when the switch is not possible.
    private func asRuleUser<T>(_ rule: LogRotationConfig, path: String, _ body: () -> T) -> T? {
        guard !dryRun, suActive == nil else { return body() }
        let user: ThreadCredentials?
        do { user = try Self.suCredentials(rule) } catch {
            fail(path, "su \(rule.suUser ?? ""): \(error); nothing was changed")
            return nil
        }
        guard let user, user != ThreadCredentials.current else { return body() }
        do {
            let original = ThreadCredentials.current
            return try ThreadCredentials.with(user) {
                suActive = (user, original)
                defer { suActive = nil }
                return body()
            }
        } catch {
            fail(path, "su \(rule.suUser ?? ""): \(error); nothing was changed")
            return nil
        }
    }

    /// After the rule's logs rotated: postrotate, then compress or dispose.
    /// `arguments`: the postrotate's $1 (and $2).
    private func finish(rule: LogRotationConfig, rotated: [Rotated], arguments: [String]) {
        guard !rotated.isEmpty else { return }
        if let post = rule.postRotate, !runScript(post, kind: .postrotate, arguments: arguments, rule: rule) {
            // Like logrotate: a failed postrotate stops the rule here; the
            // oldest archives are kept and nothing is compressed.
            for r in rotated {
                actions.append(RotationAction(
                    kind: .skip, path: r.log.path,
                    detail: "(postrotate failed: old archives kept, nothing compressed)", dryRun: dryRun))
            }
            return
        }
        for r in rotated {
            _ = asRuleUser(rule, path: r.log.path) { dispose(r, rule: rule) }
        }
    }

    /// Deletes a rotated log's old archives, then compresses (or, with
    /// `rotate 0`, deletes) its new one.
    private func dispose(_ r: Rotated, rule: LogRotationConfig) {
        for d in r.dispose {
            _ = delete(d.name, in: r.log.archiveDir, reason: d.reason, expected: d.stat)
        }
        if rule.rotate == 0 {
            // rotate 0: no archive is kept.
            if dryRun {
                actions.append(RotationAction(kind: .delete, path: r.log.archiveDir.child(r.archive), detail: "(rotate 0)", dryRun: true))
            } else {
                _ = delete(r.archive, in: r.log.archiveDir, reason: "rotate 0", expected: nil)
            }
            return
        }
        if rule.compress {
            if dryRun {
                // Nothing was moved, so the archives on disk are not yet the ones to compress.
                let target = rule.delayCompress ? "the previous archive of \(r.log.path)" : r.log.archiveDir.child(r.archive)
                actions.append(RotationAction(kind: .compress, path: target, detail: "", dryRun: true))
            } else {
                _ = compressArchives(of: r.log, rule: rule, keepNewestPlain: rule.delayCompress)
            }
        }
    }

    // MARK: - Compressing and deleting

    /// Compresses the plain archives of a log, except (with
    /// `keepNewestPlain`, i.e. delaycompress) the newest archive. Returns
    /// the bytes freed.
    /// With `ofRuleOnly`, only the archives the rule's naming makes (dated
    /// with `dateext`, numbered without), like logrotate, which never
    /// touches archives of the other naming.
    func compressArchives(of log: LogFile, rule: LogRotationConfig, keepNewestPlain: Bool, ofRuleOnly: Bool = true) -> Int64 {
        let program = CompressProgram(rule)
        let archives = Archive.list(log.naming, in: log.archiveDir).sorted(by: Archive.newestFirst)
            .filter { !ofRuleOnly || $0.isDated == rule.dateExt }
        var candidates = archives.filter { !$0.kind.isCompressed }
        if keepNewestPlain, let newest = archives.first, !newest.kind.isCompressed {
            candidates.removeAll { $0.name == newest.name }
        }
        var freed: Int64 = 0
        var postponed = false
        for a in candidates {
            if options.stop.isStopped { break }
            if protected.contains(path: log.archiveDir.child(a.name), stat: a.stat) {
                refuse(log.archiveDir.child(a.name), reason: "a database file; guardian never touches it")
                continue
            }
            let target = a.name + program.ext
            if exists(target, in: log.archiveDir), !moveAside(target, in: log.archiveDir, log: log) { continue }
            actions.append(RotationAction(kind: .compress, path: log.archiveDir.child(a.name), detail: "-> \(target)", dryRun: dryRun))
            guard !dryRun else { continue }
            switch Compressor.compress(
                dir: log.archiveDir, name: a.name, program: program, quietPeriod: options.quietPeriod, now: options.now(), stop: options.stop,
                runAs: suActive?.user, isOpen: isOpen)
            {
            case .compressed(let before, let after):
                freed += max(0, before - after)
                events.append(DiskEvent(.logCompressed, [
                    "path": log.archiveDir.child(target), "bytes_before": "\(before)", "bytes_after": "\(after)",
                    "bytes_freed": "\(max(0, before - after))",
                ]))
            case .postponed(let why):
                postponed = true
                actions.append(RotationAction(kind: .postpone, path: log.archiveDir.child(a.name), detail: "(\(why))", dryRun: dryRun))
                events.append(DiskEvent(.logCompressPostponed, level: .notice, ["path": log.archiveDir.child(a.name), "reason": why]))
            case .failed(let error):
                fail(log.path, "compress \(log.archiveDir.child(a.name)): \(error); the archive was kept as it was")
            }
        }
        if postponed { pendingCompress.insert(log.path) }
        return freed
    }

    /// A file in the way of a `.gz` to be made (a stray, often not gzip at
    /// all, that would otherwise block compression on every pass): renamed
    /// to `NAME-YYYYMMDDHH.backup` like logrotate does, never deleted.
    /// Returns whether the name is free now.
    private func moveAside(_ name: String, in dir: SafeDirectory, log: LogFile) -> Bool {
        let backup = name + Self.dateStamp(options.now(), format: "-%Y%m%d%H") + ".backup"
        guard let st = dir.lstat(name), st.isRegular, !exists(backup, in: dir) else {
            fail(log.path, "cannot compress into \(dir.child(name)): it already exists (and \(backup) too, or it is not a regular file)")
            return false
        }
        actions.append(RotationAction(kind: .rotate, path: dir.child(name), detail: "-> \(dir.child(backup)) (in the way of compression)", dryRun: dryRun))
        guard !dryRun else { return true }
        var magic = [UInt8](repeating: 0, count: 2)
        if let (fd, _) = try? dir.openRegular(name, flags: O_RDONLY) {
            _ = magic.withUnsafeMutableBytes { read(fd, $0.baseAddress, 2) }
            close(fd)
        }
        do { try dir.rename(name, backup) } catch {
            fail(log.path, "move \(dir.child(name)) aside: \(error)")
            return false
        }
        events.append(DiskEvent(.archiveMovedAside, level: .warning, [
            "path": dir.child(name), "backup": dir.child(backup), "gzip": magic == [0x1f, 0x8b] ? "true" : "false",
        ]))
        return true
    }

    private func isBeyondPolicy(_ a: Archive, among all: [Archive], rule: LogRotationConfig, now: Date) -> Bool {
        if let maxAge = rule.maxAge, now.timeIntervalSince(a.stat.modificationDate) > maxAge.seconds { return true }
        // rotate -1: kept, however many.
        guard rule.rotate >= 0 else { return false }
        switch a.kind {
        case .numbered(let i, _):
            return i >= rule.start + rule.rotate
        case .dated:
            let dated = all.filter { if case .dated = $0.kind { return true } else { return false } }
                .sorted(by: Archive.newestFirst)
            guard let position = dated.firstIndex(where: { $0.name == a.name }) else { return false }
            return position >= rule.rotate
        }
    }

    /// Deletes one file in `dir` (never a protected one, never anything but
    /// a regular file, and only if it is still the file that was examined).
    /// Returns the bytes given back.
    private func delete(_ name: String, in dir: SafeDirectory, reason: String, expected: stat?) -> Int64 {
        let path = dir.child(name)
        guard let st = dir.lstat(name) else { return 0 }
        guard st.isRegular else {
            refuse(path, reason: "not a regular file")
            return 0
        }
        if let expected, expected.fileID != st.fileID { return 0 }
        if protected.contains(path: path, stat: st) {
            refuse(path, reason: "a database file; guardian never touches it")
            return 0
        }
        actions.append(RotationAction(kind: .delete, path: path, detail: "(\(reason))", dryRun: dryRun))
        guard !dryRun else { return 0 }
        do {
            try dir.unlink(name)
        } catch {
            fail(path, "delete: \(error)")
            return 0
        }
        let freed = st.st_nlink <= 1 ? st.allocatedBytes : 0
        events.append(DiskEvent(.diskFileDeleted, ["path": path, "reason": reason, "bytes_freed": "\(freed)"]))
        return freed
    }
}
