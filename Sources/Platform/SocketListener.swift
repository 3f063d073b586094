import Foundation
import Synchronization

/// The accept loop shared by guardian's servers (the unix status socket and
/// the loopback metrics endpoint): one dedicated thread waits in poll(2) and
/// accept(2) on a listening socket and hands each connection to
/// `connections`; the owning service reads that stream inside its own
/// structured task, so no accept ever blocks the cooperative pool.
///
/// The thread owns the listening descriptor: `stop()` only wakes it; it
/// closes the descriptor, then finishes `connections` and resumes
/// `closed()`. Awaiting `closed()` before a service returns lets a reloaded
/// daemon bind the same address again at once.
public final class SocketListener: Sendable {
    public let connections: AsyncStream<Int32>
    private let fd: Int32
    private let state = Mutex<(stopped: Bool, closed: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, false, []))

    /// Takes over `fd`, a socket on which listen(2) succeeded.
    public init(listening fd: Int32, threadName: String) {
        self.fd = fd
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        connections = stream
        let thread = Thread { [self] in
            self.acceptLoop(continuation)
        }
        thread.name = threadName
        thread.start()
    }

    private func acceptLoop(_ continuation: AsyncStream<Int32>.Continuation) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while !state.withLock({ $0.stopped }) {
            // A bounded wait, so that a stop is seen even if no wake-up arrives.
            let ready = poll(&p, 1, 250)
            if ready < 0 && errno != EINTR { break }
            guard ready > 0 else { continue }
            if state.withLock({ $0.stopped }) { break }
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EAGAIN || errno == EMFILE || errno == ENFILE {
                    // Out of descriptors: back off instead of spinning.
                    if errno == EMFILE || errno == ENFILE { usleep(100_000) }
                    continue
                }
                break
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            if case .terminated = continuation.yield(client) {
                close(client)
                break
            }
        }
        close(fd)
        continuation.finish()
        let waiters = state.withLock { s in
            s.closed = true
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    /// Stops accepting. The descriptor is closed by the accept thread.
    public func stop() {
        let first = state.withLock { s in
            defer { s.stopped = true }
            return !s.stopped
        }
        // Wakes a blocked poll/accept at once (Linux answers EINVAL afterwards).
        if first { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    /// Returns once the listening descriptor is closed (after `stop()`).
    public func closed() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s in
                if s.closed { return true }
                s.waiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    /// Writes all of `bytes` to a connected socket: no SIGPIPE when the peer
    /// has gone (the error is thrown instead), and at most `timeoutMS` per
    /// wait for room, so a client that stops reading cannot hold a thread. Blocking.
    public static func sendAll(fd: Int32, _ bytes: [UInt8], peer: String, timeoutMS: Int32 = 5000) throws {
        try bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            while offset < raw.count {
                let n = send(fd, base + offset, raw.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                if n >= 0 {
                    offset += n
                    continue
                }
                switch errno {
                case EINTR: continue
                case EAGAIN:
                    let ready = poll(&p, 1, timeoutMS)
                    if ready == 0 { throw SystemError("send (timed out)", path: peer, code: ETIMEDOUT) }
                    if ready < 0 && errno != EINTR { throw SystemError("poll", path: peer) }
                default:
                    throw SystemError("send", path: peer)
                }
            }
        }
    }
}

/// A loopback TCP address guardian may listen on: IPv4 127.0.0.0/8 or IPv6
/// ::1. Written `127.0.0.1:9464` or `[::1]:9464`; `localhost:PORT` means
/// 127.0.0.1. Nothing else is accepted: guardian's HTTP endpoint has no
/// authentication, so it is never reachable from another host.
public struct LoopbackAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var isIPv6: Bool

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case notLoopback(String)

        public var description: String {
            switch self {
            case .malformed(let s):
                return "\"\(s)\" must be HOST:PORT with a loopback host and a port 1-65535, e.g. 127.0.0.1:9464 or [::1]:9464"
            case .notLoopback(let s):
                return "\"\(s)\" is not a loopback address: the metrics endpoint has no authentication, so guardian listens on 127.0.0.1 or [::1] only (put a reverse proxy with TLS and authentication in front to publish it)"
            }
        }
    }

    public static func parse(_ text: String) throws(ParseError) -> LoopbackAddress {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else {
            throw .malformed(text)
        }
        var host = String(s[..<colon])
        var bracketed = false
        if host.hasPrefix("[") && host.hasSuffix("]") && host.count > 2 {
            host = String(host.dropFirst().dropLast())
            bracketed = true
        }
        guard !host.isEmpty else { throw .malformed(text) }
        if host.lowercased() == "localhost" && !bracketed {
            return LoopbackAddress(host: "127.0.0.1", port: port, isIPv6: false)
        }
        var v4 = in_addr()
        if !bracketed, inet_pton(AF_INET, host, &v4) == 1 {
            // First octet 127 (network byte order: the lowest byte in memory).
            guard UInt32(bigEndian: v4.s_addr) >> 24 == 127 else { throw .notLoopback(text) }
            return LoopbackAddress(host: host, port: port, isIPv6: false)
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            guard bracketed else { throw .malformed(text) }
            var loopback = in6_addr()
            _ = inet_pton(AF_INET6, "::1", &loopback)
            let same = withUnsafeBytes(of: &v6) { a in withUnsafeBytes(of: &loopback) { b in a.elementsEqual(b) } }
            guard same else { throw .notLoopback(text) }
            return LoopbackAddress(host: "::1", port: port, isIPv6: true)
        }
        // A host name or an address in another form: never resolved.
        throw .notLoopback(text)
    }

    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Binds and listens (SO_REUSEADDR, close-on-exec); returns the descriptor.
    public func listen(backlog: Int32 = 16) throws -> Int32 {
        let family = isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", path: description) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc: Int32
        if isIPv6 {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            addr.sin6_port = in_port_t(UInt16(port).bigEndian)
            _ = inet_pton(AF_INET6, host, &addr.sin6_addr)
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            _ = inet_pton(AF_INET, host, &addr.sin_addr)
            rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        guard rc == 0 else {
            let e = SystemError("bind", path: description)
            close(fd)
            throw e
        }
        guard systemListen(fd, backlog) == 0 else {
            let e = SystemError("listen", path: description)
            close(fd)
            throw e
        }
        return fd
    }
}

/// listen(2), which `LoopbackAddress.listen` shadows.
private func systemListen(_ fd: Int32, _ backlog: Int32) -> Int32 { listen(fd, backlog) }
