import CSSH2
import Foundation
import Logging
import Platform
import Synchronization

/// A replica on an SFTP server, in Litestream 0.5's layout:
///
///     <path>/ltx/<level in decimal>/<min 16 hex>-<max 16 hex>.ltx    mtime = the LTX timestamp
///
/// Host keys are always verified against `known-hosts`: an unknown or changed
/// key is refused with its SHA256 fingerprint in the error, and there is no
/// insecure fallback. Authentication is by key (`key-path`), then by
/// password if one is configured.
///
/// A write goes to `<name>.tmp` in the level's directory (not an LTX name,
/// so listings ignore it; a retry reuses and truncates it), is flushed with
/// `fsync@openssh.com` when the server offers it, gets its mtime, and is
/// renamed to the final name. libssh2 1.10 cannot rename onto an existing
/// file (no posix-rename@openssh.com): final names are unique per TXID range,
/// so a final file can only exist already when a previous attempt of the same
/// write got as far as its rename; that stale copy is removed and the rename
/// repeated (for an instant the range is absent, never half-written).
///
/// SFTP v3 carries whole-second mtimes. With `exactTimestamps`, a listing
/// reads each file's 100-byte LTX header and takes the millisecond Timestamp
/// from there.
///
/// All libssh2 calls run on one dedicated thread (an actor on a
/// `ThreadExecutor`) that owns the session, in blocking mode with timeouts. A
/// dropped or hung session is torn down and the next attempt reconnects.
public struct SFTPReplicaClient: ReplicaClient, ReplicaRequestCounting {
    public let location: SFTPLocation
    public var target: ReplicaTarget { .sftp(location) }
    public let options: RemoteClientOptions
    let connection: SFTPConnection

    /// `session` names the connection to use: clients with the same server,
    /// login, timeouts and `session` share one (the default, `""`, is
    /// replication's; a recovery drill uses `"drill"`, see `ReplicaClientPurpose`).
    public init(_ location: SFTPLocation, options: RemoteClientOptions = .standard, session: String = "") throws {
        guard location.knownHosts?.isEmpty == false else {
            throw ReplicaError(.permanent, "sftp replica \(ReplicaTarget.sftp(location).destination): known-hosts is required (host keys are always verified; create the file with ssh-keyscan)")
        }
        guard location.keyPath != nil || location.password != nil else {
            throw ReplicaError(.permanent, "sftp replica \(ReplicaTarget.sftp(location).destination): needs key-path or a password")
        }
        self.location = location
        self.options = options
        self.connection = SFTPConnection.shared(location: location, options: options, session: session)
    }

    public var requestCount: Int { connection.requests.load(ordering: .relaxed) }

    /// The replica root (`path` of the URL; relative paths are relative to the login directory).
    public var root: String {
        var p = location.path
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        return p
    }

    public func directory(level: Int) -> String { "\(root)/ltx/\(level)" }
    public func path(of file: LTXFileInfo) -> String { "\(directory(level: file.level))/\(file.name)" }

    /// Closes the session, which every client of the same server and login
    /// shares (a later call of any of them reconnects).
    public func disconnect() async { await connection.disconnect(broken: false) }

    private func withRetry<T: Sendable>(_ what: String, _ body: @escaping @Sendable (SFTPConnection) async throws -> T) async throws -> T {
        try await Retry.run(options.retry, onRetry: { attempt, error, delay in
            options.logger?.event(.replicaRequestRetrying, level: .notice, [
                "replica": "\(target.destination)", "operation": "\(what)", "attempt": "\(attempt)",
                "delay_ms": "\(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)",
                "error": "\(error)",
            ])
        }) { _ in try await body(connection) }
    }

    // MARK: - ReplicaClient

    public func listFiles(level: Int, exactTimestamps: Bool) async throws -> [LTXFileInfo] {
        let dir = directory(level: level)
        let entries = try await withRetry("LIST \(dir)") { try await $0.list(dir) }
        var files: [LTXFileInfo] = []
        for entry in entries {
            guard let (lo, hi) = try LTXNaming.listed(fileName: entry.name, display: "\(target.destination) L\(level)/\(entry.name)") else { continue }
            files.append(LTXFileInfo(level: level, minTXID: lo, maxTXID: hi, size: entry.size, createdAt: Date(timeIntervalSince1970: Double(entry.mtime))))
        }
        files.sort()
        if exactTimestamps {
            for i in files.indices {
                let header = try await readPrefix(files[i], count: 100)
                if let ts = Self.headerTimestamp(header) { files[i].createdAt = ts }
            }
        }
        return files
    }

