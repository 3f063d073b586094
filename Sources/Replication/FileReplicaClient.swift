import Foundation
import Platform

/// A replica in a local directory, in Litestream's file layout:
/// `<root>/ltx/<level>/<min>-<max>.ltx`, mtime = the LTX timestamp. Writes
/// are durable (temp → fsync → rename → fsync dir).
public struct FileReplicaClient: ReplicaClient {
    public let root: String
    public var target: ReplicaTarget { .file(path: root) }

    public init(root: String) { self.root = root }

    public func directory(level: Int) -> String { "\(root)/ltx/\(level)" }

    public func path(of file: LTXFileInfo) -> String { "\(directory(level: file.level))/\(file.name)" }

    public func listFiles(level: Int, exactTimestamps: Bool) async throws -> [LTXFileInfo] {
        let dir = directory(level: level)
        return try await BlockingPool.shared.run { try Self.list(dir: dir, level: level) }
    }

    static func list(dir: String, level: Int) throws -> [LTXFileInfo] {
        guard let d = opendir(dir) else {
            if errno == ENOENT { return [] }
            throw SystemError("opendir", path: dir)
        }
        defer { closedir(d) }
        var files: [LTXFileInfo] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let (lo, hi) = try LTXNaming.listed(fileName: name, display: "\(dir)/\(name)") else { continue }
            var st = stat()
            guard stat("\(dir)/\(name)", &st) == 0 else { continue }
            let mtime = Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
            files.append(LTXFileInfo(level: level, minTXID: lo, maxTXID: hi, size: Int64(st.st_size), createdAt: mtime))
        }
        return files.sorted()
    }

    public func writeFile(level: Int, minTXID: UInt64, maxTXID: UInt64, contents: LTXPayload, createdAt: Date) async throws -> LTXFileInfo {
        let info = LTXFileInfo(level: level, minTXID: minTXID, maxTXID: maxTXID, size: try contents.size(), createdAt: createdAt)
        try await BlockingPool.shared.run { [self] in try writeNow([(info, contents)]) }
        return info
    }

    /// Writes files in place, blocking the calling thread (a replication
    /// worker's, or the BlockingPool's): each is written to a temp file,
    /// fsynced and renamed; each directory is fsynced once, after its last
    /// file. None is durable before this returns.
    public func writeNow(_ files: [(info: LTXFileInfo, contents: LTXPayload)]) throws {
        var dirs: [String] = []
        for (info, contents) in files {
            let dir = directory(level: info.level)
            if !dirs.contains(dir) { dirs.append(dir) }
            let path = "\(dir)/\(info.name)"
            func put() throws {
                switch contents {
                case .bytes(let bytes):
                    try DurableFile.write(bytes, to: path, mtime: info.createdAt, syncDirectory: false)
                case .file(let source):
                    try Self.copyDurably(from: source, to: path, mtime: info.createdAt, syncDirectory: false)
                }
            }
            // The level's directory is made when the first write finds it
            // missing (not looked up before every write).
            do { try put() } catch let e as SystemError where e.code == ENOENT && e.operation == "open" && e.path.hasPrefix(dir + "/") {
                try DurableFile.makeDirectories(dir)
                try put()
            }
        }
        for dir in dirs { try DurableFile.syncDirectory(dir) }
    }

    /// Copies a local file into place durably.
    static func copyDurably(from source: String, to path: String, mtime: Date, syncDirectory: Bool = true) throws {
        let tmp = path + ".tmp"
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw SystemError("open", path: source) }
        defer { close(input) }
        let output = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw SystemError("open", path: tmp) }
        do {
            try DurableFile.copyAll(from: input, source: source, to: output, target: tmp)
            guard fsync(output) == 0 else { throw SystemError("fsync", path: tmp) }
            try DurableFile.setMTime(fd: output, mtime, path: tmp)
        } catch {
            close(output)
            unlink(tmp)
            throw error
        }
        close(output)
        guard rename(tmp, path) == 0 else { throw SystemError("rename", path: path) }
        if syncDirectory { try DurableFile.syncDirectory((path as NSString).deletingLastPathComponent) }
    }

    public func downloadFile(_ file: LTXFileInfo, to localPath: String) async throws {
        let source = path(of: file)
        try await BlockingPool.shared.run {
            guard FileManager.default.fileExists(atPath: source) else {
                throw ReplicaError(.notFound, "\(source) does not exist")
            }
            if FileManager.default.fileExists(atPath: localPath) { try FileManager.default.removeItem(atPath: localPath) }
            try FileManager.default.copyItem(atPath: source, toPath: localPath)
        }
    }

    public func readFile(_ file: LTXFileInfo) async throws -> [UInt8] {
        let source = path(of: file)
        return try await BlockingPool.shared.run {
            guard let data = FileManager.default.contents(atPath: source) else {
                throw ReplicaError(.notFound, "\(source) does not exist or cannot be read")
            }
            return [UInt8](data)
        }
    }

    public func readPrefix(_ file: LTXFileInfo, count: Int) async throws -> [UInt8] {
        let source = path(of: file)
        return try await BlockingPool.shared.run {
            let fd = open(source, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw errno == ENOENT ? ReplicaError(.notFound, "\(source) does not exist") : SystemError("open", path: source)
            }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: count)
            let n = pread(fd, &buffer, count, 0)
            guard n >= 0 else { throw SystemError("pread", path: source) }
            return Array(buffer[0..<n])
        }
    }

    public func deleteFiles(_ files: [LTXFileInfo]) async throws {
        let paths = files.map(path(of:))
        try await BlockingPool.shared.run {
            var dirs: Set<String> = []
            for p in paths {
                if unlink(p) != 0, errno != ENOENT { throw SystemError("unlink", path: p) }
                dirs.insert((p as NSString).deletingLastPathComponent)
            }
            for d in dirs { try? DurableFile.syncDirectory(d) }
        }
    }

    public var markerPath: String { "\(root)/\(ReplicaHistory.markerName)" }

    public func readMarker() async throws -> [UInt8]? {
        let path = markerPath
        return try await BlockingPool.shared.run { try Self.readMarker(at: path) }
    }

    /// The marker, read on the calling thread (a local read of one small file).
    public func readMarkerNow() throws -> [UInt8]? { try Self.readMarker(at: markerPath) }

    static func readMarker(at path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw SystemError("open", path: path)
        }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buffer, buffer.count)
        guard n >= 0 else { throw SystemError("read", path: path) }
        return Array(buffer[0..<n])
    }

    public func writeMarker(_ bytes: [UInt8]) async throws {
        let root = root, path = markerPath
        try await BlockingPool.shared.run {
            try DurableFile.makeDirectories(root)
            try DurableFile.write(bytes, to: path)
        }
    }

    /// Rewrites the marker with a renewed lease (the same history; blocking,
    /// on the replica's worker thread). Usually the marker there is this
    /// session's previous renewal and the new one differs from it only in
    /// the digits of its time stamps: it is written over it in place, with
    /// no fsync and no directory operation (a crash keeps the old stamps,
    /// the new ones, or a mix of their digits: the same history and writer
    /// either way, a lease that only expires sooner). Otherwise the new
    /// content is made durable before it replaces the old, reusing the
    /// previous marker's inode (`.guardian-history.json.spare`; `.held`
    /// only between two renames); that rename is not made durable either.
    public func renewMarkerNow(_ bytes: [UInt8], over current: [UInt8]) throws {
        let path = markerPath
        if DurableFile.differOnlyInDigits(current, bytes), try DurableFile.overwriteInPlace(bytes, at: path, expected: current) { return }
        let spare = "\(root)/.\(ReplicaHistory.markerName).spare", held = "\(root)/.\(ReplicaHistory.markerName).held"
        try DurableFile.replaceReusingInode(bytes, at: path, spare: spare, held: held)
    }

    public func deleteAll() async throws {
        let dir = "\(root)/ltx"
        try await BlockingPool.shared.run {
            if FileManager.default.fileExists(atPath: dir) { try FileManager.default.removeItem(atPath: dir) }
        }
    }
}
