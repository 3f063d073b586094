import Foundation
import Logging
import Platform

/// Which SQLite check a restore runs on the rebuilt copy before it is renamed
/// into place.
public enum IntegrityCheck: String, Sendable, CaseIterable {
    case none, quick, full

    var pragma: String? {
        switch self {
        case .none: nil
        case .quick: "PRAGMA quick_check"
        case .full: "PRAGMA integrity_check"
        }
    }
}

public struct RestoreOptions: Sendable, Equatable {
    /// Restore up to this TXID exactly (nil: the latest).
    public var txid: UInt64?
    /// Restore the transactions committed at or before this instant.
    public var timestamp: Date?
    /// Replace an existing, non-empty output (its -wal, -shm and -journal go too).
    public var force: Bool
    public var integrityCheck: IntegrityCheck
    /// Ask the replica for each file's own timestamp (S3: one HEAD per
    /// object) rather than its upload time. Always on for timestamp restores.
    public var exactTimestamps: Bool
    /// How many files are downloaded ahead of the one being applied (remote replicas).
    public var downloadAhead: Int

    public init(
        txid: UInt64? = nil, timestamp: Date? = nil, force: Bool = false, integrityCheck: IntegrityCheck = .full,
        exactTimestamps: Bool = false, downloadAhead: Int = 4
    ) {
        self.txid = txid
        self.timestamp = timestamp
        self.force = force
        self.integrityCheck = integrityCheck
        self.exactTimestamps = exactTimestamps
        self.downloadAhead = downloadAhead
    }

    /// `integrityCheck: true` runs the full `PRAGMA integrity_check`.
    public init(txid: UInt64?, timestamp: Date?, force: Bool, integrityCheck: Bool) {
        self.init(txid: txid, timestamp: timestamp, force: force, integrityCheck: integrityCheck ? .full : .none)
    }
}

public struct RestoreProgress: Sendable, Equatable {
    public enum Phase: String, Sendable {
        case applying, verifying
    }

    public var phase: Phase
    /// Files fully applied, of the plan's.
    public var filesDone: Int
    public var filesTotal: Int
    /// LTX bytes read, of the plan's total.
    public var bytesDone: Int64
    public var bytesTotal: Int64
}

public struct RestoreResult: Sendable, Equatable {
    /// The TXID the restored database is at.
    public var txid: UInt64
    /// When that transaction was recorded (the newest applied file's header timestamp).
    public var timestamp: Date?
    /// The files applied, oldest first.
    public var plan: [LTXFileInfo]
    public var files: Int { plan.count }
    /// Pages written (a page changed by several files counts each time).
    public var pages: Int
    /// Size of the restored database.
    public var bytes: Int64
    public var pageSize: UInt32
    public var integrityCheck: IntegrityCheck
    public var planSeconds: Double
    /// Downloading overlaps applying; this is the time spent waiting for downloads.
    public var downloadSeconds: Double
    public var applySeconds: Double
    public var verifySeconds: Double
    public var totalSeconds: Double
}

/// Rebuilds a database from a replica (ltx.md §4): plan first; refuse an
/// existing output unless forced, before anything else; stream every planned
/// file's pages into `OUT.tmp` (checksums verified as each file is read),
/// check that every page is present, fsync, run the integrity check, rename
/// into place and fsync the directory. Files of remote replicas are
/// downloaded a few ahead into a temp directory beside the output and
/// deleted once applied; file replicas are read in place. Memory stays
/// bounded (four 4 MiB write buffers, a 256 KiB read buffer and a bit per
/// page). On any failure the temp files are removed and an existing output
/// is untouched.
public struct Restorer: Sendable {
    public let logger: Logger?

    public init(logger: Logger? = nil) {
        self.logger = logger
    }

    /// Every LTX file of the replica, all levels (`guardian ltx`).
    public func listRestorePoints(client: any ReplicaClient, exactTimestamps: Bool = false) async throws -> [LTXFileInfo] {
        var files: [LTXFileInfo] = []
        for level in LTXNaming.allLevels {
            files += try await client.listFiles(level: level, exactTimestamps: exactTimestamps)
        }
        return files.sorted()
    }

    /// Plans a restore without doing it (`--dry-run`, drills, remediation).
    public func plan(client: any ReplicaClient, options: RestoreOptions) async throws -> RestorePlan {
        let files = try await listRestorePoints(client: client, exactTimestamps: options.exactTimestamps || options.timestamp != nil)
        return try RestorePlanner.plan(files: files, txid: options.txid, timestamp: options.timestamp)
    }