    /// The Timestamp field of an LTX header (big-endian ms at offset 32), if
    /// the bytes start with the `LTX1` magic.
    static func headerTimestamp(_ header: [UInt8]) -> Date? {
        guard header.count >= 40, header[0..<4].elementsEqual("LTX1".utf8) else { return nil }
        var ms: Int64 = 0
        for b in header[32..<40] { ms = ms << 8 | Int64(b) }
        return Date(timeIntervalSince1970: Double(ms) / 1000)
    }

    @discardableResult
    public func writeFile(level: Int, minTXID: UInt64, maxTXID: UInt64, contents: LTXPayload, createdAt: Date) async throws -> LTXFileInfo {
        let info = LTXFileInfo(level: level, minTXID: minTXID, maxTXID: maxTXID, size: try contents.size(), createdAt: createdAt)
        let dir = directory(level: level)
        let name = info.name
        let stored = try await withRetry("PUT \(dir)/\(name)") { try await $0.write(dir: dir, name: name, contents: contents, mtime: createdAt) }
        guard stored == info.size else {
            throw ReplicaError(.transient, "sftp replica \(target.destination): \(dir)/\(name): wrote \(stored) bytes, expected \(info.size)")
        }
        return info
    }

    public func downloadFile(_ file: LTXFileInfo, to localPath: String) async throws {
        let remote = path(of: file)
        try await withRetry("GET \(remote)") { try await $0.download(remote, to: localPath) }
    }

    public func readFile(_ file: LTXFileInfo) async throws -> [UInt8] {
        let remote = path(of: file)
        return try await withRetry("GET \(remote)") { try await $0.read(remote, limit: nil) }
    }

    public func readPrefix(_ file: LTXFileInfo, count: Int) async throws -> [UInt8] {
        let remote = path(of: file)
        return try await withRetry("GET \(remote)") { try await $0.read(remote, limit: count) }
    }

    public func deleteFiles(_ files: [LTXFileInfo]) async throws {
        for file in files {
            let remote = path(of: file)
            try await withRetry("DELETE \(remote)") { try await $0.remove(remote) }
        }
    }

    public func readMarker() async throws -> [UInt8]? {
        let path = "\(root)/\(ReplicaHistory.markerName)"
        do {
            return try await withRetry("GET \(path)") { try await $0.read(path, limit: 1 << 16) }
        } catch let e as ReplicaError where e.kind == .notFound {
            return nil
        }
    }

    public func writeMarker(_ bytes: [UInt8]) async throws {
        let root = root, name = ReplicaHistory.markerName
        _ = try await withRetry("PUT \(root)/\(name)") { try await $0.write(dir: root, name: name, contents: .bytes(bytes), mtime: Date()) }
    }

    public func deleteAll() async throws {
        let root = root
        try await withRetry("DELETE \(root)/ltx") { try await $0.removeLTXTree(root: root) }
    }
}

// MARK: - The session

