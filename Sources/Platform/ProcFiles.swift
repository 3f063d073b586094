import Foundation

/// Reads files of /proc whole. Foundation's `String(contentsOfFile:)` trusts
/// the size stat reports, which is 0 for them, and returns the first page
/// only: on a host with many locks or mounts `/proc/locks` and
/// `/proc/self/mountinfo` came back cut after about 4 KiB.
public enum ProcFiles {
    /// The whole text of `path` (read until end of file), nil when it cannot be opened.
    public static func text(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