    public func restore(
        client: any ReplicaClient, to output: String, options: RestoreOptions,
        progress: (@Sendable (RestoreProgress) -> Void)? = nil
    ) async throws -> RestoreResult {
        let clock = ContinuousClock()
        let started = clock.now
        let destination = client.target.destination
        try await BlockingPool.shared.run { try Self.checkOutput(output, force: options.force) }
        logger?.event(.restoreStarted, ["replica": "\(destination)", "output": "\(output)"])
        do {
            let plan = try await self.plan(client: client, options: options)
            let planned = clock.now
            var result = try await apply(plan, client: client, output: output, options: options, progress: progress)
            result.planSeconds = (planned - started).seconds
            result.totalSeconds = (clock.now - started).seconds
            logger?.event(.restoreFinished, [
                "replica": "\(destination)", "output": "\(output)", "txid": "\(LTXNaming.hex(result.txid))",
                "files": "\(result.files)", "bytes": "\(result.bytes)", "duration_ms": "\(Int(result.totalSeconds * 1000))",
            ])
            return result
        } catch {
            logger?.event(.restoreFailed, level: .error, ["replica": "\(destination)", "output": "\(output)", "error": "\(error)"])
            throw error
        }
    }

    private func apply(
        _ plan: RestorePlan, client: any ReplicaClient, output: String, options: RestoreOptions,
        progress: (@Sendable (RestoreProgress) -> Void)?
    ) async throws -> RestoreResult {
        let clock = ContinuousClock()
        let tmp = output + ".tmp"
        let local = client as? FileReplicaClient
        let scratch = local == nil ? Self.scratchDirectory(for: output) : nil
        let files = plan.files
        let totalBytes = files.reduce(Int64(0)) { $0 + $1.size }
        // Around the page cache only when nothing reads the copy back: an
        // integrity check reading an uncached 100 MB copy took 1.3 s instead of 0.2 s.
        let direct = options.integrityCheck == .none
        let writer = try await BlockingPool.shared.run { try RestoreWriter(path: tmp, direct: direct) }
        var waited = Duration.zero
        var applying = Duration.zero
        let verifyDuration: Duration
        do {
            if let scratch { try await BlockingPool.shared.run { try DurableFile.makeDirectories(scratch) } }
            func sourcePath(_ i: Int) -> String {
                if let local { return local.path(of: files[i]) }
                return "\(scratch ?? "")/\(files[i].level)-\(files[i].name)"
            }
            let ahead = max(1, options.downloadAhead)
            try await withThrowingTaskGroup(of: Int.self) { group in
                var launched = 0
                var downloaded: Set<Int> = []
                var bytesBefore: Int64 = 0
                for i in files.indices {
                    try Task.checkCancellation()
                    if local == nil {
                        while launched < files.count, launched < i + ahead {
                            let k = launched
                            let file = files[k]
                            let path = sourcePath(k)
                            group.addTask {
                                try await client.downloadFile(file, to: path)
                                return k
                            }
                            launched += 1
                        }
                        let waitStart = clock.now
                        while !downloaded.contains(i) {
                            guard let k = try await group.next() else { break }
                            downloaded.insert(k)
                        }
                        waited += clock.now - waitStart
                    }
                    let file = files[i]
                    let path = sourcePath(i)
                    let label = local == nil ? "\(client.target.destination) \(file)" : path
                    let done = i
                    let base = bytesBefore
                    let applyStart = clock.now
                    try await BlockingPool.shared.run {
                        try writer.apply(file: file, path: path, label: label) { read in
                            progress?(RestoreProgress(
                                phase: .applying, filesDone: done, filesTotal: files.count, bytesDone: base + read, bytesTotal: totalBytes))
                        }
                        if local == nil { unlink(path) }
                    }
                    applying += clock.now - applyStart
                    bytesBefore += file.size
                    progress?(RestoreProgress(
                        phase: .applying, filesDone: i + 1, filesTotal: files.count, bytesDone: bytesBefore, bytesTotal: totalBytes))
                }
            }
            let finishStart = clock.now
            try await BlockingPool.shared.run { try writer.finish() }
            applying += clock.now - finishStart
            progress?(RestoreProgress(
                phase: .verifying, filesDone: files.count, filesTotal: files.count, bytesDone: totalBytes, bytesTotal: totalBytes))
            let verifyStart = clock.now
            try await BlockingPool.shared.run {
                try Self.verify(tmp, options.integrityCheck)
                try Self.install(tmp, as: output, force: options.force)
            }
            verifyDuration = clock.now - verifyStart
        } catch {
            await BlockingPool.shared.run {
                writer.close()
                unlink(tmp)
                if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
            }
            throw error
        }
        await BlockingPool.shared.run {
            writer.close()
            if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
        }
        return RestoreResult(
            txid: writer.txid, timestamp: writer.timestamp, plan: files, pages: writer.pagesWritten,
            bytes: Int64(writer.commit) * Int64(writer.pageSize), pageSize: writer.pageSize,
            integrityCheck: options.integrityCheck, planSeconds: 0, downloadSeconds: waited.seconds,
            applySeconds: applying.seconds, verifySeconds: verifyDuration.seconds, totalSeconds: 0)
    }

