import CSQLite
import Foundation
import Platform

public enum IntegrityCheck: String, Sendable, CaseIterable {
    case none, quick, full
}

public struct RestoreOptions: Sendable {
    public var txid: UInt64?
    public var timestamp: Date?
    /// Replace an existing output (and its -wal, -shm, -journal).
    public var force: Bool
    public var integrityCheck: IntegrityCheck

    public init(txid: UInt64? = nil, timestamp: Date? = nil, force: Bool = false, integrityCheck: IntegrityCheck = .full) {
        self.txid = txid
        self.timestamp = timestamp
        self.force = force
        self.integrityCheck = integrityCheck
    }
}

public struct RestoreProgress: Sendable {
    public var filesDone: Int
    public var filesTotal: Int
    public var bytesDone: Int64
    public var bytesTotal: Int64
}

public struct RestoreResult: Sendable {
    public var txid: UInt64
    public var files: Int
    public var pages: Int
    public var bytes: Int64
    public var planSeconds: Double
    public var applySeconds: Double
    public var verifySeconds: Double
}

/// Rebuilds a database from a replica: plan first, then stream every planned
/// file's pages into `OUT.tmp` (checksums verified as it goes), check that
/// every page is present, run the integrity check, fsync, rename into place.
/// On any failure the temp file is removed and an existing OUT is untouched.
public struct Restorer: Sendable {
    public init() {}

    public func restore(
        client: any ReplicaClient, to output: String, options: RestoreOptions,
        progress: (@Sendable (RestoreProgress) -> Void)? = nil
    ) async throws -> RestoreResult {
        let started = ContinuousClock.now
        try await BlockingPool.shared.run { try Self.checkOutput(output, force: options.force) }
        var files: [LTXFileInfo] = []
        for level in LTXNaming.allLevels {
            files += try await client.listFiles(level: level, exactTimestamps: options.timestamp != nil)
        }
        let plan = try RestorePlanner.plan(files: files, txid: options.txid, timestamp: options.timestamp)
        let planned = ContinuousClock.now
        let tmp = output + ".tmp"
        let scratch = output + ".restore-files"
        var result = RestoreResult(txid: plan.txid, files: plan.files.count, pages: 0, bytes: 0, planSeconds: (planned - started).seconds, applySeconds: 0, verifySeconds: 0)
        do {
            let local: FileReplicaClient? = client as? FileReplicaClient
            let applier = try PageApplier(path: tmp)
            let total = plan.files.reduce(Int64(0)) { $0 + $1.size }
            for (i, file) in plan.files.enumerated() {
                let path: String
                if let local {
                    path = local.path(of: file)
                } else {
                    try DurableFile.makeDirectories(scratch)
                    path = "\(scratch)/\(file.level)-\(file.name)"
                    try await client.downloadFile(file, to: path)
                }
                try await BlockingPool.shared.run { try applier.apply(path: path, name: "\(client.target.destination) \(file)") }
                if local == nil { unlink(path) }
                result.bytes += file.size
                progress?(RestoreProgress(filesDone: i + 1, filesTotal: plan.files.count, bytesDone: result.bytes, bytesTotal: total))
            }
            result.pages = try await BlockingPool.shared.run { try applier.finish() }
            let applied = ContinuousClock.now
            result.applySeconds = (applied - planned).seconds
            try await BlockingPool.shared.run { try Self.verify(tmp, options.integrityCheck) }
            try await BlockingPool.shared.run {
                if options.force { Self.removeDatabase(output) }
                guard rename(tmp, output) == 0 else { throw SystemError("rename", path: output) }
                try DurableFile.syncDirectory((output as NSString).deletingLastPathComponent)
            }
            result.verifySeconds = (ContinuousClock.now - applied).seconds
            try? FileManager.default.removeItem(atPath: scratch)
            return result
        } catch {
            Self.removeDatabase(tmp)
            try? FileManager.default.removeItem(atPath: scratch)
            throw error
        }
    }

    /// Refuses to touch an existing, non-empty output unless forced.
    static func checkOutput(_ output: String, force: Bool) throws {
        let dir = (output as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.isEmpty ? "." : dir, isDirectory: &isDir), isDir.boolValue else {
            throw RestoreError("output directory \(dir) does not exist")
        }
        var st = stat()
        if stat(output, &st) == 0, st.st_size > 0, !force {
            throw RestoreError("\(output) already exists; pass --force to replace it")
        }
    }

    static func removeDatabase(_ path: String) {
        for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
    }

    static func verify(_ path: String, _ check: IntegrityCheck) throws {
        guard check != .none else { return }
        let db = try SQLiteConnection(path: path, mode: .readWrite)
        let pragma = check == .full ? "PRAGMA integrity_check" : "PRAGMA quick_check"
        let rows = try db.query(pragma).compactMap { $0.first.map { "\($0)" } }
        guard rows == ["ok"] else {
            throw RestoreError("the restored database fails \(pragma): \(rows.prefix(3).joined(separator: "; "))")
        }
    }
}

/// Writes pages into the output file at (pgno-1)*pageSize and tracks which
/// pages are present. Blocking; used from BlockingPool.
final class PageApplier: @unchecked Sendable {
    let path: String
    let fd: Int32
    var pageSize: UInt32 = 0
    var commit: UInt32 = 0
    var present: [Bool] = []
    var lastTXID: UInt64 = 0
    var pagesWritten = 0

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path: path) }
    }

    deinit { close(fd) }

    func apply(path file: String, name: String) throws {
        let decoder = try LTXDecoder(source: LTXFileSource(path: file), name: name)
        let h = decoder.header
        if pageSize == 0 {
            pageSize = h.pageSize
        } else if h.pageSize != pageSize {
            throw RestoreError("\(name): page size \(h.pageSize) differs from the chain's \(pageSize): files of another database?")
        }
        if lastTXID == 0, h.minTXID != 1 {
            throw RestoreError("\(name): the chain does not start with a snapshot")
        }
        if lastTXID > 0, h.minTXID > lastTXID + 1 {
            throw RestoreError("\(name): TXIDs \(LTXNaming.hex(lastTXID + 1))-\(LTXNaming.hex(h.minTXID - 1)) are missing")
        }
        commit = h.commit
        if present.count < Int(commit) + 1 { present += [Bool](repeating: false, count: Int(commit) + 1 - present.count) }
        let size = Int(pageSize)
        while let (pgno, data) = try decoder.nextPage() {
            let n = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, size, off_t(Int64(pgno - 1) * Int64(size))) }
            guard n == size else { throw SystemError("pwrite", path: path) }
            present[Int(pgno)] = true
            pagesWritten += 1
        }
        lastTXID = h.maxTXID
    }

    /// Truncates to the final size, zeroes the lock page, checks coverage, fsyncs.
    func finish() throws -> Int {
        let lock = pageSize > 0 ? UInt32(0x4000_0000 / Int(pageSize)) + 1 : 0
        if commit >= 1 {
            for p in 1...commit where p != lock && !(Int(p) < present.count && present[Int(p)]) {
                throw RestoreError("page \(p) of \(commit) is in no restored file: the replica is incomplete")
            }
        }
        if commit >= lock, lock > 0 {
            let zeros = [UInt8](repeating: 0, count: Int(pageSize))
            _ = zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, Int(pageSize), off_t(Int64(lock - 1) * Int64(pageSize))) }
        }
        guard ftruncate(fd, off_t(Int64(commit) * Int64(pageSize))) == 0 else { throw SystemError("ftruncate", path: path) }
        guard fsync(fd) == 0 else { throw SystemError("fsync", path: path) }
        return pagesWritten
    }
}
