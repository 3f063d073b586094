import Foundation

/// The request line of an HTTP/1.x request, as guardian's small loopback
/// HTTP endpoint (the Prometheus metrics) needs it. Headers are read (within
/// the size limit) but not kept: the endpoint answers every request the same
/// way and always closes the connection.
public struct HTTPRequestHead: Sendable, Equatable {
    public var method: String
    /// The request target as sent (`/metrics?x=1`, or absolute-form).
    public var target: String
    /// The target's path, without query or fragment (`/metrics`).
    public var path: String
    public var version: String
    /// The `Host` header, as sent (nil when there is none).
    public var host: String? = nil
}

/// Why no request head could be read.
public enum HTTPRequestProblem: Error, Equatable, Sendable {
    /// The head is larger than the limit (answered 431).
    case tooLarge
    /// Not an HTTP/1.x request line (answered 400).
    case malformed(String)
    /// The client sent nothing (more) within the time limit, or closed: no answer.
    case timedOut, closed
}

/// Blocking helpers for one HTTP/1.x exchange on a connected socket: read a
/// bounded request head within a deadline, and write a complete response
/// with `Connection: close`. Run them on `BlockingPool`, never on the
/// cooperative pool. Deliberately minimal: no keep-alive, no request bodies,
/// no chunked encoding — a scrape is one request per connection.
public enum HTTPServing {
    /// Request heads larger than this are refused (431).
    public static let maxHeadBytes = 8192

    /// Reads until the blank line that ends the head, at most `maxBytes`,
    /// within `timeoutMS` in all (a slow client cannot stretch it).
    public static func readHead(fd: Int32, maxBytes: Int = maxHeadBytes, timeoutMS: Int = 2000) -> Result<HTTPRequestHead, HTTPRequestProblem> {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMS)
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 2048)
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            if let end = headEnd(buffer) { return parseHead(Array(buffer[..<end])) }
            if buffer.count >= maxBytes { return .failure(.tooLarge) }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return .failure(.timedOut) }
            let ready = poll(&p, 1, Int32(max(1, left.milliseconds)))
            if ready < 0 {
                if errno == EINTR { continue }
                return .failure(.closed)
            }
            if ready == 0 { return .failure(.timedOut) }
            let n = read(fd, &chunk, min(chunk.count, maxBytes + 4 - buffer.count))
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return .failure(.closed)
            }
            if n == 0 { return buffer.isEmpty ? .failure(.closed) : .failure(.malformed("the connection closed inside the request head")) }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// The index where the head ends (before CRLF CRLF, or LF LF), if it
    /// does: the text before it holds the request line and the headers.
    static func headEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 2 else { return nil }
        for i in 1..<b.count where b[i] == 10 {
            if b[i - 1] == 10 { return i - 1 }
            if i >= 3, b[i - 1] == 13, b[i - 2] == 10 { return b[i - 3] == 13 ? i - 3 : i - 2 }
        }
        return nil
    }

    /// Parses a request head (without its final blank line).
    public static func parseHead(_ bytes: [UInt8]) -> Result<HTTPRequestHead, HTTPRequestProblem> {
        guard String(validating: bytes, as: UTF8.self) != nil else { return .failure(.malformed("the request head is not UTF-8")) }
        // Split on LF bytes (a Swift Character would keep CR LF together), dropping a CR before each.
        var lines = bytes.split(separator: 10, omittingEmptySubsequences: false).map { line in
            String(decoding: line.last == 13 ? line.dropLast() : line, as: UTF8.self)
        }
        // RFC 9112 2.2: a server should ignore empty lines before the request line.
        while let first = lines.first, first.isEmpty { lines.removeFirst() }
        guard let requestLine = lines.first else { return .failure(.malformed("empty request")) }
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(.malformed("the request line is not METHOD TARGET VERSION")) }
        let method = String(parts[0]), target = String(parts[1]), version = String(parts[2])
        let tchar = Set("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        guard !method.isEmpty, method.allSatisfy({ tchar.contains($0) }) else { return .failure(.malformed("bad method")) }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return .failure(.malformed("not HTTP/1.x")) }
        guard !target.isEmpty, target.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return .failure(.malformed("bad target")) }
        var host: String?
        for line in lines.dropFirst() {
            // obs-fold (a header line continued on the next) is refused, as RFC 9112 5.2 allows.
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex, !line[line.startIndex].isWhitespace else {
                return .failure(.malformed("bad header line"))
            }
            if line[..<colon].lowercased() == "host" {
                // RFC 9112 3.2: more than one Host is answered 400.
                guard host == nil else { return .failure(.malformed("more than one Host header")) }
                host = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        var path = target
        if !path.hasPrefix("/") {
            // Absolute-form (`http://host:port/metrics`) keeps only the path.
            guard let scheme = path.range(of: "://") else {
                return path == "*" ? .success(HTTPRequestHead(method: method, target: target, path: "*", version: version, host: host)) : .failure(.malformed("bad target"))
            }
            let rest = path[scheme.upperBound...]
            path = rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? "/"
        }
        if let cut = path.firstIndex(where: { $0 == "?" || $0 == "#" }) { path = String(path[..<cut]) }
        return .success(HTTPRequestHead(method: method, target: target, path: path, version: version, host: host))
    }

    /// A complete response: status line, `Content-Type`, `Content-Length`,
    /// `Connection: close`, extra headers, and the body unless `head` (a HEAD request).
    public static func response(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8], head: Bool = false, headers: [(String, String)] = []) -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(reason(status))\r\n"
        text += "Content-Type: \(contentType)\r\n"
        text += "Content-Length: \(body.count)\r\n"
        text += "Connection: close\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        var out = Array(text.utf8)
        if !head { out += body }
        return out
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 421: "Misdirected Request"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }

    /// Sends `bytes` and closes the connection (after a short wait for the
    /// client to close first, so the reply is not cut off by a reset when
    /// unread request bytes remain). The send has `sendTimeoutMS` in all and
    /// the wait `drainMS` in all (and 64 KiB at most), however the client
    /// trickles its bytes: a connection holds the calling thread for a few
    /// seconds at worst. Blocking.
    public static func finish(fd: Int32, _ bytes: [UInt8], peer: String, sendTimeoutMS: Int = 5000, drainMS: Int = 1000) {
        try? SocketListener.sendAll(fd: fd, bytes, peer: peer, timeoutMS: sendTimeoutMS)
        shutdown(fd, Int32(SHUT_WR))
        // Drain what the client still sends until it closes (bounded in time and size).
        let deadline = ContinuousClock.now + .milliseconds(drainMS)
        var sink = [UInt8](repeating: 0, count: 1024)
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var drained = 0
        while drained < 65536 {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { break }
            let ready = poll(&p, 1, Int32(clamping: max(1, min(200, left.milliseconds))))
            if ready < 0 && errno == EINTR { continue }
            guard ready == 1 else { break }
            let n = read(fd, &sink, sink.count)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { break }
            drained += n
        }
        close(fd)
    }
}
