import Foundation
import Platform
import Remediate

/// What a file matching a directory entry's pattern is (see `classify`).
enum DirectoryCandidate: Equatable, Sendable {
    /// An SQLite database in WAL mode: replicated.
    case database
    /// Empty or shorter than the header: being created; looked at again on its next event.
    case notYet
    /// Not an SQLite database (its header says otherwise): skipped with a warning.
    case notSQLite
    /// An SQLite database in rollback-journal mode: skipped with a warning naming the fix.
    case rollbackJournal
    /// Cannot be read (permissions): skipped with a warning.
    case unreadable(String)

    /// Why it is skipped, for the warning and the status document.
    var reason: String? {
        switch self {
        case .database, .notYet: nil
        case .notSQLite: "not an SQLite database (its first 16 bytes are not \"SQLite format 3\\0\")"
        case .rollbackJournal:
            "an SQLite database in rollback-journal mode; guardian replicates WAL databases only: run PRAGMA journal_mode=WAL on it (once; it persists)"
        case .unreadable(let e): "cannot be read: \(e)"
        }
    }
}

/// Blocking file-system work of directory entries (call through `BlockingPool`).
enum DirectoryScan {
    /// The directories to watch and the files to look at: `dir` itself, and
    /// with `recursive` every real subdirectory (symlinks are not followed,
    /// as Litestream's walk; `guardian-quarantine` is remediation's).
    static func walk(_ spec: DirectorySpec, from start: String? = nil) -> (dirs: [String], files: [String]) {
        var dirs: [String] = []
        var files: [String] = []
        var stack = [start ?? spec.dir]
        while let dir = stack.popLast() {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            dirs.append(dir)
            for name in names.sorted() {
                let path = dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    if spec.recursive, name != "guardian-quarantine" { stack.append(path) }
                case S_IFREG, S_IFLNK:
                    if DirectoryEntries.isCandidateName(name), DirectoryPattern.matches(spec.pattern, name: name) { files.append(path) }
                default: break
                }
            }
        }
        return (dirs, files.sorted())
    }

    /// Reads the file's header (100 bytes): SQLite's magic, and bytes 18/19
    /// (2 = WAL); a file shorter than the pages its header counts is being
    /// copied in (looked at again when it is closed). The file is opened and closed outside SQLite: only call
    /// this for paths guardian has no SQLite connection to (closing a
    /// descriptor drops every POSIX lock of the process on that inode;
    /// see `DatabaseFiles`).
    static func classify(_ path: String) -> DirectoryCandidate {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            if errno == ENOENT { return .notYet }
            return .unreadable(String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return .notSQLite }
        var header = [UInt8](repeating: 0, count: 100)
        let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 100, 0) }
        guard n >= 0 else { return .unreadable(String(cString: strerror(errno))) }
        let magic = DatabaseHeader.magic
        let got = Array(header[0..<min(n, magic.count)])
        guard got == Array(magic[0..<got.count]) else { return .notSQLite }
        guard n == 100 else { return .notYet }
        // Still being copied in: shorter than the pages its header counts.
        if case .success(let h) = DatabaseHeader.parse(header), let pages = h.trustedPageCount, Int64(st.st_size) < Int64(pages) * Int64(h.pageSize) {
            return .notYet
        }
        return header[18] == 2 && header[19] == 2 ? .database : .rollbackJournal
    }
}

/// One inotify instance for all the directories of a directory entry
/// (`watch: true`): a thread blocks in read(2) and passes on what may
/// concern the entry — a file matching the pattern appeared or changed
/// (its `-wal` or `-journal` included: a database's first commit), a known
/// database went away, a subdirectory appeared or went away. Events of
/// databases already replicated (their WAL writes) are dropped on the
/// thread. The cost does not grow with the number of databases beyond one
/// watch per directory.
final class DirectoryWatcher: @unchecked Sendable {
    enum Event: Sendable, Equatable {
        case changed(String)
        case removed(String)
        case directoryAdded(String)
        case directoryRemoved(String)
        /// The entry's directory itself was removed or moved.
        case rootGone
        /// The kernel dropped events (queue overflow): rescan everything.
        case overflow
    }

    let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let spec: DirectorySpec
    private let fd: Int32
    private let lock = NSLock()
    private var directories: [Int32: String] = [:]
    private var known: Set<String> = []
    private var stopped = false

