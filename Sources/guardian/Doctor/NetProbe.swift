import Foundation
import Platform

/// DNS and TCP reachability of a host and port, told apart: the name does
/// not resolve, the connection is refused, nothing answers in time, or the
/// network is unreachable. Blocking (getaddrinfo, connect with poll): callers
/// run it on `BlockingPool` under a `Deadline` (getaddrinfo has no timeout of
/// its own).
enum NetProbe {
    enum Outcome: Sendable, Equatable {
        case connected(address: String, milliseconds: Int)
        case unresolved(String)
        case refused(address: String)
        case timedOut(address: String)
        case unreachable(address: String, reason: String)
    }

    static func connect(host: String, port: Int, timeout: Duration) -> Outcome {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let name = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let gai = getaddrinfo(name, String(port), &hints, &list)
        guard gai == 0, let first = list else {
            let reason = gai == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(gai))
            return .unresolved(reason)
        }
        defer { freeaddrinfo(list) }
        let start = ContinuousClock.now
        var last = Outcome.unresolved("no address")
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let ai = candidate {
            candidate = ai.pointee.ai_next
            let address = Self.text(ai.pointee.ai_addr, ai.pointee.ai_addrlen, port: port)
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), ai.pointee.ai_protocol)
            if fd < 0 {
                last = .unreachable(address: address, reason: String(cString: strerror(errno)))
                continue
            }
            defer { close(fd) }
            var err: Int32 = 0
            if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) != 0 {
                err = errno
                if err == EINPROGRESS {
                    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    let ready = poll(&pfd, 1, Int32(max(1, timeout.milliseconds)))
                    if ready == 1 {
                        var len = socklen_t(MemoryLayout<Int32>.size)
                        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                    } else {
                        err = ready == 0 ? ETIMEDOUT : errno
                    }
                }
            }
            switch err {
            case 0:
                let ms = Int((ContinuousClock.now - start).milliseconds)
                return .connected(address: address, milliseconds: ms)
            case ECONNREFUSED: last = .refused(address: address)
            case ETIMEDOUT: last = .timedOut(address: address)
            default: last = .unreachable(address: address, reason: String(cString: strerror(err)))
            }
        }
        return last
    }

    /// `127.0.0.1:9000`, `[::1]:22`.
    private static func text(_ addr: UnsafeMutablePointer<sockaddr>?, _ len: socklen_t, port: Int) -> String {
        guard let addr else { return "?" }
        var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(addr, len, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 else { return "?" }
        let host = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