    /// `<dir>/.<name>.restore-<random>`: beside the output, so on the same disk.
    static func scratchDirectory(for output: String) -> String {
        let dir = (output as NSString).deletingLastPathComponent
        let name = (output as NSString).lastPathComponent
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return (dir.isEmpty ? "." : dir) + "/.\(name).restore-\(suffix)"
    }

    /// Refuses to replace an existing, non-empty output (or one with a WAL
    /// beside it, which SQLite would replay into the restored file) unless forced.
    static func checkOutput(_ output: String, force: Bool) throws {
        let dir = (output as NSString).deletingLastPathComponent
        var st = stat()
        guard stat(dir.isEmpty ? "." : dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw RestoreError(.invalidOptions, "the output directory \(dir) does not exist")
        }
        if stat(output, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFREG else { throw RestoreError(.invalidOptions, "\(output) exists and is not a regular file") }
            if st.st_size > 0, !force {
                throw RestoreError(.outputExists, "\(output) already exists; pass --force to replace it (its -wal, -shm and -journal files are removed too)")
            }
        }
        if !force, stat(output + "-wal", &st) == 0, st.st_size > 0 {
            throw RestoreError(.outputExists, "\(output)-wal exists and would be replayed into the restored database; remove it or pass --force")
        }
    }

    static func verify(_ path: String, _ check: IntegrityCheck) throws {
        guard let pragma = check.pragma else { return }
        // immutable=1: no locks, no -wal/-shm created beside the temp file.
        let uri = "file:\(path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? path)?immutable=1"
        let rows: [String]
        do {
            let db = try SQLiteConnection(path: uri, mode: .readOnly)
            rows = try db.query(pragma).compactMap { $0.first.map { "\($0)" } }
        } catch {
            throw RestoreError(.integrity, "the restored database cannot be checked (\(pragma)): \(error)")
        }
        guard rows == ["ok"] else {
            let shown = rows.prefix(3).joined(separator: "; ")
            throw RestoreError(.integrity, "the restored database fails \(pragma): \(shown)\(rows.count > 3 ? "; ..." : "")")
        }
    }

    /// Moves the verified copy into place. Without `force` the output must not
    /// have appeared meanwhile (link fails if it exists); with it, the old
    /// -wal/-shm/-journal go first so they can never pair with the new file.
    static func install(_ tmp: String, as output: String, force: Bool) throws {
        var st = stat()
        let exists = stat(output, &st) == 0
        if force {
            for suffix in ["-wal", "-shm", "-journal"] where unlink(output + suffix) != 0 && errno != ENOENT {
                throw SystemError("unlink", path: output + suffix)
            }
        }
        if !exists, !force {
            guard link(tmp, output) == 0 else {
                if errno == EEXIST { throw RestoreError(.outputExists, "\(output) appeared during the restore; not replacing it") }
                throw SystemError("link", path: output)
            }
            unlink(tmp)
        } else {
            if !force, st.st_size > 0 { throw RestoreError(.outputExists, "\(output) was written during the restore; not replacing it") }
            guard rename(tmp, output) == 0 else { throw SystemError("rename", path: output) }
        }
        try DurableFile.syncDirectory((output as NSString).deletingLastPathComponent)
    }
}

/// Writes pages into the temp database at (pgno-1) × pageSize and tracks
/// which pages are present. Decoding (LZ4 + CRC) runs on the calling thread;
/// runs of consecutive pages (up to 4 MiB) are handed, in order, to a
/// write-behind thread that pwrites them, so decoding (this thread) and
/// writing (that thread) overlap. With `direct` (no integrity check reads the
/// copy afterwards) large aligned runs (a snapshot's) are written around the
/// page cache (`DirectWrites`), the rest through it; one fsync at the end.
/// Used by one restore at a time, from BlockingPool.
final class RestoreWriter: @unchecked Sendable {
    static let chunkBytes = 4 << 20
    static let buffers = 4