    static let mask = UInt32(
        IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)

    /// Fails when inotify cannot be had (the entry then finds databases at start-up only).
    init(spec: DirectorySpec) throws {
        self.spec = spec
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
        fd = inotify_init1(Int32(IN_CLOEXEC))
        guard fd >= 0 else { throw SystemError("inotify_init1", path: spec.dir) }
        let thread = Thread { [self] in readLoop() }
        thread.name = "guardian-dirwatch"
        thread.start()
    }

    /// Watches `dir` (idempotent). Blocking.
    func add(directory dir: String) throws {
        // Under the lock: the reading thread closes the descriptor under it once stopped.
        try lock.withLock {
            guard !stopped else { return }
            let wd = inotify_add_watch(fd, dir, Self.mask | UInt32(IN_ONLYDIR))
            guard wd >= 0 else { throw SystemError("inotify_add_watch", path: dir) }
            directories[wd] = dir
        }
    }

    /// Stops watching `dir` and the directories below it (moved away or deleted).
    func remove(directory dir: String) {
        lock.withLock {
            guard !stopped else { return }
            for (wd, path) in directories where path == dir || path.hasPrefix(dir + "/") {
                inotify_rm_watch(fd, wd)
                directories.removeValue(forKey: wd)
            }
        }
    }

    /// Databases being replicated: only their removal is reported.
    func setKnown(_ path: String, _ isKnown: Bool) {
        lock.withLock {
            if isKnown { known.insert(path) } else { known.remove(path) }
        }
    }

    func stop() {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if first { continuation.finish() }
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let headerSize = MemoryLayout<inotify_event>.size
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while !isStopped {
            // Wake up now and then to notice stop().
            let ready = poll(&p, 1, 250)
            if ready <= 0 { continue }
            let n = read(fd, &buffer, buffer.count)
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; break }
            if n == 0 { break }
            var offset = 0
            while offset + headerSize <= n {
                let (wd, mask, len) = buffer.withUnsafeBytes { raw in
                    (raw.load(fromByteOffset: offset, as: Int32.self), raw.load(fromByteOffset: offset + 4, as: UInt32.self),
                     Int(raw.load(fromByteOffset: offset + 12, as: UInt32.self)))
                }
                let nameBytes = buffer[(offset + headerSize)..<min(n, offset + headerSize + len)]
                let name = String(decoding: nameBytes.prefix(while: { $0 != 0 }), as: UTF8.self)
                offset += headerSize + len
                if let event = interpret(wd: wd, mask: mask, name: name) { continuation.yield(event) }
            }
        }
        continuation.finish()
        lock.withLock {
            stopped = true
            close(fd)
        }
    }

    private func interpret(wd: Int32, mask: UInt32, name: String) -> Event? {
        if mask & UInt32(IN_Q_OVERFLOW) != 0 { return .overflow }
        if mask & UInt32(IN_IGNORED) != 0 {
            lock.withLock { _ = directories.removeValue(forKey: wd) }
            return nil
        }
        guard let dir = lock.withLock({ directories[wd] }) else { return nil }
        if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF) != 0 {
            return dir == spec.dir ? .rootGone : nil
        }
        let path = dir + "/" + name
        if mask & UInt32(IN_ISDIR) != 0 {
            guard spec.recursive, name != "guardian-quarantine" else { return nil }
            if mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 { return .directoryAdded(path) }
            if mask & UInt32(IN_DELETE | IN_MOVED_FROM) != 0 { return .directoryRemoved(path) }
            return nil
        }
        if name.hasSuffix("-shm") { return nil }
        var base = name
        for suffix in ["-wal", "-journal"] where name.hasSuffix(suffix) { base = String(name.dropLast(suffix.count)) }
        guard DirectoryEntries.isCandidateName(base), DirectoryPattern.matches(spec.pattern, name: base) else { return nil }
        let db = dir + "/" + base
        let gone = base == name && mask & UInt32(IN_DELETE | IN_MOVED_FROM) != 0
        if gone { return .removed(db) }
        // A known database's own writes (its WAL above all) concern its replicator only.
        if lock.withLock({ known.contains(db) }) { return nil }
        return .changed(db)
    }
}
