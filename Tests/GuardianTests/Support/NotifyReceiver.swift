import Foundation

/// A real sd_notify receiver: an AF_UNIX datagram socket bound to a path,
/// as systemd's is. Collects every datagram guardian sends.
final class NotifyReceiver: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var times: [ContinuousClock.Instant] = []

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket failed") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0 else { throw TestFailure("bind \(path) failed: \(errno)") }
        let thread = Thread { [fd] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n <= 0 { break }
                let text = String(decoding: buffer[0..<n], as: UTF8.self)
                self.lock.withLock {
                    self.received.append(text)
                    self.times.append(.now)
                }
            }
        }
        thread.start()
    }

    var messages: [String] { lock.withLock { received } }

    /// Every datagram with when it arrived.
    var timed: [(at: ContinuousClock.Instant, text: String)] { lock.withLock { Array(zip(times, received)) } }

    /// When each WATCHDOG=1 arrived.
    var watchdogPings: [ContinuousClock.Instant] { timed.filter { $0.text.contains("WATCHDOG=1") }.map(\.at) }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Foundation.close(fd)
        unlink(path)
    }
}