    let path: String
    private var fd: Int32
    private(set) var pageSize: UInt32 = 0
    private(set) var commit: UInt32 = 0
    private(set) var txid: UInt64 = 0
    private(set) var timestamp: Date?
    private(set) var pagesWritten = 0
    private var first: String?
    private var previous: String?
    /// One bit per page, bit p-1 for page p.
    private var present: [UInt64] = []
    private var writer: WriteBehind?
    private var chunk: UnsafeMutableRawBufferPointer?
    private var chunkPages = 0
    private var chunkStart: UInt32 = 0
    private var chunkCount = 0

    /// `direct`: large aligned runs go around the page cache (`DirectWrites`).
    let direct: Bool

    init(path: String, direct: Bool = false) throws {
        self.path = path
        self.direct = direct
        // Beside the output (often a directory others can write to): a
        // leftover or planted entry is removed, never followed.
        unlink(path)
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path: path) }
    }

    deinit { close() }

    /// Stops the write-behind thread and closes the file (idempotent).
    func close() {
        writer?.stop()
        writer = nil
        chunk = nil
        if fd >= 0 {
            Foundation.close(fd)
            fd = -1
        }
    }

    /// Applies one LTX file; `progress` gets the bytes read from it so far.
    func apply(file: LTXFileInfo, path source: String, label: String, progress: (Int64) -> Void) throws {
        let decoder = try LTXDecoder(source: LTXFileSource(path: source), name: label)
        let h = decoder.header
        guard h.minTXID == file.minTXID, h.maxTXID == file.maxTXID else {
            throw RestoreError(
                .mismatch,
                "\(label): its header holds TXIDs \(LTXNaming.hex(h.minTXID))-\(LTXNaming.hex(h.maxTXID)), its name says \(file.name)")
        }
        if let first {
            guard h.pageSize == pageSize else {
                throw RestoreError(
                    .mismatch,
                    "\(label): page size \(h.pageSize) differs from the \(pageSize) of \(first); the file belongs to another database")
            }
            guard h.minTXID <= txid + 1 else {
                throw RestoreError(
                    .gap, "non-contiguous chain: TXIDs \(LTXNaming.hex(txid + 1))-\(LTXNaming.hex(h.minTXID - 1)) are missing between \(previous ?? first) and \(label)")
            }
        } else {
            guard h.isSnapshot else {
                throw RestoreError(.noSnapshot, "\(label) does not start at TXID 0000000000000001; a restore must start from a full image")
            }
            pageSize = h.pageSize
            chunkPages = max(1, Self.chunkBytes / Int(h.pageSize))
            writer = WriteBehind(
                fd: fd, direct: direct ? DirectWrites(reopening: fd, path: path) : nil, path: path, bufferBytes: chunkPages * Int(h.pageSize),
                buffers: Self.buffers)
            first = label
        }
        guard let writer else { return }
        let size = Int(pageSize)
        markCapacity(h.commit)
        var reported: Int64 = 0
        while true {
            if chunkCount == chunkPages { try flush() }
            let buffer = try chunk ?? writer.take()
            chunk = buffer
            guard let base = buffer.baseAddress else { return }
            let slot = UnsafeMutableRawBufferPointer(start: base + chunkCount * size, count: size)
            guard let pgno = try decoder.nextPage(into: slot) else { break }
            if chunkCount > 0, pgno != chunkStart + UInt32(chunkCount) {
                // Not adjacent: hand over the run before it and start a new run with this page.
                let landed = chunkCount
                try flush()
                let next = try writer.take()
                chunk = next
                if let target = next.baseAddress { memmove(target, base + landed * size, size) }
            }
            if chunkCount == 0 { chunkStart = pgno }
            chunkCount += 1
            let bit = Int(pgno - 1)
            present[bit >> 6] |= 1 << UInt64(bit & 63)
            pagesWritten += 1
            if decoder.bytesRead - reported >= 8 << 20 {
                reported = decoder.bytesRead
                progress(reported)
            }
        }
        try flush()
        if h.commit < commit {
            // The database shrank: pages above the new size must be written again before they count.
            for p in h.commit..<commit { present[Int(p) >> 6] &= ~(1 << UInt64(Int(p) & 63)) }
        }
        commit = h.commit
        txid = h.maxTXID
        timestamp = h.date
        previous = label
    }

    /// Waits for pending writes, zeroes the lock page if the database reaches
    /// it, checks that every page is present, truncates to the final size and fsyncs.
    func finish() throws {
        guard first != nil, let writer else { throw RestoreError(.noFiles, "nothing to restore") }
        try flush()
        try writer.drain()
        let lock = LTXHeader.lockPgno(pageSize: pageSize)
        let size = Int(pageSize)
        if commit >= lock {
            let zeros = [UInt8](repeating: 0, count: size)
            try zeros.withUnsafeBytes { try DurableFile.pwriteAll(fd: fd, $0.baseAddress.unsafelyUnwrapped, size, at: off_t(lock - 1) * off_t(size), path: path) }
            let bit = Int(lock - 1)
            present[bit >> 6] |= 1 << UInt64(bit & 63)
        }
        if commit > 0 {
            for p in 0..<Int(commit) where present[p >> 6] & (1 << UInt64(p & 63)) == 0 {
                throw RestoreError(
                    .incomplete,
                    "page \(p + 1) of \(commit) is in no file of the chain \(first ?? "?") ... \(previous ?? "?"); the replica is incomplete")
            }
        }
        guard ftruncate(fd, off_t(commit) * off_t(size)) == 0 else { throw SystemError("ftruncate", path: path) }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path: path) }
    }

    private func markCapacity(_ pages: UInt32) {
        let words = (Int(pages) + 63) / 64
        if present.count < words { present += [UInt64](repeating: 0, count: words - present.count) }
    }

    /// Hands the current run to the write-behind thread.
    private func flush() throws {
        guard chunkCount > 0, let buffer = chunk, let writer else { return }
        let size = Int(pageSize)
        try writer.submit(buffer, count: chunkCount * size, offset: off_t(chunkStart - 1) * off_t(size))
        chunk = nil
        chunkCount = 0
    }
}

