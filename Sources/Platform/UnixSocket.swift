import Foundation

/// A unix stream socket server for guardian's status socket: binds the
/// path and serves it through `SocketListener` (one dedicated accept thread);
/// the owning service reads `connections` inside its own structured task.
public final class UnixSocketServer: Sendable {
    public let path: String
    private let listener: SocketListener
    /// The accepted connections (see `SocketListener.connections`: iterate
    /// it directly; it ends after `stop()`, which closes the queued ones).
    public var connections: SocketListener.Connections { listener.connections }

    /// Binds `path` (replacing a stale socket file) with the given mode.
    public init(path: String, mode: mode_t = 0o660) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        try DurableFile.makeDirectories(dir)
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw SystemError("bind (a non-socket file is in the way)", path: path, code: EEXIST)
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", path: path) }
        var addr: sockaddr_un
        do { addr = try UnixSocketServer.address(path) } catch {
            close(fd)
            throw error
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = SystemError("bind", path: path)
            close(fd)
            throw e
        }
        chmod(path, mode)
        guard listen(fd, 16) == 0 else {
            let e = SystemError("listen", path: path)
            close(fd)
            throw e
        }
        listener = SocketListener(listening: fd, threadName: "guardian-status-accept")
    }

    /// Stops accepting and removes the socket file.
    public func stop() {
        listener.stop()
        unlink(path)
    }

    /// Returns once the listening socket is closed (after `stop()`).
    public func closed() async { await listener.closed() }

    static func address(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw SystemError("bind (path too long)", path: path, code: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return addr
    }

    /// Reads one request line (up to 4 KiB) from a connection, within
    /// `timeoutMS` in all (a client sending a byte at a time cannot stretch
    /// it). Blocking.
    public static func readLine(fd: Int32, timeoutMS: Int32 = 2000) -> String? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeoutMS))
        var buffer = [UInt8]()
        var byte: UInt8 = 0
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while buffer.count < 4096 {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return nil }
            let ready = poll(&p, 1, Int32(clamping: max(1, left.milliseconds)))
            if ready < 0 && errno == EINTR { continue }
            guard ready == 1 else { return nil }
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if byte == UInt8(ascii: "\n") { break }
            buffer.append(byte)
        }
        return String(decoding: buffer, as: UTF8.self)
    }

    /// Connects, sends `request` and a newline, and reads the whole reply. Blocking.
    public static func request(path: String, _ request: String, timeoutMS: Int32 = 10_000) throws -> [UInt8] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", path: path) }
        defer { close(fd) }
        var addr = try address(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw SystemError("connect", path: path) }
        try DurableFile.writeAll(fd: fd, Array((request + "\n").utf8), path: path)
        var reply = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            guard poll(&p, 1, timeoutMS) == 1 else { throw SystemError("read (timed out)", path: path, code: ETIMEDOUT) }
            let n = read(fd, &chunk, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path)
            }
            if n == 0 { break }
            reply.append(contentsOf: chunk[0..<n])
        }
        return reply
    }
}
