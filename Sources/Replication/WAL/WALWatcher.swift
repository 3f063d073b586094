import Foundation
import Platform

/// Wakes the replicator within milliseconds of a write to the `-wal` file:
/// inotify on the database's directory (the WAL may not exist yet, and may be
/// replaced), filtered to the WAL's name. A dedicated thread blocks in
/// read(2); events are coalesced into a single pending wake-up. When inotify
/// is unavailable the stream simply never fires and the replicator's poll
/// interval takes over.
final class WALWatcher: @unchecked Sendable {
    let events: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation
    private let fd: Int32
    private let lock = NSLock()
    private var stopped = false

    init(walPath: String) {
        (events, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let dir = (walPath as NSString).deletingLastPathComponent
        let name = (walPath as NSString).lastPathComponent
        fd = inotify_init1(Int32(IN_CLOEXEC))
        guard fd >= 0 else { return }
        let mask = UInt32(IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_CLOSE_WRITE)
        guard inotify_add_watch(fd, dir, mask) >= 0 else {
            close(fd)
            return
        }
        let thread = Thread { [fd, continuation, weak self] in
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            let headerSize = MemoryLayout<inotify_event>.size
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            while true {
                // Wake up now and then to notice stop().
                let ready = poll(&p, 1, 250)
                guard let self, !self.isStopped else { break }
                if ready <= 0 { continue }
                let n = read(fd, &buffer, buffer.count)
                if n < 0 { if errno == EINTR { continue }; break }
                if n == 0 { break }
                var offset = 0
                var relevant = false
                while offset + headerSize <= n {
                    let len = buffer.withUnsafeBytes { Int($0.load(fromByteOffset: offset + 12, as: UInt32.self)) }
                    let nameBytes = buffer[(offset + headerSize)..<min(n, offset + headerSize + len)]
                    let eventName = String(decoding: nameBytes.prefix(while: { $0 != 0 }), as: UTF8.self)
                    if eventName == name { relevant = true }
                    offset += headerSize + len
                }
                if relevant { continuation.yield(()) }
            }
            continuation.finish()
            close(fd)
        }
        thread.name = "guardian-inotify"
        thread.start()
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    /// Ends the stream; the thread notices within 250 ms and closes the descriptor.
    func stop() {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if first { continuation.finish() }
    }
}
