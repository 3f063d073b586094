import Foundation
import Logging
import Platform

/// Continuous replication of one WAL-mode database.
///
/// How no frame is ever lost to a checkpoint guardian has not seen: guardian
/// always holds a read transaction ("pin") on one of two connections. A
/// checkpoint cannot copy WAL frames beyond the oldest reader's snapshot into
/// the database, and the WAL cannot restart while a reader still uses it, so
/// every frame in the WAL is either already copied by guardian or protected
/// by the pin. On each sync guardian begins a pin on the spare connection,
/// copies every committed frame up to the end of the WAL (at least up to the
/// new pin's snapshot), and only then ends the old pin. After copying it runs
/// a PASSIVE checkpoint itself and re-pins, so the WAL restarts from its
/// beginning and stays small; the application's own checkpoints keep working.
/// A WAL restart shows up as a new header with salt-1 incremented by one; any
/// other change (guardian was not running, an outside TRUNCATE while guardian
/// was down) cannot be proven complete, so guardian writes a full image.
///
/// The actor runs on one of the shared `ReplicationWorker` threads (with the
/// other databases that worker serves): its sqlite3 and pread calls block
/// that thread only, never the cooperative pool.
public actor Replicator {
    public nonisolated let config: DatabaseConfig
    nonisolated let executor: ReplicationWorker
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    let logger: Logger
    let walPath: String

    // Connections: two pins that hand over to each other, one for checkpoints.
    // Only the active pin's connection is always open: the spare opens at the
    // next handover, the checkpointer when a checkpoint is due, and both close
    // again once the database is idle (`releaseIdleConnections`).
    private var pins: [SQLiteConnection?] = []
    private var activePin = -1
    private var checkpointer: SQLiteConnection?
    /// Connections opened this session (each costs an open and a header read).
    private(set) var connectionsOpened = 0
    private var wal: WALFile
    /// The database file, for page reads outside SQLite (never closed while
    /// it is the database: see DatabaseFiles).
    private var dbFile: DatabaseFile?
    private var dbFD: Int32 { dbFile?.fd ?? -1 }

    // Position.
    private(set) var pageSize: UInt32 = 0
    private(set) var txid: UInt64 = 0
    private var commit: UInt32 = 0
    private var cursor: WALCursor?
    /// Newest frame of every page in the current WAL generation, up to the cursor.
    private var pageIndex: [UInt32: Int64] = [:]
    private(set) var lastCommitObserved: Date?
    private(set) var walBytes: Int64 = 0
    /// WAL bytes the newest sync found (its growth since the sync before).
    private(set) var walGrowth: Int64 = 0
    /// `walBytes` when guardian's newest checkpoint copied the whole WAL:
    /// nothing to do again until the WAL moves.
    private var fullyCheckpointedAt: Int64 = -1
    private(set) var lastCheckpoint: CheckpointResult?
    private(set) var lastCheckpointMode: CheckpointMode = .passive
    private(set) var lastCheckpointAt: Date?
    private(set) var checkpointCounts = CheckpointCounts()
    private var writer: SQLiteConnection?
    private var needsFullImage = false
    private var lastSnapshotAt: Date?

    /// This session's history (see `ReplicaHistory`): fresh for every session.
    let historyID = ReplicaHistory.newID()
    /// When the session resumed another history's numbering: that history's
    /// marker ("" for none) and the TXID it resumed after. Its replicas at or
    /// below that TXID hold this session's states too.
    private var resumed: (history: String, base: UInt64)?

    /// Recent LTX files not yet on every replica, oldest first.
    private var pending: [PendingLTX] = []
    private var pendingBytes = 0
    static let pendingLimit = 256 << 20
    /// Each replica's shipper wake-up, by replica name.
    private var subscribers: [String: AsyncStream<Void>.Continuation] = [:]
    /// While a pass ships to file replicas itself, new files do not wake the
    /// shippers (`releaseWakeups` wakes those that still have work).
    private var holdingWakeups = false
    private var snapshotCache: SnapshotFile?

    /// Under heavy load several transactions found by one sync go into one file.
    static let batchThreshold = 32
    /// Transactions the newest sync found: above one, the next sync waits a
    /// little so that a burst becomes a few larger files instead of thousands
    /// of fsyncs competing with the application's own writes.
    private(set) var lastSyncTransactions = 0

    /// Where full images and snapshots are staged on their way to the replicas.
    let stagingDir: String

    public init(config: DatabaseConfig, stagingDir: String, logger: Logger) {
        self.config = config
        self.stagingDir = stagingDir
        self.logger = logger
        executor = ReplicationWorker.acquire()
        walPath = config.path + "-wal"
        wal = WALFile(path: config.path + "-wal")
    }

    deinit { ReplicationWorker.release(executor) }

    /// Runs `body` on the replicator's thread: the replicator's methods are
    /// then plain calls (no hop per call).
    func isolated<T: Sendable>(_ body: @Sendable (isolated Replicator) async throws -> T) async rethrows -> T {
        try await body(self)
    }

    /// Whether the next sync may take long (a full image, a snapshot due):
    /// the loop then keeps its heartbeat going while it works.
    var mayTakeLong: Bool { needsFullImage || snapshotDue }

    /// The WAL is past `checkpointSize` and guardian's last checkpoint did
    /// not copy all of it: a tick tries again even without a WAL change.
    var checkpointUnfinished: Bool {
        guard walBytes >= config.checkpointSize else { return false }
        guard let last = lastCheckpoint else { return true }
        return last.busy || last.checkpointedFrames < last.logFrames
    }

    /// What a tick of the poll interval does while inotify reports every
    /// change to the WAL: only notice a replaced file (a rename over the
    /// database's path is not a change to the WAL). No read transaction,
    /// no read of the WAL.
    func idleCheck(releasingAfter idle: Duration = Replicator.idleAfter) throws {
        try checkFilesAreTheDatabase()
        releaseIdleConnections(after: idle)
    }

    /// How long a database goes without a commit before it keeps only the
    /// pin's connection: opening one costs 40-300 µs, so a database that
    /// commits more often keeps both pins. One without a commit this session
    /// (idle since start-up) releases at its first idle tick.
    static let idleAfter: Duration = .seconds(30)

    /// Connections open now (pins, checkpointer, writer).
    var openConnections: Int {
        pins.count(where: { $0 != nil }) + (checkpointer == nil ? 0 : 1) + (writer == nil ? 0 : 1)
    }

    /// Nothing held but the pin's connection (what an idle database keeps).
    var holdsOnlyThePin: Bool { activePin >= 0 && openConnections == 1 }

    /// An idle database keeps one SQLite connection: the one holding the pin
    /// (each costs ~20 kB of private memory). The spare pin's connection,
    /// the checkpointer and the writer hold no transaction between syncs and
    /// close; the next sync opens the spare again before it ends the old pin,
    /// so the handover never leaves the WAL unpinned.
    func releaseIdleConnections(after idle: Duration = Replicator.idleAfter) {
        guard activePin >= 0 else { return }
        if let last = lastCommitObserved, Date().timeIntervalSince(last) < idle.seconds { return }
        let spare = 1 - activePin
        if let c = pins[spare], c.isAutocommit { pins[spare] = nil }
        checkpointer = nil
        writer = nil
    }

    /// Whether a pass may find something: false only when the WAL is the
    /// generation the newest pass read and no commit frame of it follows
    /// the cursor (a few 24-byte reads, no read transaction). The first
    /// write of a transaction wakes the worker before its commit frame is
    /// there; the commit frame's write makes a file event of its own.
    func walMayHaveNew() -> Bool {
        guard activePin >= 0, !needsFullImage, replaced == nil, let c = cursor, let h = wal.header() else { return true }
        guard h.salt1 == c.salt1, h.salt2 == c.salt2 else { return true }
        return wal.commitFrameFollows(c)
    }

    // MARK: - Opening

    public enum OpenError: Error, CustomStringConvertible {
        case missing(String)
        case notWAL(String, String)

        public var description: String {
            switch self {
            case .missing(let p): "\(p) does not exist"
            case .notWAL(let p, let mode): "\(p) is in journal_mode=\(mode), not WAL (run PRAGMA journal_mode=WAL in the application)"
            }
        }
    }

    /// The database file (or its `-wal`) was replaced at its path under the
    /// session: the session must end and a new one start on the new file.
    public struct Replaced: Error, CustomStringConvertible {
        public let description: String
    }

    /// Set once the files were found replaced: nothing more is read from them.
    private(set) var replaced: Replaced?
    /// The `-wal` the session's connections use (its inode when first seen).
    private var walInode: UInt64 = 0

    /// Throws `Replaced` when the path no longer holds the file the pins are
    /// on, or the `-wal` is not the one SQLite's connections have open
    /// (guardian's connections keep it: it is never deleted or recreated
    /// while they are open).
    private func checkFilesAreTheDatabase() throws {
        if let replaced { throw replaced }
        guard let file = dbFile else { return }
        var why: String?
        if !file.isCurrent(at: config.path) {
            why = "\(config.path) is no longer the file guardian opened (replaced or removed)"
        } else {
            let now = wal.currentInode()
            if walInode == 0 {
                walInode = now
            } else if now != walInode {
                why = "\(walPath) is no longer the WAL SQLite has open (replaced or removed)"
            }
        }
        if let why {
            let r = Replaced(description: why)
            replaced = r
            throw r
        }
    }

    /// Opens the connections and takes the first pin. Throws when the
    /// database is missing or not in WAL mode.
    func open() throws {
        guard FileManager.default.fileExists(atPath: config.path) else { throw OpenError.missing(config.path) }
        let first = try connect(busyTimeout: .seconds(5))
        let mode = (try first.scalar("PRAGMA journal_mode")).map { "\($0)" } ?? "?"
        guard mode.lowercased() == "wal" else { throw OpenError.notWAL(config.path, mode) }
        // The spare pin opens at the first sync, the checkpointer when a checkpoint is due.
        pins = [first, nil]
        try beginPin(0)
        activePin = 0
        pageSize = UInt32(try first.scalar("PRAGMA page_size")?.int64 ?? 4096)
        // Kept open by DatabaseFiles: closing a descriptor of the database
        // would drop the pins' locks.
        dbFile = try DatabaseFiles.shared.file(config.path)
        walInode = wal.currentInode()
        // (-wal/-shm created by these connections go back to the database's
        // owner: SQLiteConnection does it after each statement until both exist.)
    }

    /// One of guardian's connections: no automatic checkpoint, and closing it
    /// neither checkpoints nor deletes the WAL.
    private func connect(busyTimeout: Duration) throws -> SQLiteConnection {
        let c = try SQLiteConnection(path: config.path, mode: .readWrite, busyTimeout: busyTimeout)
        try c.execute("PRAGMA wal_autocheckpoint=0")
        c.persistWAL()
        connectionsOpened += 1
        return c
    }

    /// A connection opened by path after the session started: it must be on
    /// the file the pins are on (a file renamed over the path in between is
    /// another database, which the pin does not protect).
    private func connectToTheDatabase(busyTimeout: Duration) throws -> SQLiteConnection {
        let c = try connect(busyTimeout: busyTimeout)
        try checkFilesAreTheDatabase()
        // A connection only knows the database is in WAL mode once it has read
        // it; until then sqlite3_wal_checkpoint_v2 silently does nothing (-1, -1).
        _ = try c.scalar(Self.readStatement)
        return c
    }

    /// The checkpointer, opened when a checkpoint is due (closed again when idle).
    private func checkpointConnection() throws -> SQLiteConnection {
        if let c = checkpointer { return c }
        let c = try connectToTheDatabase(busyTimeout: .milliseconds(50))
        checkpointer = c
        return c
    }

    /// What starts a read (the pin's snapshot): a read of the database
    /// header only, so no connection parses and keeps a copy of the
    /// application's schema (a few kB per connection for a small schema).
    static let readStatement = "PRAGMA schema_version"

    /// Opens the spare pin's connection if the database was idle: the pin
    /// moves at the next sync (after a checkpoint it must, so that the
    /// application's next write can restart the WAL).
    private func openSpare() throws {
        let spare = 1 - activePin
        guard activePin >= 0, pins[spare] == nil else { return }
        pins[spare] = try connectToTheDatabase(busyTimeout: .seconds(5))
    }

    private func beginPin(_ index: Int) throws {
        // The spare, closed while the database was idle, opens again while
        // the other pin still holds every frame not yet copied.
        if index != activePin { try openSpare() }
        guard let c = pins[index] else { throw SystemError("pin", path: config.path, code: EBADF) }
        try c.execute("BEGIN")
        do {
            _ = try c.scalar(Self.readStatement)
        } catch {
            try? c.execute("ROLLBACK")
            throw error
        }
    }

    /// The WAL holds nothing past the cursor: the pin guardian has covers
    /// every frame, and a sync needs no new one (an idle database at
    /// start-up, or woken without a write: inotify reports guardian's own
    /// closing of a connection, and the health probe's, as one).
    private var nothingNewInWAL: Bool {
        let size = wal.size()
        guard let c = cursor else { return size == 0 }
        guard size == c.offset, let header = wal.header() else { return false }
        return header.salt1 == c.salt1 && header.salt2 == c.salt2
    }

    private func endPin(_ index: Int) {
        try? pins[index]?.execute("ROLLBACK")
    }

    /// Releases every lock guardian holds on the database.
    func closeConnections() {
        for i in pins.indices where pins[i]?.isAutocommit == false { endPin(i) }
        pins = []
        checkpointer = nil
        writer = nil
        activePin = -1
    }

    // MARK: - Start-up position

    /// Decides where replication continues: after the newest LTX file on the
    /// replicas when the WAL still holds exactly what that file recorded,
    /// otherwise with a full image at the next TXID.
    /// `newestHistory` is the history marker of the replica that holds `newestL0`.
    /// `fullImage`: never resume (the database was replaced or swapped).
    func bootstrap(replicaPositions: [UInt64], newestL0: LTXHeader?, newestHistory: String = "", fullImage: Bool = false) throws {
        let newest = replicaPositions.max() ?? 0
        // (Listings refuse such files; never number past the largest TXID.)
        guard newest < LTXNaming.maxTXID else {
            throw LTXError(.invalidHeader, file: config.path, "the replicas' position \(LTXNaming.hex(newest)) leaves no TXID for the next transaction")
        }
        txid = newest
        let header = wal.header()
        if !fullImage, let last = newestL0, last.maxTXID == txid, let header, header.salt1 == last.walSalt1, header.salt2 == last.walSalt2,
            last.walOffset >= Int64(WALHeader.size), last.pageSize == pageSize
        {
            let end = last.walOffset + last.walSize
            let start = WALCursor(header: header)
            let (txs, c) = try wal.readTransactions(from: start, limit: end - start.offset)
            if c.offset == end {
                for t in txs { pageIndex.merge(t.pages) { $1 } }
                cursor = c
                commit = last.commit
                resumed = (newestHistory, txid)
                logger.event(.replicaSynced, level: .debug, ["db": "\(config.path)", "resumed_txid": "\(LTXNaming.hex(txid))"])
                return
            }
        }
        if let last = newestL0 { commit = last.commit }
        needsFullImage = true
        if txid > 0 {
            logger.event(.walGapDetected, level: .warning, ["db": "\(config.path)", "txid": "\(LTXNaming.hex(txid))", "reason": "the WAL no longer matches the newest LTX file on the replicas"])
        }
    }

    // MARK: - Sync

    public struct SyncResult: Sendable {
        public var files: Int
        public var transactions: Int
    }

    /// Copies every committed transaction from the WAL into LTX files, hands
    /// them to the replicas, and moves the pin forward.
    ///
    /// `repin: false` copies without handing the pin over: it is not needed
    /// to keep new frames (a checkpoint cannot copy frames past the pin's
    /// snapshot, nor the WAL restart, while the pin's read lock is held: see
    /// the type's comment), only to let checkpoints progress. The hot path
    /// moves it when `repinDue`; checkpoints always do.
    @discardableResult
    func sync(repin: Bool = true) throws -> SyncResult {
        guard activePin >= 0 else { return SyncResult(files: 0, transactions: 0) }
        try checkFilesAreTheDatabase()
        // The pin stays where it is when the caller does not need it moved,
        // and for an idle database, which keeps only its pin's connection:
        // while the WAL holds nothing past the cursor that pin covers every
        // frame, and the sync (a full image included) runs under it.
        let keep = !repin && !needsFullImage
        defer { if !keep { lastRepin = .now } }
        let stay = keep || (pins[1 - activePin] == nil && nothingNewInWAL)
        let spare = stay ? activePin : 1 - activePin
        if !stay { try beginPin(spare) }
        // On failure keep the old pin (it protects everything not yet copied)
        // and put the position back as it was.
        let saved = (txid, commit, cursor, pageIndex, needsFullImage)
        do {
            let result = try copyCommittedFrames()
            if !stay { endPin(activePin) }
            activePin = spare
            return result
        } catch {
            if !stay { endPin(spare) }
            (txid, commit, cursor, pageIndex, needsFullImage) = saved
            throw error
        }
    }

    private var lastRepin = ContinuousClock.now
    /// How long the pin may stay behind the WAL's end while it is small.
    static let repinInterval: Duration = .seconds(1)

    /// Whether a pass should move the pin to the WAL's end: the WAL is past
    /// half of `checkpoint-size` (guardian's checkpoint, and the
    /// application's, stop at the pin), or the pin is a second old.
    var repinDue: Bool {
        needsFullImage || walBytes >= config.checkpointSize / 2 || ContinuousClock.now - lastRepin >= Self.repinInterval
    }

    private func copyCommittedFrames() throws -> SyncResult {
        var produced: [PendingLTX] = []
        var transactions = 0
        let now = Date()
        if let header = wal.header() {
            if let c = cursor, c.salt1 != header.salt1 || c.salt2 != header.salt2 {
                if header.salt1 == c.salt1 &+ 1 {
                    // One restart after a complete checkpoint: everything before it was copied.
                    logger.event(.walRestarted, level: .debug, ["db": "\(config.path)", "salt1": "\(header.salt1)"])
                } else {
                    needsFullImage = true
                    logger.event(.walGapDetected, level: .warning, ["db": "\(config.path)", "reason": "WAL salts changed by more than one restart"])
                }
                cursor = WALCursor(header: header)
                pageIndex.removeAll(keepingCapacity: true)
            } else if cursor == nil {
                // The first generation seen since the pin was taken: all of it is protected.
                cursor = WALCursor(header: header)
                pageIndex.removeAll(keepingCapacity: true)
            }
            guard let start = cursor else { return SyncResult(files: 0, transactions: 0) }
            let (txs, next) = try wal.readTransactions(from: start)
            transactions = txs.count
            if needsFullImage {
                for t in txs { pageIndex.merge(t.pages) { $1 } }
                commit = txs.last?.commit ?? (commit == 0 ? dbFilePages() : commit)
                cursor = next
                produced.append(try fullImage(at: now, walOffset: Int64(WALHeader.size), walSize: next.offset - Int64(WALHeader.size)))
                needsFullImage = false
            } else if !txs.isEmpty {
                let groups: [[WALTransaction]] = txs.count > Self.batchThreshold ? [txs] : txs.map { [$0] }
                for group in groups { produced.append(try incremental(group, cursor: start, at: now)) }
                cursor = next
            }
            if !txs.isEmpty { lastCommitObserved = now }
            lastSyncTransactions = txs.count
            walGrowth = next.offset - start.offset
            walBytes = next.offset
        } else {
            // No WAL (or an empty one): the database file holds everything.
            if needsFullImage {
                commit = dbFilePages()
                produced.append(try fullImage(at: now, walOffset: 0, walSize: 0))
                needsFullImage = false
            }
            walBytes = 0
        }
        if !produced.isEmpty { publish(produced) }
        return SyncResult(files: produced.count, transactions: transactions)
    }

    private func dbFilePages() -> UInt32 {
        var st = stat()
        guard fstat(dbFD, &st) == 0, pageSize > 0 else { return 0 }
        return UInt32(Int64(st.st_size) / Int64(pageSize))
    }

    var lockPage: UInt32 { UInt32(0x4000_0000 / Int(pageSize)) + 1 }

    private func readPage(_ pgno: UInt32, into buffer: inout [UInt8]) throws {
        if let frame = pageIndex[pgno], let c = cursor {
            do {
                try wal.page(frameOffset: frame, pgno: pgno, salt1: c.salt1, salt2: c.salt2, pageSize: pageSize, into: &buffer)
                return
            } catch is WALFile.StaleFrame {
                // The WAL restarted under the pin: that is only possible when
                // the pin reads the database file alone (read-mark 0, WAL fully
                // backfilled), and such a pin also keeps every later frame out
                // of the database file. So the file holds this page exactly as
                // of the cursor: read it there.
                logger.event(.walRestarted, level: .debug, ["db": "\(config.path)", "stale_frame": "\(frame)", "pgno": "\(pgno)"])
            }
        }
        let size = Int(pageSize)
        if buffer.count < size { buffer = [UInt8](repeating: 0, count: size) }
        let n = buffer.withUnsafeMutableBytes { raw -> Int in
            guard let base = raw.baseAddress else { return -1 }
            return pread(dbFD, base, size, off_t(Int64(pgno - 1) * Int64(size)))
        }
        if n < size {
            // Past the end of the file: a page the WAL will supply; zeros until then.
            if n < 0 { throw SystemError("pread", path: config.path) }
            for i in max(0, n)..<size { buffer[i] = 0 }
        }
    }

    /// An LTX file with the pages of `group` (newest version of each page
    /// wins) plus any pages the database grew by that no frame carried.
    private func incremental(_ group: [WALTransaction], cursor: WALCursor, at now: Date) throws -> PendingLTX {
        guard let first = group.first, let last = group.last else { throw SystemError("encode", path: config.path, code: EINVAL) }
        var pages: [UInt32: Int64] = [:]
        for t in group { pages.merge(t.pages) { $1 } }
        let previousCommit = commit
        commit = last.commit
        // Apply to the index first so growth pages read the newest frame.
        pageIndex.merge(pages) { $1 }
        var numbers = Set(pages.keys.filter { $0 <= commit })
        if commit > previousCommit {
            for p in (previousCommit + 1)...commit where p != lockPage { numbers.insert(p) }
        }
        txid += 1
        let header = LTXHeader(
            pageSize: pageSize, commit: commit, minTXID: txid, maxTXID: txid,
            timestamp: Int64((now.timeIntervalSince1970 * 1000).rounded(.down)),
            walOffset: first.offset, walSize: last.offset + last.size - first.offset,
            walSalt1: cursor.salt1, walSalt2: cursor.salt2)
        let sink = LTXMemorySink()
        let encoder = try LTXEncoder(header: header, sink: sink)
        var buffer = [UInt8](repeating: 0, count: Int(pageSize))
        for p in numbers.sorted() where p != lockPage {
            try readPage(p, into: &buffer)
            try encoder.writePage(pgno: p, buffer)
        }
        _ = try encoder.finish()
        let info = LTXFileInfo(level: 0, minTXID: txid, maxTXID: txid, size: Int64(sink.bytes.count), createdAt: Date(timeIntervalSince1970: Double(header.timestamp) / 1000))
        return PendingLTX(info: info, payload: .bytes(sink.bytes), observedAt: now)
    }

    /// Every page of the database as of the cursor, at the next TXID.
    private func fullImage(at now: Date, walOffset: Int64, walSize: Int64) throws -> PendingLTX {
        txid += 1
        let header = LTXHeader(
            pageSize: pageSize, commit: commit, minTXID: txid, maxTXID: txid,
            timestamp: Int64((now.timeIntervalSince1970 * 1000).rounded(.down)),
            walOffset: walSize > 0 ? walOffset : 0, walSize: walSize > 0 ? walSize : 0,
            walSalt1: walSize > 0 ? (cursor?.salt1 ?? 0) : 0, walSalt2: walSize > 0 ? (cursor?.salt2 ?? 0) : 0)
        // Streamed to a staging file: a full image can be as large as the database.
        try DurableFile.makePrivateDirectory(stagingDir)
        let path = "\(stagingDir)/image-\(LTXNaming.hex(txid)).ltx"
        try stageImage(header: header, path: path)
        let info = LTXFileInfo(level: 0, minTXID: txid, maxTXID: txid, size: (try? LTXPayload.file(path: path).size()) ?? 0, createdAt: Date(timeIntervalSince1970: Double(header.timestamp) / 1000))
        logger.event(.snapshotWritten, ["db": "\(config.path)", "txid": "\(LTXNaming.hex(txid))", "pages": "\(commit)", "level": "0"])
        // A full image is a restore base like a scheduled snapshot.
        lastSnapshotAt = now
        return PendingLTX(info: info, payload: .file(path: path), observedAt: now)
    }

    /// Every page as of the cursor into a staging file at `path`; nothing is
    /// left behind when that fails.
    private func stageImage(header: LTXHeader, path: String) throws {
        let sink = try LTXFileSink(path: path)
        do {
            try writeImage(header: header, sink: sink)
            try sink.close(sync: false)
        } catch {
            sink.discard()
            throw error
        }
    }

    /// LZ4 runs on helper threads (LTXImageWriter); this thread reads runs of
    /// pages and writes the frames.
    private func writeImage(header: LTXHeader, sink: any LTXSink) throws {
        let encoder = try LTXEncoder(header: header, sink: sink)
        var buffer = [UInt8](repeating: 0, count: Int(pageSize))
        try LTXImageWriter.write(encoder: encoder) { first, count, into in
            try readPages(first, count, into: into, scratch: &buffer)
        }
        _ = try encoder.finish()
    }

    /// Pages `first ..< first + count` as of the cursor: one pread of the
    /// database file for the run, then the pages the WAL holds newer versions of.
    private func readPages(_ first: UInt32, _ count: Int, into: UnsafeMutableRawPointer, scratch: inout [UInt8]) throws {
        let size = Int(pageSize)
        let total = count * size
        var done = 0
        while done < total {
            let n = pread(dbFD, into + done, total - done, off_t(Int64(first - 1) * Int64(size)) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("pread", path: config.path)
            }
            // Past the end of the file: pages the WAL will supply; zeros until then.
            if n == 0 { break }
            done += n
        }
        if done < total { (into + done).initializeMemory(as: UInt8.self, repeating: 0, count: total - done) }
        guard !pageIndex.isEmpty else { return }
        for i in 0..<count where pageIndex[first + UInt32(i)] != nil {
            try readPage(first + UInt32(i), into: &scratch)
            scratch.withUnsafeBytes { page in
                if let base = page.baseAddress { (into + i * size).copyMemory(from: base, byteCount: size) }
            }
        }
    }

    /// A level-9 snapshot (`1-<txid>`) of the database as of the current
    /// position, written to a file in `directory`. Reused while the position
    /// has not moved.
    func snapshot() throws -> SnapshotFile {
        // Catch up first under a fresh pin: after a complete checkpoint the
        // application's next write restarts the WAL over the frames of the
        // page index; the sync notices the restart and indexes the new frames.
        try sync()
        if let s = snapshotCache, s.info.maxTXID == txid, FileManager.default.fileExists(atPath: s.path) { return s }
        try DurableFile.makePrivateDirectory(stagingDir)
        let path = "\(stagingDir)/snapshot-\(LTXNaming.hex(txid)).ltx"
        let now = Date()
        let header = LTXHeader(
            pageSize: pageSize, commit: commit, minTXID: 1, maxTXID: txid,
            timestamp: Int64(((lastCommitObserved ?? now).timeIntervalSince1970 * 1000).rounded(.down)))
        try stageImage(header: header, path: path)
        if let old = snapshotCache, old.path != path { unlink(old.path) }
        let size = (try? LTXPayload.file(path: path).size()) ?? 0
        let file = SnapshotFile(
            info: LTXFileInfo(level: LTXNaming.snapshotLevel, minTXID: 1, maxTXID: txid, size: size, createdAt: Date(timeIntervalSince1970: Double(header.timestamp) / 1000)),
            path: path)
        snapshotCache = file
        lastSnapshotAt = now
        logger.event(.snapshotWritten, ["db": "\(config.path)", "txid": "\(LTXNaming.hex(txid))", "pages": "\(commit)", "level": "9"])
        return file
    }

    var snapshotDue: Bool {
        guard txid > 0 else { return false }
        guard let last = lastSnapshotAt else { return true }
        return Date().timeIntervalSince(last) >= config.snapshotInterval.seconds
    }

    func markSnapshotTaken(at date: Date) { lastSnapshotAt = date }

    // MARK: - Checkpoints

    /// Keeps the WAL small: once it holds `checkpointSize` bytes guardian runs
    /// a PASSIVE checkpoint (everything up to its pin is already copied) and
    /// re-pins so that the next writer can restart the WAL from the start.
    /// A writer that commits back to back never leaves the WAL fully copied
    /// at a re-pin, so it would grow without end: from half of `maxWALSize`
    /// guardian forces the restart (`forceRestart`).
    func checkpointIfNeeded() throws {
        guard activePin >= 0, walBytes >= config.checkpointSize, walBytes != fullyCheckpointedAt else { return }
        // Past the point where the WAL would reach max-wal-size before the
        // next pass or two (or past half of it): straight to the forced restart.
        if restartDue {
            try forceRestart()
            return
        }
        let ckpt = try checkpointConnection()
        try openSpare()
        let result = try countCheckpoint { try ckpt.checkpoint(.passive) }
        lastCheckpoint = result
        lastCheckpointMode = .passive
        lastCheckpointAt = Date()
        logger.event(.checkpointDone, level: .debug, ["db": "\(config.path)", "mode": "PASSIVE", "busy": "\(result.busy)", "log": "\(result.logFrames)", "checkpointed": "\(result.checkpointedFrames)"])
        // Hand the pin over once more: with the WAL fully copied into the
        // database the new pin reads from the database file alone, which lets
        // the application's next write start the WAL over.
        try sync()
        if !result.busy, result.checkpointedFrames >= result.logFrames { fullyCheckpointedAt = walBytes }
        if restartDue { try forceRestart() }
    }

    /// The WAL is past half of `max-wal-size`, or would pass it within three
    /// more passes growing like the last one (a pass includes writing the
    /// file replica's file, whose fsync may take a while).
    var restartDue: Bool {
        walBytes >= config.maxWALSize / 2 || walBytes + 3 * walGrowth >= config.maxWALSize
    }

    /// How long a forced restart tries to take the write lock, and then to
    /// get a complete checkpoint (the application's own checkpoint may hold
    /// the checkpoint lock for a moment).
    static let restartLockWait: Duration = .milliseconds(20)

    /// Above half of `max-wal-size` (writers kept the WAL busy through every
    /// PASSIVE checkpoint) guardian briefly takes the write lock between two
    /// of the application's transactions (retrying every 100 µs for
    /// `restartLockWait`), copies the rest of the WAL, checkpoints it
    /// completely (retried while the application's own checkpoint holds the
    /// checkpoint lock) and re-pins on the fully copied WAL, so the next write
    /// restarts the WAL. Writers wait for the length of one checkpoint of
    /// what was written since the PASSIVE one just before.
    private func forceRestart() throws {
        guard activePin >= 0 else { return }
        let ckpt = try checkpointConnection()
        try openSpare()
        if writer == nil {
            let w = try connectToTheDatabase(busyTimeout: .zero)
            w.retryBusyQuickly(for: Self.restartLockWait)
            writer = w
        }
        guard let w = writer else { return }
        do { try w.execute("BEGIN IMMEDIATE") } catch let e as SQLiteError where e.isBusy {
            checkpointCounts.busy += 1
            logger.event(.checkpointDone, level: .debug, ["db": "\(config.path)", "mode": "forced", "busy": "true", "reason": "the write lock stayed taken"])
            return
        }
        defer { try? w.execute("ROLLBACK") }
        // Nobody can commit now: copy the rest; the new pin is at the WAL's end.
        try sync()
        let deadline = ContinuousClock.now + Self.restartLockWait
        var result = try ckpt.checkpoint(.passive)
        while result.busy || result.checkpointedFrames < result.logFrames, ContinuousClock.now < deadline {
            usleep(100)
            result = try ckpt.checkpoint(.passive)
        }
        let final = result
        _ = try countCheckpoint { final }
        lastCheckpoint = result
        lastCheckpointMode = .truncate
        lastCheckpointAt = Date()
        // Fully copied: the new pin takes read mark 0, and the application's
        // next write starts the WAL over.
        try sync()
        if !result.busy, result.checkpointedFrames >= result.logFrames { fullyCheckpointedAt = walBytes }
        logger.event(.checkpointDone, level: .debug, ["db": "\(config.path)", "mode": "forced", "busy": "\(result.busy)", "log": "\(result.logFrames)", "checkpointed": "\(result.checkpointedFrames)"])
    }

    /// Runs one checkpoint and counts its result: ok when every WAL frame
    /// was copied, busy when a reader or writer stopped it short.
    private func countCheckpoint(_ body: () throws -> CheckpointResult) throws -> CheckpointResult {
        do {
            let r = try body()
            if r.busy || r.checkpointedFrames < r.logFrames { checkpointCounts.busy += 1 } else { checkpointCounts.ok += 1 }
            return r
        } catch {
            checkpointCounts.failed += 1
            throw error
        }
    }

    // MARK: - Replicas

    private func publish(_ files: [PendingLTX]) {
        // With no replica there is nobody to hold files for.
        guard !config.replicas.isEmpty else {
            for f in files { f.discard() }
            return
        }
        pending.append(contentsOf: files)
        pendingBytes += files.reduce(0) { $0 + $1.memoryBytes }
        while pendingBytes > Self.pendingLimit, pending.count > 1 {
            let dropped = pending.removeFirst()
            pendingBytes -= dropped.memoryBytes
            dropped.discard()
        }
        if !holdingWakeups { for (_, s) in subscribers { s.yield(()) } }
    }

    /// A stream that fires whenever new LTX files are ready to ship to `replica`.
    func subscribe(_ replica: String) -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        subscribers[replica] = continuation
        if !pending.isEmpty { continuation.yield(()) }
        return stream
    }

    /// From here until `releaseWakeups`, new files wake no shipper: the
    /// caller ships them on this thread.
    func holdWakeups() { holdingWakeups = true }

    /// Ends `holdWakeups`: the replicas named in `served` took everything;
    /// the others are woken when there is something pending.
    func releaseWakeups(served: Set<String>) {
        holdingWakeups = false
        guard !pending.isEmpty else { return }
        for (name, s) in subscribers where !served.contains(name) { s.yield(()) }
    }

    /// Wakes every shipper (their periodic work: compaction, retention).
    func wakeSubscribers() {
        for (_, s) in subscribers { s.yield(()) }
    }

    func finishSubscribers() {
        for (_, s) in subscribers { s.finish() }
        subscribers.removeAll()
    }

    enum Work: Sendable {
        case none
        case files([PendingLTX])
        /// The replica is behind what guardian still holds: ship a snapshot.
        case snapshot(SnapshotFile)
    }

    /// Whether a replica with this history marker at `position` holds this
    /// session's states, so that delta files may go on top of it.
    func holdsThisHistory(_ history: String?, at position: UInt64) -> Bool {
        guard let history else { return false }
        if history == historyID { return true }
        if let resumed, history == resumed.history, position <= resumed.base { return true }
        return false
    }

    /// What a replica whose newest TXID is `position` and whose history
    /// marker is `history` should receive next: the pending files that
    /// follow on from it, or a snapshot. A replica of another history (or
    /// one ahead of where this session started numbering) gets nothing but a
    /// snapshot or a full image, at a TXID above everything it holds.
    func work(after position: UInt64, history: String?) throws -> Work {
        let ours = holdsThisHistory(history, at: position)
        if ours, position >= txid { return .none }
        if !ours, position >= txid {
            // It holds files at TXIDs this session has not reached (another
            // history, or this one's old numbering beyond the resume point):
            // number on above them; every replica then gets a snapshot.
            guard position < LTXNaming.maxTXID - 1 else {
                throw LTXError(.invalidHeader, file: config.path, "a replica's position \(LTXNaming.hex(position)) leaves no TXID to number above it")
            }
            logger.event(.replicaHistoryDiverged, level: .warning, [
                "db": "\(config.path)", "position": "\(LTXNaming.hex(position))", "txid": "\(LTXNaming.hex(txid))",
                "next_txid": "\(LTXNaming.hex(position + 2))",
            ])
            txid = position + 1
        }
        let files = pending.filter { $0.info.maxTXID > position }
        if let first = files.first, first.info.minTXID == position + 1, ours || first.isFullImage,
            zip(files, files.dropFirst()).allSatisfy({ $0.info.maxTXID + 1 == $1.info.minTXID }), files.last?.info.maxTXID == txid
        {
            return .files(files)
        }
        // A replaced database is not read any more: the next session's full image follows.
        if replaced != nil { return .none }
        return .snapshot(try snapshot())
    }

    /// Drops pending files every replica already has.
    func acknowledge(allPositions: [UInt64]) {
        guard let floor = allPositions.min() else { return }
        while let first = pending.first, first.info.maxTXID <= floor {
            pendingBytes -= first.memoryBytes
            pending.removeFirst()
            first.discard()
        }
    }

    /// Time of the oldest commit a replica at `position` does not have yet.
    func oldestUnshipped(after position: UInt64) -> Date? {
        if position >= txid { return nil }
        return pending.first { $0.info.maxTXID > position }?.observedAt ?? lastCommitObserved
    }

    func snapshotOfState() -> (txid: UInt64, walBytes: Int64, lastCommit: Date?, pageSize: UInt32, commit: UInt32, checkpoint: CheckpointStatus?, checkpointCounts: CheckpointCounts) {
        let checkpoint = lastCheckpoint.map {
            CheckpointStatus(
                mode: lastCheckpointMode == .passive ? "PASSIVE" : "forced", busy: $0.busy, logFrames: $0.logFrames,
                checkpointedFrames: $0.checkpointedFrames, at: lastCheckpointAt.map(Timestamps.iso8601) ?? "")
        }
        return (txid, walBytes, lastCommitObserved, pageSize, commit, checkpoint, checkpointCounts)
    }

    func fileSizes() -> (db: Int64, wal: Int64) {
        var st = stat()
        let db = fstat(dbFD, &st) == 0 ? Int64(st.st_size) : 0
        return (db, wal.size())
    }
}

/// An LTX file cut from the WAL, held until every replica has it: in memory,
/// or (full images) in a staging file that is removed once shipped.
struct PendingLTX: Sendable {
    let info: LTXFileInfo
    let payload: LTXPayload
    /// When guardian saw the commit (for lag).
    let observedAt: Date

    /// Memory the file takes while pending.
    var memoryBytes: Int {
        if case .bytes(let b) = payload { return b.count }
        return 0
    }

    func discard() {
        if case .file(let path) = payload { unlink(path) }
    }

    /// Full images are staged in files; every other pending file is in memory.
    var isFullImage: Bool {
        if case .file = payload { return info.level == 0 }
        return false
    }
}

/// A level-9 snapshot staged in a local file.
struct SnapshotFile: Sendable {
    let info: LTXFileInfo
    let path: String
}