/// Owns one libssh2 session and its SFTP channel; every method runs on the
/// actor's own thread, so the blocking libssh2 calls never touch the
/// cooperative pool.
actor SFTPConnection {
    struct Entry: Sendable {
        var name: String
        var size: Int64
        var mtime: Int
    }

    private static let libraryReady: Bool = {
        _ = Crypto.disableExitCleanup
        return libssh2_init(0) == 0
    }()

    nonisolated let requests = Atomic<Int>(0)
    private nonisolated let executor: ThreadExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private let location: SFTPLocation
    private let options: RemoteClientOptions
    private let display: String
    private var socketFD: Int32 = -1
    private var session: OpaquePointer?
    private var sftp: OpaquePointer?
    private var fsyncSupported: Bool?
    /// The transport failed: every further call fails fast, and the session
    /// is freed when the current operation ends (after its handles are closed).
    private var broken = false
    private var knownDirectories: Set<String> = []

    /// One connection (one session, one thread) per server, login and
    /// timeouts, shared by every client for it, so that clients made again
    /// and again (restores, status, reloads) never pile up threads or
    /// sessions. Kept for the life of the process.
    private static let registry = Mutex<[String: SFTPConnection]>([:])

    static func shared(location: SFTPLocation, options: RemoteClientOptions, session: String = "") -> SFTPConnection {
        let key = [
            location.host, String(location.port), location.user, location.keyPath ?? "", location.knownHosts ?? "",
            location.password.map { Crypto.sha256Hex($0.value) } ?? "",
            "\(options.connectTimeout)", "\(options.stallTimeout)", session,
        ].joined(separator: "\u{0}")
        return registry.withLock { connections in
            if let existing = connections[key] { return existing }
            let connection = SFTPConnection(location: location, options: options)
            connections[key] = connection
            return connection
        }
    }

    private init(location: SFTPLocation, options: RemoteClientOptions) {
        self.location = location
        self.options = options
        self.display = ReplicaTarget.sftp(location).destination
        self.executor = ThreadExecutor(name: "guardian-sftp")
    }

    /// Runs on the session's thread, like every other libssh2 call.
    isolated deinit {
        teardown(broken: false)
    }

    // MARK: Operations

    func list(_ dir: String) throws -> [Entry] {
        defer { resetIfBroken() }
        let sftp = try connected()
        requests.add(1, ordering: .relaxed)
        guard let handle = libssh2_sftp_open_ex(sftp, dir, UInt32(dir.utf8.count), 0, 0, LIBSSH2_SFTP_OPENDIR) else {
            let error = failure("opendir", dir)
            if error.kind == .notFound { return [] }
            throw error
        }
        defer { libssh2_sftp_close_handle(handle) }
        var entries: [Entry] = []
        var buffer = [CChar](repeating: 0, count: 1024)
        while true {
            var attrs = LIBSSH2_SFTP_ATTRIBUTES()
            let n = libssh2_sftp_readdir_ex(handle, &buffer, buffer.count, nil, 0, &attrs)
            if n == 0 { break }
            if n < 0 { throw failure("readdir", dir, rc: Int32(n)) }
            let name = String(decoding: buffer[0..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            entries.append(Entry(
                name: name,
                size: attrs.flags & UInt(LIBSSH2_SFTP_ATTR_SIZE) != 0 ? Int64(attrs.filesize) : 0,
                mtime: attrs.flags & UInt(LIBSSH2_SFTP_ATTR_ACMODTIME) != 0 ? Int(attrs.mtime) : 0))
        }
        return entries
    }

    /// temp → write → fsync → mtime → close → rename. Returns the bytes written.
    func write(dir: String, name: String, contents: LTXPayload, mtime: Date) throws -> Int64 {
        defer { resetIfBroken() }
        let sftp = try connected()
        requests.add(1, ordering: .relaxed)
        try makeDirectories(dir)
        let final = "\(dir)/\(name)"
        // One temporary name per final name: a retried write truncates the
        // leftover of the interrupted attempt instead of adding another.
        let temp = "\(dir)/\(name).tmp"
        let flags = UInt(LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC)
        var opened = libssh2_sftp_open_ex(sftp, temp, UInt32(temp.utf8.count), flags, 0o644, LIBSSH2_SFTP_OPENFILE)
        if opened == nil {
            let error = failure("open", temp)
            guard error.kind == .notFound else { throw error }
            // The directory went away under us (deleteAll elsewhere): make it again.
            knownDirectories.removeAll()
            try makeDirectories(dir)
            opened = libssh2_sftp_open_ex(sftp, temp, UInt32(temp.utf8.count), flags, 0o644, LIBSSH2_SFTP_OPENFILE)
        }
        guard let handle = opened else { throw failure("open", temp) }
        var written: Int64 = 0
        do {
            switch contents {
            case .bytes(let bytes):
                try bytes.withUnsafeBytes { try writeAll(handle, $0, path: temp) }
                written = Int64(bytes.count)
            case .file(let source):
                let fd = open(source, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw SystemError("open", path: source) }
                defer { close(fd) }
                var buffer = [UInt8](repeating: 0, count: 256 * 1024)
                while true {
                    let n = Glibc.read(fd, &buffer, buffer.count)
                    if n < 0 { if errno == EINTR { continue }; throw SystemError("read", path: source) }
                    if n == 0 { break }
                    try buffer.withUnsafeBytes { try writeAll(handle, UnsafeRawBufferPointer(rebasing: $0[0..<n]), path: temp) }
                    written += Int64(n)
                }
            }
            if fsyncSupported != false {
                let rc = libssh2_sftp_fsync(handle)
                if rc != 0 {
                    if rc == LIBSSH2_ERROR_SFTP_PROTOCOL, libssh2_sftp_last_error(sftp) == LIBSSH2_FX_OP_UNSUPPORTED {
                        fsyncSupported = false
                    } else {
                        throw failure("fsync", temp, rc: rc)
                    }
                } else {
                    fsyncSupported = true
                }
            }
            var attrs = LIBSSH2_SFTP_ATTRIBUTES()
            attrs.flags = UInt(LIBSSH2_SFTP_ATTR_ACMODTIME)
            let seconds = UInt(max(0, mtime.timeIntervalSince1970.rounded(.down)))
            attrs.atime = seconds
            attrs.mtime = seconds
            let rc = libssh2_sftp_fstat_ex(handle, &attrs, 1)
            if rc != 0 { throw failure("setstat", temp, rc: rc) }
        } catch {
            libssh2_sftp_close_handle(handle)
            if !broken { _ = libssh2_sftp_unlink_ex(sftp, temp, UInt32(temp.utf8.count)) }
            throw error
        }
        let closed = libssh2_sftp_close_handle(handle)
        if closed != 0 {
            let error = failure("close", temp, rc: closed)
            if !broken { _ = libssh2_sftp_unlink_ex(sftp, temp, UInt32(temp.utf8.count)) }
            throw error
        }
        try rename(temp, to: final)
        return written
    }

    private func rename(_ temp: String, to final: String) throws {
        let sftp = try connected()
        let flags = Int(LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC | LIBSSH2_SFTP_RENAME_NATIVE)
        func attempt() -> Int32 {
            libssh2_sftp_rename_ex(sftp, temp, UInt32(temp.utf8.count), final, UInt32(final.utf8.count), flags)
        }
        var rc = attempt()
        if rc == LIBSSH2_ERROR_SFTP_PROTOCOL, exists(final) {
            // A stale copy of this very TXID range (an earlier attempt that
            // got as far as its rename): replace it.
            let u = libssh2_sftp_unlink_ex(sftp, final, UInt32(final.utf8.count))
            if u != 0 { let e = failure("unlink", final, rc: u); if e.kind != .notFound { throw e } }
            rc = attempt()
        }
        if rc != 0 {
            let error = failure("rename", "\(temp) -> \(final)", rc: rc)
            if !broken { _ = libssh2_sftp_unlink_ex(sftp, temp, UInt32(temp.utf8.count)) }
            throw error
        }
    }

    private func exists(_ path: String) -> Bool {
        guard let sftp else { return false }
        var attrs = LIBSSH2_SFTP_ATTRIBUTES()
        return libssh2_sftp_stat_ex(sftp, path, UInt32(path.utf8.count), LIBSSH2_SFTP_STAT, &attrs) == 0
    }

    private func writeAll(_ handle: OpaquePointer, _ data: UnsafeRawBufferPointer, path: String) throws {
        guard let base = data.baseAddress?.assumingMemoryBound(to: CChar.self) else { return }
        var offset = 0
        while offset < data.count {
            let n = libssh2_sftp_write(handle, base + offset, data.count - offset)
            if n < 0 { throw failure("write", path, rc: Int32(n)) }
            if n == 0 { throw ReplicaError(.transient, "sftp replica \(display): write \(path): no progress") }
            offset += n
        }
    }

    /// `mkdir -p`, remembering what exists.
    private func makeDirectories(_ dir: String) throws {
        if knownDirectories.contains(dir) { return }
        let sftp = try connected()
        if isDirectory(dir) {
            knownDirectories.insert(dir)
            return
        }
        var path = dir.hasPrefix("/") ? "" : "."
        for component in dir.split(separator: "/") {
            path += "/\(component)"
            if path == "./." { continue }
            if knownDirectories.contains(path) { continue }
            if !isDirectory(path) {
                let rc = libssh2_sftp_mkdir_ex(sftp, path, UInt32(path.utf8.count), 0o755)
                if rc != 0, !isDirectory(path) { throw failure("mkdir", path, rc: rc) }
            }
            knownDirectories.insert(path)
        }
        knownDirectories.insert(dir)
    }

    func isDirectory(_ path: String) -> Bool {
        guard let sftp else { return false }
        var attrs = LIBSSH2_SFTP_ATTRIBUTES()
        guard libssh2_sftp_stat_ex(sftp, path, UInt32(path.utf8.count), LIBSSH2_SFTP_STAT, &attrs) == 0 else { return false }
        return attrs.flags & UInt(LIBSSH2_SFTP_ATTR_PERMISSIONS) != 0 && (attrs.permissions & 0o170000) == 0o040000
    }

    func read(_ path: String, limit: Int?) throws -> [UInt8] {
        defer { resetIfBroken() }
        let sftp = try connected()
        requests.add(1, ordering: .relaxed)
        guard let handle = libssh2_sftp_open_ex(sftp, path, UInt32(path.utf8.count), UInt(LIBSSH2_FXF_READ), 0, LIBSSH2_SFTP_OPENFILE) else {
            throw failure("open", path)
        }
        defer { libssh2_sftp_close_handle(handle) }
        var out: [UInt8] = []
        var buffer = [CChar](repeating: 0, count: 64 * 1024)
        while limit.map({ out.count < $0 }) ?? true {
            let want = min(buffer.count, (limit ?? Int.max) - out.count)
            let n = libssh2_sftp_read(handle, &buffer, want)
            if n < 0 { throw failure("read", path, rc: Int32(n)) }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n].map { UInt8(bitPattern: $0) })
        }
        return out
    }

    func download(_ path: String, to localPath: String) throws {
        defer { resetIfBroken() }
        let sftp = try connected()
        requests.add(1, ordering: .relaxed)
        guard let handle = libssh2_sftp_open_ex(sftp, path, UInt32(path.utf8.count), UInt(LIBSSH2_FXF_READ), 0, LIBSSH2_SFTP_OPENFILE) else {
            throw failure("open", path)
        }
        defer { libssh2_sftp_close_handle(handle) }
        let fd = open(localPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path: localPath) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        do {
            while true {
                let n = buffer.withUnsafeMutableBytes { raw in
                    libssh2_sftp_read(handle, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count)
                }
                if n < 0 { throw failure("read", path, rc: Int32(n)) }
                if n == 0 { break }
                try DurableFile.writeAll(fd: fd, Array(buffer[0..<n]), path: localPath)
            }
        } catch {
            unlink(localPath)  // no partial file left behind
            throw error
        }
    }

    func remove(_ path: String) throws {
        defer { resetIfBroken() }
        let sftp = try connected()
        requests.add(1, ordering: .relaxed)
        let rc = libssh2_sftp_unlink_ex(sftp, path, UInt32(path.utf8.count))
        if rc != 0 {
            let error = failure("unlink", path, rc: rc)
            if error.kind != .notFound { throw error }
        }
    }

    /// Removes the LTX files (and leftover temporary files) of every level,
    /// then the emptied level directories and `ltx/`. Other files are kept.
    func removeLTXTree(root: String) throws {
        defer { resetIfBroken() }
        for level in LTXNaming.allLevels {
            let dir = "\(root)/ltx/\(level)"
            for entry in try list(dir) {
                let base = entry.name.hasSuffix(".tmp") ? String(entry.name.dropLast(4)) : entry.name
                guard LTXNaming.parse(fileName: base) != nil else { continue }
                try remove("\(dir)/\(entry.name)")
            }
            try removeDirectoryIfEmpty(dir)
        }
        try removeDirectoryIfEmpty("\(root)/ltx")
        knownDirectories.removeAll()
    }

    func removeDirectoryIfEmpty(_ dir: String) throws {
        let sftp = try connected()
        let rc = libssh2_sftp_rmdir_ex(sftp, dir, UInt32(dir.utf8.count))
        guard rc != 0 else { return }
        let error = failure("rmdir", dir, rc: rc)
        // Missing is fine; not empty (FAILURE) means someone else's files are there: keep it.
        if error.kind == .transient { throw error }
    }

    // MARK: Errors

    /// Turns the last libssh2 error into a `ReplicaError`. Transport errors
    /// (timeouts, resets, a closed channel) tear the session down so that
    /// the next attempt reconnects.
    private func failure(_ operation: String, _ path: String, rc explicit: Int32? = nil) -> ReplicaError {
        guard let session else {
            return ReplicaError(.transient, "sftp replica \(display): \(operation) \(path): not connected")
        }
        let rc = explicit ?? libssh2_session_last_errno(session)
        if rc == LIBSSH2_ERROR_SFTP_PROTOCOL, let sftp {
            let status = libssh2_sftp_last_error(sftp)
            let (kind, text): (ReplicaError.Kind, String) = switch Int32(truncatingIfNeeded: status) {
            case Int32(LIBSSH2_FX_NO_SUCH_FILE), Int32(LIBSSH2_FX_NO_SUCH_PATH): (.notFound, "no such file")
            case Int32(LIBSSH2_FX_PERMISSION_DENIED): (.permanent, "permission denied")
            case Int32(LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM): (.transient, "no space left on the server")
            case Int32(LIBSSH2_FX_QUOTA_EXCEEDED): (.transient, "quota exceeded on the server")
            case Int32(LIBSSH2_FX_NO_CONNECTION), Int32(LIBSSH2_FX_CONNECTION_LOST): (.transient, "connection lost")
            case Int32(LIBSSH2_FX_FAILURE): (.permanent, "failure")
            default: (.permanent, "SFTP status \(status)")
            }
            if kind == .transient, status == LIBSSH2_FX_NO_CONNECTION || status == LIBSSH2_FX_CONNECTION_LOST {
                markBroken()
            }
            let cause: ReplicaError.Cause? = status == LIBSSH2_FX_PERMISSION_DENIED ? .accessDenied : nil
            return ReplicaError(kind, "sftp replica \(display): \(operation) \(path): \(text)", cause: cause)
        }
        let message = lastErrorMessage(session)
        markBroken()
        return ReplicaError(.transient, "sftp replica \(display): \(operation) \(path): \(message) (libssh2 error \(rc)); will reconnect")
    }

    private func lastErrorMessage(_ session: OpaquePointer) -> String {
        var message: UnsafeMutablePointer<CChar>?
        var length: Int32 = 0
        libssh2_session_last_error(session, &message, &length, 0)
        guard let message, length > 0 else { return "error" }
        return String(cString: message)
    }

    // MARK: Connecting

    func disconnect(broken: Bool) { teardown(broken: broken) }

    /// Whether a session is open (tests: a drill closes its own).
    var isConnected: Bool { session != nil }

    /// Shuts the socket down so that pending and further libssh2 calls fail
    /// at once; `resetIfBroken` frees the session when the operation ends.
    private func markBroken() {
        broken = true
        if socketFD >= 0 { shutdown(socketFD, Int32(SHUT_RDWR)) }
    }

    func resetIfBroken() {
        if broken { teardown(broken: true) }
    }

    private func teardown(broken wasBroken: Bool) {
        let dead = wasBroken || broken
        if dead, socketFD >= 0 {
            // Make every pending send/recv fail at once instead of waiting for a timeout.
            shutdown(socketFD, Int32(SHUT_RDWR))
        }
        if let sftp { libssh2_sftp_shutdown(sftp) }
        if let session {
            if !dead { libssh2_session_disconnect_ex(session, SSH_DISCONNECT_BY_APPLICATION, "guardian closing", "") }
            libssh2_session_free(session)
        }
        if socketFD >= 0 { close(socketFD) }
        sftp = nil
        session = nil
        socketFD = -1
        broken = false
        knownDirectories.removeAll()
    }

    func connected() throws -> OpaquePointer {
        if broken { throw ReplicaError(.transient, "sftp replica \(display): connection lost; will reconnect") }
        if let sftp { return sftp }
        try connect()
        guard let sftp else { throw ReplicaError(.transient, "sftp replica \(display): not connected") }
        return sftp
    }

    private func connect() throws {
        guard Self.libraryReady else { throw ReplicaError(.permanent, "sftp replica \(display): libssh2_init failed") }
        teardown(broken: true)
        requests.add(1, ordering: .relaxed)
        let fd = try Self.openSocket(host: location.host, port: location.port, timeout: options.connectTimeout, display: display)
        socketFD = fd
        guard let session = libssh2_session_init_ex(nil, nil, nil, nil) else {
            teardown(broken: true)
            throw ReplicaError(.transient, "sftp replica \(display): libssh2_session_init failed")
        }
        self.session = session
        libssh2_session_set_blocking(session, 1)
        libssh2_session_set_timeout(session, Self.milliseconds(options.connectTimeout))

        let knownHostsPath = location.knownHosts ?? ""
        let known: KnownHosts
        do {
            known = try KnownHosts(path: knownHostsPath)
        } catch {
            teardown(broken: true)
            throw ReplicaError(.permanent, "sftp replica \(display): cannot read known-hosts \(knownHostsPath): \(error)")
        }
        let preferred = known.hostKeyMethods(host: location.host, port: location.port)
        if !preferred.isEmpty {
            _ = libssh2_session_method_pref(session, LIBSSH2_METHOD_HOSTKEY, preferred.joined(separator: ","))
        }

        var rc = libssh2_session_handshake(session, fd)
        if rc != 0 {
            let message = lastErrorMessage(session)
            teardown(broken: true)
            throw ReplicaError(.transient, "sftp replica \(display): SSH handshake failed: \(message) (libssh2 error \(rc))", cause: .unreachable)
        }
        if let problem = hostKeyProblem(session, knownHostsPath: knownHostsPath) {
            teardown(broken: true)
            throw problem
        }

        rc = -1
        var tried: [String] = []
        if let keyPath = location.keyPath {
            rc = libssh2_userauth_publickey_fromfile_ex(session, location.user, UInt32(location.user.utf8.count), nil, keyPath, nil)
            if rc != 0 {
                tried.append("key \(keyPath): \(lastErrorMessage(session))")
                if rc == LIBSSH2_ERROR_TIMEOUT || rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_SOCKET_DISCONNECT {
                    teardown(broken: true)
                    throw ReplicaError(.transient, "sftp replica \(display): authentication interrupted: \(tried.joined(separator: "; "))")
                }
            }
        }
        if rc != 0, let password = location.password {
            rc = libssh2_userauth_password_ex(session, location.user, UInt32(location.user.utf8.count), password.value, UInt32(password.value.utf8.count), nil)
            if rc != 0 { tried.append("password: \(lastErrorMessage(session))") }
        }
        if rc != 0 {
            teardown(broken: true)
            throw ReplicaError(.permanent, "sftp replica \(display): authentication as \(location.user) failed (\(tried.joined(separator: "; ")))", cause: .authentication)
        }
        guard let channel = libssh2_sftp_init(session) else {
            let message = lastErrorMessage(session)
            teardown(broken: true)
            throw ReplicaError(.transient, "sftp replica \(display): cannot start the SFTP subsystem: \(message)")
        }
        sftp = channel
        libssh2_session_set_timeout(session, Self.milliseconds(options.stallTimeout))
    }

    /// Checks the server's host key against known_hosts; nil when it matches.
    /// (The caller tears the session down: the knownhost list must be freed first.)
    private func hostKeyProblem(_ session: OpaquePointer, knownHostsPath: String) -> ReplicaError? {
        var length = 0
        var type: Int32 = 0
        guard let raw = libssh2_session_hostkey(session, &length, &type), length > 0 else {
            return ReplicaError(.permanent, "sftp replica \(display): the server sent no host key")
        }
        let key = UnsafeRawBufferPointer(start: raw, count: length)
        let fingerprint = "SHA256:" + Crypto.base64(Crypto.sha256(key)).replacingOccurrences(of: "=", with: "")
        let typeName = Self.hostKeyTypeName(type)
        let hostLabel = location.port == 22 ? location.host : "[\(location.host)]:\(location.port)"

        guard let hosts = libssh2_knownhost_init(session) else {
            return ReplicaError(.permanent, "sftp replica \(display): libssh2_knownhost_init failed")
        }
        defer { libssh2_knownhost_free(hosts) }
        let loaded = libssh2_knownhost_readfile(hosts, knownHostsPath, LIBSSH2_KNOWNHOST_FILE_OPENSSH)
        if loaded < 0 {
            return ReplicaError(.permanent, "sftp replica \(display): cannot read known-hosts \(knownHostsPath) (libssh2 error \(loaded))")
        }
        var entry: UnsafeMutablePointer<libssh2_knownhost>?
        let mask = Int32(LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW) | Self.knownHostKeyBits(type)
        let result = libssh2_knownhost_checkp(hosts, location.host, Int32(location.port), raw, length, mask, &entry)
        switch result {
        case LIBSSH2_KNOWNHOST_CHECK_MATCH:
            return nil
        case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
            return ReplicaError(.permanent, "sftp replica \(display): HOST KEY CHANGED: \(hostLabel) offers \(typeName) \(fingerprint), which does not match \(knownHostsPath); refusing to connect (someone may be intercepting the connection; if the server's key really changed, replace its line in \(knownHostsPath))", cause: .hostKey)
        case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
            return ReplicaError(.permanent, "sftp replica \(display): unknown host key: \(hostLabel) offers \(typeName) \(fingerprint), which is not in \(knownHostsPath); refusing to connect (after checking the fingerprint, add it with: ssh-keyscan -p \(location.port) \(location.host) >> \(knownHostsPath))", cause: .hostKey)
        default:
            return ReplicaError(.permanent, "sftp replica \(display): host key of \(hostLabel) (\(typeName) \(fingerprint)) could not be checked against \(knownHostsPath)", cause: .hostKey)
        }
    }

    private static func hostKeyTypeName(_ type: Int32) -> String {
        switch type {
        case LIBSSH2_HOSTKEY_TYPE_RSA: "ssh-rsa"
        case LIBSSH2_HOSTKEY_TYPE_DSS: "ssh-dss"
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: "ecdsa-sha2-nistp256"
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: "ecdsa-sha2-nistp384"
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: "ecdsa-sha2-nistp521"
        case LIBSSH2_HOSTKEY_TYPE_ED25519: "ssh-ed25519"
        default: "unknown key type"
        }
    }

    /// `LIBSSH2_KNOWNHOST_KEY_*` for a session host key type.
    private static func knownHostKeyBits(_ type: Int32) -> Int32 {
        let shift: Int32 = 18
        switch type {
        case LIBSSH2_HOSTKEY_TYPE_RSA: return 2 << shift
        case LIBSSH2_HOSTKEY_TYPE_DSS: return 3 << shift
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return 4 << shift
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return 5 << shift
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return 6 << shift
        case LIBSSH2_HOSTKEY_TYPE_ED25519: return 7 << shift
        default: return 0
        }
    }

    private static func milliseconds(_ d: Duration) -> Int {
        let (s, atto) = d.components
        return max(1, Int(s) * 1000 + Int(atto / 1_000_000_000_000_000))
    }

    /// A connected TCP socket (blocking), or a transient error after `timeout`.
    private static func openSocket(host: String, port: Int, timeout: Duration, display: String) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let gai = getaddrinfo(host, String(port), &hints, &list)
        guard gai == 0, let first = list else {
            throw ReplicaError(.transient, "sftp replica \(display): cannot resolve \(host): \(String(cString: gai_strerror(gai)))", cause: .unreachable)
        }
        defer { freeaddrinfo(list) }
        var lastError: Int32 = 0
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let ai = candidate {
            candidate = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            if fd < 0 { lastError = errno; continue }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var rc = Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen)
            if rc != 0, errno == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = poll(&pfd, 1, Int32(milliseconds(timeout)))
                if ready == 1 {
                    var err: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                    if err == 0 { rc = 0 } else { lastError = err }
                } else {
                    lastError = ready == 0 ? ETIMEDOUT : errno
                }
            } else if rc != 0 {
                lastError = errno
            }
            if rc == 0 {
                _ = fcntl(fd, F_SETFL, flags)
                var one: Int32 = 1
                setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            close(fd)
        }
        throw ReplicaError(.transient, "sftp replica \(display): cannot connect to \(host) port \(port): \(String(cString: strerror(lastError)))", cause: lastError == ETIMEDOUT ? .timeout : .unreachable)
    }
}