/// A dedicated thread that performs queued pwrites in order from a pool of
/// page-aligned buffers: directly when `direct` takes them (large aligned
/// runs), otherwise through the page cache, whose writeback is left to the
/// kernel and the final fsync. The first error is kept and rethrown to the
/// producer.
final class WriteBehind: @unchecked Sendable {
    private struct Job {
        var buffer: UnsafeMutableRawBufferPointer
        var count: Int
        var offset: off_t
    }

    private let fd: Int32
    private let direct: DirectWrites?
    private let path: String
    private let condition = NSCondition()
    private var all: [UnsafeMutableRawBufferPointer] = []
    private var free: [UnsafeMutableRawBufferPointer] = []
    private var queue: [Job] = []
    private var failure: (any Error)?
    private var stopping = false
    private var finished = false
    private var busy = false

    init(fd: Int32, direct: DirectWrites?, path: String, bufferBytes: Int, buffers: Int) {
        self.fd = fd
        self.direct = direct
        self.path = path
        for _ in 0..<max(2, buffers) {
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferBytes, alignment: DirectWrites.alignment)
            all.append(b)
            free.append(b)
        }
        let thread = Thread { [self] in self.loop() }
        thread.name = "guardian-restore-writer"
        thread.start()
    }

    deinit {
        direct?.close()
        for b in all { b.deallocate() }
    }

    /// A free buffer (waits while all are queued).
    func take() throws -> UnsafeMutableRawBufferPointer {
        condition.lock()
        defer { condition.unlock() }
        while free.isEmpty && failure == nil { condition.wait() }
        if let failure { throw failure }
        return free.removeLast()
    }

    func submit(_ buffer: UnsafeMutableRawBufferPointer, count: Int, offset: off_t) throws {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        queue.append(Job(buffer: buffer, count: count, offset: offset))
        condition.broadcast()
    }

    /// Waits until every queued write is done.
    func drain() throws {
        condition.lock()
        defer { condition.unlock() }
        while (!queue.isEmpty || busy) && failure == nil { condition.wait() }
        if let failure { throw failure }
    }

    /// Ends the thread (after the queued writes) and waits for it.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        condition.lock()
        while true {
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty { break }
            let job = queue.removeFirst()
            busy = true
            let skip = failure != nil
            condition.unlock()
            var error: (any Error)?
            if !skip, let base = job.buffer.baseAddress {
                do {
                    let done = try direct?.write(UnsafeRawPointer(base), job.count, at: job.offset) ?? 0
                    if done < job.count {
                        try DurableFile.pwriteAll(fd: fd, UnsafeRawPointer(base + done), job.count - done, at: job.offset + off_t(done), path: path)
                    }
                } catch let e {
                    error = e
                }
            }
            condition.lock()
            busy = false
            if let error, failure == nil { failure = error }
            free.append(job.buffer)
            condition.broadcast()
        }
        finished = true
        condition.broadcast()
        condition.unlock()
    }
}
