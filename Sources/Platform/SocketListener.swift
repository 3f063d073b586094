import Foundation
import Synchronization

/// The accept loop shared by guardian's servers (the unix status socket and
/// the loopback metrics endpoint): one dedicated thread waits in poll(2) and
/// accept(2) on a listening socket and hands each connection to
/// `connections`; the owning service reads that sequence inside its own
/// structured task, so no accept ever blocks the cooperative pool.
///
/// The thread owns the listening descriptor: `stop()` only wakes it (a
/// shutdown(2) made under the state lock, and only while the descriptor is
/// still open, so that a number the thread has closed and the process has
/// reused for another socket is never touched); the thread closes the
/// descriptor under that lock, then finishes `connections` and resumes
/// `closed()`. Awaiting `closed()` before a service returns lets a reloaded
/// daemon bind the same address again at once.
///
/// Every accepted connection is the listener's until `connections` hands it
/// to the service: the ones still queued when the listener stops (or when
/// the service stopped reading) are closed by the listener, so a reload
/// never leaks a client's descriptor. At most `maxPending` wait in the
/// queue; beyond that the thread stops accepting and the kernel's backlog
/// holds (or refuses) further clients, so a flood of idle connections cannot
/// take every descriptor of the process.
public final class SocketListener: Sendable {
    private struct State {
        var stopped = false
        /// The listening descriptor is closed.
        var closed = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        /// Accepted, queued in `stream`, not yet handed to the service.
        var pending: Set<Int32> = []
    }

    private let stream: AsyncStream<Int32>
    private let fd: Int32
    private let maxPending: Int
    private let state = Mutex(State())

    /// The accepted connections, each handed over once: the caller owns (and
    /// closes) every descriptor it gets. Ends once the listener is stopped;
    /// connections still queued then are closed by the listener.
    ///
    /// Iterate it directly and stop it with `stop()` (from a graceful-shutdown
    /// handler): an adapter that reads ahead on another task and may drop
    /// what it read, such as ServiceLifecycle's `cancelOnGracefulShutdown()`
    /// (a merge), would lose a connection already handed over.
    public var connections: Connections { Connections(stream: stream, listener: self) }

    /// Takes over `fd`, a socket on which listen(2) succeeded.
    public init(listening fd: Int32, threadName: String, maxPending: Int = 64) {
        self.fd = fd
        self.maxPending = max(1, maxPending)
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        self.stream = stream
        let thread = Thread { [self] in
            self.acceptLoop(continuation)
        }
        thread.name = threadName
        thread.start()
    }

    private func acceptLoop(_ continuation: AsyncStream<Int32>.Continuation) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while !state.withLock({ $0.stopped }) {
            if state.withLock({ $0.pending.count }) >= maxPending {
                // The service is behind: leave further clients in the backlog.
                usleep(20_000)
                continue
            }
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
            state.withLock { _ = $0.pending.insert(client) }
            if case .terminated = continuation.yield(client) {
                // Nobody reads any more.
                state.withLock { _ = $0.pending.remove(client) }
                close(client)
                break
            }
        }
        let waiters = state.withLock { s in
            // Under the lock: `stop()` shuts the descriptor down only while it is open.
            close(fd)
            s.closed = true
            for client in s.pending { close(client) }
            s.pending.removeAll()
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        continuation.finish()
        for w in waiters { w.resume() }
    }

    /// Hands `client` (read from the stream) to the caller: false when it is
    /// no longer the listener's to give (closed at stop, or stop began:
    /// then it is closed here).
    fileprivate func take(_ client: Int32) -> Bool {
        state.withLock { s in
            guard s.pending.remove(client) != nil else { return false }
            if s.stopped {
                close(client)
                return false
            }
            return true
        }
    }

    /// Connections accepted and not yet handed over (for tests).
    var pendingCount: Int { state.withLock { $0.pending.count } }

    /// Stops accepting. The descriptor is closed by the accept thread; the
    /// connections not yet handed over are closed too.
    public func stop() {
        state.withLock { s in
            guard !s.stopped else { return }
            s.stopped = true
            // Wakes a blocked poll/accept at once (Linux answers EINVAL
            // afterwards). Under the lock, and only while the thread has not
            // closed the descriptor: its number could already be another socket's.
            if !s.closed { shutdown(fd, Int32(SHUT_RDWR)) }
        }
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

    /// `SocketListener.connections`: the accepted descriptors, each handed
    /// over once (see `take`).
    public struct Connections: AsyncSequence, Sendable {
        public typealias Element = Int32
        fileprivate let stream: AsyncStream<Int32>
        fileprivate let listener: SocketListener

        public struct AsyncIterator: AsyncIteratorProtocol {
            fileprivate var base: AsyncStream<Int32>.AsyncIterator
            fileprivate let listener: SocketListener

            public mutating func next() async -> Int32? {
                while let client = await base.next() {
                    if listener.take(client) { return client }
                }
                return nil
            }
        }

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(base: stream.makeAsyncIterator(), listener: listener)
        }
    }

    /// Writes all of `bytes` to a connected socket: no SIGPIPE when the peer
    /// has gone (the error is thrown instead), and within `timeoutMS` in all,
    /// so a client that stops reading, or reads a byte at a time, cannot hold
    /// a thread. Blocking.
    public static func sendAll(fd: Int32, _ bytes: [UInt8], peer: String, timeoutMS: Int = 5000) throws {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMS)
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
                    let left = deadline - ContinuousClock.now
                    guard left > .zero else { throw SystemError("send (timed out)", path: peer, code: ETIMEDOUT) }
                    let ready = poll(&p, 1, Int32(clamping: max(1, left.milliseconds)))
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