// MARK: - known_hosts

/// Reads an OpenSSH known_hosts file far enough to know which host key types
/// are on record for a host (plain or hashed `|1|salt|hash` names), so the
/// handshake asks the server for a key type we can check. The check itself
/// is libssh2's (`libssh2_knownhost_checkp`).
struct KnownHosts {
    struct Line {
        var hosts: String
        var keyType: String
    }

    let lines: [Line]

    init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SystemError("open", path: path, code: FileManager.default.fileExists(atPath: path) ? EACCES : ENOENT)
        }
        var lines: [Line] = []
        for raw in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline) {
            let fields = raw.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 3, !fields[0].hasPrefix("#"), !fields[0].hasPrefix("@") else { continue }
            lines.append(Line(hosts: String(fields[0]), keyType: String(fields[1])))
        }
        self.lines = lines
    }

    func names(host: String, port: Int) -> [String] {
        port == 22 ? [host] : ["[\(host)]:\(port)", host]
    }

    func matches(_ pattern: String, host: String, port: Int) -> Bool {
        let candidates = names(host: host, port: port)
        for item in pattern.split(separator: ",") {
            if item.hasPrefix("|1|") {
                let parts = item.split(separator: "|", omittingEmptySubsequences: true)
                guard parts.count == 3, let salt = Data(base64Encoded: String(parts[1])), let hash = Data(base64Encoded: String(parts[2])) else { continue }
                for name in candidates where Crypto.hmac(.sha1, key: [UInt8](salt), data: Array(name.utf8)) == [UInt8](hash) {
                    return true
                }
            } else if candidates.contains(String(item)) {
                return true
            }
        }
        return false
    }

    /// Host key algorithms to offer, most preferred first.
    func hostKeyMethods(host: String, port: Int) -> [String] {
        var methods: [String] = []
        for line in lines where matches(line.hosts, host: host, port: port) {
            let names = line.keyType == "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [line.keyType]
            for name in names where !methods.contains(name) { methods.append(name) }
        }
        return methods
    }
}
